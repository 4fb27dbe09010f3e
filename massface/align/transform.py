"""The 5-point alignment: a least-squares similarity transform and OpenCV's bilinear warp.

:func:`similarity` is Umeyama's (1991) least-squares estimate of the rotation, uniform
scale and translation taking the five landmarks onto the template (what insightface's
``norm_crop`` gets from scikit-image's ``SimilarityTransform.estimate``).

:func:`warp_affine` reproduces ``cv2.warpAffine(img, M, (w, h))`` with its defaults
(``INTER_LINEAR``, ``BORDER_CONSTANT`` black) without OpenCV. Both OpenCV kernels share
the pixel-centre convention (output pixel ``(x, y)`` samples the source at
``M^-1 (x, y)``, integer coordinates at pixel centres, ``M`` inverted in double as
``invertAffineTransform`` does) and the border (source pixels outside the image count as
black; an output pixel whose four neighbours are all outside stays black). They differ in
arithmetic (the registry :data:`WARPS`):

* ``opencv`` (OpenCV >= 4.11, the default; the shared LFW crops were made with it):
  ``M^-1`` rounded to float32, the source position ``fma(m0, x, m1*y + m2)`` in float32,
  bilinear weights in float32 with fused multiply-adds, rounded half to even. Agrees with
  ``cv2`` 5.1 on all but ~2 in 100,000 values (off by one where the sum lies within
  2e-4 of a half: float rounding order);
* ``opencv-fixed`` (OpenCV <= 4.10, bit-exact): the position in 1/32 pixel
  (``INTER_BITS = 5``, terms rounded to 1/1024 half to even), integer weights
  ``(32 - fx)(32 - fy) * 32`` ... summing to 32768, ``(sum + 16384) >> 15``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from massface.registry import Registry

INTER_BITS = 5
INTER_TAB_SIZE = 1 << INTER_BITS  # 32 sub-pixel positions per axis
AB_BITS = 10
AB_SCALE = 1 << AB_BITS
COEF_BITS = 15  # weights sum to 1 << 15


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity ``M`` minimising ``sum |M [src; 1] - dst|^2`` (Umeyama)."""
    src = np.asarray(src, np.float64).reshape(-1, 2)
    dst = np.asarray(dst, np.float64).reshape(-1, 2)
    n = len(src)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / n
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1.0
    u, sing, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        raise ValueError("landmarks are degenerate (all at one point)")
    if rank == 1:  # collinear points: Umeyama's reflection rule for a singular covariance
        if np.linalg.det(u) * np.linalg.det(vt) > 0:
            r = u @ vt
        else:
            s = d[1]
            d[1] = -1.0
            r = u @ np.diag(d) @ vt
            d[1] = s
    else:
        r = u @ np.diag(d) @ vt
    var_s = (s0 ** 2).sum() / n
    scale = (sing * d).sum() / var_s
    m = np.empty((2, 3))
    m[:, :2] = scale * r
    m[:, 2] = mu_d - scale * r @ mu_s
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """``M^-1`` computed as OpenCV's ``invertAffineTransform`` (a singular M gives 0s)."""
    m = np.asarray(m, np.float64)
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    d = 1.0 / det if det != 0 else 0.0
    a11, a22 = m[1, 1] * d, m[0, 0] * d
    a12, a21 = -m[0, 1] * d, -m[1, 0] * d
    b1 = -a11 * m[0, 2] - a12 * m[1, 2]
    b2 = -a21 * m[0, 2] - a22 * m[1, 2]
    return np.array([[a11, a12, b1], [a21, a22, b2]])


def _source_positions(inv: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Integer source pixel and 1/32 fraction of every output pixel, as OpenCV computes."""
    h, w = size
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)
    round_delta = AB_SCALE // INTER_TAB_SIZE // 2
    adelta = np.rint(inv[0, 0] * xs * AB_SCALE).astype(np.int64)
    bdelta = np.rint(inv[1, 0] * xs * AB_SCALE).astype(np.int64)
    x0 = np.rint((inv[0, 1] * ys + inv[0, 2]) * AB_SCALE).astype(np.int64) + round_delta
    y0 = np.rint((inv[1, 1] * ys + inv[1, 2]) * AB_SCALE).astype(np.int64) + round_delta
    fx_all = (x0[:, None] + adelta[None, :]) >> (AB_BITS - INTER_BITS)
    fy_all = (y0[:, None] + bdelta[None, :]) >> (AB_BITS - INTER_BITS)
    return (fx_all >> INTER_BITS, fy_all >> INTER_BITS,
            fx_all & (INTER_TAB_SIZE - 1), fy_all & (INTER_TAB_SIZE - 1))


def _neighbours(image: np.ndarray, ix: np.ndarray, iy: np.ndarray, dtype: type
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """The four bilinear neighbours (black outside the image) and which outputs touch it.

    Only the part of the image the output reads is copied (a face crop of a 24-megapixel
    photo reads a few hundred pixels square), with a one-pixel black frame so that every
    neighbour of a pixel touching the image is readable."""
    height, width = image.shape[:2]
    inside = (ix >= -1) & (ix < width) & (iy >= -1) & (iy < height)
    if not inside.any():
        zero = np.zeros((*ix.shape, image.shape[2]), dtype)
        return [zero] * 4, inside
    x0, x1 = max(int(ix[inside].min()), 0), min(int(ix[inside].max()) + 2, width)
    y0, y1 = max(int(iy[inside].min()), 0), min(int(iy[inside].max()) + 2, height)
    padded = np.zeros((y1 - y0 + 2, x1 - x0 + 2, image.shape[2]), dtype)
    padded[1:-1, 1:-1] = image[y0:y1, x0:x1]
    cx = np.clip(ix - x0 + 1, 0, x1 - x0)
    cy = np.clip(iy - y0 + 1, 0, y1 - y0)
    return [padded[cy, cx], padded[cy, cx + 1], padded[cy + 1, cx],
            padded[cy + 1, cx + 1]], inside


def _warp_fixed(image: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    ix, iy, fx, fy = _source_positions(invert_affine(m), size)
    (p00, p01, p10, p11), inside = _neighbours(image, ix, iy, np.int32)
    scale = (1 << COEF_BITS) // (INTER_TAB_SIZE * INTER_TAB_SIZE)  # 32
    wx0, wy0 = INTER_TAB_SIZE - fx, INTER_TAB_SIZE - fy
    acc = (p00 * (wx0 * wy0 * scale)[..., None] + p01 * (fx * wy0 * scale)[..., None]
           + p10 * (wx0 * fy * scale)[..., None] + p11 * (fx * fy * scale)[..., None])
    out = np.clip((acc + (1 << (COEF_BITS - 1))) >> COEF_BITS, 0, 255).astype(np.uint8)
    out[~inside] = 0
    return out


def _fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 ``a * b + c`` rounded once, as a fused multiply-add (float64 holds the
    product of two float32 values exactly)."""
    return (np.asarray(a, np.float64) * b + c).astype(np.float32)


def _warp_float(image: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    inv = invert_affine(m).astype(np.float32)
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    sx = _fma32(inv[0, 0], xs, _fma32(ys, inv[0, 1], inv[0, 2]))
    sy = _fma32(inv[1, 0], xs, _fma32(ys, inv[1, 1], inv[1, 2]))
    ix, iy = np.floor(sx), np.floor(sy)
    ax, ay = (sx - ix)[..., None], (sy - iy)[..., None]
    (p00, p01, p10, p11), inside = _neighbours(image, ix.astype(np.int64),
                                               iy.astype(np.int64), np.float32)
    top = _fma32(ax, p01 - p00, p00)
    bottom = _fma32(ax, p11 - p10, p10)
    value = _fma32(ay, bottom - top, top)
    out = np.clip(np.rint(value), 0, 255).astype(np.uint8)
    out[~inside] = 0
    return out


#: The warp kernels, by the OpenCV arithmetic they reproduce.
WARPS: Registry[Callable[[np.ndarray, np.ndarray, tuple[int, int]], np.ndarray]] = \
    Registry("warp kernel")
WARPS.register("opencv", _warp_float,
               description="cv2.warpAffine of OpenCV >= 4.11 (float32; the shared crops)")
WARPS.register("opencv-fixed", _warp_fixed,
               description="cv2.warpAffine of OpenCV <= 4.10 (fixed point, bit-exact)")


def warp_affine(image: np.ndarray, m: np.ndarray, size: tuple[int, int],
                kernel: str = "opencv") -> np.ndarray:
    """``cv2.warpAffine(image, m, (w, h))`` for uint8 ``[H, W]`` or ``[H, W, C]``;
    ``size = (h, w)``."""
    if image.dtype != np.uint8:
        raise ValueError(f"warp_affine takes uint8 images, got {image.dtype}")
    src = image[:, :, None] if image.ndim == 2 else image
    out = WARPS.get(kernel, "--warp")(src, m, size)
    return out[:, :, 0] if image.ndim == 2 else out


# Five points closer together than this (pixels) describe no face: the warp would blow
# one source pixel up to the whole crop.
MIN_LANDMARK_SPREAD = 1.0


def landmark_problem(points: np.ndarray, size: tuple[int, int]) -> str:
    """Why five points cannot be aligned in an image of ``size`` (H, W), or be a
    template's points in a crop of that size; "" when they can.

    Points outside the image would warp black borders into the crop, which would then
    look aligned; five (nearly) coincident points have no scale or rotation.
    """
    pts = np.asarray(points, np.float64).reshape(5, 2)
    h, w = size
    outside = ~((pts[:, 0] >= -0.5) & (pts[:, 0] <= w - 0.5)
                & (pts[:, 1] >= -0.5) & (pts[:, 1] <= h - 0.5))
    if outside.any():
        k = int(np.argmax(outside))
        return (f"landmark {k} ({pts[k, 0]:g}, {pts[k, 1]:g}) lies outside the {w}x{h} "
                "image")
    if np.ptp(pts, axis=0).max() < MIN_LANDMARK_SPREAD:
        return "the five landmarks coincide (degenerate: no face)"
    return ""
