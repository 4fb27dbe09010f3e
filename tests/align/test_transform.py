"""Umeyama similarity and the two OpenCV warp kernels against slow, per-pixel references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from massface.align.templates import TEMPLATES
from massface.align.transform import invert_affine, similarity, warp_affine


def _lstsq_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 4-parameter least squares ``[a -b tx; b a ty]`` solved as a linear system."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def test_similarity_is_the_least_squares_similarity():
    rng = np.random.default_rng(0)
    dst = TEMPLATES.get("arcface").array
    for _ in range(50):
        angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(0.3, 3)
        r = scale * np.array([[math.cos(angle), -math.sin(angle)],
                              [math.sin(angle), math.cos(angle)]])
        src = (dst - 56) @ r.T + rng.uniform(0, 200, 2) + rng.normal(0, 2, (5, 2))
        np.testing.assert_allclose(similarity(src, dst), _lstsq_similarity(src, dst),
                                   atol=1e-9)


def test_similarity_recovers_an_exact_transform():
    m = np.array([[0.8, -0.3, 12.0], [0.3, 0.8, -4.0]])
    src = np.random.default_rng(1).uniform(0, 100, (5, 2))
    dst = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(similarity(src, dst), m, atol=1e-12)


def _slow_fixed(img: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV <= 4.10 ``warpAffine`` bilinear, one pixel at a time, as its source reads."""
    inv = invert_affine(m)
    h, w = size
    out = np.zeros((h, w, img.shape[2]), np.uint8)
    for y in range(h):
        x0 = int(np.rint((inv[0, 1] * y + inv[0, 2]) * 1024)) + 16
        y0 = int(np.rint((inv[1, 1] * y + inv[1, 2]) * 1024)) + 16
        for x in range(w):
            sx = (x0 + int(np.rint(inv[0, 0] * x * 1024))) >> 5
            sy = (y0 + int(np.rint(inv[1, 0] * x * 1024))) >> 5
            ix, iy, fx, fy = sx >> 5, sy >> 5, sx & 31, sy & 31
            weights = {(0, 0): (32 - fx) * (32 - fy) * 32, (0, 1): fx * (32 - fy) * 32,
                       (1, 0): (32 - fx) * fy * 32, (1, 1): fx * fy * 32}
            if not (-1 <= ix < img.shape[1] and -1 <= iy < img.shape[0]):
                continue
            for c in range(img.shape[2]):
                total = 0
                for (dy, dx), wgt in weights.items():
                    yy, xx = iy + dy, ix + dx
                    if 0 <= yy < img.shape[0] and 0 <= xx < img.shape[1]:
                        total += int(img[yy, xx, c]) * wgt
                out[y, x, c] = min(255, max(0, (total + 16384) >> 15))
    return out


def _f32(v: float) -> np.float32:
    return np.float32(v)


def _fma(a: float, b: float, c: float) -> np.float32:
    return np.float32(float(a) * float(b) + float(c))  # one rounding, as a fused multiply-add


def _slow_float(img: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV >= 4.11 ``warpAffine`` bilinear (float32, fused multiply-adds), per pixel."""
    inv = invert_affine(m).astype(np.float32)
    h, w = size
    out = np.zeros((h, w, img.shape[2]), np.uint8)
    for y in range(h):
        mx, my = _fma(y, inv[0, 1], inv[0, 2]), _fma(y, inv[1, 1], inv[1, 2])
        for x in range(w):
            sx, sy = _fma(inv[0, 0], x, mx), _fma(inv[1, 0], x, my)
            ix, iy = math.floor(sx), math.floor(sy)
            ax, ay = _f32(sx - ix), _f32(sy - iy)
            if not (-1 <= ix < img.shape[1] and -1 <= iy < img.shape[0]):
                continue
            for c in range(img.shape[2]):
                def px(yy: int, xx: int, c: int = c) -> float:
                    ok = 0 <= yy < img.shape[0] and 0 <= xx < img.shape[1]
                    return float(img[yy, xx, c]) if ok else 0.0
                p00, p01 = px(iy, ix), px(iy, ix + 1)
                p10, p11 = px(iy + 1, ix), px(iy + 1, ix + 1)
                top = _fma(ax, p01 - p00, p00)
                bottom = _fma(ax, p11 - p10, p10)
                value = _fma(ay, _f32(bottom - top), top)
                out[y, x, c] = min(255, max(0, int(np.rint(value))))
    return out


@pytest.mark.parametrize(("kernel", "reference"), [("opencv-fixed", _slow_fixed),
                                                   ("opencv", _slow_float)])
def test_warp_kernels_match_their_per_pixel_reference(kernel, reference):
    rng = np.random.default_rng(2)
    img = rng.integers(1, 256, (23, 31, 3), dtype=np.uint8)
    black = 0
    for _ in range(6):  # rotations, scales, shifts that leave the image (black border)
        angle, scale = rng.uniform(-1, 1), rng.uniform(0.4, 2.5)
        m = np.array([[scale * math.cos(angle), -scale * math.sin(angle), rng.uniform(-15, 15)],
                      [scale * math.sin(angle), scale * math.cos(angle), rng.uniform(-15, 15)]])
        got = warp_affine(img, m, (17, 19), kernel)
        np.testing.assert_array_equal(got, reference(img, m, (17, 19)))
        black += int((got == 0).all(axis=2).sum())
    assert black > 0  # the border case was exercised


def test_warp_of_a_grey_image_keeps_two_dimensions():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)
    m = np.array([[1.0, 0, 0.5], [0, 1.0, 0.25]])
    got = warp_affine(img, m, (10, 10))
    assert got.shape == (10, 10)
    np.testing.assert_array_equal(got, warp_affine(img[:, :, None], m, (10, 10))[:, :, 0])


def test_identity_warp_returns_the_image():
    img = np.random.default_rng(3).integers(0, 256, (12, 9, 3), dtype=np.uint8)
    for kernel in ("opencv", "opencv-fixed"):
        np.testing.assert_array_equal(warp_affine(img, np.eye(2, 3), (12, 9), kernel), img)


def test_unknown_kernel_lists_the_choices():
    from massface.errors import InputError

    with pytest.raises(InputError, match="opencv-fixed"):
        warp_affine(np.zeros((4, 4, 3), np.uint8), np.eye(2, 3), (4, 4), "cubic")
