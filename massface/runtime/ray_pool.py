"""Ray for massface's engines (``--engine ray`` of massface-infer and massface-align).

One way to reach Ray and run whole chunks on an actor pool:

* :func:`require_ray` imports it (a missing package names the ``ray`` extra, exit 2);
* :func:`connect` joins ``--ray-address`` (or ``RAY_ADDRESS``) or starts a local instance
  sized to this machine with a small object store (:data:`LOCAL_OBJECT_STORE_MB`);
* :func:`replica_resources` sizes the replicas and refuses a pool that could never be
  placed (Ray would wait forever for CPUs that do not exist);
* :class:`ChunkActor` + :func:`stream`: each work item (a chunk, with an ``index``) is one
  row of a Ray Dataset; ``map_batches`` hands it to one of the pool's actors and the
  results come back in order (``preserve_order``), streamed, so the caller saves each as
  it arrives. A dead actor is restarted (up to :data:`MAX_RESTARTS` times) and its chunk
  redone; a :class:`massface.errors.MassfaceError` raised in an actor comes back as a
  value and is raised again in the driver with its class and message.

``MASSFACE_RAY_FAULT`` injects faults for tests: ``die@K:MARKER`` makes the actor that takes
chunk ``K`` exit abruptly, once (``MARKER`` is created first and, once it exists, the chunk
runs normally); ``sleep=S`` sleeps ``S`` seconds before each chunk.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from massface import errors
from massface.errors import InputError, ToolError
from massface.optional import require

LOCAL_OBJECT_STORE_MB = 256  # chunks are small; the machine is shared
MAX_RESTARTS = 3  # an actor that keeps dying (a crashing image) ends the run, not a loop
FAULT_ENV = "MASSFACE_RAY_FAULT"
WORKER_NICENESS_ENV = "RAY_worker_niceness"  # Ray's own setting (default 15)


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
                     object_store_memory=LOCAL_OBJECT_STORE_MB * 2**20,
                     _system_config=local_system_config(), **quiet)
        started = True
    else:
        address = ray.get_runtime_context().gcs_address
    resources = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    largest = max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0)
    return RaySession(address, started, time.perf_counter() - t0,
                      float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0)),
                      float(largest))


def local_system_config() -> dict[str, Any]:
    """Ray settings of the local instance massface starts (not of a cluster it joins).

    Ray starts its workers at niceness 15 (``worker_niceness``) so that a node's raylet
    stays responsive; on one machine whose job is this pool, that hands CPU from the
    replicas to the driver's Ray Data scheduling loop (about 10% of a core, at niceness 0).
    Measured on 2 cores (``bench/bench_ray.py``, quiet, 3 rounds): the pipeline rose from
    0.82-0.84x to 0.97-0.98x the local engine's with the replicas at the driver's priority. A
    ``RAY_worker_niceness`` in the environment is the user's and wins."""
    if os.environ.get(WORKER_NICENESS_ENV) is not None:
        return {}
    return {"worker_niceness": 0}


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


class ChunkActor:
    """A Ray actor that handles whole chunks (``work`` objects with an ``index``), one
    :meth:`process` call each; subclasses load their model in ``__init__``. A
    :class:`massface.errors.MassfaceError` comes back as a value (see :func:`stream`)."""

    fault: str | None = None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"index": [], "result": []}
        for work in batch["work"]:
            _inject_fault(self.fault, work.index)
            try:
                result = self.process(work)
            except errors.MassfaceError as exc:  # bad input: the driver raises it again
                result = {"error": [c.__name__ for c in type(exc).__mro__],
                          "message": str(exc)}
            out["index"].append(work.index)
            out["result"].append(result)
        return out

    def process(self, work: Any) -> dict[str, Any]:
        raise NotImplementedError


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


def stream(ray: Any, actor: type[ChunkActor], spec: Any, todo: list[Any], replicas: int,
           cpus: int, gpus: int, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(work index, result) for each of ``todo``, in order, streamed from a pool of
    ``replicas`` actors ``actor(spec)``; an error a chunk returned is raised here with its
    own class and message."""
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
            actor, fn_constructor_kwargs={"spec": spec}, batch_size=1, batch_format="numpy",
            compute=ActorPoolStrategy(size=min(replicas, len(todo))), num_cpus=cpus,
            num_gpus=gpus, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)
    try:
        for row in mapped.iter_rows():
            res = row["result"]
            if "error" in res:  # the class itself, or its nearest base in massface.errors
                cls = next(c for n in res["error"]
                           if isinstance(c := getattr(errors, n, None), type))
                raise cls(res["message"])
            yield int(row["index"]), res
    except ray.exceptions.RayError as exc:
        raise ToolError(f"{what}: the Ray actor pool failed ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); a replica died more "
                        f"than {MAX_RESTARTS} times or the cluster lost its nodes; the chunks "
                        "saved so far are kept, rerun to continue") from exc
