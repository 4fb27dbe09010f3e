"""``massface-infer --engine ray``: the same run, its chunks embedded by a pool of Ray actors.

The driver (the ``massface-infer`` process) does everything it does locally: it checks the
options, locks ``--out``, opens the model once for its description (input, size,
preprocessing, fingerprint), resumes from ``OUT/.partial`` and writes the final folder.
Only the embedding of the remaining chunks moves: each chunk (``--batch-size x
--chunk-batches`` rows, the unit of resumption) is one row of a Ray Dataset, and
``map_batches`` sends it to one of ``--workers`` actors, each holding one model replica
(``--threads`` CPUs, a GPU where the backend runs on one). An actor decodes its chunk with
massface's own decoder (not ``ray.data.read_images``) in batches of ``--batch-size`` and
returns the embeddings; the driver receives chunks in order (``preserve_order``) and saves
each to ``OUT/.partial`` as it arrives, so memory holds a few chunks whatever the dataset's
size and a killed driver resumes after the last saved chunk.

Fault tolerance is Ray's (:mod:`massface.runtime.ray_pool`): a dead actor is restarted and its
chunk redone. A bad image follows ``--skip-bad`` inside the actor; any
:class:`massface.errors.MassfaceError` raised there comes back as a value and is raised again
in the driver with its own class and message (exit 2 for bad input, as locally).

Without ``--ray-address`` (or ``RAY_ADDRESS``) a local Ray instance is started, sized to
this machine; it is shut down at the end. A process that already called ``ray.init``
keeps its own connection.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from massface.infer.resume import Chunk, PartialStore, add_counts
from massface.progress import ProgressBar
from massface.runtime.backends import BACKENDS, open_backend
from massface.runtime.loader import LoaderOptions, iter_batches
from massface.runtime.pipeline import PipelineStats, embedded_batches, latency_percentiles
from massface.runtime.ray_pool import (
    FAULT_ENV,
    ChunkActor,
    RaySession,
    connect,
    replica_resources,
    require_ray,
    stream,
)
from massface.runtime.sources import Dataset


@dataclass
class _Work:
    """One chunk to embed: its rows, and their items and keys (so an actor needs no copy
    of the whole dataset)."""

    index: int
    start: int
    stop: int
    items: list[Any]
    keys: list[str]


@dataclass
class ReplicaSpec:
    """What every actor needs to rebuild the local pipeline."""

    model: str
    backend: dict[str, Any]  # open_backend keyword arguments
    kind: str
    root: str
    tensors: bool
    tensor_dtype: str | None
    loader: LoaderOptions
    batch_size: int
    flip: bool
    skip_bad: bool
    cwd: str  # relative dataset paths are the driver's: resolve them from its folder
    fault: str | None = None


class Replica(ChunkActor):
    """One model replica that embeds whole chunks."""

    def __init__(self, spec: ReplicaSpec) -> None:
        if os.path.isdir(spec.cwd):
            os.chdir(spec.cwd)
        self.spec = spec
        self.fault = spec.fault
        self.backend = open_backend(spec.model, **spec.backend)
        self.ready_at = time.time()

    def process(self, work: _Work) -> dict[str, Any]:
        started_at = time.time()
        spec = self.spec
        ds = Dataset(spec.kind, Path(spec.root), work.keys, work.items, tensors=spec.tensors,
                     tensor_dtype=spec.tensor_dtype)
        stats = PipelineStats()
        embs, flips, good, bad, fitted = [], [], [], [], []
        batches = iter_batches(ds, 0, len(ds.keys), spec.batch_size, spec.loader,
                               workers=1, prefetch=2)
        for item in embedded_batches(self.backend, batches, flip=spec.flip, stats=stats,
                                     ds=ds, skip_bad=spec.skip_bad):
            embs.append(item.embeddings)
            if item.flip is not None:
                flips.append(item.flip)
            good += [work.start + r for r in item.batch.good]
            bad += [(work.start + r, m) for r, m in item.batch.bad]
            fitted.append(item.batch.fitted)
        dim = self.backend.info.output_dim or 0
        emb = np.concatenate(embs) if embs else np.zeros((0, dim), np.float32)
        flip = (np.concatenate(flips) if flips else np.zeros_like(emb)) if spec.flip else None
        return {"embeddings": emb.astype(np.float32, copy=False), "flip": flip, "good": good,
                "bad": bad, "fitted": add_counts(fitted), "latencies": stats.latencies,
                "input_wait_s": stats.input_wait_s,
                "ready_at": self.ready_at, "pid": os.getpid(), "started_at": started_at,
                "finished_at": time.time(), "niceness": os.nice(0)}


def embed_chunks(model: Path, ds: Dataset, opts: Any, loader_opts: LoaderOptions,
                 store: PartialStore, chunks: list[Chunk], start: int, stop: int,
                 summary: Any, backend_info: Any) -> dict[str, Any]:
    """Embed rows from the last complete chunk to ``stop`` on a Ray actor pool, saving each
    chunk to ``store`` in order; fills ``summary`` like the local engine. Returns what
    ``meta.json`` records about the engine."""
    ray = require_ray()
    session = connect(opts.ray_address)
    try:
        return _embed(ray, session, model, ds, opts, loader_opts, store, chunks, start, stop,
                      summary, backend_info)
    finally:
        if session.started_here:
            ray.shutdown()


def _work_items(ds: Dataset, chunks: list[Chunk], start: int, stop: int,
                chunk_rows: int) -> list[_Work]:
    resume = chunks[-1].stop if chunks else start
    bounds = [(s, min(s + chunk_rows, stop)) for s in range(resume, stop, chunk_rows)]
    return [_Work(len(chunks) + i, s, e, ds.items[s:e], ds.keys[s:e])
            for i, (s, e) in enumerate(bounds)]


def _replica_backend(info: Any, opts: Any, cpus: int) -> dict[str, Any]:
    """open_backend arguments of a replica: the backend the driver loaded, with the options
    it honours (the user's were checked when the driver loaded it; the threads and the
    tensor names here are the driver's own choices, so only those it takes are passed)."""
    cls = BACKENDS.get(info.backend)
    asked = {"threads": cpus, "device": opts.device, "device_id": opts.device_id,
             "input_name": info.input_name, "output_name": info.output_name,
             "streams": opts.streams}
    return {"backend": info.backend, "precision": opts.precision,
            "batch_size": opts.batch_size,
            **{k: v for k, v in asked.items() if k in cls.options}}


def _embed(ray: Any, session: RaySession, model: Path, ds: Dataset, opts: Any,
           loader_opts: LoaderOptions, store: PartialStore, chunks: list[Chunk], start: int,
           stop: int, summary: Any, info: Any) -> dict[str, Any]:
    cpus, gpus = replica_resources(session, opts.workers, opts.threads, opts.device)
    spec = ReplicaSpec(
        model=str(model.absolute()),
        backend=_replica_backend(info, opts, cpus),
        kind=ds.kind, root=str(ds.root), tensors=ds.tensors, tensor_dtype=ds.tensor_dtype,
        loader=loader_opts, batch_size=opts.batch_size, flip=opts.flip,
        skip_bad=opts.skip_bad, cwd=os.getcwd(), fault=os.environ.get(FAULT_ENV))
    chunk_rows = opts.batch_size * opts.chunk_batches
    todo = _work_items(ds, chunks, start, stop, chunk_rows)
    engine = {"name": "ray", "ray_version": ray.__version__, **session.describe(),
              "replicas": opts.workers, "cpus_per_replica": cpus, "gpus_per_replica": gpus,
              "chunks": len(todo)}
    resume_row = todo[0].start if todo else stop
    summary.resumed_rows = resume_row - start
    t0 = time.perf_counter()
    stats, embedded, first_ready, pids, nice = PipelineStats(), 0, None, set(), set()
    spans: list[tuple[float, float]] = []  # (start, end) of each chunk in its replica
    progress = ProgressBar("embedding", stop - start, completed=resume_row - start,
                           enabled=opts.progress)
    try:
        for index, res in stream(ray, Replica, spec, todo, opts.workers, cpus, gpus,
                                 spec.model):
            work = todo[index - todo[0].index]
            chunk = Chunk(index, work.start, work.stop, res["good"],
                          [tuple(b) for b in res["bad"]], res["fitted"])
            store.save(chunk, res["embeddings"], res["flip"])
            chunks.append(chunk)
            embedded += len(chunk.good)
            stats.latencies += res["latencies"]
            stats.input_wait_s += res["input_wait_s"]
            first_ready = min(first_ready or res["ready_at"], res["ready_at"])
            pids.add(res["pid"])
            nice.add(res["niceness"])
            spans.append((res["started_at"], res["finished_at"]))
            progress.update(work.stop - start)
    finally:
        progress.close()
    t_end = time.perf_counter()
    # Start-up: joining Ray, then until the first replica has loaded its model.
    wall_clock_t0 = time.time() - (t_end - t0)
    startup = max(0.0, (first_ready or wall_clock_t0) - wall_clock_t0)
    summary.images = embedded
    summary.batches = len(stats.latencies)
    summary.wall_s = round(max(t_end - t0 - startup, 1e-9), 3)
    summary.images_per_s = round(embedded / summary.wall_s, 2) if embedded else 0.0
    summary.latency_ms = latency_percentiles(stats.latencies)
    summary.input_wait_s = round(stats.input_wait_s, 3)
    if spans and first_ready is not None:  # replicas working, or waiting for Ray Data
        engine.update(first_chunk_after_ready_s=round(min(a for a, _ in spans) - first_ready,
                                                      3),
                      replica_busy_s=round(sum(b - a for a, b in spans), 3))
    engine.update(startup_s=round(session.init_s + startup, 3),
                  total_s=round(session.init_s + t_end - t0, 3), replica_processes=len(pids),
                  replica_niceness=sorted(nice))
    return engine
