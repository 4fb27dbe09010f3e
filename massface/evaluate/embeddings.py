"""Embedding preparation before the distance: normalisation and flip fusion.

Every option is a named entry in a registry so that a report can say exactly which
protocol produced a number:

normalisations
    ``l2`` (default): ``x / ||x||``, what facenet's graph and most evaluations do.
    ``massface``: MassFace's own ``l2_normalize``: subtract each row's scalar mean, then
    divide by the norm (squared L2 becomes ``2 - 2 * Pearson correlation``).
    ``none``: the vectors as given.
flip fusions (when embeddings of the left-right flipped images are given)
    ``none``: ignore them.
    ``concat`` (facenet): ``[norm(e), norm(e_flip)]``, not renormalised, so squared L2 lies
    in ``[0, 8]`` for unit halves (facenet scores it with thresholds up to 4 all the same).
    ``sum`` (insightface): ``norm(e + e_flip)``.

All arithmetic is float64 (the reference fills a float64 ``emb_array``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from massface.errors import InputError


def _rows(mask: np.ndarray, limit: int = 10) -> str:
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:limit])
    more = f" and {idx.size - limit} more" if idx.size > limit else ""
    return f"{shown}{more}"


BLOCK_ROWS = 65536


def check_embeddings(emb: np.ndarray, what: str = "embeddings") -> None:
    """Refuse NaN/Inf and all-zero rows, naming the rows (they would score silently)."""
    bad = np.zeros(emb.shape[0], dtype=bool)
    zero = np.zeros(emb.shape[0], dtype=bool)
    for start in range(0, emb.shape[0], BLOCK_ROWS):
        block = emb[start : start + BLOCK_ROWS]
        bad[start : start + BLOCK_ROWS] = ~np.isfinite(block).all(axis=1)
        zero[start : start + BLOCK_ROWS] = ~block.any(axis=1)
    if bad.any():
        raise InputError(f"{what}: {int(bad.sum())} row(s) contain NaN or Inf: rows {_rows(bad)}")
    if zero.any():
        raise InputError(f"{what}: {int(zero.sum())} row(s) are all zero: rows {_rows(zero)}")


def _divide_by_norm(x: np.ndarray, what: str) -> np.ndarray:
    """``x /= ||x||`` row by row, in blocks (the same per-row values as on the whole array,
    without a second full-size temporary)."""
    for start in range(0, x.shape[0], BLOCK_ROWS):
        block = x[start : start + BLOCK_ROWS]
        norm = np.linalg.norm(block, axis=1, keepdims=True)
        zero = norm[:, 0] == 0
        if zero.any():
            rows = np.flatnonzero(zero) + start
            mask = np.zeros(x.shape[0], dtype=bool)
            mask[rows] = True
            raise InputError(f"{what}: row(s) with zero norm cannot be normalised: rows "
                             f"{_rows(mask)}")
        block /= norm
    return x


# The normalisations work in place on a float64 array the caller owns (a million pairs of
# 512-d embeddings are 8 GB in float64: no second copy).


def normalize_l2(x: np.ndarray, what: str = "embeddings") -> np.ndarray:
    """``x / ||x||`` per row."""
    return _divide_by_norm(x, what)


def normalize_massface(x: np.ndarray, what: str = "embeddings") -> np.ndarray:
    """MassFace's ``l2_normalize``: subtract the row's scalar mean, then divide by the norm."""
    for start in range(0, x.shape[0], BLOCK_ROWS):
        block = x[start : start + BLOCK_ROWS]
        block -= block.mean(axis=1, keepdims=True)
    return _divide_by_norm(x, f"{what} (a constant row is zero once centred)")


def normalize_none(x: np.ndarray, what: str = "embeddings") -> np.ndarray:
    """The vectors as given."""
    return x


NORMALIZATIONS: dict[str, Callable[..., np.ndarray]] = {
    "l2": normalize_l2,
    "massface": normalize_massface,
    "none": normalize_none,
}

NORMALIZATION_TEXT = {
    "l2": "L2-normalised",
    "massface": "row-mean-centred then L2-normalised (MassFace)",
    "none": "not normalised",
}


Normalize = Callable[..., np.ndarray]


def _flip_none(emb: np.ndarray, flip: np.ndarray | None, norm: Normalize) -> np.ndarray:
    return norm(emb)


def _flip_concat(emb: np.ndarray, flip: np.ndarray | None, norm: Normalize) -> np.ndarray:
    assert flip is not None
    return np.concatenate([norm(emb), norm(flip, "flip embeddings")], axis=1)


def _flip_sum(emb: np.ndarray, flip: np.ndarray | None, norm: Normalize) -> np.ndarray:
    assert flip is not None
    emb += flip
    return norm(emb, "embeddings + flip embeddings")


FLIPS: dict[str, Callable[[np.ndarray, np.ndarray | None, Normalize], np.ndarray]] = {
    "none": _flip_none,
    "concat": _flip_concat,
    "sum": _flip_sum,
}

FLIP_TEXT = {
    "none": "no flip",
    "concat": "flip concatenated (facenet)",
    "sum": "flip summed then normalised (insightface)",
}


def _choice(name: str, registry: dict, what: str) -> Callable:
    try:
        return registry[name]
    except KeyError:
        raise InputError(f"unknown {what} {name!r}: choose one of {', '.join(registry)}") from None


def prepare_embeddings(
    embeddings: np.ndarray,
    flip_embeddings: np.ndarray | None = None,
    *,
    normalization: str = "l2",
    flip: str = "none",
) -> np.ndarray:
    """float64 embeddings after validation, normalisation and flip fusion."""
    norm = _choice(normalization, NORMALIZATIONS, "normalization")
    fuse = _choice(flip, FLIPS, "flip mode")
    emb = np.array(embeddings, dtype=np.float64)  # an owned copy: normalised in place
    if emb.ndim != 2:
        raise InputError(f"embeddings must be a 2-D array [rows, dim], got shape {emb.shape}")
    check_embeddings(emb)
    fl = None
    if flip != "none":
        if flip_embeddings is None:
            raise InputError(f"flip mode {flip!r} needs the flipped images' embeddings, and "
                             "none were given")
        fl = np.array(flip_embeddings, dtype=np.float64)
        if fl.shape != emb.shape:
            raise InputError(f"flip embeddings have shape {fl.shape}, embeddings {emb.shape}")
        check_embeddings(fl, "flip embeddings")
    return fuse(emb, fl, norm)
