"""Open-set identification (DIR at FAR, by rank) and the closed-set CMC, from searches.

SPEC section 5: a probe is genuine when its label is in the gallery, else an impostor.
An impostor's detection score is its best gallery score; the thresholds at the FAR points
come from those scores by the rule of :mod:`.far`, with the genuine probes' mate scores as
the genuine scores. ``DIR(rank r, FAR f)`` is the fraction of genuine probes whose mate
score is ``>= threshold(f)`` and whose rank is ``<= r``. The CMC at rank r is the fraction
of genuine probes with rank ``<= r`` (no threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from massface.evaluate.protocols.base import floats, ints
from massface.evaluate.protocols.far import (
    Thresholds,
    detection_rates,
    far_thresholds,
)
from massface.evaluate.protocols.order_stats import kth_largest
from massface.evaluate.protocols.search import ProbeOutcomes


@dataclass
class OpenSet:
    """DIR[rank, far] of one gallery/probe split, with its thresholds."""

    ranks: list[int]
    thresholds: Thresholds
    dir: np.ndarray
    n_genuine: int
    n_impostor: int

    def to_dict(self) -> dict[str, Any]:
        return {"far_points": floats(self.thresholds.far_points), "ranks": self.ranks,
                "far": floats(self.thresholds.far), "k": ints(self.thresholds.k),
                "threshold": floats(self.thresholds.threshold), "dir": floats(self.dir),
                "genuine_probes": self.n_genuine, "impostor_probes": self.n_impostor}


def usable_ranks(ranks: Sequence[int], n_gallery: int, searched: int | None = None
                 ) -> list[int]:
    """The ranks not above the gallery size (nor above the ``searched`` depth)."""
    top = n_gallery if searched is None else min(n_gallery, searched)
    return [r for r in ranks if r <= top]


def open_set(outcomes: ProbeOutcomes, far_points: Sequence[float], ranks: Sequence[int]
             ) -> OpenSet | None:
    """DIR at ``far_points`` x ``ranks``; None when there is no impostor probe."""
    impostor = outcomes.top_score[~outcomes.genuine]
    n_genuine = int(outcomes.genuine.sum())
    if impostor.size == 0 or n_genuine == 0:
        return None
    known = outcomes.known
    mate = outcomes.mate_score[known]
    if mate.size == 0:
        return None
    buffer = np.array(impostor, dtype=np.float32)
    thr = far_thresholds(far_points, impostor.size, lambda ks: kth_largest(buffer, ks), mate)
    dir_ = detection_rates(mate, outcomes.rank[known], thr.threshold, ranks, n_genuine)
    return OpenSet(list(ranks), thr, dir_, n_genuine, int(impostor.size))


def cmc(outcomes: ProbeOutcomes, max_rank: int) -> np.ndarray:
    """Closed-set identification rate at ranks 1..max_rank over the genuine probes."""
    ranks = outcomes.rank[outcomes.genuine]
    if ranks.size == 0:
        return np.full(max_rank, np.nan)
    counts = np.bincount(np.minimum(ranks, max_rank + 1), minlength=max_rank + 2)
    return np.cumsum(counts[1 : max_rank + 1]) / ranks.size
