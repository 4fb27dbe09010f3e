"""What every inference backend offers, and the batching rules they share.

A backend loads one model file and runs it on batches of preprocessed images. It reports
what it learnt from the model (:class:`ModelInfo`): the input's name, layout and size,
whether the batch dimension is dynamic, fixed, or a set of gears (Ascend dynamic batch),
and the output's name, dtype and width. :meth:`Backend.embed` takes NHWC float32 batches
of any size and takes care of layout, padding to a size the model accepts (the padding
rows are dropped again) and conversion of the output to float32.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError

DYNAMIC = "dynamic"
STATIC = "static"
GEARS = "gears"


@dataclass
class ModelInfo:
    """What a backend found out about its model."""

    backend: str
    path: str
    input_name: str
    input_shape: list[int | None]  # as declared; None where dynamic
    layout: str  # "NHWC" | "NCHW"
    height: int | None
    width: int | None
    channels: int
    batch: str  # DYNAMIC | STATIC | GEARS
    batch_sizes: tuple[int, ...] = ()  # accepted sizes for STATIC / GEARS, ascending
    output_name: str = ""
    output_dtype: str = "float32"
    output_dim: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # "float32": preprocessed (normalised) images; "uint8": raw pixels, the model
    # normalises them itself (an Ascend .om built with AIPP, or its ONNX twin).
    input_dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batch_sizes"] = list(self.batch_sizes)
        return d

    @property
    def size(self) -> tuple[int, int] | None:
        """(H, W) fixed by the model, or None when the model accepts any size."""
        if self.height is None or self.width is None:
            return None
        return (self.height, self.width)

    def feed_size(self, n: int) -> int:
        """The batch size to run ``n`` (<= max accepted) images at: smallest size >= n."""
        if self.batch == DYNAMIC:
            return n
        for size in self.batch_sizes:
            if size >= n:
                return size
        return self.batch_sizes[-1]

    @property
    def max_batch(self) -> int | None:
        return None if self.batch == DYNAMIC else self.batch_sizes[-1]


def image_input(
    path: str | os.PathLike[str], name: str, shape: list[int | None]
) -> tuple[str, int | None, int | None, int]:
    """Layout, H, W, C of a 4-D image input; :class:`InputError` when it is not one.

    The channel axis is the one of size 1 or 3 (last -> NHWC, second -> NCHW); when both
    could be, NHWC wins (the TensorFlow convention of the models massface exports).
    """
    if len(shape) != 4:
        raise InputError(f"{path}: input {name!r} has shape {shape}: not a 4-D image batch "
                         "([N, H, W, C] or [N, C, H, W])")
    if shape[3] in (1, 3):
        return "NHWC", shape[1], shape[2], int(shape[3])
    if shape[1] in (1, 3):
        return "NCHW", shape[2], shape[3], int(shape[1])
    raise InputError(f"{path}: input {name!r} has shape {shape}: no channel axis of size 1 or 3 "
                     "in position 1 (NCHW) or 3 (NHWC), so it is not an image input")


def batch_kind(first_dim: int | None) -> tuple[str, tuple[int, ...]]:
    """(DYNAMIC, ()) for a free batch dimension, else (STATIC, (size,))."""
    if first_dim is None or first_dim <= 0:
        return DYNAMIC, ()
    return STATIC, (int(first_dim),)


class Backend(ABC):
    """One loaded model. Use as a context manager, or call :meth:`close`."""

    name = "backend"
    suffixes: tuple[str, ...] = ()  # model files this backend runs (``--backend auto``)
    info: ModelInfo

    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Run a batch already in the model's layout and an accepted size; return [n, ...]."""

    def close(self) -> None:  # noqa: B027 - optional hook; most runtimes free on drop
        """Release the model (and device) resources."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """NHWC ``[n, H, W, C]`` -> float32 ``[n, D]``, whatever the model's batching.

        The batch is float32 preprocessed images, or uint8 RGB pixels for a model whose
        ``info.input_dtype`` is uint8 (it normalises them itself).
        """
        n = batch.shape[0]
        if (self.info.input_dtype == "uint8") != (batch.dtype == np.uint8):
            raise InputError(f"{self.info.path}: the model takes {self.info.input_dtype} "
                             f"input but was given {batch.dtype} images")
        if n == 0:
            return np.zeros((0, self.info.output_dim or 0), np.float32)
        limit = self.info.max_batch or n
        parts = [self._embed_fitting(batch[i:i + limit]) for i in range(0, n, limit)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _embed_fitting(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        size = self.info.feed_size(n)
        if size != n:
            pad = np.zeros((size - n, *batch.shape[1:]), batch.dtype)
            batch = np.concatenate([batch, pad])
        if self.info.layout == "NCHW":
            batch = batch.transpose(0, 3, 1, 2)
        out = np.asarray(self._run(np.ascontiguousarray(batch, dtype=self.info.input_dtype)))
        if out.shape[0] != size:
            raise InputError(f"{self.info.path}: model returned {out.shape[0]} rows for a batch "
                             f"of {size}")
        out = out.reshape(size, -1)[:n].astype(np.float32, copy=False)
        if self.info.output_dim is None:
            self.info.output_dim = int(out.shape[1])
        return out


def model_path(path: str | os.PathLike[str]) -> Path:
    """The model file, checked to exist."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: model file not found")
    return p
