"""The LFW fold split: contiguous blocks in pair order.

This is scikit-learn's ``KFold(n_splits, shuffle=False)`` without the dependency: the first
``n % n_folds`` folds are one pair larger. With LFW's 6,000 pairs each fold is one official
set of 300 same + 300 different pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from massface.errors import InputError
from massface.registry import Registry

TOO_FEW_FOLDS = ("each fold's threshold is chosen on the other folds, so one fold leaves "
                 "none to choose it on: use --folds 2 or more (with --folds-by label for "
                 "a small set whose pairs are not mixed)")


def contiguous_fold_ids(n_pairs: int, n_folds: int = 10) -> np.ndarray:
    """Fold number of every pair, ``[n_pairs]`` int: contiguous blocks, larger ones first."""
    if n_folds < 2:
        raise InputError(f"need at least 2 folds, got {n_folds}: {TOO_FEW_FOLDS}")
    if n_pairs < n_folds:
        raise InputError(f"{n_pairs} pairs cannot be split into {n_folds} folds")
    sizes = np.full(n_folds, n_pairs // n_folds, dtype=np.int64)
    sizes[: n_pairs % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


def label_fold_ids(same: np.ndarray, n_folds: int = 10) -> np.ndarray:
    """Folds that each hold a share of both kinds: the same-person pairs, in file order,
    split into ``n_folds`` contiguous blocks (larger first), and the different-person
    pairs likewise; fold ``f`` is block ``f`` of each. LFW's own sets are already so
    mixed (one set per fold); a single set (300 same, then 300 different) or any subset
    needs this."""
    same = np.asarray(same, bool)
    n_same, n_diff = int(same.sum()), int((~same).sum())
    if min(n_same, n_diff) < n_folds:
        raise InputError(f"{n_same} same-person and {n_diff} different-person pairs cannot "
                         f"give each of {n_folds} folds both kinds: use --folds "
                         f"{max(min(n_same, n_diff), 2)} or fewer")
    out = np.empty(same.size, dtype=np.int64)
    out[same] = contiguous_fold_ids(n_same, n_folds)
    out[~same] = contiguous_fold_ids(n_diff, n_folds)
    return out


#: How pairs are dealt into folds (``massface-eval --folds-by``): ``fn(same, n_folds)``.
FOLDINGS: Registry[Callable[[np.ndarray, int], np.ndarray]] = Registry("fold split")
FOLDINGS.register("position", lambda same, k: contiguous_fold_ids(np.size(same), k),
                  description="contiguous blocks in pair order: LFW's sets")
FOLDINGS.register("label", label_fold_ids,
                  description="same- and different-person pairs split separately, so every "
                              "fold has both: one LFW set, any subset")


def fold_ranges(fold_ids: np.ndarray, n_folds: int) -> list[str]:
    """Human-readable pair ranges of each fold (for error messages and reports)."""
    out = []
    for f in range(n_folds):
        idx = np.flatnonzero(fold_ids == f)
        out.append(f"pairs {idx[0]}-{idx[-1]}" if idx.size else "no pairs")
    return out
