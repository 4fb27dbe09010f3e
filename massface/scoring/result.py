"""What :func:`massface.evaluate.verify` returns: transparent dataclasses with ``to_dict()``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from massface.scoring.distances import DISTANCES
from massface.scoring.embeddings import FLIPS, NORMALIZATIONS

NOT_ENOUGH_NEGATIVES = "not enough negatives"
AUC_DEFINITION = ("auc, eer: the exact ROC of all pairs (each pair scored by its test fold, "
                  "ties counting one half, as scikit-learn's roc_auc_score); auc_grid, "
                  "eer_grid: facenet's fold-averaged ROC on the threshold grid")


@dataclass(frozen=True)
class Protocol:
    """Every setting that changes the numbers; a report names all of them."""

    normalization: str = "l2"
    flip: str = "none"
    distance: str = "euclidean"
    subtract_mean: bool = False
    n_folds: int = 10
    threshold_step: float = 0.01
    far_target: float = 1e-3
    val_threshold_step: float = 0.001
    folds: str = "contiguous"

    def describe(self) -> str:
        """One line naming the protocol, e.g. for a table caption."""
        parts = [
            f"{self.n_folds}-fold ({self.folds})",
            NORMALIZATIONS.description(self.normalization),
            FLIPS.description(self.flip),
            DISTANCES.description(self.distance),
            "per-fold mean subtracted" if self.subtract_mean else "no mean subtraction",
            f"threshold step {self.threshold_step:g}",
            f"VAL@FAR={self.far_target:g} (step {self.val_threshold_step:g})",
        ]
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "normalization": self.normalization,
            "flip": self.flip,
            "distance": self.distance,
            "subtract_mean": self.subtract_mean,
            "n_folds": self.n_folds,
            "folds": self.folds,
            "threshold_step": self.threshold_step,
            "far_target": self.far_target,
            "val_threshold_step": self.val_threshold_step,
            "description": self.describe(),
        }


@dataclass
class TprAtFar:
    """TPR at a target FAR, by the VAL protocol (threshold from the training folds).

    ``status`` is ``"ok"`` or ``"not enough negatives"`` (target FAR x negatives < 1: no
    threshold can be told apart from 0 false accepts); the figures are then ``None``.
    """

    far_target: float
    tpr: float | None
    tpr_std: float | None
    far: float | None
    status: str = "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"far_target": self.far_target, "tpr": self.tpr, "tpr_std": self.tpr_std,
                "far": self.far, "status": self.status}


def _floats(a: np.ndarray) -> list[float]:
    return [float(x) for x in np.asarray(a).ravel()]


@dataclass
class VerificationResult:
    """LFW k-fold verification metrics (see SPEC section 1 for their exact definitions)."""

    accuracy: float
    accuracy_std: float
    fold_accuracy: np.ndarray
    fold_threshold: np.ndarray
    val: float
    val_std: float
    far: float
    fold_val: np.ndarray
    fold_far: np.ndarray
    fold_val_threshold: np.ndarray
    auc: float
    eer: float
    thresholds: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray
    tpr_at_far: list[TprAtFar]
    protocol: Protocol
    n_pairs: int
    n_same: int
    n_diff: int
    fold_sizes: np.ndarray
    #: facenet's AUC and EER: of the fold-averaged ROC on the threshold grid (what
    #: calAcc prints). ``auc``/``eer`` are of the exact ROC of all pairs (every distinct
    #: distance), so they are right whatever range the distance has.
    auc_grid: float = float("nan")
    eer_grid: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)
    #: Each pair's distance as its test fold scored it (with ``subtract_mean`` the fold's
    #: own mean was subtracted) and that fold's number: what the HTML report's histograms
    #: and failed-pair gallery show. Not in ``to_dict()`` (one value per pair).
    pair_distances: np.ndarray | None = None
    pair_folds: np.ndarray | None = None

    def to_dict(self, *, include_roc: bool = True) -> dict[str, Any]:
        """Plain JSON-ready dict of every metric and the protocol."""
        d: dict[str, Any] = {
            "accuracy": float(self.accuracy),
            "accuracy_std": float(self.accuracy_std),
            "fold_accuracy": _floats(self.fold_accuracy),
            "fold_threshold": _floats(self.fold_threshold),
            "val": float(self.val),
            "val_std": float(self.val_std),
            "far": float(self.far),
            "fold_val": _floats(self.fold_val),
            "fold_far": _floats(self.fold_far),
            "fold_val_threshold": _floats(self.fold_val_threshold),
            "auc": float(self.auc),
            "eer": float(self.eer),
            "auc_grid": float(self.auc_grid),
            "eer_grid": float(self.eer_grid),
            "auc_eer_definition": AUC_DEFINITION,
            "tpr_at_far": [t.to_dict() for t in self.tpr_at_far],
            "n_pairs": int(self.n_pairs),
            "n_same": int(self.n_same),
            "n_diff": int(self.n_diff),
            "fold_sizes": [int(x) for x in self.fold_sizes],
            "protocol": self.protocol.to_dict(),
        }
        if include_roc:
            d["roc"] = {"thresholds": _floats(self.thresholds), "tpr": _floats(self.tpr),
                        "fpr": _floats(self.fpr)}
        d.update(self.extra)
        return d
