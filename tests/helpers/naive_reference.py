"""A deliberately naive LFW evaluation, written straight from SPEC section 1.

Loops over folds, over every threshold, and (with ``counting="python"``) over every pair,
the way facenet's ``lfw.evaluate`` is written. Slow and obviously correct: the vectorised
``massface.evaluate.verify`` must agree with it (accuracies and thresholds exactly, other
figures to 1e-9). ``counting="numpy"`` counts each threshold's pairs with ``np.less`` like
facenet itself (still a Python loop over thresholds), for the 6,000 real LFW pairs.
Independent of the package on purpose: folds come from scikit-learn's KFold, the EER from
scipy's brentq, the AUCs from scikit-learn (the grid's ``auc`` and, over all pairs,
``roc_auc_score``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import KFold


def naive_prepare(emb, flip_emb=None, normalization="l2", flip="none"):
    def norm(x):
        x = np.asarray(x, dtype=np.float64)
        if normalization == "massface":
            x = x - x.mean(axis=1, keepdims=True)
        if normalization in ("l2", "massface"):
            x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return x

    if flip == "none":
        return norm(emb)
    if flip == "concat":
        return np.concatenate([norm(emb), norm(flip_emb)], axis=1)
    if flip == "sum":
        return norm(np.asarray(emb, np.float64) + np.asarray(flip_emb, np.float64))
    raise ValueError(flip)


def naive_distance(e1, e2, metric):
    if metric == "euclidean":
        return np.sum(np.square(np.subtract(e1, e2)), 1)
    dot = np.sum(np.multiply(e1, e2), axis=1)
    norm = np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)
    return np.arccos(np.clip(dot / norm, -1.0, 1.0)) / math.pi


def _counts_python(threshold, dist, same):
    tp = fp = tn = fn = 0
    for d, s in zip(dist.tolist(), same.tolist(), strict=True):
        if d < threshold:
            if s:
                tp += 1
            else:
                fp += 1
        elif s:
            fn += 1
        else:
            tn += 1
    return tp, fp, tn, fn


def _counts_numpy(threshold, dist, same):
    predict = np.less(dist, threshold)
    tp = int(np.sum(np.logical_and(predict, same)))
    fp = int(np.sum(np.logical_and(predict, np.logical_not(same))))
    tn = int(np.sum(np.logical_and(np.logical_not(predict), np.logical_not(same))))
    fn = int(np.sum(np.logical_and(np.logical_not(predict), same)))
    return tp, fp, tn, fn


COUNTERS = {"python": _counts_python, "numpy": _counts_numpy}


def _accuracy(counts, threshold, dist, same):
    tp, fp, tn, fn = counts(threshold, dist, same)
    tpr = 0 if tp + fn == 0 else float(tp) / float(tp + fn)
    fpr = 0 if fp + tn == 0 else float(fp) / float(fp + tn)
    return tpr, fpr, float(tp + tn) / dist.size


def _val_far(counts, threshold, dist, same):
    tp, fp, tn, fn = counts(threshold, dist, same)
    return float(tp) / float(tp + fn), float(fp) / float(fp + tn)


def _pinned_slinear(far_train, thresholds, target):
    """Threshold at FAR=target: linear between the last FAR <= target and the next one."""
    if max(far_train) < target:
        return 0.0
    j = max(i for i in range(len(far_train)) if far_train[i] <= target)
    if j == len(far_train) - 1:
        return float(thresholds[j])
    x0, x1 = float(far_train[j]), float(far_train[j + 1])
    y0, y1 = float(thresholds[j]), float(thresholds[j + 1])
    return y0 + (target - x0) * (y1 - y0) / (x1 - x0)


def _grid(step, top):
    out = list(np.arange(0, 4, step))
    if top >= 4:
        while out[-1] <= top:
            out.append(len(out) * step)
    return np.array(out)


def naive_evaluate(
    embeddings,
    issame,
    *,
    flip_embeddings=None,
    flip="none",
    normalization="l2",
    distance="euclidean",
    subtract_mean=False,
    n_folds=10,
    threshold_step=0.01,
    far_targets=(1e-3, 1e-4, 1e-3, 1e-2, 1e-1),
    splits=None,
    counting="python",
):
    """Every metric, loop by loop. ``splits``: list of (train, test) index arrays."""
    counts = COUNTERS[counting]
    same = np.asarray(issame).astype(bool)
    emb = naive_prepare(embeddings, flip_embeddings, normalization, flip)
    e1, e2 = emb[0::2], emb[1::2]
    n = same.size
    if splits is None:
        splits = list(KFold(n_splits=n_folds, shuffle=False).split(np.arange(n)))
    # facenet's grid; past 4 (concatenated flips, unnormalised vectors) it goes on to the
    # first threshold above the largest distance
    everything = [naive_distance(e1, e2, distance)] if not subtract_mean else [
        naive_distance(e1 - m, e2 - m, distance) for m in (
            np.mean(np.concatenate([e1[tr], e2[tr]]), axis=0) for tr, _ in splits)]
    top = max(float(d.max()) for d in everything)
    thresholds = _grid(threshold_step, top)
    val_thresholds = _grid(0.001, top)
    k = len(splits)
    tprs = np.zeros((k, len(thresholds)))
    fprs = np.zeros((k, len(thresholds)))
    accuracy = np.zeros(k)
    best_thr = np.zeros(k)
    vals = np.zeros((len(far_targets), k))
    fars = np.zeros((len(far_targets), k))
    val_thr = np.zeros((len(far_targets), k))
    pooled = np.zeros(n)  # each pair's distance as its test fold scores it
    for f, (train, test) in enumerate(splits):
        mean = np.mean(np.concatenate([e1[train], e2[train]]), axis=0) if subtract_mean else 0.0
        dist = naive_distance(e1 - mean, e2 - mean, distance)
        pooled[test] = dist[test]
        acc_train = np.zeros(len(thresholds))
        for i, t in enumerate(thresholds):
            _, _, acc_train[i] = _accuracy(counts, t, dist[train], same[train])
        best = int(np.argmax(acc_train))
        for i, t in enumerate(thresholds):
            tprs[f, i], fprs[f, i], _ = _accuracy(counts, t, dist[test], same[test])
        _, _, accuracy[f] = _accuracy(counts, thresholds[best], dist[test], same[test])
        best_thr[f] = thresholds[best]
        far_train = [_val_far(counts, t, dist[train], same[train])[1] for t in val_thresholds]
        for i, target in enumerate(far_targets):
            t = _pinned_slinear(far_train, val_thresholds, target)
            val_thr[i, f] = t
            vals[i, f], fars[i, f] = _val_far(counts, t, dist[test], same[test])
    tpr, fpr = np.mean(tprs, 0), np.mean(fprs, 0)
    return {
        "accuracy": float(np.mean(accuracy)),
        "accuracy_std": float(np.std(accuracy)),
        "fold_accuracy": accuracy,
        "fold_threshold": best_thr,
        "tpr": tpr,
        "fpr": fpr,
        "auc_grid": float(sk_auc(fpr, tpr)),
        "eer_grid": float(brentq(lambda x: 1.0 - x - np.interp(x, fpr, tpr), 0.0, 1.0)),
        **naive_all_pairs(pooled, same),
        "val": np.mean(vals, axis=1),
        "val_std": np.std(vals, axis=1),
        "far": np.mean(fars, axis=1),
        "fold_val": vals,
        "fold_val_threshold": val_thr,
        "n_diff": int(n - same.sum()),
    }


def naive_all_pairs(dist, same):
    """AUC and EER of the ROC of all pairs, by scikit-learn (smaller distance: same)."""
    fpr, tpr, _ = roc_curve(same, -np.asarray(dist))
    return {"auc": float(roc_auc_score(same, -np.asarray(dist))),
            "eer": float(brentq(lambda x: 1.0 - x - np.interp(x, fpr, tpr), 0.0, 1.0))}


def assert_matches(result, ref, tol=1e-9):
    """The vectorised result equals the naive one (exact where the protocol is discrete)."""
    np.testing.assert_array_equal(result.fold_accuracy, ref["fold_accuracy"])
    np.testing.assert_array_equal(result.fold_threshold, ref["fold_threshold"])
    assert result.accuracy == ref["accuracy"]
    assert result.accuracy_std == ref["accuracy_std"]
    np.testing.assert_allclose(result.tpr, ref["tpr"], rtol=0, atol=tol)
    np.testing.assert_allclose(result.fpr, ref["fpr"], rtol=0, atol=tol)
    assert abs(result.auc_grid - ref["auc_grid"]) <= tol
    assert abs(result.eer_grid - ref["eer_grid"]) <= tol
    assert abs(result.auc - ref["auc"]) <= tol
    assert abs(result.eer - ref["eer"]) <= tol
    np.testing.assert_allclose(result.fold_val_threshold, ref["fold_val_threshold"][0],
                               rtol=0, atol=tol)
    np.testing.assert_allclose(result.fold_val, ref["fold_val"][0], rtol=0, atol=tol)
    assert abs(result.val - ref["val"][0]) <= tol
    assert abs(result.val_std - ref["val_std"][0]) <= tol
    assert abs(result.far - ref["far"][0]) <= tol
    for i, entry in enumerate(result.tpr_at_far, start=1):
        if entry.far_target * ref["n_diff"] < 1:
            assert entry.status == "not enough negatives" and entry.tpr is None
        else:
            assert entry.status == "ok"
            assert abs(entry.tpr - ref["val"][i]) <= tol
            assert abs(entry.tpr_std - ref["val_std"][i]) <= tol
            assert abs(entry.far - ref["far"][i]) <= tol
