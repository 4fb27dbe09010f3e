"""All-pairs verification: the block-wise, streamed ROC against a dense computation and the
naive SPEC implementation; the block scorer against the full score matrix."""

from __future__ import annotations

import json

import numpy as np
import pytest

from massface.evaluate.cli import app
from massface.evaluate.protocols import pairs
from massface.evaluate.protocols.allpairs import TAR_FARS, evaluate_all_pairs
from massface.evaluate.protocols.far import VERIFICATION_FARS
from massface.evaluate.protocols.labelled import FeatureOptions, load_features, set_labels
from massface.formats import embedding_dir
from tests.helpers.blufr_reference import dyadic_vectors, naive_all_pairs, unit
from tests.helpers.cli import run_cli


def dense_reference(feats, labels, fars):
    """The whole score matrix, its strict lower triangle, a full sort: SPEC section 5."""
    scores = feats @ feats.T
    i, j = np.tril_indices(len(labels), -1)
    s, same = scores[i, j], labels[i] == labels[j]
    gen, imp = s[same], np.sort(s[~same])[::-1]
    out = []
    for f in fars:
        k = int(np.floor(f * imp.size + 0.5))
        if k == 0:
            hi = gen[gen > imp[0]]
            thr = (imp[0] + hi.min()) / 2 if hi.size else imp[0] + np.sqrt(np.finfo(float).eps)
        elif k == imp.size:
            thr = min(imp[-1], gen.min()) - np.sqrt(np.finfo(float).eps)
        else:
            thr = imp[k - 1]
        out.append(((gen >= thr).mean(), k / imp.size, thr))
    return out


def write_folder(tmp_path, seed, n_ids=25, distinct=None):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, size=n_ids)
    keys = [f"p{i:02d}/{j}.jpg" for i, s in enumerate(sizes) for j in range(s)]
    order = rng.permutation(len(keys))  # identities interleaved in the folder
    vecs = dyadic_vectors(len(keys), 8, rng, distinct=distinct)[order]
    keys = [keys[i] for i in order]
    folder = embedding_dir.write_embedding_dir(tmp_path / "emb", vecs, keys)
    return folder, np.array([k.split("/")[0] for k in keys]), np.array([unit(v) for v in vecs])


def all_pairs(folder):
    fo = FeatureOptions()
    fs = load_features(folder, fo, "all-pairs")
    return evaluate_all_pairs(fs, set_labels(fs, None), fo)


@pytest.mark.parametrize("seed, distinct", [(0, None), (1, 5), (2, 20)])
def test_streamed_roc_matches_dense_and_naive(tmp_path, seed, distinct, monkeypatch):
    monkeypatch.setattr(pairs, "BLOCK_ROWS", 7)  # many blocks, labels across block edges
    folder, labels, feats = write_folder(tmp_path, seed, distinct=distinct)
    res = all_pairs(folder)
    dense = dense_reference(feats, labels, VERIFICATION_FARS)
    assert res.tar.tolist() == [d[0] for d in dense]
    assert res.roc.far.tolist() == [d[1] for d in dense]
    assert res.roc.threshold.tolist() == [d[2] for d in dense]
    naive = naive_all_pairs(list(feats), list(labels), VERIFICATION_FARS)
    assert res.tar.tolist() == [n[0] for n in naive]
    n = labels.size
    assert res.genuine_pairs + res.impostor_pairs == n * (n - 1) // 2


@pytest.mark.parametrize("block_rows", [1, 3, 50, 10_000])
def test_block_scorer_covers_every_pair_once(block_rows):
    rng = np.random.default_rng(block_rows)
    labels = np.sort(rng.integers(0, 12, size=60))
    feats = rng.standard_normal((60, 5)).astype(np.float32)
    imp, gen = pairs.all_scores(feats, labels, block_rows=block_rows)
    full = feats @ feats.T
    i, j = np.tril_indices(60, -1)
    same = labels[i] == labels[j]
    # each pair once: the multisets agree with the dense matrix to float32 rounding
    np.testing.assert_allclose(np.sort(imp), np.sort(full[i, j][~same]), atol=1e-5)
    np.testing.assert_allclose(np.sort(gen), np.sort(full[i, j][same]), atol=1e-5)
    for b in pairs.blocks(labels, block_rows):
        assert b.r1 == 60 or labels[b.r1] != labels[b.r1 - 1]  # blocks end on label edges


def test_cli_report_and_json(tmp_path):
    folder, _, _ = write_folder(tmp_path, 3)
    out = tmp_path / "r.json"
    result = run_cli(app, [str(folder), "--protocol", "all-pairs", "--json", str(out),
                                      "--markdown", str(tmp_path / "r.md")])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    res = all_pairs(folder)
    assert [t["far"] for t in report["tar_at_far"]] == list(TAR_FARS)
    assert [t["tar"] for t in report["tar_at_far"]] == [res.tar_at(f) for f in TAR_FARS]
    assert report["roc"]["tar"] == res.tar.tolist()
    assert report["protocol"]["name"] == "all-pairs"
    assert report["genuine_pairs"] == res.genuine_pairs
    assert "fewer than one impostor pair" in result.output  # 1e-6 of a few thousand pairs
    assert "TAR at FAR" in (tmp_path / "r.md").read_text()


def test_needs_genuine_and_impostor_pairs(tmp_path):
    rng = np.random.default_rng(4)
    keys = [f"p{i}/0.jpg" for i in range(5)]  # one image per identity: no genuine pair
    folder = embedding_dir.write_embedding_dir(tmp_path / "emb", dyadic_vectors(5, 8, rng),
                                               keys)
    result = run_cli(app, [str(folder), "--protocol", "all-pairs"])
    assert result.exit_code == 2 and "0 genuine" in result.output
