"""verify() against the naive loop-based reference, on inputs built to break it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import brentq
from sklearn.model_selection import KFold

from massface.errors import InputError
from massface.scoring import VerificationResult, verify
from massface.scoring.folds import contiguous_fold_ids
from massface.scoring.verification import equal_error_rate, far_threshold
from tests.helpers.naive_reference import assert_matches, naive_evaluate


def _labels(rng, n, n_folds=10):
    """Random labels with at least one same and one different pair in every fold."""
    same = rng.random(n) < 0.5
    folds = contiguous_fold_ids(n, n_folds)
    for f in range(n_folds):
        idx = np.flatnonzero(folds == f)
        same[idx[0]], same[idx[1]] = True, False
    return same


def _quantised(rng, rows, dim=3):
    """Embeddings in {-1, 0, 1}: squared distances are few exact values (ties everywhere,
    many exactly on a threshold such as 1.0 or 2.0)."""
    emb = rng.integers(-1, 2, size=(rows, dim)).astype(np.float32)
    emb[:, 0] = np.where(emb[:, 0] == emb[:, 1], 1 - emb[:, 1], emb[:, 0])  # never constant
    return emb


def _signal(rng, same, dim=16, noise=0.9):
    a = rng.standard_normal((same.size, dim))
    b = rng.standard_normal((same.size, dim))
    b[same] = a[same] + noise * b[same]
    emb = np.empty((2 * same.size, dim), np.float32)
    emb[0::2], emb[1::2] = a, b
    return emb


def _duplicated(rng, n):
    """A few distinct pairs repeated many times (duplicated distances), with signal."""
    base = _signal(rng, np.array([True, False] * 4), dim=8)
    pick = rng.integers(0, 8, size=n)
    emb = np.stack([base[2 * pick], base[2 * pick + 1]], axis=1).reshape(2 * n, -1)
    return emb, (pick % 2 == 0)


CASES = {
    "quantised-l2": dict(normalization="l2"),
    "quantised-raw": dict(normalization="none"),
    "quantised-massface": dict(normalization="massface"),
    "quantised-cosine": dict(distance="cosine"),
    "quantised-subtract-mean": dict(subtract_mean=True),
    "quantised-cosine-subtract-mean": dict(distance="cosine", subtract_mean=True),
    "quantised-step-0.0025": dict(threshold_step=0.0025),
    "quantised-5-folds": dict(n_folds=5),
}


@pytest.mark.parametrize("name", list(CASES))
def test_quantised_embeddings_with_ties_match_naive(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    kw = CASES[name]
    n = 67  # odd and not divisible by 10: the first 7 folds hold 7 pairs, the rest 6
    same = _labels(rng, n, kw.get("n_folds", 10))
    emb = _quantised(rng, 2 * n)
    result = verify(emb, same, **kw)
    ref = naive_evaluate(emb, same, **kw)
    assert_matches(result, ref)
    e = emb.astype(np.float64)
    dist = np.sum((e[0::2] - e[1::2]) ** 2, 1)
    assert np.unique(dist).size < n / 4  # the case really has ties


def test_duplicated_pairs_match_naive():
    rng = np.random.default_rng(7)
    emb, same = _duplicated(rng, 83)
    for kw in ({}, {"subtract_mean": True}, {"distance": "cosine"}):
        assert_matches(verify(emb, same, **kw), naive_evaluate(emb, same, **kw))


def test_exact_threshold_ties_use_strict_less():
    """Distances exactly equal to thresholds (1.0, 2.0): a pair at d == t is NOT accepted."""
    e = np.array([[1, 0], [0, 1]], np.float32)  # squared L2 distance exactly 2.0
    same = np.array([True, False] * 10)
    emb = np.tile(e, (20, 1))
    emb[0::4] = [1, 0]
    emb[1::4] = [1, 0]  # same pairs: distance 0
    result = verify(emb, same, normalization="none", n_folds=2)
    assert_matches(result, naive_evaluate(emb, same, normalization="none", n_folds=2))
    assert result.accuracy == 1.0
    assert result.fold_threshold[0] == 0.01  # first threshold that accepts d = 0


@pytest.mark.parametrize("flip", ["concat", "sum"])
@pytest.mark.parametrize("normalization", ["l2", "massface", "none"])
def test_flip_fusions_match_naive(flip, normalization):
    rng = np.random.default_rng(3)
    n = 41
    same = _labels(rng, n)
    emb = _signal(rng, same)
    flipped = emb + 0.3 * rng.standard_normal(emb.shape).astype(np.float32)
    kw = dict(flip=flip, normalization=normalization)
    result = verify(emb, same, flip_embeddings=flipped, **kw)
    assert_matches(result, naive_evaluate(emb, same, flip_embeddings=flipped, **kw))
    assert result.protocol.flip == flip


def test_given_fold_ids_match_naive_splits():
    rng = np.random.default_rng(11)
    n = 53
    same = _labels(rng, n, 4)
    emb = _signal(rng, same)
    fold_ids = rng.permutation(contiguous_fold_ids(n, 4))
    for f in range(4):  # keep every fold scoreable
        idx = np.flatnonzero(fold_ids == f)
        same[idx[0]], same[idx[1]] = True, False
    splits = [(np.flatnonzero(fold_ids != f), np.flatnonzero(fold_ids == f)) for f in range(4)]
    result = verify(emb, same, n_folds=4, fold_ids=fold_ids, subtract_mean=True)
    assert_matches(result, naive_evaluate(emb, same, splits=splits, subtract_mean=True))
    assert result.protocol.folds == "given"


def test_larger_random_set_matches_numpy_counting_reference():
    rng = np.random.default_rng(5)
    same = np.tile(np.r_[np.ones(30, bool), np.zeros(30, bool)], 10)
    emb = _signal(rng, same, dim=32, noise=1.2)
    result = verify(emb, same)
    assert_matches(result, naive_evaluate(emb, same, counting="numpy"))
    assert 0.7 < result.accuracy < 1.0


@pytest.mark.parametrize("n,k", [(10, 10), (67, 10), (600, 10), (6001, 10), (9, 2), (53, 4)])
def test_contiguous_folds_are_sklearn_kfold(n, k):
    ids = contiguous_fold_ids(n, k)
    for f, (_, test) in enumerate(KFold(n_splits=k, shuffle=False).split(np.arange(n))):
        np.testing.assert_array_equal(np.flatnonzero(ids == f), test)


def test_far_threshold_pinned_interpolation():
    thr = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    far = np.array([0.0, 0.0, 0.25, 0.25, 0.5])
    assert far_threshold(far, thr, 0.6) == 0.0  # never reached: threshold 0
    assert far_threshold(far, thr, 0.5) == 0.4  # equals the last FAR: the last threshold
    assert far_threshold(far, thr, 0.25) == 0.3  # last FAR <= target, exactly on it
    assert far_threshold(far, thr, 0.125) == pytest.approx(0.15)  # j = 1 (duplicated zeros)
    assert far_threshold(far, thr, 0.375) == pytest.approx(0.35)


@pytest.mark.parametrize("seed", range(6))
def test_equal_error_rate_is_the_root(seed):
    rng = np.random.default_rng(seed)
    fpr = np.sort(np.r_[0, 0, rng.choice([0.1, 0.2, 0.3, 0.5], 7), 1.0])  # duplicated FPRs
    tpr = np.sort(np.r_[0, rng.random(8), 1.0])
    ref = brentq(lambda x: 1.0 - x - np.interp(x, fpr, tpr), 0.0, 1.0)
    assert abs(equal_error_rate(fpr, tpr) - ref) <= 1e-9


def test_result_to_dict_is_json_ready_with_required_keys():
    rng = np.random.default_rng(2)
    same = _labels(rng, 40)
    result = verify(_signal(rng, same), same)
    assert isinstance(result, VerificationResult)
    d = json.loads(json.dumps(result.to_dict()))
    for key in ("accuracy", "accuracy_std", "fold_accuracy", "fold_threshold", "val",
                "val_std", "far", "auc", "eer", "tpr_at_far", "protocol", "roc"):
        assert key in d
    assert len(d["fold_accuracy"]) == 10
    assert d["protocol"]["normalization"] == "l2"
    assert [t["far_target"] for t in d["tpr_at_far"]] == [1e-4, 1e-3, 1e-2, 1e-1]
    assert d["tpr_at_far"][0]["status"] == "not enough negatives"  # 1e-4 x ~20 negatives


@pytest.mark.parametrize("emb_rows,labels,message", [
    (5, 2, "odd number of embeddings (5)"),
    (8, 3, "8 embeddings make 4 pairs but there are 3 labels"),
])
def test_pair_count_errors(emb_rows, labels, message):
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        verify(rng.standard_normal((emb_rows, 4)), np.ones(labels, bool), n_folds=2)


def test_bad_values_are_named():
    rng = np.random.default_rng(0)
    same = np.array([True, False] * 10)
    emb = rng.standard_normal((40, 4))
    bad = emb.copy()
    bad[[3, 17]] = np.nan
    with pytest.raises(InputError, match=r"2 row\(s\) contain NaN or Inf: rows 3, 17"):
        verify(bad, same, n_folds=2)
    bad = emb.copy()
    bad[5] = 0
    with pytest.raises(InputError, match=r"all zero: rows 5"):
        verify(bad, same, n_folds=2)
    with pytest.raises(InputError, match="not 0/1"):
        verify(emb, np.array([0, 1, 2] + [1] * 17), n_folds=2)
    with pytest.raises(InputError, match="no different-person pairs"):
        verify(emb, np.array([True] * 10 + [True, False] * 5), n_folds=2)
    with pytest.raises(InputError, match="no same-person pairs"):
        verify(emb, np.array([False] * 10 + [True, False] * 5), n_folds=2)
    with pytest.raises(InputError, match="unknown distance"):
        verify(emb, same, n_folds=2, distance="manhattan")
    with pytest.raises(InputError, match="needs the flipped images"):
        verify(emb, same, n_folds=2, flip="concat")


def test_block_boundaries_do_not_change_anything(monkeypatch):
    """verify() prepares rows block by block; tiny blocks must give the same numbers and
    name bad rows by their index in the whole array."""
    import massface.scoring.verification as verification

    rng = np.random.default_rng(9)
    n = 47
    same = _labels(rng, n)
    emb = _signal(rng, same)
    flipped = emb[::-1].copy()
    whole = verify(emb, same, flip_embeddings=flipped, flip="sum")
    monkeypatch.setattr(verification, "BLOCK_ROWS", 6)
    assert_matches(verify(emb, same, flip_embeddings=flipped, flip="sum"),
                   naive_evaluate(emb, same, flip_embeddings=flipped, flip="sum"))
    assert verify(emb, same, flip_embeddings=flipped, flip="sum").accuracy == whole.accuracy
    emb[[13, 50]] = np.inf
    with pytest.raises(InputError, match=r"rows 13, 50"):
        verify(emb, same)


@pytest.mark.parametrize("kw, match", [
    (dict(threshold_step=4.0), r"\[1e-06, 0.4\]"),
    (dict(threshold_step=3.99), "at least 10 thresholds"),  # scored 50.000% with exit 0
    (dict(threshold_step=0.41), "at least 10 thresholds"),
    (dict(threshold_step=10.0), "threshold step"),
    (dict(threshold_step=float("inf")), "threshold step"),
    (dict(threshold_step=float("nan")), "threshold step"),
    (dict(threshold_step=1e-9), "at most 4,000,000"),
    (dict(threshold_step=0.0), "threshold step"),
    (dict(threshold_step=-0.01), "threshold step"),
    (dict(threshold_step=1.0, distance="cosine"), r"\[1e-06, 0.1\] for the cosine"),
    (dict(threshold_step=0.11, distance="cosine"), "cosine"),
    (dict(val_threshold_step=5.0), "VAL threshold step"),
])
def test_steps_that_leave_no_usable_grid_are_refused(kw, match):
    emb = np.random.default_rng(0).standard_normal((40, 8))
    with pytest.raises(InputError, match=match):
        verify(emb, np.array([1, 0] * 10), n_folds=2, **kw)


def test_largest_allowed_step_still_scores():
    emb = np.random.default_rng(0).standard_normal((40, 8))
    res = verify(emb, np.array([1, 0] * 10), n_folds=2, threshold_step=0.4)
    assert len(res.thresholds) == 10 and res.thresholds[-1] == pytest.approx(3.6)
