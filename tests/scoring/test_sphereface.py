"""``--protocol sphereface``: pinned to a line-by-line transcription of SphereFace's
``evaluation.m`` (the CosFace evaluation is the same), written here in the test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from massface.errors import InputError
from massface.evaluate.cli import app
from massface.scoring.sphereface import sphereface_verify
from tests.helpers.cli import run_cli


def _get_accuracy(scores, flags, threshold):
    """getAccuracy: (#same with score > t + #different with score < t) / #pairs."""
    return (len(np.flatnonzero(scores[flags == 1] > threshold))
            + len(np.flatnonzero(scores[flags != 1] < threshold))) / len(scores)


def _get_threshold(scores, flags, thr_num):
    """getThreshold: the mean of every threshold (-thrNum:thrNum)/thrNum with the best
    accuracy, tried one by one."""
    thresholds = np.arange(-thr_num, thr_num + 1) / thr_num
    accuracys = np.zeros(2 * thr_num + 1)
    for i in range(2 * thr_num + 1):
        accuracys[i] = _get_accuracy(scores, flags, thresholds[i])
    return np.mean(thresholds[accuracys == np.max(accuracys)])


def naive_sphereface(emb, flip, issame, n_folds=10):
    """evaluation.m's 10-fold loop, with each pair's fold ceil(i / (n / 10))."""
    n = len(issame)
    fold = np.array([(i * n_folds) // n + 1 for i in range(n)])  # contiguous, 1-based
    flags = np.where(np.asarray(issame), 1, -1)
    feat = np.concatenate([np.asarray(emb, np.float64), np.asarray(flip, np.float64)], 1)
    accs, thrs = [], []
    for i in range(1, n_folds + 1):
        feature_ls, feature_rs = feat[0::2].T.copy(), feat[1::2].T.copy()  # [dim, pairs]
        val_fold = np.flatnonzero(fold != i)
        test_fold = np.flatnonzero(fold == i)
        mu = np.mean(np.concatenate([feature_ls[:, val_fold], feature_rs[:, val_fold]], 1),
                     axis=1, keepdims=True)
        feature_ls = feature_ls - mu
        feature_rs = feature_rs - mu
        feature_ls = feature_ls / np.sqrt(np.sum(feature_ls ** 2, axis=0))
        feature_rs = feature_rs / np.sqrt(np.sum(feature_rs ** 2, axis=0))
        scores = np.sum(feature_ls * feature_rs, axis=0)
        threshold = _get_threshold(scores[val_fold], flags[val_fold], 10000)
        accs.append(_get_accuracy(scores[test_fold], flags[test_fold], threshold))
        thrs.append(threshold)
    return np.array(accs), np.array(thrs)


def _data(seed=0, n_pairs=200, dim=8):
    rng = np.random.default_rng(seed)
    ids = rng.standard_normal((n_pairs, dim))
    same = np.tile(np.r_[np.ones(10, bool), np.zeros(10, bool)], n_pairs // 20)
    a = ids + 0.7 * rng.standard_normal((n_pairs, dim))
    b = np.where(same[:, None], ids, rng.standard_normal((n_pairs, dim))) \
        + 0.7 * rng.standard_normal((n_pairs, dim))
    emb = np.empty((2 * n_pairs, dim))
    emb[0::2], emb[1::2] = a, b
    return emb + 0.5, emb + 0.5 + 0.3 * rng.standard_normal(emb.shape), same


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_the_transcription(seed):
    emb, flip, same = _data(seed)
    r = sphereface_verify(emb, same, flip)
    accs, thrs = naive_sphereface(emb, flip, same)
    np.testing.assert_array_equal(r.fold_accuracy, accs)
    np.testing.assert_array_equal(r.fold_threshold, thrs)
    assert r.accuracy == np.mean(accs)


def test_quantised_scores_tie_on_thresholds():
    """Scores on the threshold grid itself: ``>`` and ``<`` both miss a tie."""
    emb, flip, same = _data(2)
    emb, flip = np.round(emb, 1), np.round(flip, 1)
    r = sphereface_verify(emb, same, flip)
    accs, thrs = naive_sphereface(emb, flip, same)
    np.testing.assert_array_equal(r.fold_accuracy, accs)
    np.testing.assert_array_equal(r.fold_threshold, thrs)


def test_needs_the_mirror_features():
    emb, _, same = _data()
    with pytest.raises(InputError, match="--flip"):
        sphereface_verify(emb, same, None)


@pytest.mark.slow
def test_real_lfw_figure_equals_the_transcription(lfw_flip_run, tmp_path):
    from massface.evaluate.inputs import LoadOptions, load_input

    data = load_input(lfw_flip_run, LoadOptions(progress=False))
    accs, thrs = naive_sphereface(data.embeddings, data.flip_embeddings, data.issame)
    report = tmp_path / "r.json"
    res = run_cli(app, [str(lfw_flip_run), "--protocol", "sphereface",
                                   "--json", str(report)])
    assert res.exit_code == 0, res.output
    got = json.loads(report.read_text())
    print(f"\nSphereFace protocol, shared model: {100 * got['accuracy']:.3f}%")
    assert got["fold_accuracy"] == [float(a) for a in accs]
    assert got["fold_threshold"] == [float(t) for t in thrs]
    assert got["accuracy"] == float(np.mean(accs))
    assert f"{100 * got['accuracy']:.3f}" in res.output


def test_cli_refuses_options_the_protocol_fixes(tmp_path):
    emb, flip, same = _data()
    path = tmp_path / "e.npz"
    np.savez(path, embeddings=emb, embeddings_flip=flip, issame=same)
    r = run_cli(app, [str(path), "--protocol", "sphereface", "--flip", "sum"])
    assert r.exit_code == 2 and "--flip: not an option of --protocol sphereface" in r.output
    r = run_cli(app, [str(path), "--protocol", "sphereface", "--step", "0.1"])
    assert r.exit_code == 2 and "--step" in r.output
    r = run_cli(app, [str(path), "--protocol", "sphereface"])
    assert r.exit_code == 0, r.output
    assert f"{100 * sphereface_verify(emb, same, flip).accuracy:.3f}" in r.output
