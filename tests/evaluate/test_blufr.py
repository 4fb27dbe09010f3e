"""BLUFR (SPEC section 5): the fast code against a naive loop implementation, the config
reader, and massface-eval --protocol blufr through its CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io

from massface.errors import InputError
from massface.evaluate.cli import app
from massface.evaluate.protocols import order_stats, pairs
from massface.evaluate.protocols.blufr import evaluate_blufr
from massface.evaluate.protocols.blufr_config import read_blufr_config
from massface.evaluate.protocols.labelled import FeatureOptions, load_features
from massface.formats import embedding_dir
from tests.helpers.blufr_reference import (
    dyadic_vectors,
    lfw_like_names,
    naive_blufr,
    random_trials,
    unit,
    write_config,
)
from tests.helpers.cli import run_cli


def make_world(tmp_path, seed, n_ids=40, n_trials=3, dim=8, distinct=None):
    """Embedding folder + config with dyadic (exactly scored) embeddings."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, size=n_ids)
    names, labels = lfw_like_names(sizes)
    vectors = dyadic_vectors(len(names), dim, rng, distinct=distinct)
    trials = random_trials(labels, n_trials, rng)
    config = write_config(tmp_path / "config.mat", names, labels, trials)
    keys = [f"{n.rsplit('_', 1)[0]}/{n}" for n in names]  # Person_000/Person_000_0001.jpg
    order = rng.permutation(len(keys))  # the folder's row order differs from imageList's
    folder = embedding_dir.write_embedding_dir(tmp_path / "emb", vectors[order],
                                               [keys[i] for i in order])
    return {"folder": folder, "config": config, "vectors": vectors, "labels": labels,
            "trials": trials, "names": names}


def run(*args):
    result = run_cli(app, [str(a) for a in args])
    return result.exit_code, result.output


def fast(world, **kw):
    fo = FeatureOptions()
    return evaluate_blufr(load_features(world["folder"], fo, "blufr"),
                          read_blufr_config(world["config"]), fo, **kw)


@pytest.mark.parametrize("seed, distinct", [(0, None), (1, 6), (2, 3), (3, 12)])
def test_matches_naive_spec_implementation_with_ties(tmp_path, seed, distinct, monkeypatch):
    """Few distinct vectors make many equal scores: ties among impostors, between genuine
    and impostor scores, and within a probe's gallery column (rank tie rule). Small blocks
    and selection segments exercise the paths that large sets take."""
    monkeypatch.setattr(pairs, "BLOCK_ROWS", 16)
    monkeypatch.setattr(order_stats, "SORT_SIZE", 64)
    world = make_world(tmp_path, seed, distinct=distinct)
    feats = [unit(v) for v in world["vectors"]]
    ref = naive_blufr(feats, world["labels"], world["trials"])
    res = fast(world)
    v, o = res.verification, res.open_set
    assert v.rate.tolist() == ref["vr"]
    assert v.far.tolist() == ref["ver_far"]
    assert v.threshold.tolist() == ref["ver_thr"]
    assert o.ranks == ref["ranks"]
    assert o.rate.tolist() == ref["dir"]
    assert o.far.tolist() == ref["osi_far"]
    assert o.threshold.tolist() == ref["osi_thr"]
    assert res.vr_trials.tolist() == ref["vr_trials"]
    assert res.dir_trials.tolist() == ref["dir_trials"]
    assert res.vr_report == pytest.approx(ref["vr_report"], abs=1e-12)
    assert res.dir_report == pytest.approx(ref["dir_report"], abs=1e-12)


def test_ties_really_occur_in_the_tie_world(tmp_path):
    world = make_world(tmp_path, 2, distinct=3)
    feats = np.array([unit(v) for v in world["vectors"]])
    test = world["trials"][0][1]
    scores = (feats[test] @ feats[test].T)[np.tril_indices(test.size, -1)]
    assert np.unique(scores).size <= 6 < scores.size


def test_cli_json_markdown_and_report_keys(tmp_path):
    world = make_world(tmp_path, 5)
    out = tmp_path / "r.json"
    code, output = run(world["folder"], "--protocol", "blufr", "--blufr-config",
                       world["config"], "--json", out, "--markdown", tmp_path / "r.md")
    assert code == 0, output
    report = json.loads(out.read_text())
    res = fast(world)
    assert report["vr_report"] == res.vr_report and report["dir_report"] == res.dir_report
    assert report["vr_trials"] == res.vr_trials.tolist()
    assert report["dir_trials"] == res.dir_trials.tolist()
    assert report["protocol"]["name"] == "blufr"
    assert report["protocol"]["config_sha256"] == read_blufr_config(world["config"]).sha256
    assert len(report["verification"]["vr"]) == 3 and len(report["verification"]["vr"][0]) == 74
    assert len(report["open_set"]["dir"][0][0]) == 38
    assert report["runs"][0]["input"]["path"] == str(world["folder"])
    assert "VR@FAR=0.001" in output and "Protocol: BLUFR" in output
    md = (tmp_path / "r.md").read_text()
    assert "## " in md and "per trial" in md and "DIR at FAR=0.01 by rank" in md


def test_missing_images_are_named_or_left_out(tmp_path):
    world = make_world(tmp_path, 6)
    es = embedding_dir.read_embedding_dir(world["folder"])
    keep = [i for i, p in enumerate(es.paths) if not p.endswith("_0002.jpg")]
    dropped = sorted(p.rsplit("/", 1)[1] for p in es.paths if p.endswith("_0002.jpg"))
    embedding_dir.write_embedding_dir(tmp_path / "part", es.embeddings[keep],
                                      [es.paths[i] for i in keep])
    args = (tmp_path / "part", "--protocol", "blufr", "--blufr-config", world["config"])
    code, output = run(*args)
    assert code == 2 and f"{len(dropped)} of the" in output and dropped[0] in output
    assert "--allow-missing" in output
    out = tmp_path / "r.json"
    code, output = run(*args, "--allow-missing", "--json", out)
    assert code == 0, output
    report = json.loads(out.read_text())
    assert sorted(report["missing_images"]) == dropped
    assert "left out of every trial" in output
    # the same as the naive protocol over the trials without those images
    left = np.array([not n.endswith("_0002.jpg") for n in world["names"]])
    trials = [tuple(idx[left[idx]] for idx in t) for t in world["trials"]]
    ref = naive_blufr([unit(v) for v in world["vectors"]], world["labels"], trials)
    assert report["vr_trials"] == ref["vr_trials"]
    assert report["dir_trials"] == ref["dir_trials"]


def test_extension_is_ignored_and_extra_images_reported(tmp_path):
    world = make_world(tmp_path, 7)
    es = embedding_dir.read_embedding_dir(world["folder"])
    paths = [p.replace(".jpg", ".png") for p in es.paths] + ["Extra/Extra_0001.png"]
    emb = np.vstack([es.embeddings, es.embeddings[:1]])
    embedding_dir.write_embedding_dir(tmp_path / "png", emb, paths)
    fo = FeatureOptions()
    res = evaluate_blufr(load_features(tmp_path / "png", fo, "blufr"),
                         read_blufr_config(world["config"]), fo)
    assert res.vr_trials.tolist() == fast(world).vr_trials.tolist()
    assert res.unused_embeddings == 1


def test_config_reader_structure(tmp_path):
    world = make_world(tmp_path, 8)
    cfg = read_blufr_config(world["config"])
    assert cfg.image_list == world["names"] and cfg.n_trials == 3
    for got, want in zip(cfg.gallery, [t[2] for t in world["trials"]], strict=True):
        assert got.tolist() == want.tolist()  # 1-based in the file, 0-based here
    assert cfg.dev_train.tolist() == [0, 1, 2]


def _mat(path, **fields):
    scipy.io.savemat(str(path), fields)
    return path


@pytest.mark.parametrize("change, message", [
    ("drop-gal", "no galIndex"),
    ("out-of-range", "outside 1.."),
    ("twice", "lists an image twice"),
    ("fraction", "non-integer"),
    ("trials", "different numbers of trials"),
    ("labels", "labels has"),
])
def test_bad_configs_are_refused(tmp_path, change, message):
    world = make_world(tmp_path, 9)
    m = scipy.io.loadmat(str(world["config"]))
    m = {k: v for k, v in m.items() if not k.startswith("__")}
    if change == "drop-gal":
        del m["galIndex"]
    elif change == "out-of-range":
        m["galIndex"][0, 0] = np.array([[1], [10_000]], dtype=np.uint16)
    elif change == "twice":
        m["probIndex"][1, 0] = np.array([[3], [3]], dtype=np.uint16)
    elif change == "fraction":
        m["testIndex"][0, 0] = np.array([[1.5], [2.0]])
    elif change == "trials":
        m["trainIndex"] = m["trainIndex"][:2]
    else:
        m["labels"] = m["labels"][:-1]
    path = _mat(tmp_path / "bad.mat", **m)
    with pytest.raises(InputError, match=message):
        read_blufr_config(path)
    code, output = run(world["folder"], "--protocol", "blufr", "--blufr-config", path)
    assert code == 2 and message.split("..")[0] in output


def test_unreadable_or_absent_config(tmp_path):
    world = make_world(tmp_path, 10)
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    for path, message in ((tmp_path / "junk.mat", "not a readable MATLAB"),
                          (tmp_path / "none.mat", "no BLUFR config there")):
        code, output = run(world["folder"], "--protocol", "blufr", "--blufr-config", path)
        assert code == 2 and message in output, output


def test_options_of_other_protocols_are_refused(tmp_path):
    world = make_world(tmp_path, 11)
    code, output = run(world["folder"], "--protocol", "blufr", "--blufr-config",
                       world["config"], "--gallery", world["config"])
    assert code == 2 and "--gallery: not an option of --protocol blufr" in output
    code, output = run(world["folder"], "--blufr-config", world["config"])
    assert code == 2 and "not an option of --protocol lfw" in output
    code, output = run(world["folder"], "--protocol", "blufrr")
    assert code == 2 and "unknown protocol 'blufrr'" in output


def test_pair_ordered_inputs_are_refused(tmp_path):
    np.save(tmp_path / "emb.npy", np.ones((4, 3), np.float32))
    code, output = run(tmp_path / "emb.npy", "--protocol", "blufr")
    assert code == 2 and "needs a massface embedding folder" in output


def test_default_config_comes_from_the_shared_folder(tmp_path, monkeypatch):
    world = make_world(tmp_path, 12)
    shared = tmp_path / "shared"
    (shared / "data" / "lfw" / "blufr").mkdir(parents=True)
    (shared / "data" / "lfw" / "blufr" / "blufr_lfw_config.mat").write_bytes(
        world["config"].read_bytes())
    monkeypatch.setenv("MASSFACE_SHARED", str(shared))
    out = tmp_path / "r.json"
    code, output = run(world["folder"], "--protocol", "blufr", "--json", out)
    assert code == 0, output
    assert json.loads(out.read_text())["protocol"]["config"].startswith(str(shared))
    monkeypatch.setenv("MASSFACE_SHARED", str(tmp_path / "nowhere"))
    code, output = run(world["folder"], "--protocol", "blufr")
    assert code == 2 and "--blufr-config" in output
