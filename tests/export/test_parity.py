"""Parity numbers against an obviously-correct reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from massface.export.parity import ParityError, compare, require, split_batches
from massface.scoring.distances import cosine_rows


def _slow_cosine(a, b):
    out = []
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        dot = sum(p * q for p, q in zip(x, y, strict=True))
        nx = math.sqrt(sum(p * p for p in x))
        ny = math.sqrt(sum(q * q for q in y))
        out.append(dot / (nx * ny))
    return out


def test_cosine_rows_matches_reference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 7)).astype(np.float32)
    b = a + rng.normal(scale=0.3, size=a.shape).astype(np.float32)
    np.testing.assert_allclose(cosine_rows(a, b), _slow_cosine(a, b), rtol=0, atol=1e-12)


def test_zero_rows():
    z = np.zeros((2, 3))
    one = np.array([[0, 0, 0], [1, 0, 0]], dtype=float)
    assert cosine_rows(z, z).tolist() == [1.0, 1.0]
    assert cosine_rows(z, one).tolist() == [1.0, 0.0]


def test_compare_and_require():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(16, 32)).astype(np.float32)
    close = compare("onnx", "ckpt", ref, ref + 1e-6)
    assert close.passed and close.max_abs_diff == pytest.approx(1e-6, rel=0.05)
    bad_out = ref.copy()
    bad_out[3] = rng.normal(size=32)
    bad = compare("pb", "ckpt", ref, bad_out)
    assert not bad.passed
    assert bad.min_cosine == pytest.approx(_slow_cosine(ref[3:4], bad_out[3:4])[0])
    with pytest.raises(ParityError) as info:
        require([close, bad])
    msg = str(info.value)
    assert "failed for pb" in msg and f"{bad.min_cosine:.10f}" in msg and "onnx vs ckpt" in msg
    require([close])


def test_shape_and_nan_are_errors():
    ref = np.ones((4, 8), dtype=np.float32)
    with pytest.raises(ParityError, match="shape"):
        compare("x", "ref", ref, ref[:, :4])
    bad = ref.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ParityError, match="NaN"):
        compare("x", "ref", ref, bad)


def test_split_batches_covers_every_row_once():
    for n in (1, 2, 16):
        idx = np.concatenate([np.arange(n)[s] for s in split_batches(n)])
        assert idx.tolist() == list(range(n))
