"""Decode and preprocess batches on a thread pool while the model runs.

The main thread asks for batches in order; up to ``prefetch`` batches are being decoded
ahead of it by ``workers`` threads (PIL's decoder releases the GIL). Memory therefore
holds at most ``prefetch + 1`` batches of pixels whatever the dataset's size.

A bad item (unreadable or truncated file, wrong size, unsupported pixel mode) raises
:class:`InputError` naming it, or, with ``skip_bad``, is recorded in the batch's ``bad``
list and left out of its array.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.imaging import require_regular_file
from massface.runtime.preprocess import Preprocessing, decode_image
from massface.runtime.sources import Dataset


@dataclass
class LoadedBatch:
    """Rows ``start..stop`` of a dataset, preprocessed; ``good`` says which rows ``array`` holds."""

    start: int
    stop: int
    array: np.ndarray  # float32 NHWC [len(good), H, W, C] (uint8 RGB with ``pixels``)
    good: list[int]
    bad: list[tuple[int, str]] = field(default_factory=list)  # (row, message)
    #: images of another size than the model's, by decoded size ("HxW"), fitted (--fit)
    fitted: dict[str, int] = field(default_factory=dict)


@dataclass
class LoaderOptions:
    """How items become model input."""

    preprocessing: Preprocessing
    channels: int = 3
    skip_bad: bool = False
    pixels: bool = False  # keep uint8 RGB pixels: the model normalises them (AIPP)
    align: Any = None  # massface.align.infer_step.AlignStep (--align): detect + warp instead


def item_name(ds: Dataset, row: int) -> str:
    """The name errors use for an item: its file, or ``archive#index`` for in-memory images."""
    item = ds.items[row]
    return str(item) if isinstance(item, Path) else f"{ds.root}#{ds.keys[row]}"


def read_tensor(path: Path, shape: tuple[int, int, int], pixels: bool = False) -> np.ndarray:
    """An input bin ``[1, H, W, C]`` as ``[H, W, C]``: preprocessed float32, or (``pixels``,
    a model that normalises its own input: AIPP) raw uint8 pixels."""
    dtype = np.dtype(np.uint8 if pixels else np.float32)
    require_regular_file(path, str(path), "cannot read input bin")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read input bin: {exc}") from exc
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise InputError(f"{path}: {len(raw)} bytes, but the model takes {dtype.name} "
                         f"[1, {shape[0]}, {shape[1]}, {shape[2]}] = {expected} bytes")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def load_rows(ds: Dataset, start: int, stop: int, opts: LoaderOptions) -> LoadedBatch:
    """Decode and preprocess rows ``start..stop`` (one batch)."""
    prep = opts.preprocessing
    h, w = prep.size
    good: list[int] = []
    bad: list[tuple[int, str]] = []
    arrays: list[np.ndarray] = []
    fitted: dict[str, int] = {}
    crops: list[Any] = []
    if opts.align is not None and not ds.tensors:  # detection batched over the batch's photos
        rows = range(start, stop)
        crops = opts.align.crop_many([ds.items[r] for r in rows],
                                     [item_name(ds, r) for r in rows], [ds.keys[r] for r in rows])
    for row in range(start, stop):
        try:
            if ds.tensors:
                arrays.append(read_tensor(ds.items[row], (h, w, opts.channels),  # type: ignore[arg-type]
                                          opts.pixels))
            elif opts.align is not None:
                crop = crops[row - start]
                if isinstance(crop, InputError):
                    raise crop
                arrays.append(crop)
            else:
                arrays.append(decode_image(ds.items[row], item_name(ds, row), (h, w),
                                           fit=prep.fit, channels=opts.channels,
                                           fitted=fitted))
            good.append(row)
        except InputError as exc:
            if not opts.skip_bad:
                raise
            bad.append((row, str(exc)))
    if not arrays:
        array = np.zeros((0, h, w, opts.channels), np.uint8 if opts.pixels else np.float32)
    elif ds.tensors or opts.pixels:
        array = np.stack(arrays)
    else:
        array = prep.normalize(np.stack(arrays))
    return LoadedBatch(start, stop, array, good, bad, fitted)


def iter_batches(ds: Dataset, start: int, stop: int, batch_size: int, opts: LoaderOptions, *,
                 workers: int = 1, prefetch: int = 2) -> Iterator[LoadedBatch]:
    """Batches of rows ``start..stop`` in order, decoded ahead on ``workers`` threads."""
    bounds = [(s, min(s + batch_size, stop)) for s in range(start, stop, batch_size)]
    if not bounds:
        return
    ahead = max(1, prefetch)
    with ThreadPoolExecutor(max_workers=max(1, workers),
                            thread_name_prefix="massface-decode") as pool:
        pending: deque[Future[LoadedBatch]] = deque()
        todo = iter(bounds)
        try:
            for s, e in todo:
                pending.append(pool.submit(load_rows, ds, s, e, opts))
                if len(pending) >= ahead:
                    break
            while pending:
                batch = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(load_rows, ds, nxt[0], nxt[1], opts))
                yield batch
        finally:
            for f in pending:
                f.cancel()
