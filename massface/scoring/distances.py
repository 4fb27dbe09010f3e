"""Pair distances, computed exactly as the reference does (bit for bit).

``euclidean`` is the squared L2 distance ``sum((e1 - e2) ** 2)``; ``cosine`` is
``arccos(cos) / pi`` (the cosine is clipped to [-1, 1] first: rounding can push it to
1 + 1e-16 for identical vectors, where facenet's code returns NaN).

Rows are processed in blocks to bound memory at a million pairs; each row's reduction is
the same NumPy call as on the whole array, so the values are identical.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from massface.registry import Registry

BLOCK_ROWS = 65536


def _squared_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(np.square(np.subtract(a, b)), axis=1)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dot = np.sum(np.multiply(a, b), axis=1)
    norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.arccos(np.clip(dot / norm, -1.0, 1.0)) / math.pi


Distance = Callable[[np.ndarray, np.ndarray], np.ndarray]
DISTANCES: Registry[Distance] = Registry("distance")
DISTANCES.register("euclidean", _squared_l2, description="squared L2")
DISTANCES.register("cosine", _cosine, description="arccos(cosine)/pi")


def pair_distances(
    e1: np.ndarray, e2: np.ndarray, metric: str = "euclidean", mean: np.ndarray | None = None
) -> np.ndarray:
    """Distance of each pair ``(e1[i], e2[i])``, after subtracting ``mean`` from both if given."""
    fn = DISTANCES.get(metric)
    out = np.empty(e1.shape[0], dtype=np.float64)
    for start in range(0, e1.shape[0], BLOCK_ROWS):
        s = slice(start, start + BLOCK_ROWS)
        a, b = e1[s], e2[s]
        if mean is not None:
            a, b = a - mean, b - mean
        out[s] = fn(a, b)
    return out


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b`` (float64)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    denom = na * nb
    out = np.einsum("ij,ij->i", a, b) / np.where(denom > 0, denom, 1.0)
    # A zero vector only matches a zero vector.
    return np.where(denom > 0, out, np.where((na == 0) & (nb == 0), 1.0, 0.0))
