"""Slow, obviously-correct LFW 10-fold accuracy (SPEC section 1), for cross-checking.

The project's evaluation is ``massface.evaluate.verify``; tests use it when present and
this reference otherwise, and check that the two agree.
"""

from __future__ import annotations

import numpy as np


def lfw_accuracy(embeddings: np.ndarray, issame: np.ndarray, step: float = 0.01) -> float:
    """Mean test accuracy over 10 contiguous folds; L2-normalised, squared L2, dist < t."""
    emb = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    dist = np.sum((emb[0::2] - emb[1::2]) ** 2, axis=1)
    issame = np.asarray(issame, bool)
    n = len(issame)
    thresholds = np.arange(0, 4, step)
    sizes = [n // 10 + (1 if i < n % 10 else 0) for i in range(10)]
    bounds = np.cumsum([0, *sizes])
    accs = []
    for f in range(10):
        test = np.zeros(n, bool)
        test[bounds[f]:bounds[f + 1]] = True
        train = ~test
        best_t, best_acc = thresholds[0], -1.0
        for t in thresholds:
            acc = np.mean((dist[train] < t) == issame[train])
            if acc > best_acc:
                best_acc, best_t = acc, t
        accs.append(np.mean((dist[test] < best_t) == issame[test]))
    return float(np.mean(accs))
