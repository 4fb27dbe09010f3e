"""LFW k-fold verification, vectorised, identical to the loop-based reference.

The reference (facenet's ``lfw.evaluate``, which MassFace's ``calAcc`` calls) loops over
every threshold and compares every pair with it. Here each fold's distances are sorted
once per class, and ``searchsorted(sorted, thresholds, 'left')`` gives, for all thresholds
at once, how many distances are strictly below each threshold: exactly the reference's
``dist < threshold`` counts, as integers, so accuracies and chosen thresholds are
identical, not merely close. See ``../shared/docs/SPEC.md`` section 1 for the protocol.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from massface.errors import InputError
from massface.scoring.distances import BLOCK_ROWS, DISTANCES, pair_distances
from massface.scoring.embeddings import check_embeddings, check_names, prepare_embeddings
from massface.scoring.folds import FOLDINGS, fold_ranges
from massface.scoring.result import NOT_ENOUGH_NEGATIVES, Protocol, TprAtFar, VerificationResult

DEFAULT_FAR_TARGETS = (1e-4, 1e-3, 1e-2, 1e-1)
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # NumPy < 2 names it trapz


def as_labels(issame: np.ndarray | Sequence, what: str = "labels") -> np.ndarray:
    """Same/different flags as a bool array; anything but bool or 0/1 is refused."""
    arr = np.asarray(issame)
    if arr.ndim != 1:
        raise InputError(f"{what}: expected one flag per pair (1-D), got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf":
        raise InputError(f"{what}: labels must be 0/1 or true/false, got dtype {arr.dtype}")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        idx = np.flatnonzero(bad)[:10]
        shown = ", ".join(f"#{i}={arr[i]!r}" for i in idx)
        raise InputError(f"{what}: {int(bad.sum())} label(s) are not 0/1: {shown}")
    return arr.astype(bool)


def far_threshold(far_train: np.ndarray, thresholds: np.ndarray, target: float) -> float:
    """The pinned reference interpolation of (FAR -> threshold) at ``target``.

    Old scipy's ``interp1d(far, thresholds, kind='slinear')(target)``: linear between
    ``j = searchsorted(far, target, 'right') - 1`` and ``j + 1``; 0 when the largest
    training FAR is below the target; the last threshold when the target equals the last
    FAR (nothing to interpolate towards).
    """
    if far_train[-1] < target:  # FAR never decreases with the threshold: [-1] is the max
        return 0.0
    j = max(int(np.searchsorted(far_train, target, side="right")) - 1, 0)
    if j >= far_train.size - 1:
        return float(thresholds[-1])
    x0, x1 = float(far_train[j]), float(far_train[j + 1])
    y0, y1 = float(thresholds[j]), float(thresholds[j + 1])
    return y0 + (target - x0) * (y1 - y0) / (x1 - x0)


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Root in [0, 1] of ``1 - x - interp(x, fpr, tpr)``, solved exactly.

    ``interp`` is piecewise linear and non-decreasing, so ``h(x) = x + interp(x) - 1`` is
    increasing: find the first ROC vertex where ``h >= 0`` and solve on the segment before
    it (a vertical ROC step, duplicated FPR, puts the root on the step). Agrees with the
    reference's ``brentq`` to its tolerance (2e-12).
    """
    c = fpr + tpr - 1.0
    above = np.flatnonzero(c >= 0)
    if above.size == 0:  # beyond the last vertex interp is flat at tpr[-1]
        return float(min(1.0, 1.0 - tpr[-1]))
    k = int(above[0])
    if k == 0:  # before the first vertex interp is flat at tpr[0]
        return float(max(0.0, 1.0 - tpr[0]))
    if fpr[k] == fpr[k - 1]:
        return float(fpr[k])
    x0, x1, c0, c1 = fpr[k - 1], fpr[k], c[k - 1], c[k]
    return float(x0 + (-c0) * (x1 - x0) / (c1 - c0))


#: Thresholds are ``arange(0, 4, step)``; distances of unit vectors span [0, 4] (squared
#: L2) or [0, 1] (cosine). A grid with only a few thresholds inside that span picks a
#: threshold nowhere near the best one (a step of 3.99 scored 50%: a meaningless figure),
#: and the grid (with its per-fold ROC arrays) must fit in memory.
THRESHOLD_END = 4.0
DISTANCE_SPAN = {"euclidean": 4.0, "cosine": 1.0}
MAX_THRESHOLDS = 4_000_000
MIN_THRESHOLDS = 10  # inside the span: a step of at most a tenth of it


def _check_step(step: float, what: str, distance: str) -> None:
    span = DISTANCE_SPAN.get(distance, THRESHOLD_END)
    lo, hi = THRESHOLD_END / MAX_THRESHOLDS, span / MIN_THRESHOLDS
    if not (math.isfinite(step) and lo <= step <= hi):
        raise InputError(f"{what} {step!r}: must be a number in [{lo:g}, {hi:g}] for the "
                         f"{distance} distance (whose values span [0, {span:g}]), so that "
                         f"arange(0, {THRESHOLD_END:g}, step) has at least {MIN_THRESHOLDS} "
                         f"thresholds inside that span and at most {MAX_THRESHOLDS:,} of "
                         "them (the default 0.01 is the protocol's)")


def grid_size(step: float, max_distance: float) -> int:
    """How many thresholds :func:`threshold_grid` has (without making it)."""
    n = np.arange(0, THRESHOLD_END, step).size
    if max_distance < THRESHOLD_END:
        return n
    n = max(n, int(max_distance // step) + 2)
    while (n - 1) * step <= max_distance:  # rounding of max_distance // step
        n += 1
    return n


def threshold_grid(step: float, max_distance: float, what: str = "--step") -> np.ndarray:
    """facenet's ``arange(0, 4, step)`` while every distance is below 4 (its domain: unit
    vectors); when distances reach 4 or more (flip ``concat`` reaches 8, ``--normalization
    none`` anything) the grid goes on in the same steps to the first threshold above the
    largest distance, so that the ROC ends at (1, 1) and no threshold the data needs is
    missing. Its first values are facenet's, value for value (``arange`` computes
    ``i * step``).
    """
    n = grid_size(step, max_distance)
    if n > MAX_THRESHOLDS:
        raise InputError(f"distances reach {max_distance:.6g}: {what} {step!r} would need "
                         f"{n:,} thresholds (at most {MAX_THRESHOLDS:,}): L2-normalise the "
                         "embeddings (--normalization l2) or take a larger step")
    return np.arange(n) * step


def val_threshold(neg_sorted: np.ndarray, step: float, n: int, target: float) -> float:
    """:func:`far_threshold` on the grid ``i * step`` (``i < n``) of the training FAR,
    found by bisection instead of filling the grid: the same values (FAR is
    non-decreasing in the threshold), and no memory however far the distances reach."""
    def far(i: int) -> float:
        return int(np.searchsorted(neg_sorted, float(i) * step, side="left")) / neg_sorted.size

    if far(n - 1) < target:
        return 0.0
    lo, hi = 0, n  # how many grid points have FAR <= target
    while lo < hi:
        mid = (lo + hi) // 2
        if far(mid) <= target:
            lo = mid + 1
        else:
            hi = mid
    j = max(lo - 1, 0)
    if j >= n - 1:
        return float(n - 1) * step
    x0, x1 = far(j), far(j + 1)
    y0, y1 = float(j) * step, float(j + 1) * step
    return y0 + (target - x0) * (y1 - y0) / (x1 - x0)


def auc_all_pairs(pos: np.ndarray, neg: np.ndarray) -> float:
    """Area under the ROC of all pairs at once: the probability that a different-person
    pair is farther apart than a same-person pair, ties counting one half (the
    Mann-Whitney statistic, what scikit-learn's ``roc_auc_score`` computes), exact in
    integer counts."""
    neg = np.sort(neg)
    below = np.searchsorted(neg, pos, side="left")
    above = neg.size - np.searchsorted(neg, pos, side="right")
    ties = neg.size - below - above
    return float((2 * int(above.sum()) + int(ties.sum())) / (2 * pos.size * neg.size))


def roc_all_pairs(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct distance (``dist <= d``), from (0, 0) to (1, 1): the
    exact ROC of all pairs, whatever range the distance has."""
    pos, neg = np.sort(pos), np.sort(neg)
    cuts = np.unique(np.concatenate([pos, neg]))
    tpr = np.searchsorted(pos, cuts, side="right") / pos.size
    fpr = np.searchsorted(neg, cuts, side="right") / neg.size
    return np.r_[0.0, fpr], np.r_[0.0, tpr]


def _count_below(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many values are strictly below each threshold (``dist < thr``), all at once."""
    return np.searchsorted(sorted_values, thresholds, side="left")


def _rate(count: np.ndarray, total: int) -> np.ndarray:
    """count / total, 0 where total is 0 (the reference's rule for TPR and FPR)."""
    if total == 0:
        return np.zeros(np.shape(count), dtype=np.float64)
    return np.asarray(count) / total


def _check_pairs(embeddings: np.ndarray, labels: np.ndarray) -> None:
    rows = embeddings.shape[0]
    if rows % 2:
        raise InputError(f"odd number of embeddings ({rows}): pairs need 2 rows each")
    if rows != 2 * labels.size:
        raise InputError(f"{rows} embeddings make {rows // 2} pairs but there are "
                         f"{labels.size} labels: need 2 embedding rows per label")


UNMIXED = ("The pairs are not mixed in file order (one LFW set is 300 same-person, then 300 "
           "different-person pairs): pass --folds-by label (each fold gets a share of both "
           "kinds, in file order), or write mixed folds with massface-pairs")


def _check_folds(fold_ids: np.ndarray, same: np.ndarray, n_folds: int) -> np.ndarray:
    if fold_ids.shape != same.shape:
        raise InputError(f"fold_ids has shape {fold_ids.shape}, labels {same.shape}")
    if fold_ids.size and (fold_ids.min() < 0 or fold_ids.max() >= n_folds):
        raise InputError(f"fold_ids must lie in 0..{n_folds - 1}")
    ranges = fold_ranges(fold_ids, n_folds)
    sizes = np.bincount(fold_ids, minlength=n_folds)
    pos = np.bincount(fold_ids, weights=same, minlength=n_folds).astype(np.int64)
    for f in range(n_folds):
        if sizes[f] == 0:
            raise InputError(f"fold {f + 1} of {n_folds} has no pairs")
        if pos[f] == 0:
            raise InputError(f"fold {f + 1} of {n_folds} ({ranges[f]}) has no same-person "
                             f"pairs (positives): TPR and VAL are undefined. {UNMIXED}")
        if pos[f] == sizes[f]:
            raise InputError(f"fold {f + 1} of {n_folds} ({ranges[f]}) has no different-person "
                             f"pairs (negatives): FAR is undefined. {UNMIXED}")
    return sizes


def _blockwise_distances(emb: np.ndarray, flip_emb: np.ndarray | None, distance: str,
                         prep: dict) -> np.ndarray:
    """Pair distances from raw rows, preparing BLOCK_ROWS rows at a time (row-local, so
    exactly the values of preparing everything first)."""
    out = np.empty(emb.shape[0] // 2, dtype=np.float64)
    for start in range(0, emb.shape[0], BLOCK_ROWS):
        stop = start + BLOCK_ROWS
        flip_block = None if flip_emb is None else np.asarray(flip_emb)[start:stop]
        block = prepare_embeddings(emb[start:stop], flip_block, offset=start, **prep)
        out[start // 2 : stop // 2] = pair_distances(block[0::2], block[1::2], distance)
    return out


def _fold_distances(emb: np.ndarray, flip_emb: np.ndarray | None, fold_ids: np.ndarray,
                    n_folds: int, distance: str, subtract_mean: bool, prep: dict
                    ) -> list[np.ndarray]:
    """Each fold's pair distances (one shared array unless the training folds' mean is
    subtracted), all known before the threshold grid is chosen."""
    if not subtract_mean:  # a million pairs: prepare block by block, never a float64 copy
        return [_blockwise_distances(emb, flip_emb, distance, prep)] * n_folds
    prepared = prepare_embeddings(emb, flip_emb, **prep)  # the means need every row
    e1, e2 = prepared[0::2], prepared[1::2]
    out = []
    for f in range(n_folds):
        tr = np.flatnonzero(fold_ids != f)
        mean = np.mean(np.concatenate([e1[tr], e2[tr]]), axis=0)
        out.append(pair_distances(e1, e2, distance, mean))
    return out


@dataclass
class _FoldScore:
    """One test fold: ROC on the grid, accuracy at the training-best threshold, and
    VAL / FAR at each FAR target's training threshold."""

    tpr: np.ndarray
    fpr: np.ndarray
    accuracy: float
    threshold: float
    val: np.ndarray  # per FAR target
    far: np.ndarray
    val_threshold: np.ndarray


def _checked(emb: np.ndarray, same: np.ndarray, distance: str, steps: tuple[float, float],
             targets: list[float]) -> None:
    """Refuse what the protocol cannot score honestly (bad rows named at once)."""
    if emb.ndim != 2:
        raise InputError(f"embeddings must be a 2-D array [rows, dim], got shape {emb.shape}")
    _check_pairs(emb, same)
    DISTANCES.get(distance)
    _check_step(steps[0], "threshold step (--step)", distance)
    _check_step(steps[1], "VAL threshold step", distance)
    for t in targets:
        if not 0 < t <= 1:
            raise InputError(f"FAR target {t} is not in (0, 1]")


def _checked_rows(emb: np.ndarray, flip_embeddings: np.ndarray | None, flip: str,
                  normalization: str) -> None:
    check_names(normalization, flip)
    if flip != "none" and flip_embeddings is not None and np.shape(flip_embeddings) != emb.shape:
        raise InputError(f"flip embeddings have shape {np.shape(flip_embeddings)}, embeddings "
                         f"{emb.shape}")
    check_embeddings(emb)  # all bad rows named at once, before block-wise preparation
    if flip != "none" and flip_embeddings is not None:
        check_embeddings(np.asarray(flip_embeddings), "flip embeddings")


def _score_fold(dist: np.ndarray, test: np.ndarray, same: np.ndarray, size: int,
                thresholds: np.ndarray, targets: list[float], val_step: float,
                n_val: int) -> _FoldScore:
    """Train on the other folds' pairs, score this one (the reference's per-fold body)."""
    train = ~test
    tr_pos, tr_neg = np.sort(dist[train & same]), np.sort(dist[train & ~same])
    te_pos, te_neg = np.sort(dist[test & same]), np.sort(dist[test & ~same])
    # Accuracy: the first threshold with the most correct training pairs.
    tp_tr, fp_tr = _count_below(tr_pos, thresholds), _count_below(tr_neg, thresholds)
    best = int(np.argmax(tp_tr + (tr_neg.size - fp_tr)))
    tp_te, fp_te = _count_below(te_pos, thresholds), _count_below(te_neg, thresholds)
    correct = int(tp_te[best]) + te_neg.size - int(fp_te[best])
    # VAL@FAR: threshold interpolated on the training FAR, applied to the test fold.
    val_thr = np.array([val_threshold(tr_neg, val_step, n_val, t) for t in targets])
    val = np.array([int(_count_below(te_pos, np.array([t]))[0]) / te_pos.size for t in val_thr])
    far = np.array([int(_count_below(te_neg, np.array([t]))[0]) / te_neg.size for t in val_thr])
    return _FoldScore(_rate(tp_te, te_pos.size), _rate(fp_te, te_neg.size), correct / size,
                      float(thresholds[best]), val, far, val_thr)


def _tpr_at_far(folds: list[_FoldScore], targets: list[float], n_diff: int
                ) -> list[TprAtFar]:
    """TPR at each extra FAR target; None where too few negatives resolve it."""
    out = []
    for i, target in enumerate(targets[1:], start=1):
        if target * n_diff < 1:
            out.append(TprAtFar(target, None, None, None, NOT_ENOUGH_NEGATIVES))
            continue
        val, far = [f.val[i] for f in folds], [f.far[i] for f in folds]
        out.append(TprAtFar(target, float(np.mean(val)), float(np.std(val)),
                            float(np.mean(far))))
    return out


def _fold_ids(same: np.ndarray, n_folds: int, fold_ids: np.ndarray | None,
              folds_by: str) -> tuple[np.ndarray, str]:
    """Each pair's fold and how the folds were made (for the report)."""
    split = FOLDINGS.get(folds_by, "--folds-by")
    if fold_ids is not None:
        return np.asarray(fold_ids, dtype=np.int64), "given"
    return split(same, n_folds), {"position": "contiguous"}.get(folds_by, f"by {folds_by}")


def verify(
    embeddings: np.ndarray,
    issame: np.ndarray | Sequence,
    *,
    flip_embeddings: np.ndarray | None = None,
    flip: str = "none",
    normalization: str = "l2",
    distance: str = "euclidean",
    subtract_mean: bool = False,
    n_folds: int = 10,
    threshold_step: float = 0.01,
    far_target: float = 1e-3,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
    val_threshold_step: float = 0.001,
    fold_ids: np.ndarray | None = None,
    folds_by: str = "position",
) -> VerificationResult:
    """Score pair-ordered embeddings ``[p0a, p0b, p1a, p1b, ...]`` with the LFW protocol.

    ``fold_ids`` (one fold number per pair) replaces the contiguous split; it is how
    ``--allow-missing`` keeps each surviving pair in the fold of its original index.
    ``folds_by="label"`` (without ``fold_ids``) folds the same-person and the
    different-person pairs separately, so every fold has both
    (:data:`massface.scoring.folds.FOLDINGS`).
    Raises :class:`InputError` for inputs the protocol cannot score honestly.
    """
    same, emb = as_labels(issame), np.asarray(embeddings)
    targets = [float(far_target), *[float(t) for t in far_targets]]
    _checked(emb, same, distance, (threshold_step, val_threshold_step), targets)
    fold_ids, folds_kind = _fold_ids(same, n_folds, fold_ids, folds_by)
    sizes = _check_folds(fold_ids, same, n_folds)
    _checked_rows(emb, flip_embeddings, flip, normalization)
    fold_dist = _fold_distances(emb, flip_embeddings, fold_ids, n_folds, distance,
                                subtract_mean, dict(normalization=normalization, flip=flip))
    max_dist = max(float(d.max()) for d in fold_dist)
    thresholds = threshold_grid(threshold_step, max_dist)
    n_val = grid_size(val_threshold_step, max_dist)
    folds = [_score_fold(fold_dist[f], fold_ids == f, same, int(sizes[f]), thresholds,
                         targets, val_threshold_step, n_val) for f in range(n_folds)]
    test_dist = np.zeros(same.size)
    for f in range(n_folds):
        test_dist[fold_ids == f] = fold_dist[f][fold_ids == f]
    protocol = Protocol(normalization=normalization, flip=flip, distance=distance,
                        subtract_mean=bool(subtract_mean), n_folds=n_folds,
                        threshold_step=float(threshold_step), far_target=float(far_target),
                        val_threshold_step=float(val_threshold_step), folds=folds_kind)
    return _result(folds, same, test_dist, thresholds, targets, protocol, sizes, fold_ids)


def _result(folds: list[_FoldScore], same: np.ndarray, test_dist: np.ndarray,
            thresholds: np.ndarray, targets: list[float], protocol: Protocol,
            sizes: np.ndarray, fold_ids: np.ndarray) -> VerificationResult:
    """The folds' scores as one result (means and spreads over folds, ROC, AUC, EER)."""
    acc = np.array([f.accuracy for f in folds])
    val, far = np.array([f.val[0] for f in folds]), np.array([f.far[0] for f in folds])
    tpr, fpr = np.mean([f.tpr for f in folds], 0), np.mean([f.fpr for f in folds], 0)
    roc_fpr, roc_tpr = roc_all_pairs(test_dist[same], test_dist[~same])
    n_diff = int(same.size - same.sum())
    return VerificationResult(
        accuracy=float(np.mean(acc)), accuracy_std=float(np.std(acc)), fold_accuracy=acc,
        fold_threshold=np.array([f.threshold for f in folds]),
        val=float(np.mean(val)), val_std=float(np.std(val)), far=float(np.mean(far)),
        fold_val=val, fold_far=far,
        fold_val_threshold=np.array([f.val_threshold[0] for f in folds]),
        auc=auc_all_pairs(test_dist[same], test_dist[~same]),
        eer=equal_error_rate(roc_fpr, roc_tpr), auc_grid=float(_trapezoid(tpr, fpr)),
        eer_grid=equal_error_rate(fpr, tpr), thresholds=thresholds, tpr=tpr, fpr=fpr,
        tpr_at_far=_tpr_at_far(folds, targets, n_diff), protocol=protocol,
        n_pairs=int(same.size), n_same=int(same.sum()), n_diff=n_diff, fold_sizes=sizes,
        pair_distances=test_dist, pair_folds=fold_ids)
