"""All-pairs verification: every unordered pair of a labelled set, exact TAR at FAR.

13,233 LFW images give 87.5 million pairs. Scores are computed in label-sorted row
blocks (:mod:`.pairs`) and never held together: pass 1 counts the impostor scores in
bins and keeps the genuine ones; the FAR points fix the impostor ranks wanted; pass 2
recomputes the blocks and keeps only the impostor scores in the bins holding those ranks
(:class:`~.order_stats.StreamingSelector`). Memory: one block of scores, the genuine
scores and the bin counts, whatever the number of pairs. The threshold rule is BLUFR's
(SPEC section 5, :mod:`.far`): TAR at FAR f = fraction of genuine scores >= the
``round(f * Nimp)``-th largest impostor score; the ROC is that at FAR 0, 1e-8 .. 9e-1, 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.evaluate.protocols.base import ReportTable, Timing, floats, ints, pct
from massface.evaluate.protocols.far import (
    VERIFICATION_FARS,
    Thresholds,
    accept_rates,
    far_index,
    far_thresholds,
)
from massface.evaluate.protocols.labelled import FeatureOptions, FeatureSet, Labelled
from massface.evaluate.protocols.order_stats import StreamingSelector
from massface.evaluate.protocols.pairs import group_by_label, iter_scores, pair_counts

#: The TAR@FAR figures of the headline.
TAR_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


@dataclass(frozen=True)
class AllPairsProtocol:
    """Every setting that changes the all-pairs numbers."""

    features: FeatureOptions
    labels: str

    def describe(self) -> str:
        return (f"all pairs, labels from {self.labels}, {self.features.describe()}, "
                "TAR at FAR by the BLUFR threshold rule (genuine >= round(FAR x Nimp)-th "
                "impostor)")

    def to_dict(self) -> dict[str, Any]:
        return {"name": "all-pairs", "labels": self.labels, **self.features.to_dict(),
                "tar_far_points": list(TAR_FARS), "roc_far_points": list(VERIFICATION_FARS),
                "description": self.describe()}


@dataclass
class AllPairsResult:
    """TAR at FAR points over every pair, and the ROC."""

    protocol: AllPairsProtocol
    images: int
    identities: int
    genuine_pairs: int
    impostor_pairs: int
    roc: Thresholds
    tar: np.ndarray
    timing: Timing = field(default_factory=Timing)
    protocol_name: str = "all-pairs"

    def tar_at(self, far: float) -> float:
        return float(self.tar[far_index(self.roc.far_points, far)])

    def describe(self) -> str:
        return self.protocol.describe()

    def headline(self) -> list[tuple[str, str]]:
        return [("images (identities)", f"{self.images:,} ({self.identities:,})"),
                ("pairs (genuine / impostor)",
                 f"{self.genuine_pairs + self.impostor_pairs:,} ({self.genuine_pairs:,} / "
                 f"{self.impostor_pairs:,})"),
                *[(f"TAR@FAR={f:g} %", pct(self.tar_at(f), 3)) for f in TAR_FARS]]

    def tables(self) -> list[ReportTable]:
        rows = []
        for i, f in enumerate(self.roc.far_points):
            if f in TAR_FARS or f in (0.0, 1.0) or f == 1e-8 or f == 1e-7:
                rows.append([f"{f:g}", str(int(self.roc.k[i])), f"{self.roc.far[i]:.4g}",
                             f"{self.roc.threshold[i]:.6f}", pct(self.tar[i], 3)])
        return [ReportTable("TAR at FAR", ["FAR", "false accepts k", "actual FAR k/Nimp",
                                           "threshold", "TAR %"], rows)]

    def notes(self) -> list[str]:
        low = [f for f in TAR_FARS if f * self.impostor_pairs < 0.5]
        if not low:
            return []
        return [f"FAR {', '.join(f'{f:g}' for f in low)}: fewer than one impostor pair "
                f"({self.impostor_pairs:,} in all), so the threshold is the FAR-0 one"]

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol.to_dict(), "images": self.images,
                "identities": self.identities, "genuine_pairs": self.genuine_pairs,
                "impostor_pairs": self.impostor_pairs,
                "tar_at_far": [{"far": f, "tar": self.tar_at(f),
                                "threshold": float(self.roc.threshold[
                                    far_index(self.roc.far_points, f)])} for f in TAR_FARS],
                "roc": {"far_points": floats(self.roc.far_points), "k": ints(self.roc.k),
                        "far": floats(self.roc.far), "threshold": floats(self.roc.threshold),
                        "tar": floats(self.tar)},
                "seconds": self.timing.to_dict()}


def evaluate_all_pairs(fs: FeatureSet, labelled: Labelled, features: FeatureOptions
                       ) -> AllPairsResult:
    """TAR at every FAR point over all pairs of ``fs``, in two streamed passes."""
    start = time.perf_counter()
    order = group_by_label(labelled.labels)
    feats = np.ascontiguousarray(fs.features[order])
    labels = labelled.labels[order]
    n_gen, n_imp = pair_counts(labels)
    if n_gen == 0 or n_imp == 0:
        raise InputError(f"{fs.path}: {n_gen} genuine and {n_imp} impostor pairs: all-pairs "
                         "needs two images of one identity and two identities")
    selector = StreamingSelector()
    genuine = []
    for rect, other, gen in iter_scores(feats, labels):
        selector.count(rect)
        selector.count(other)
        genuine.append(gen)
    gen_scores = np.concatenate(genuine)
    counted = time.perf_counter()

    def kth(ks: np.ndarray) -> np.ndarray:
        selector.want(ks)
        for rect, other, _ in iter_scores(feats, labels):
            selector.keep(rect)
            selector.keep(other)
        return selector.values()

    roc = far_thresholds(VERIFICATION_FARS, n_imp, kth, gen_scores)
    tar = accept_rates(gen_scores, roc.threshold)
    timing = Timing({"pass1": counted - start, "total": time.perf_counter() - start})
    return AllPairsResult(AllPairsProtocol(features, labelled.source), int(labels.size),
                          labelled.n_identities, n_gen, n_imp, roc, tar, timing)
