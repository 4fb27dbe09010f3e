"""Thresholds at false accept rates, verification rates and DIR, as BLUFR defines them.

SPEC section 5, for ``Nimp`` impostor scores in descending order ``imp[1] >= imp[2] >=
...`` and a FAR point ``f``: ``k = round(f * Nimp)`` (half away from zero, as MATLAB
rounds); the threshold is ``imp[k]`` for ``0 < k < Nimp``; for ``k = 0`` it is
``(imp[1] + min(genuine > imp[1])) / 2``, or ``imp[1] + sqrt(eps)`` when no genuine
score exceeds ``imp[1]``; for ``k = Nimp`` it is ``min(imp[Nimp], min genuine) -
sqrt(eps)``. A genuine score is accepted when ``score >= threshold``; the reported FAR is
``k / Nimp``.

Scores are float32; thresholds are computed and compared in float64, so that
``imp[1] + sqrt(eps)`` (1.5e-8) is really above ``imp[1]`` (a float32 sum would round
back onto it near 0.5, where the float32 spacing is 6e-8).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

SQRT_EPS = math.sqrt(np.finfo(np.float64).eps)


def _decades(first: int, last: int) -> list[float]:
    return [j * 10.0**e for e in range(first, last + 1) for j in range(1, 10)]


#: BLUFR's verification FAR points: 0, {1..9} x 10^-8 .. 10^-1, 1.
VERIFICATION_FARS: tuple[float, ...] = (0.0, *_decades(-8, -1), 1.0)
#: BLUFR's open-set identification FAR points: 0, {1..9} x 10^-4 .. 10^-1, 1.
OPEN_SET_FARS: tuple[float, ...] = (0.0, *_decades(-4, -1), 1.0)
#: BLUFR's ranks: 1..10, 20, 30, ..., 100 (those not above the gallery size are used).
RANKS: tuple[int, ...] = (*range(1, 11), *range(20, 101, 10))


def far_index(points: Sequence[float], far: float) -> int:
    """Index of ``far`` in a list of FAR points (compared to relative 1e-9)."""
    for i, p in enumerate(points):
        if math.isclose(p, far, rel_tol=1e-9, abs_tol=0.0) or p == far:
            return i
    raise ValueError(f"FAR {far:g} is not one of the FAR points")


def false_alarms(far_points: Sequence[float], n_impostors: int) -> np.ndarray:
    """``k = round(f * Nimp)`` for each FAR point, halves rounded up (MATLAB's ``round``)."""
    out = np.empty(len(far_points), dtype=np.int64)
    for i, f in enumerate(far_points):
        x = float(f) * n_impostors
        k = math.floor(x)
        out[i] = k + (1 if x - k >= 0.5 else 0)
    return out


@dataclass
class Thresholds:
    """Thresholds at FAR points: the rank ``k`` used, the reported FAR ``k / Nimp``."""

    far_points: np.ndarray
    k: np.ndarray
    far: np.ndarray
    threshold: np.ndarray


def far_thresholds(far_points: Sequence[float], n_impostors: int,
                   kth_largest: Callable[[np.ndarray], np.ndarray],
                   genuine: np.ndarray) -> Thresholds:
    """SPEC section 5 thresholds; ``kth_largest(ks)`` gives the impostors' k-th largest.

    ``genuine``: the genuine scores (any order). Needs at least one of each.
    """
    if n_impostors < 1 or genuine.size < 1:
        raise ValueError("thresholds need at least one impostor and one genuine score")
    k = false_alarms(far_points, n_impostors)
    inner = (k > 0) & (k < n_impostors)
    wanted = np.unique(np.r_[k[inner], 1, n_impostors])
    found = dict(zip(wanted.tolist(), kth_largest(wanted).astype(np.float64).tolist(),
                     strict=True))
    gen = np.asarray(genuine)
    top = found[1]
    higher = gen[gen > top]
    at_zero = (top + float(higher.min())) / 2 if higher.size else top + SQRT_EPS
    at_one = min(found[n_impostors], float(gen.min())) - SQRT_EPS
    thr = np.array([at_zero if kk == 0 else at_one if kk == n_impostors else found[int(kk)]
                    for kk in k], dtype=np.float64)
    return Thresholds(np.asarray(far_points, dtype=np.float64), k, k / n_impostors, thr)


def accept_rates(genuine: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of ``genuine`` scores ``>=`` each threshold (compared in float64)."""
    g = np.sort(np.asarray(genuine, dtype=np.float64))
    return (g.size - np.searchsorted(g, thresholds, side="left")) / g.size


def detection_rates(scores: np.ndarray, ranks: np.ndarray, thresholds: np.ndarray,
                    rank_points: Sequence[int], n_genuine: int) -> np.ndarray:
    """DIR[rank, far]: fraction of the ``n_genuine`` probes with score >= threshold and
    rank <= r. ``scores``/``ranks`` list the genuine probes whose rank is known."""
    s = np.asarray(scores, dtype=np.float64)
    accepted = s[None, :] >= thresholds[:, None]                      # [far, probe]
    within = np.asarray(ranks)[None, :] <= np.asarray(rank_points)[:, None]  # [rank, probe]
    counts = within.astype(np.int64) @ accepted.T.astype(np.int64)    # [rank, far]
    return counts / n_genuine


def mean_std(per_trial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation (N - 1) over trials (axis 0); std NaN for 1."""
    mean = per_trial.mean(axis=0)
    if per_trial.shape[0] < 2:
        return mean, np.full_like(mean, np.nan)
    return mean, per_trial.std(axis=0, ddof=1)
