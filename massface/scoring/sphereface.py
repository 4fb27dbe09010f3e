"""The SphereFace / CosFace LFW evaluation (their ``evaluation.m`` / ``lfw_eval``), by name.

Published SphereFace (Liu et al. 2017), CosFace (Wang et al. 2018) and many models in
their line were scored this way, not with facenet's ``lfw.evaluate``; to compare with
their tables the protocol has to be rerun exactly:

1. each image's feature is the model's output for the image and for its left-right
   mirror, **concatenated** (not normalised first);
2. 10 contiguous folds of pairs (LFW's 10 sets of 600);
3. for fold ``i``: the mean feature of the other 9 folds' pairs (both sides) is
   subtracted from every feature, each is L2-normalised, and a pair's score is the
   **cosine similarity** of its two features;
4. the thresholds are ``(-10000:10000) / 10000`` (-1 to 1 by 1e-4); a pair is called
   "same" when its score is ``> t`` and "different" when it is ``< t`` (a score equal to
   ``t`` counts as wrong either way); the fold's threshold is the **mean of all
   thresholds** with the best accuracy on the 9 training folds;
5. the fold's accuracy is that threshold's on the fold; the figure is the mean of the 10.

Vectorised here (sorted scores and ``searchsorted`` count every threshold at once, as in
:mod:`massface.scoring.verification`); ``tests/scoring/test_sphereface.py`` pins it to a
line-by-line transcription.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.scoring.embeddings import check_embeddings
from massface.scoring.folds import contiguous_fold_ids, fold_ranges

THRESHOLD_STEPS = 10000  # evaluation.m's thrNum: thresholds (-thrNum:thrNum) / thrNum


@dataclass
class SphereFaceResult:
    """Accuracy by the SphereFace/CosFace protocol, with each fold's threshold."""

    accuracy: float
    accuracy_std: float
    fold_accuracy: np.ndarray
    fold_threshold: np.ndarray
    n_pairs: int
    n_same: int
    protocol_name: str = "sphereface"

    def describe(self) -> str:
        return ("SphereFace/CosFace LFW: features of the image and its mirror concatenated, "
                "training folds' mean subtracted, L2-normalised, cosine similarity, "
                f"thresholds -1..1 step {1 / THRESHOLD_STEPS:g}, mean of the best "
                f"thresholds, {self.fold_accuracy.size} folds")

    def to_dict(self) -> dict[str, Any]:
        return {"protocol_name": self.protocol_name, "description": self.describe(),
                "accuracy": float(self.accuracy), "accuracy_std": float(self.accuracy_std),
                "fold_accuracy": [float(x) for x in self.fold_accuracy],
                "fold_threshold": [float(x) for x in self.fold_threshold],
                "n_pairs": self.n_pairs, "n_same": self.n_same,
                "threshold_step": 1 / THRESHOLD_STEPS}


def _counts(pos: np.ndarray, neg: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Correct calls at each threshold: same-person scores ``> t`` plus different-person
    scores ``< t`` (integers)."""
    above = pos.size - np.searchsorted(pos, thresholds, side="right")
    below = np.searchsorted(neg, thresholds, side="left")
    return above + below


def sphereface_verify(embeddings: np.ndarray, issame: np.ndarray,
                      flip_embeddings: np.ndarray | None, *, n_folds: int = 10,
                      fold_ids: np.ndarray | None = None) -> SphereFaceResult:
    """Score pair-ordered embeddings (and their mirrors') by the SphereFace protocol."""
    if flip_embeddings is None:
        raise InputError("the sphereface protocol concatenates each image's features with "
                         "its mirror's: embed with `massface-infer --flip` (embeddings_flip.npy)")
    emb = np.asarray(embeddings, np.float64)
    flip = np.asarray(flip_embeddings, np.float64)
    if flip.shape != emb.shape or emb.ndim != 2 or emb.shape[0] != 2 * len(issame):
        raise InputError(f"embeddings {emb.shape}, flip embeddings {flip.shape}, "
                         f"{len(issame)} labels: need [2 x pairs, dim] each")
    check_embeddings(emb)
    check_embeddings(flip, "flip embeddings")
    same = np.asarray(issame, bool)
    folds = contiguous_fold_ids(same.size, n_folds) if fold_ids is None else \
        np.asarray(fold_ids, np.int64)
    ranges = fold_ranges(folds, n_folds)
    feats = np.concatenate([emb, flip], axis=1)
    left, right = feats[0::2], feats[1::2]
    thresholds = np.arange(-THRESHOLD_STEPS, THRESHOLD_STEPS + 1) / THRESHOLD_STEPS
    acc, thr = np.zeros(n_folds), np.zeros(n_folds)
    for f in range(n_folds):
        test, train = folds == f, folds != f
        if not (same[test].any() and (~same[test]).any()):
            raise InputError(f"fold {f + 1} of {n_folds} ({ranges[f]}) lacks same- or "
                             "different-person pairs")
        mu = np.mean(np.concatenate([left[train], right[train]]), axis=0)
        a, b = left - mu, right - mu
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        scores = np.sum(a * b, axis=1)
        correct = _counts(np.sort(scores[train & same]), np.sort(scores[train & ~same]),
                          thresholds)
        thr[f] = np.mean(thresholds[correct == correct.max()])
        right_calls = _counts(np.sort(scores[test & same]), np.sort(scores[test & ~same]),
                              np.array([thr[f]]))[0]
        acc[f] = right_calls / int(test.sum())
    return SphereFaceResult(float(np.mean(acc)), float(np.std(acc)), acc, thr,
                            int(same.size), int(same.sum()))
