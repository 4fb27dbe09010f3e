"""The LFW fold split: contiguous blocks in pair order.

This is scikit-learn's ``KFold(n_splits, shuffle=False)`` without the dependency: the first
``n % n_folds`` folds are one pair larger. With LFW's 6,000 pairs each fold is one official
set of 300 same + 300 different pairs.
"""

from __future__ import annotations

import numpy as np

from massface.errors import InputError


def contiguous_fold_ids(n_pairs: int, n_folds: int = 10) -> np.ndarray:
    """Fold number of every pair, ``[n_pairs]`` int: contiguous blocks, larger ones first."""
    if n_folds < 2:
        raise InputError(f"need at least 2 folds, got {n_folds}")
    if n_pairs < n_folds:
        raise InputError(f"{n_pairs} pairs cannot be split into {n_folds} folds")
    sizes = np.full(n_folds, n_pairs // n_folds, dtype=np.int64)
    sizes[: n_pairs % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


def fold_ranges(fold_ids: np.ndarray, n_folds: int) -> list[str]:
    """Human-readable pair ranges of each fold (for error messages and reports)."""
    out = []
    for f in range(n_folds):
        idx = np.flatnonzero(fold_ids == f)
        out.append(f"pairs {idx[0]}-{idx[-1]}" if idx.size else "no pairs")
    return out
