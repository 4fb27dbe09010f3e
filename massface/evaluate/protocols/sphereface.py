"""``--protocol sphereface``: the SphereFace/CosFace LFW evaluation of pair inputs
(:mod:`massface.scoring.sphereface`), rendered like the other protocols."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from massface.evaluate.inputs import PairInput
from massface.evaluate.protocols.base import ReportTable
from massface.scoring.sphereface import SphereFaceResult, sphereface_verify


@dataclass
class SphereFaceReport:
    """A :class:`SphereFaceResult` as the reports take it (:mod:`.base`)."""

    result: SphereFaceResult
    protocol_name: str = "sphereface"

    def describe(self) -> str:
        return self.result.describe()

    def headline(self) -> list[tuple[str, str]]:
        r = self.result
        return [("accuracy (%)", f"{100 * r.accuracy:.3f} ± {100 * r.accuracy_std:.3f}"),
                ("mean threshold", f"{float(r.fold_threshold.mean()):.4f}"),
                ("pairs", f"{r.n_pairs} ({r.n_same} same)")]

    def tables(self) -> list[ReportTable]:
        rows = [[str(f + 1), f"{100 * a:.2f}", f"{t:.4f}"] for f, (a, t) in enumerate(
            zip(self.result.fold_accuracy, self.result.fold_threshold, strict=True))]
        return [ReportTable("folds", ["fold", "accuracy (%)", "threshold"], rows)]

    def notes(self) -> list[str]:
        return []

    def to_dict(self) -> dict[str, Any]:
        return self.result.to_dict()


def evaluate_sphereface(data: PairInput, n_folds: int = 10) -> SphereFaceReport:
    """Score one pair input (its flip embeddings are required)."""
    return SphereFaceReport(sphereface_verify(data.embeddings, data.issame,
                                              data.flip_embeddings, n_folds=n_folds,
                                              fold_ids=data.fold_ids))
