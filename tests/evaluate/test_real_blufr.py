"""BLUFR, identification and all-pairs on REAL data: the shared BLUFR config, and a few
hundred aligned LFW images embedded by massface-infer with the shared pretrained model.

The full 13,233-image figures are in the README (``bench/bench_blufr.py``); here the
embedded subset is small so that the module runs in seconds: BLUFR runs on it with
--allow-missing (every other image left out of every trial).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from massface.evaluate.cli import app
from massface.evaluate.protocols.blufr_config import read_blufr_config, trial_summary
from massface.formats import embedding_dir
from tests.helpers import shared
from tests.helpers.blufr_reference import OSI_FARS, VER_FARS, spec_thresholds
from tests.helpers.cli import invoke_ok, run_cli

SUBSET_IMAGES = 200


@pytest.fixture(scope="session")
def blufr_config():
    path = shared.shared_root() / "data" / "lfw" / "blufr" / "blufr_lfw_config.mat"
    if not path.is_file():
        pytest.skip(f"BLUFR config not found at {path}")
    return path


def test_real_config_has_the_documented_trials(blufr_config):
    """Counts from the config's README and SPEC section 5 (not from this code)."""
    cfg = read_blufr_config(blufr_config)
    s = trial_summary(cfg)
    assert s["images"] == 13_233 and s["classes"] == 5_749 and s["trials"] == 10
    assert s["gallery"] == [1000] * 10
    # the README truncates the means (3,524.7 and 9,708.3)
    assert int(np.mean(s["train"])) == 3_524 and int(np.mean(s["test"])) == 9_708
    assert cfg.image_list[0] == "Aaron_Eckhart_0001.jpg"
    assert cfg.dev_train.size == 521 and cfg.dev_test.size == 673
    for t in range(10):
        train_ids = set(cfg.labels[cfg.train[t]].tolist())
        test_ids = set(cfg.labels[cfg.test[t]].tolist())
        assert len(train_ids) == 1_500 and len(test_ids) == 4_249 and not train_ids & test_ids
        assert sorted(np.r_[cfg.gallery[t], cfg.probe[t]].tolist()) == sorted(
            cfg.test[t].tolist())
    genuine = [sum(c * (c - 1) // 2 for c in np.unique(cfg.labels[cfg.test[t]],
                                                       return_counts=True)[1])
               for t in range(10)]
    assert int(np.mean(genuine)) == 156_915


@pytest.fixture(scope="module")
def lfw_subset(tmp_path_factory, lfw_dir, pretrained_onnx):
    """The first identities of LFW (alphabetical) up to ~200 images, embedded."""
    files = []
    for person in sorted(p for p in lfw_dir.iterdir() if p.is_dir()):
        files += sorted(f"{person.name}/{f.name}" for f in person.iterdir())
        if len(files) >= SUBSET_IMAGES:
            break
    root = tmp_path_factory.mktemp("lfw-subset")
    (root / "list.txt").write_text("".join(f"{f}\n" for f in files))
    invoke_ok("--model", pretrained_onnx, "--list", root / "list.txt", "--root", lfw_dir,
              "--out", root / "emb", "--quiet")
    return root / "emb"


def run_json(tmp_path, *args):
    out = tmp_path / "r.json"
    result = run_cli(app, [str(a) for a in (*args, "--json", out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def reference(emb_dir):
    """float64 L2-normalised features and identity labels, straight from the files."""
    es = embedding_dir.read_embedding_dir(emb_dir)
    x = es.embeddings.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True), [p.split("/")[0] for p in es.paths], \
        es.paths


def dense_rates(feats, labels, idx, fars):
    s = feats[idx] @ feats[idx].T
    i, j = np.tril_indices(len(idx), -1)
    lab = np.array(labels)[idx]
    same = lab[i] == lab[j]
    gen, imp = s[i, j][same], s[i, j][~same]
    return [float((gen >= thr).mean()) for thr, _ in spec_thresholds(list(imp), list(gen),
                                                                      fars)], gen.size


@pytest.mark.slow
def test_blufr_on_an_embedded_lfw_subset(tmp_path, lfw_subset, blufr_config):
    report = run_json(tmp_path, lfw_subset, "--protocol", "blufr", "--blufr-config",
                      blufr_config, "--allow-missing")
    assert len(report["missing_images"]) == 13_233 - report["input"]["images"]
    feats, labels, paths = reference(lfw_subset)
    cfg = read_blufr_config(blufr_config)
    row = {p.split("/")[1]: i for i, p in enumerate(paths)}
    for t in range(10):
        test = [row[cfg.image_list[i]] for i in cfg.test[t] if cfg.image_list[i] in row]
        want, n_gen = dense_rates(feats, labels, test, VER_FARS)
        got = report["verification"]["vr"][t]
        # float32 scores (massface) against float64 ones here: at most one genuine pair
        # may sit between the two precisions' thresholds
        assert np.abs(np.array(got) - want).max() <= 1 / n_gen
        assert report["trials"][t]["test_images"] == len(test)


@pytest.mark.slow
def test_all_pairs_and_identification_on_an_embedded_lfw_subset(tmp_path, lfw_subset):
    report = run_json(tmp_path, lfw_subset, "--protocol", "all-pairs")
    feats, labels, _ = reference(lfw_subset)
    want, n_gen = dense_rates(feats, labels, np.arange(len(labels)), VER_FARS)
    assert report["genuine_pairs"] == n_gen
    assert np.abs(np.array(report["roc"]["tar"]) - want).max() <= 1 / n_gen
    ident = run_json(tmp_path, lfw_subset, "--protocol", "identification", "--seed", "1")
    assert ident["protocol"]["search"]["backend"] == "dense"
    assert ident["rank1"] > 0.9  # a real face model on aligned LFW
    assert len(ident["open_set"]["far_points"]) == len(OSI_FARS)
