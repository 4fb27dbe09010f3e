"""Decoded batches through a backend, in order: the loop ``massface-infer`` runs.

The decode pool (:func:`massface.runtime.loader.iter_batches`) prepares batches ahead on its
threads; :meth:`Backend.embed_many` takes each batch as soon as the model has room for it,
so on a backend with asynchronous requests (OpenVINO) several batches are in the model
while the next ones decode. Each loaded batch comes back with its embeddings (and those of
its mirror image with ``flip``).

:func:`embed_dataset` is the same loop without an output folder: the embeddings of a whole
dataset in memory, e.g. to compare precisions or backends on LFW.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from massface.errors import NonFiniteEmbeddingError
from massface.runtime.backends import Backend
from massface.runtime.loader import LoadedBatch, LoaderOptions, item_name, iter_batches
from massface.runtime.preprocess import choose_preprocessing
from massface.runtime.preprocess import flip_batch as mirror
from massface.runtime.sources import Dataset


def latency_percentiles(lat: list[float]) -> dict[str, float]:
    """Per-batch latency (seconds) as milliseconds: mean, p50, p95, max."""
    if not lat:
        return {}
    a = np.asarray(lat) * 1000.0
    return {"mean": round(float(a.mean()), 3), "p50": round(float(np.percentile(a, 50)), 3),
            "p95": round(float(np.percentile(a, 95)), 3), "max": round(float(a.max()), 3)}


@dataclass
class PipelineStats:
    """Where the time went: waiting for decoded batches, and per-batch model latency."""

    input_wait_s: float = 0.0
    latencies: list[float] = field(default_factory=list)


@dataclass
class EmbeddedBatch:
    """A loaded batch and the embeddings of its good rows."""

    batch: LoadedBatch
    embeddings: np.ndarray  # [len(batch.good), D]
    flip: np.ndarray | None = None  # embeddings of the mirrored images, with ``flip``


def embedded_batches(backend: Backend, batches: Iterable[LoadedBatch], *, flip: bool = False,
                     stats: PipelineStats | None = None, ds: Dataset | None = None,
                     skip_bad: bool = False) -> Iterator[EmbeddedBatch]:
    """Each of ``batches`` with its embeddings, in order.

    Rows whose embedding (or mirror embedding) holds NaN/Inf raise
    :class:`NonFiniteEmbeddingError` naming them (items of ``ds``) and the model; with
    ``skip_bad`` they move to the batch's ``bad`` list like unreadable images."""
    stats = stats if stats is not None else PipelineStats()
    loaded: deque[LoadedBatch] = deque()

    def arrays() -> Iterator[np.ndarray]:
        source = iter(batches)
        while True:
            t = time.perf_counter()
            batch = next(source, None)
            stats.input_wait_s += time.perf_counter() - t
            if batch is None:
                return
            loaded.append(batch)
            yield batch.array
            if flip:
                yield mirror(batch.array)

    results = backend.embed_many(arrays(), stats.latencies)
    for emb in results:
        flipped = next(results) if flip else None
        yield _finite(EmbeddedBatch(loaded.popleft(), emb, flipped), backend, ds, skip_bad)


def _finite(item: EmbeddedBatch, backend: Backend, ds: Dataset | None,
            skip_bad: bool) -> EmbeddedBatch:
    """``item`` when every embedding is finite; else an error, or (``skip_bad``) the
    item without the non-finite rows, which join ``bad``."""
    ok = np.isfinite(item.embeddings).all(axis=1)
    if item.flip is not None:
        ok &= np.isfinite(item.flip).all(axis=1)
    if ok.all():
        return item
    batch = item.batch
    rows = [r for r, good in zip(batch.good, ok, strict=True) if not good]
    what = f"embedding is NaN/Inf (model {backend.info.path})"
    if skip_bad:
        batch.bad = sorted([*batch.bad, *((r, what) for r in rows)])
        batch.good = [r for r, good in zip(batch.good, ok, strict=True) if good]
        return EmbeddedBatch(batch, item.embeddings[ok],
                             None if item.flip is None else item.flip[ok])
    names = [item_name(ds, r) if ds is not None else f"row {r}" for r in rows]
    shown = ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")
    raise NonFiniteEmbeddingError(
        f"{backend.info.path}: the model's embeddings hold NaN/Inf for {len(rows)} of "
        f"{len(ok)} images of rows {batch.start}..{batch.stop - 1}: {shown}; check the model "
        "(massface-export's parity, massface-infer info), or rerun with --skip-bad to list "
        "and skip such images")


def embed_dataset(backend: Backend, ds: Dataset, *, batch_size: int = 32, workers: int = 1,
                  prefetch: int = 3, flip: bool = False,
                  preprocessing: dict | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Embeddings of every row of ``ds`` (and of its mirror images with ``flip``).

    Preprocessing as ``massface-infer`` chooses it (``export.json`` beside the model, then
    ``preprocessing`` overrides); any unreadable image is an error."""
    info = backend.info
    choice = choose_preprocessing(info.path, preprocessing or {}, info.size)
    opts = LoaderOptions(choice.preprocessing, info.channels)
    batches = iter_batches(ds, 0, len(ds.keys), batch_size, opts, workers=workers,
                           prefetch=prefetch)
    parts = list(embedded_batches(backend, batches, flip=flip, ds=ds))
    emb = np.concatenate([p.embeddings for p in parts])
    flips = np.concatenate([p.flip for p in parts if p.flip is not None]) if flip else None
    return emb, flips
