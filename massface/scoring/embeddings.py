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
from massface.registry import Registry


def _rows(mask: np.ndarray, limit: int = 10, offset: int = 0) -> str:
    idx = np.flatnonzero(mask) + offset
    shown = ", ".join(str(i) for i in idx[:limit])
    more = f" and {idx.size - limit} more" if idx.size > limit else ""
    return f"{shown}{more}"


CHECK_BLOCK_ROWS = 65536


def check_embeddings(emb: np.ndarray, what: str = "embeddings", offset: int = 0) -> None:
    """Refuse NaN/Inf and all-zero rows, naming all such rows (they would score silently).

    Checked in blocks of rows (no full-size temporary); ``offset`` is the row number of
    ``emb[0]`` when ``emb`` is itself a block of a larger array.
    """
    bad = np.zeros(emb.shape[0], dtype=bool)
    zero = np.zeros(emb.shape[0], dtype=bool)
    for start in range(0, emb.shape[0], CHECK_BLOCK_ROWS):
        block = emb[start : start + CHECK_BLOCK_ROWS]
        bad[start : start + CHECK_BLOCK_ROWS] = ~np.isfinite(block).all(axis=1)
        zero[start : start + CHECK_BLOCK_ROWS] = ~block.any(axis=1)
    if bad.any():
        raise InputError(f"{what}: {int(bad.sum())} row(s) contain NaN or Inf: rows "
                         f"{_rows(bad, offset=offset)}")
    if zero.any():
        raise InputError(f"{what}: {int(zero.sum())} row(s) are all zero: rows "
                         f"{_rows(zero, offset=offset)}")


# The normalisations work in place on a float64 array the caller owns. Everything here is
# row-local, so preparing a block of rows gives exactly the rows of preparing the whole.


def _divide_by_norm(x: np.ndarray, what: str, offset: int) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    zero = norm[:, 0] == 0
    if zero.any():
        raise InputError(f"{what}: row(s) with zero norm cannot be normalised: rows "
                         f"{_rows(zero, offset=offset)}")
    x /= norm
    return x


def normalize_l2(x: np.ndarray, what: str = "embeddings", offset: int = 0) -> np.ndarray:
    """``x / ||x||`` per row."""
    return _divide_by_norm(x, what, offset)


def normalize_massface(x: np.ndarray, what: str = "embeddings", offset: int = 0) -> np.ndarray:
    """MassFace's ``l2_normalize``: subtract the row's scalar mean, then divide by the norm."""
    x -= x.mean(axis=1, keepdims=True)
    return _divide_by_norm(x, f"{what} (a constant row is zero once centred)", offset)


def normalize_none(x: np.ndarray, what: str = "embeddings", offset: int = 0) -> np.ndarray:
    """The vectors as given."""
    return x


NORMALIZATIONS: Registry[Callable[..., np.ndarray]] = Registry("normalization")
NORMALIZATIONS.register("l2", normalize_l2, description="L2-normalised")
NORMALIZATIONS.register("massface", normalize_massface,
                        description="row-mean-centred then L2-normalised (MassFace)")
NORMALIZATIONS.register("none", normalize_none, description="not normalised")


Normalize = Callable[..., np.ndarray]


def _flip_none(emb: np.ndarray, flip: np.ndarray | None, norm: Normalize,
               offset: int) -> np.ndarray:
    return norm(emb, "embeddings", offset)


def _flip_concat(emb: np.ndarray, flip: np.ndarray | None, norm: Normalize,
                 offset: int) -> np.ndarray:
    assert flip is not None
    return np.concatenate([norm(emb, "embeddings", offset),
                           norm(flip, "flip embeddings", offset)], axis=1)


def _flip_sum(emb: np.ndarray, flip: np.ndarray | None, norm: Normalize,
              offset: int) -> np.ndarray:
    assert flip is not None
    emb += flip
    return norm(emb, "embeddings + flip embeddings", offset)


Fuse = Callable[[np.ndarray, np.ndarray | None, Normalize, int], np.ndarray]
FLIPS: Registry[Fuse] = Registry("flip mode")
FLIPS.register("none", _flip_none, description="no flip")
FLIPS.register("concat", _flip_concat, description="flip concatenated (facenet)")
FLIPS.register("sum", _flip_sum, description="flip summed then normalised (insightface)")


def check_names(normalization: str, flip: str) -> None:
    """Refuse unknown option names before any work."""
    NORMALIZATIONS.get(normalization)
    FLIPS.get(flip)


def prepare_embeddings(
    embeddings: np.ndarray,
    flip_embeddings: np.ndarray | None = None,
    *,
    normalization: str = "l2",
    flip: str = "none",
    offset: int = 0,
) -> np.ndarray:
    """float64 embeddings after validation, normalisation and flip fusion.

    Row-local: a block of rows (whose first row is row ``offset`` of the whole, for error
    messages) comes out exactly as those rows of the whole would.
    """
    norm = NORMALIZATIONS.get(normalization)
    fuse = FLIPS.get(flip)
    emb = np.array(embeddings, dtype=np.float64)  # an owned copy: normalised in place
    if emb.ndim != 2:
        raise InputError(f"embeddings must be a 2-D array [rows, dim], got shape {emb.shape}")
    check_embeddings(emb, offset=offset)
    fl = None
    if flip != "none":
        if flip_embeddings is None:
            raise InputError(f"flip mode {flip!r} needs the flipped images' embeddings, and "
                             "none were given")
        fl = np.array(flip_embeddings, dtype=np.float64)
        if fl.shape != emb.shape:
            raise InputError(f"flip embeddings have shape {fl.shape}, embeddings {emb.shape}")
        check_embeddings(fl, "flip embeddings", offset=offset)
    return fuse(emb, fl, norm, offset)
