"""1:N identification: dense and FAISS search against a naive stable-sort search; CMC and
DIR against the naive SPEC implementation; splits, lists, backend choice, CLI."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from massface.evaluate.cli import app
from massface.evaluate.protocols import search as search_mod
from massface.evaluate.protocols.identification import SplitOptions, evaluate_identification
from massface.evaluate.protocols.labelled import FeatureOptions, load_features, set_labels
from massface.evaluate.protocols.search import UNRANKED, SearchOptions, search
from massface.formats import embedding_dir
from tests.helpers.blufr_reference import (
    OSI_FARS,
    dyadic_vectors,
    naive_open_set,
    naive_search,
    unit,
)
from tests.helpers.cli import run_cli

needs_faiss = pytest.mark.skipif(importlib.util.find_spec("faiss") is None,
                                 reason="faiss-cpu not installed (pip install 'massface[faiss]')")


def world(rng, n_gallery=30, n_probe=80, n_ids=40, dim=8, distinct=None):
    vecs = dyadic_vectors(n_gallery + n_probe, dim, rng, distinct=distinct)
    feats = np.array([unit(v) for v in vecs])
    labels = rng.integers(0, n_ids, size=n_gallery + n_probe)
    gal, prob = np.arange(n_gallery), np.arange(n_gallery, n_gallery + n_probe)
    return feats, labels, gal, prob


def outcomes_as_naive(out):
    res = []
    for i in range(out.genuine.size):
        if out.genuine[i]:
            res.append(("genuine", float(out.mate_score[i]), int(out.rank[i])))
        else:
            res.append(("impostor", float(out.top_score[i])))
    return res


def run_search(feats, labels, gal, prob, backend, k=100):
    f32 = feats.astype(np.float32)
    return search(f32[gal], labels[gal], f32[prob], labels[prob],
                  SearchOptions(backend=backend, k=k, nlist=4, nprobe=4))


@pytest.mark.parametrize("seed, distinct", [(0, None), (1, 4), (2, 10)])
def test_dense_search_matches_naive_stable_sort(seed, distinct):
    feats, labels, gal, prob = world(np.random.default_rng(seed), distinct=distinct)
    out, info = run_search(feats, labels, gal, prob, "dense")
    assert info.backend == "dense" and info.exact_ranks
    assert outcomes_as_naive(out) == naive_search(feats, labels, gal, prob)


@needs_faiss
@pytest.mark.parametrize("backend", ["faiss-flat", "faiss-ivf"])
@pytest.mark.parametrize("distinct", [None, 4])
def test_faiss_matches_dense_when_every_rank_is_returned(backend, distinct):
    """k = gallery size (and, for IVF, every cell probed): the same outcomes as dense,
    ties broken in gallery order."""
    feats, labels, gal, prob = world(np.random.default_rng(3), distinct=distinct)
    dense, _ = run_search(feats, labels, gal, prob, "dense")
    got, info = run_search(feats, labels, gal, prob, backend, k=gal.size)
    assert info.backend == backend and not info.exact_ranks
    assert outcomes_as_naive(got) == outcomes_as_naive(dense)


@needs_faiss
def test_faiss_top_k_marks_deeper_mates_unranked():
    feats, labels, gal, prob = world(np.random.default_rng(4))
    dense, _ = run_search(feats, labels, gal, prob, "dense")
    got, _ = run_search(feats, labels, gal, prob, "faiss-flat", k=3)
    shallow = dense.genuine & (dense.rank <= 3)
    assert got.rank[shallow].tolist() == dense.rank[shallow].tolist()
    deep = dense.genuine & (dense.rank > 3)
    assert deep.any() and (got.rank[deep] == UNRANKED).all()
    assert np.isnan(got.mate_score[deep]).all()
    assert got.top_score.tolist() == dense.top_score.tolist()


def write_folder(tmp_path, rng, n_ids=30, distinct=None):
    sizes = rng.integers(1, 6, size=n_ids)
    keys = [f"id{i:02d}/img{j}.jpg" for i, s in enumerate(sizes) for j in range(s)]
    vecs = dyadic_vectors(len(keys), 8, rng, distinct=distinct)
    return embedding_dir.write_embedding_dir(tmp_path / "emb", vecs, keys), keys, vecs


def identify(folder, split=None, search_opts=None, labels=None):
    split, search_opts = split or SplitOptions(), search_opts or SearchOptions()
    fo = FeatureOptions()
    fs = load_features(folder, fo, "identification")
    return evaluate_identification(fs, set_labels(fs, labels), fo, split, search_opts)


@pytest.mark.parametrize("distinct", [None, 5])
def test_cmc_and_dir_match_the_naive_protocol(tmp_path, distinct):
    folder, keys, vecs = write_folder(tmp_path, np.random.default_rng(5), distinct=distinct)
    res = identify(folder, SplitOptions(seed=3))
    split = res.protocol.split
    assert split["kind"] == "seeded split" and split["seed"] == 3
    # rebuild the naive inputs from the split the result describes
    labels = np.array([k.split("/")[0] for k in keys])
    fs = load_features(folder, FeatureOptions(), "identification")
    from massface.evaluate.protocols.identification import seeded_split
    sp = seeded_split(set_labels(fs, None), SplitOptions(seed=3))
    feats = [unit(v) for v in vecs]
    naive = naive_search(feats, labels, list(sp.gallery), list(sp.probe))
    genuine_ranks = [o[2] for o in naive if o[0] == "genuine"]
    want_cmc = [sum(r <= k for r in genuine_ranks) / len(genuine_ranks)
                for k in range(1, res.cmc.size + 1)]
    assert res.cmc.tolist() == want_cmc
    table, thr, n_gen, n_imp = naive_open_set(naive, OSI_FARS, res.open_set.ranks)
    assert res.open_set.dir.tolist() == table
    assert res.open_set.thresholds.threshold.tolist() == [t[0] for t in thr]
    assert (res.genuine_probes, res.impostor_probes) == (n_gen, n_imp)


def test_seeded_split_is_reproducible_and_enrols_eligible_identities(tmp_path):
    from massface.evaluate.protocols.identification import seeded_split

    folder, keys, _ = write_folder(tmp_path, np.random.default_rng(6))
    fs = load_features(folder, FeatureOptions(), "identification")
    labelled = set_labels(fs, None)
    opts = SplitOptions(seed=1, gallery_identities=0.4, gallery_images=2)
    a, b = seeded_split(labelled, opts), seeded_split(labelled, opts)
    c = seeded_split(labelled, SplitOptions(seed=2, gallery_identities=0.4, gallery_images=2))
    assert a.gallery.tolist() == b.gallery.tolist() != c.gallery.tolist()
    counts = np.bincount(labelled.labels)
    enrolled, per = np.unique(a.gallery_labels, return_counts=True)
    assert (per == 2).all() and (counts[enrolled] > 2).all()
    assert enrolled.size == round(0.4 * (counts > 2).sum())
    assert sorted(a.gallery.tolist() + a.probe.tolist()) == list(range(len(keys)))


def test_gallery_and_probe_lists(tmp_path):
    folder, keys, _ = write_folder(tmp_path, np.random.default_rng(7))
    gal = [k for k in keys if k.endswith("img0.jpg")]
    (tmp_path / "g.txt").write_text("".join(f"{k.removesuffix('.jpg')}\n" for k in gal))
    res = identify(folder, SplitOptions(gallery=tmp_path / "g.txt"))
    assert res.gallery == len(gal) and res.probes == len(keys) - len(gal)
    assert res.impostor_probes == 0 and res.open_set is None
    assert "open-set DIR is not defined" in " ".join(res.notes())
    # labels given in the lists override the folders
    probes = [k for k in keys if not k.endswith("img0.jpg")][:10]
    (tmp_path / "p.txt").write_text("".join(f"{k} stranger{i}\n" for i, k in enumerate(probes)))
    (tmp_path / "g2.txt").write_text("".join(f"{k} {k.split('/')[0]}\n" for k in gal))
    res = identify(folder, SplitOptions(gallery=tmp_path / "g2.txt", probe=tmp_path / "p.txt"))
    assert res.probes == 10 and res.genuine_probes == 0


@pytest.mark.parametrize("body, message", [
    ("nobody/img0.jpg\n", "not in"),
    ("id00/img0.jpg a\nid01/img0.jpg\n", "on every line or on none"),
    ("id00/img0.jpg\nid00/img0.jpg\n", "listed twice"),
    ("\n# nothing\n", "no images listed"),
])
def test_bad_lists(tmp_path, body, message):
    folder, _, _ = write_folder(tmp_path, np.random.default_rng(8))
    (tmp_path / "g.txt").write_text(body)
    result = run_cli(app, [str(folder), "--protocol", "identification",
                                      "--gallery", str(tmp_path / "g.txt")])
    assert result.exit_code == 2 and message in result.output


def test_gallery_and_probe_overlap_is_refused(tmp_path):
    folder, keys, _ = write_folder(tmp_path, np.random.default_rng(9))
    (tmp_path / "g.txt").write_text(f"{keys[0]}\n{keys[1]}\n")
    (tmp_path / "p.txt").write_text(f"{keys[1]}\n{keys[2]}\n")
    result = run_cli(app, [str(folder), "--protocol", "identification", "--gallery",
                                      str(tmp_path / "g.txt"), "--probe", str(tmp_path / "p.txt")])
    assert result.exit_code == 2 and "both gallery and probe" in result.output


@needs_faiss
def test_auto_switches_to_faiss_above_the_dense_limit(tmp_path):
    folder, _, _ = write_folder(tmp_path, np.random.default_rng(10))
    dense = identify(folder)
    assert dense.protocol.search.backend == "dense"
    assert "auto: gallery of" in dense.protocol.search.reason
    big = identify(folder, search_opts=SearchOptions(dense_max_gallery=3))
    assert big.protocol.search.backend == "faiss-flat"
    assert big.to_dict()["protocol"]["search"]["backend"] == "faiss-flat"
    assert big.cmc.tolist() == dense.cmc.tolist()


def test_auto_without_faiss_stays_dense_and_says_why(tmp_path, monkeypatch):
    folder, _, _ = write_folder(tmp_path, np.random.default_rng(11))
    real = importlib.util.find_spec
    monkeypatch.setattr(search_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "faiss" else real(name, *a))
    res = identify(folder, search_opts=SearchOptions(dense_max_gallery=3))
    assert res.protocol.search.backend == "dense"
    assert "faiss is not installed" in res.protocol.search.reason


def test_explicit_faiss_without_faiss_says_how_to_install(tmp_path, monkeypatch):
    folder, _, _ = write_folder(tmp_path, np.random.default_rng(12))
    real = search_mod.importlib.import_module

    def fake(name, *a):
        if name == "faiss":
            raise ImportError("No module named 'faiss'")
        return real(name, *a)

    monkeypatch.setattr(search_mod.importlib, "import_module", fake)
    result = run_cli(app, [str(folder), "--protocol", "identification",
                                      "--search", "faiss-flat"])
    assert result.exit_code == 2 and "pip install 'massface[faiss]'" in result.output


def test_cli_report(tmp_path):
    folder, _, _ = write_folder(tmp_path, np.random.default_rng(13))
    out = tmp_path / "r.json"
    result = run_cli(app, [str(folder), "--protocol", "identification", "--seed",
                                      "4", "--max-rank", "5", "--json", str(out), "--markdown",
                                      str(tmp_path / "r.md")])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    res = identify(folder, SplitOptions(seed=4), SearchOptions(k=5))
    assert report["rank1"] == res.rank_rate(1) and report["rank5"] == res.rank_rate(5)
    assert report["rank10"] is None and len(report["cmc"]["rate"]) == 5
    assert report["protocol"]["search"]["backend"] == "dense"
    assert report["protocol"]["split"]["seed"] == 4
    assert "rank-1 %" in result.output and "search: dense" in result.output
    assert "closed-set CMC" in (tmp_path / "r.md").read_text()
    bad = run_cli(app, [str(folder), "--protocol", "identification", "--search",
                                   "annoy"])
    assert bad.exit_code == 2 and "unknown search 'annoy'" in bad.output


def test_images_without_identity_folder_need_labels(tmp_path):
    rng = np.random.default_rng(14)
    keys = [f"img{i}.jpg" for i in range(6)]
    folder = embedding_dir.write_embedding_dir(tmp_path / "flat", dyadic_vectors(6, 8, rng),
                                               keys)
    result = run_cli(app, [str(folder), "--protocol", "identification"])
    assert result.exit_code == 2 and "--image-labels" in result.output
    (tmp_path / "labels.txt").write_text("".join(f"{k} p{i % 2}\n" for i, k in enumerate(keys)))
    result = run_cli(app, [str(folder), "--protocol", "identification",
                                      "--image-labels", str(tmp_path / "labels.txt")])
    assert result.exit_code == 0, result.output


def test_flip_fusion_applies_and_needs_flip_embeddings(tmp_path):
    rng = np.random.default_rng(15)
    keys = [f"id{i % 9}/img{i}.jpg" for i in range(40)]
    vecs = dyadic_vectors(40, 8, rng)
    plain = embedding_dir.write_embedding_dir(tmp_path / "plain", vecs, keys)
    flipped = embedding_dir.write_embedding_dir(tmp_path / "flip", vecs, keys, flip=vecs)
    # x + x is 2x: after L2 normalisation exactly the plain features, so the same figures
    a = identify(plain).to_dict()
    fo = FeatureOptions(flip="sum")
    fs = load_features(flipped, fo, "identification")
    b = evaluate_identification(fs, set_labels(fs, None), fo, SplitOptions(),
                                SearchOptions()).to_dict()
    assert a["cmc"] == b["cmc"] and a["open_set"] == b["open_set"]
    assert b["protocol"]["flip"] == "sum"
    result = run_cli(app, [str(plain), "--protocol", "identification", "--flip",
                                      "concat"])
    assert result.exit_code == 2 and "embeddings_flip.npy" in result.output
