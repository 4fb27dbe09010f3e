"""LFW accuracy of test outputs (massface.evaluate.verify, or the plain reference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def lfw_accuracy_of(out: Path) -> float:
    """LFW accuracy of an embedding folder through massface.evaluate.verify when it exists,
    else through the reference in lfw_reference.py (the two are compared elsewhere)."""
    from massface.formats.embedding_dir import read_embedding_dir
    from massface.formats.pairs import read_pairs

    es = read_embedding_dir(out)
    rows = es.row_of()
    pairs = read_pairs(es.pairs_file)
    emb = es.embeddings[[rows[r] for p in pairs for r in (p.a, p.b)]]
    issame = np.array([p.issame for p in pairs])
    return accuracy(emb, issame)


def accuracy(emb: np.ndarray, issame: np.ndarray) -> float:
    try:
        from massface.scoring import verify
    except ImportError:
        from tests.helpers.lfw_reference import lfw_accuracy

        return lfw_accuracy(emb, issame)
    return float(verify(emb, issame).accuracy)
