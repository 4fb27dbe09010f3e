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

Fault tolerance is Ray's: a dead actor is restarted (up to :data:`MAX_RESTARTS` times) and
its chunk redone. A bad image follows ``--skip-bad`` inside the actor; any
:class:`massface.errors.MassfaceError` raised there comes back as a value and is raised again
in the driver with its own class and message (exit 2 for bad input, as locally).

Without ``--ray-address`` (or ``RAY_ADDRESS``) a local Ray instance is started, sized to
this machine, with a small object store (:data:`LOCAL_OBJECT_STORE_MB`); it is shut down at
the end. A process that already called ``ray.init`` keeps its own connection.

``MASSFACE_RAY_FAULT`` injects faults for tests: ``die@K:MARKER`` makes the actor that takes
chunk ``K`` exit abruptly, once (``MARKER`` is created first and, once it exists, the chunk
runs normally); ``sleep=S`` sleeps ``S`` seconds before each chunk.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from massface import errors
from massface.errors import InputError, ToolError
from massface.infer.resume import Chunk, PartialStore
from massface.optional import require
from massface.progress import ProgressBar
from massface.runtime.backends import open_backend
from massface.runtime.loader import LoaderOptions, iter_batches
from massface.runtime.pipeline import PipelineStats, embedded_batches, latency_percentiles
from massface.runtime.sources import Dataset

LOCAL_OBJECT_STORE_MB = 256  # chunks are small; the machine is shared
MAX_RESTARTS = 3  # an actor that keeps dying (a crashing image) ends the run, not a loop
FAULT_ENV = "MASSFACE_RAY_FAULT"


def require_ray() -> Any:
    """The ``ray`` module, or exit 2 naming the ``ray`` extra."""
    require("ray.data", extra="ray", purpose="--engine ray", package="ray")
    return require("ray", extra="ray", purpose="--engine ray")


@dataclass
class RaySession:
    """Where the pool runs: a cluster joined by address, or the local default."""

    address: str | None  # None: a local instance started for this run
    started_here: bool
    init_s: float
    cpus: float
    gpus: float
    largest_node_cpus: float

    def describe(self) -> dict[str, Any]:
        return {"address": self.address or "local", "cluster_cpus": self.cpus,
                "cluster_gpus": self.gpus, "init_s": round(self.init_s, 3)}


def connect(address: str | None) -> RaySession:
    """Join ``address`` (else ``RAY_ADDRESS``); without either, start a local instance sized
    to this machine. An existing ``ray.init`` of this process is used as it is."""
    ray = require_ray()
    t0 = time.perf_counter()
    address = address or os.environ.get("RAY_ADDRESS") or None
    started = False
    if not ray.is_initialized():
        quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        if address:
            try:
                ray.init(address=address, **quiet)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise InputError(f"--ray-address {address}: cannot join the Ray cluster "
                                 f"({exc}); start it with `ray start --head` or fix the "
                                 "address") from exc
        else:
            ray.init(address="local", num_cpus=os.cpu_count() or 1,
                     object_store_memory=LOCAL_OBJECT_STORE_MB * 2**20, **quiet)
        started = True
    else:
        address = ray.get_runtime_context().gcs_address
    resources = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    largest = max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0)
    return RaySession(address, started, time.perf_counter() - t0,
                      float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0)),
                      float(largest))


def replica_resources(session: RaySession, replicas: int, threads: int | None,
                      device: str) -> tuple[int, int]:
    """(CPUs, GPUs) per actor: ``--threads`` CPUs (default: the largest node's CPUs shared
    by the replicas), one GPU with ``--device cuda`` or, under ``auto``, when the cluster
    has GPUs. A pool that can never be placed is refused instead of waiting forever."""
    if replicas < 1:
        raise InputError("--workers (replicas with --engine ray) must be at least 1")
    if threads is not None and threads < 1:
        raise InputError("--threads must be at least 1")
    cpus = threads if threads is not None else max(1, int(session.largest_node_cpus) // replicas)
    gpus = 1 if device == "cuda" or (device == "auto" and session.gpus >= 1) else 0
    if cpus > session.largest_node_cpus:
        raise InputError(f"--threads {cpus}: no node of the Ray cluster has that many CPUs "
                         f"(largest: {session.largest_node_cpus:g}); lower --threads")
    if session.started_here and session.address is None and replicas * cpus > session.cpus:
        raise InputError(f"--workers {replicas} x --threads {cpus} CPUs: this machine has "
                         f"{session.cpus:g}; lower --workers or --threads (Ray would wait "
                         "forever for the missing CPUs)")
    if gpus and session.gpus < 1:
        raise InputError("--device cuda: the Ray cluster has no GPU")
    return cpus, gpus


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


class Replica:
    """A Ray actor: one model replica that embeds whole chunks."""

    def __init__(self, spec: ReplicaSpec) -> None:
        if os.path.isdir(spec.cwd):
            os.chdir(spec.cwd)
        self.spec = spec
        self.backend = open_backend(spec.model, **spec.backend)
        self.ready_at = time.time()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"index": [], "result": []}
        for work in batch["work"]:
            _inject_fault(self.spec.fault, work.index)
            out["index"].append(work.index)
            out["result"].append(self._embed(work))
        return out

    def _embed(self, work: _Work) -> dict[str, Any]:
        spec = self.spec
        ds = Dataset(spec.kind, Path(spec.root), work.keys, work.items, tensors=spec.tensors,
                     tensor_dtype=spec.tensor_dtype)
        stats = PipelineStats()
        embs, flips, good, bad = [], [], [], []
        try:
            batches = iter_batches(ds, 0, len(ds.keys), spec.batch_size, spec.loader,
                                   workers=1, prefetch=2)
            for item in embedded_batches(self.backend, batches, flip=spec.flip, stats=stats,
                                         ds=ds, skip_bad=spec.skip_bad):
                embs.append(item.embeddings)
                if item.flip is not None:
                    flips.append(item.flip)
                good += [work.start + r for r in item.batch.good]
                bad += [(work.start + r, m) for r, m in item.batch.bad]
        except errors.MassfaceError as exc:  # bad input: the driver raises it again
            return {"error": type(exc).__name__, "message": str(exc)}
        dim = self.backend.info.output_dim or 0
        emb = np.concatenate(embs) if embs else np.zeros((0, dim), np.float32)
        flip = (np.concatenate(flips) if flips else np.zeros_like(emb)) if spec.flip else None
        return {"embeddings": emb.astype(np.float32, copy=False), "flip": flip, "good": good,
                "bad": bad, "latencies": stats.latencies, "input_wait_s": stats.input_wait_s,
                "ready_at": self.ready_at, "pid": os.getpid()}


def _inject_fault(spec: str | None, index: int) -> None:
    """The test hook of :data:`FAULT_ENV` (see the module's docstring)."""
    for part in (spec or "").split(","):
        if part.startswith("sleep="):
            time.sleep(float(part[6:]))
        elif part.startswith("die@"):
            chunk, marker = part[4:].split(":", 1)
            if int(chunk) == index:
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    continue
                os.close(fd)
                os._exit(1)  # an abrupt death: no exception, no cleanup


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


def _embed(ray: Any, session: RaySession, model: Path, ds: Dataset, opts: Any,
           loader_opts: LoaderOptions, store: PartialStore, chunks: list[Chunk], start: int,
           stop: int, summary: Any, info: Any) -> dict[str, Any]:
    cpus, gpus = replica_resources(session, opts.workers, opts.threads, opts.device)
    spec = ReplicaSpec(
        model=str(model.absolute()),
        backend={"backend": info.backend, "threads": cpus, "device": opts.device,
                 "device_id": opts.device_id, "input_name": info.input_name,
                 "output_name": info.output_name, "precision": opts.precision,
                 "streams": opts.streams, "batch_size": opts.batch_size},
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
    stats, embedded, first_ready, pids = PipelineStats(), 0, None, set()
    progress = ProgressBar("embedding", stop - start, completed=resume_row - start,
                           enabled=opts.progress)
    try:
        for index, res in _results(ray, spec, todo, opts, cpus, gpus):
            if "error" in res:
                raise getattr(errors, res["error"], InputError)(res["message"])
            work = todo[index - todo[0].index]
            chunk = Chunk(index, work.start, work.stop, res["good"],
                          [tuple(b) for b in res["bad"]])
            store.save(chunk, res["embeddings"], res["flip"])
            chunks.append(chunk)
            embedded += len(chunk.good)
            stats.latencies += res["latencies"]
            stats.input_wait_s += res["input_wait_s"]
            first_ready = min(first_ready or res["ready_at"], res["ready_at"])
            pids.add(res["pid"])
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
    engine.update(startup_s=round(session.init_s + startup, 3),
                  total_s=round(session.init_s + t_end - t0, 3), replica_processes=len(pids))
    return engine


def _results(ray: Any, spec: ReplicaSpec, todo: list[_Work], opts: Any, cpus: int,
             gpus: int) -> Any:
    """(chunk index, result) in chunk order, streamed from the actor pool."""
    if not todo:
        return
    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    ctx.execution_options.preserve_order = True  # chunks are saved in order (resume)
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    # Ray Data logs its plan and warns that chunk descriptors are pickled; say nothing.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    data = ray.data.from_items([{"work": w} for w in todo], override_num_blocks=len(todo))
    with warnings.catch_warnings():
        # Bounded restarts have no named parameter yet (Ray 2.60); the extra pins Ray
        # below the release that drops them (see pyproject.toml).
        warnings.simplefilter("ignore", DeprecationWarning)
        mapped = data.map_batches(
            Replica, fn_constructor_kwargs={"spec": spec}, batch_size=1, batch_format="numpy",
            compute=ActorPoolStrategy(size=min(opts.workers, len(todo))), num_cpus=cpus,
            num_gpus=gpus, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)
    try:
        for row in mapped.iter_rows():
            yield int(row["index"]), row["result"]
    except ray.exceptions.RayError as exc:
        raise ToolError(f"{spec.model}: the Ray actor pool failed ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); a replica died more "
                        f"than {MAX_RESTARTS} times or the cluster lost its nodes; the chunks "
                        "saved so far are kept, rerun to continue") from exc

