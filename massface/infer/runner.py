"""One ``massface-infer`` run: load the model, stream batches through it, write results.

Decoding runs on a thread pool ahead of the model (:mod:`massface.runtime.loader`);
completed chunks go to ``OUTDIR/.partial`` (:mod:`massface.infer.resume`) so an
interrupted run continues where it stopped; the final files are written only at the end
(:mod:`massface.infer.outputs`). The summary mirrors ais_bench's: images, batches, wall
time, images/s, per-batch latency percentiles.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError, MassfaceError
from massface.infer.outputs import (
    MSAME_RUN_DIR,
    WRITERS,
    FinalResult,
    completed_fingerprint,
    remove_outputs,
)
from massface.infer.resume import PARTIAL, Chunk, PartialStore, add_counts
from massface.io import check_output_dir, keys_sha256, sha256_file
from massface.outdir import COMPLETE, RESUME, ResumableFolder
from massface.progress import ProgressBar
from massface.registry import Registry
from massface.runtime.backends import Backend, open_backend
from massface.runtime.loader import LoaderOptions, iter_batches
from massface.runtime.pipeline import PipelineStats, embedded_batches, latency_percentiles
from massface.runtime.preprocess import Preprocessing, PreprocessingChoice, choose_preprocessing
from massface.runtime.sources import Dataset


@dataclass
class InferOptions:
    """Everything a run needs besides the model and the dataset."""

    out: Path
    output_format: str = "embeddings"
    batch_size: int = 32
    threads: int | None = None  # runtime intra-op threads (None: the runtime's default)
    workers: int = 1  # decode threads
    prefetch: int = 3  # batches decoded ahead
    device: str = "auto"
    device_id: int = 0
    backend: str = "auto"  # a BACKENDS name, or auto (choose_backend: the fastest exact engine)
    precision: str = "fp32"  # a PRECISIONS name the backend runs
    streams: int | None = None  # OpenVINO request streams (None: the backend's default)
    input_name: str | None = None
    output_name: str | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)  # explicit overrides
    flip: bool = False
    skip_bad: bool = False
    overwrite: bool = False
    shard: tuple[int, int] | None = None  # (index, count), index 0-based
    chunk_batches: int = 16
    progress: bool = True
    align: Any = None  # massface.align.infer_step.AlignStep (--align)
    engine: str = "local"  # an EXECUTION_ENGINES name: who embeds the chunks
    ray_address: str | None = None  # --engine ray: the cluster (None: RAY_ADDRESS or local)


@dataclass
class InferSummary:
    """Throughput and latency of a run, like ais_bench's summary."""

    images: int = 0
    batches: int = 0
    wall_s: float = 0.0
    images_per_s: float = 0.0
    model_load_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    input_wait_s: float = 0.0  # time the model waited for decoded batches
    resumed_rows: int = 0
    already_complete: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class InferResult:
    """Where the run wrote, and how it went."""

    out: Path
    summary: InferSummary
    skipped: list[tuple[int, str]]
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "summary": self.summary.to_dict(),
                "skipped": [list(s) for s in self.skipped], "meta": self.meta}


def parse_shard(text: str, env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N; ``"auto"`` / ``"auto/N"``: K (and N) from a
    SLURM job array or a Kubernetes indexed Job (:func:`shard_from_env`)."""
    if text == "auto" or text.startswith("auto/"):
        return shard_from_env(text, os.environ if env is None else env)[0]
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise InputError(f"--shard {text!r}: expected K/N, e.g. 0/4") from None
    if n < 1 or not 0 <= k < n:
        raise InputError(f"--shard {text!r}: K counts from 0 and must be below N (0/{n} .. "
                         f"{max(n - 1, 0)}/{n})")
    return k, n


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InputError(f"--shard auto: ${name}={value!r} is not a whole number") from None


def shard_from_env(text: str, env: Mapping[str, str]) -> tuple[tuple[int, int], str]:
    """``--shard auto[/N]``: (K, N) and where they came from.

    SLURM job array: K = ``SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN``, N =
    ``SLURM_ARRAY_TASK_COUNT`` (arrays with a step or gaps, where ids are not K + min, are
    refused). Kubernetes indexed Job: K = ``JOB_COMPLETION_INDEX``; the Job does not tell
    its completions, so N must be given (``auto/N``). A given N must agree with SLURM's."""
    given = None
    if text != "auto":
        try:
            given = int(text[5:])
        except ValueError:
            raise InputError(f"--shard {text!r}: expected auto or auto/N, e.g. auto/8") from None
    task = _env_int(env, "SLURM_ARRAY_TASK_ID")
    if task is not None:
        low = _env_int(env, "SLURM_ARRAY_TASK_MIN") or 0
        high = _env_int(env, "SLURM_ARRAY_TASK_MAX")
        count = _env_int(env, "SLURM_ARRAY_TASK_COUNT")
        if count is None and high is not None:
            count = high - low + 1
        if count is None:
            count = given
        if count is None:
            raise InputError("--shard auto: SLURM_ARRAY_TASK_ID is set but not the array's "
                             "size (SLURM_ARRAY_TASK_COUNT); give it: --shard auto/N")
        if high is not None and high - low + 1 != count:
            raise InputError(f"--shard auto: the SLURM array {low}-{high} has {count} tasks "
                             "(a step or gaps): task ids do not number the shards; use "
                             "--array=0-(N-1) or --shard K/N")
        if given is not None and given != count:
            raise InputError(f"--shard {text}: the SLURM array has {count} tasks, not {given}")
        shard, source = (task - low, count), "SLURM_ARRAY_TASK_ID"
    elif (index := _env_int(env, "JOB_COMPLETION_INDEX")) is not None:
        if given is None:
            raise InputError("--shard auto: a Kubernetes indexed Job gives the index "
                             "(JOB_COMPLETION_INDEX) but not the count; give it: --shard "
                             "auto/N with N the Job's completions")
        shard, source = (index, given), "JOB_COMPLETION_INDEX"
    else:
        raise InputError(f"--shard {text}: neither SLURM_ARRAY_TASK_ID (a SLURM job array) "
                         "nor JOB_COMPLETION_INDEX (a Kubernetes indexed Job) is set; give "
                         "--shard K/N")
    k, n = shard
    if n < 1 or not 0 <= k < n:
        raise InputError(f"--shard {text}: {source} gives shard {k} of {n}, outside 0..{n - 1}")
    return shard, source


def shard_bounds(total: int, shard: tuple[int, int] | None) -> tuple[int, int]:
    """Rows of the K-th of N contiguous, disjoint slices covering ``0..total``."""
    if shard is None:
        return 0, total
    k, n = shard
    return total * k // n, total * (k + 1) // n


def _fingerprint(model: Path, info: dict[str, Any], precision: str, ds: Dataset,
                 prep: Preprocessing, opts: InferOptions, chunk_rows: int) -> dict[str, Any]:
    return {
        "model_sha256": sha256_file(model), "model_input": info["input_name"],
        "model_output": info["output_name"], "dataset": ds.kind,
        "keys_sha256": keys_sha256(ds.keys), "rows": len(ds.keys),
        "preprocessing": prep.to_dict() if not ds.tensors else "input-bins",
        "flip": opts.flip, "batch_size": opts.batch_size,
        "chunk_rows": chunk_rows, "shard": list(opts.shard) if opts.shard else None,
        "format": opts.output_format, "backend": info["backend"], "precision": precision,
        **({"align": opts.align.fingerprint()} if opts.align is not None else {}),
    }


def _check_options(opts: InferOptions, ds: Dataset) -> None:
    check_output_dir(opts.out, "--out")
    WRITERS.get(opts.output_format, "--format")
    EXECUTION_ENGINES.get(opts.engine, "--engine")
    if opts.engine == "ray":
        if opts.align is not None:
            raise InputError("--align runs in the local engine only; align first with "
                             "`massface-align SRC --out DST --engine ray`, then embed DST "
                             "with --images")
        from massface.runtime.ray_pool import require_ray

        require_ray()  # a missing extra is said before the model loads
    if opts.batch_size < 1 or opts.chunk_batches < 1:
        raise InputError("--batch-size and --chunk-batches must be at least 1")
    if opts.output_format == "msame" and opts.flip:
        raise InputError("--format msame has no place for flip embeddings; use the default "
                         "format with --flip")
    if opts.output_format == "msame" and opts.shard is not None:
        raise InputError("--shard writes embedding folders; merge them with "
                         "`massface-infer merge ... --format msame`")
    if opts.align is not None and ds.kind in ("input-bins", "insightface"):
        raise InputError(f"{ds.root}: --align needs photos (--lfw, --images or --list), not "
                         f"{ds.kind} inputs")
    if ds.tensors and opts.flip:
        raise InputError(f"{ds.root}: --flip needs images; preprocessed input bins cannot be "
                         "mirrored reliably (their layout is the model's)")


def run_inference(model: str | os.PathLike[str], ds: Dataset, opts: InferOptions,
                  backend: Backend | None = None) -> InferResult:
    """Embed ``ds`` with ``model`` and write ``opts.out`` in ``opts.output_format``.

    ``opts.out`` is locked (:mod:`massface.lock`) before the model is even loaded: a second
    run on the same folder stops at once instead of racing this one."""
    _check_options(opts, ds)
    model = Path(model)
    with _folder(opts.out).lock():
        t_load = time.perf_counter()
        own_backend = backend is None
        if backend is None:
            backend = open_backend(model, backend=opts.backend, threads=opts.threads,
                                   device=opts.device, device_id=opts.device_id,
                                   input_name=opts.input_name, output_name=opts.output_name,
                                   precision=opts.precision, streams=opts.streams,
                                   batch_size=opts.batch_size)
        try:
            load_s = time.perf_counter() - t_load
            return _run(model, ds, opts, backend, load_s)
        finally:
            if own_backend:
                backend.close()


def _run(model: Path, ds: Dataset, opts: InferOptions, backend: Backend,
         load_s: float) -> InferResult:
    info = backend.info
    if info.channels not in (1, 3):
        raise InputError(f"{model}: input has {info.channels} channels; images have 1 or 3")
    choice: PreprocessingChoice = choose_preprocessing(model, opts.preprocessing, info.size,
                                                       info.layout)
    pixels = info.input_dtype == "uint8"  # AIPP: the model normalises raw pixels itself
    wanted = "uint8 pixels (AIPP)" if pixels else "float32 preprocessed images"
    if ds.tensors and ds.tensor_dtype not in (None, wanted.split()[0]):
        raise InputError(f"{model}: takes {wanted}; {ds.root} holds {ds.tensor_dtype} input "
                         f"bins: make them with `massface-infer prepare-bins --model {model}`")
    chunk_rows = opts.batch_size * opts.chunk_batches
    start, stop = shard_bounds(len(ds.keys), opts.shard)
    if start == stop:
        raise InputError(f"{ds.root}: nothing to embed (shard {opts.shard} of {len(ds.keys)} "
                         "images is empty)")
    fingerprint = _fingerprint(model, info.to_dict(), backend.precision, ds,
                               choice.preprocessing, opts, chunk_rows)
    summary = InferSummary(model_load_s=round(load_s, 3))
    folder = _folder(opts.out)
    finished = (completed_fingerprint(opts.out, opts.output_format)
                if opts.out.is_dir() else None)
    state = folder.prepare(fingerprint, finished, overwrite=opts.overwrite,
                           remove_outputs=lambda: remove_outputs(opts.out))
    if state == COMPLETE:
        summary.already_complete = True
        return InferResult(opts.out, summary, [], {"fingerprint": fingerprint})
    store = PartialStore(opts.out, fingerprint)
    chunks = store.complete_chunks() if state == RESUME else []
    try:
        if opts.align is not None:
            opts.align.start(store.dir, info.size, info.channels)
        loader_opts = LoaderOptions(choice.preprocessing, info.channels, opts.skip_bad,
                                    pixels=pixels, align=opts.align)
        embed = EXECUTION_ENGINES.get(opts.engine, "--engine")
        engine = embed(backend, model, ds, opts, loader_opts, store, chunks, start, stop,
                       summary)
    except MassfaceError:
        if not chunks:  # refused before any chunk was saved: leave no stub to resume
            store.remove()
        raise

    result = _assemble(store, chunks, ds, opts, start, stop)
    result.summary = {**summary.to_dict(), "batch_size": opts.batch_size,
                      "threads": opts.threads, "workers": opts.workers,
                      "backend": info.backend, "backend_choice": backend.choice,
                      "precision": backend.precision, "streams": info.extra.get("streams"),
                      "model": str(model), "engine": engine}
    if opts.shard is not None:
        result.shard = {"index": opts.shard[0], "count": opts.shard[1], "start": start,
                        "stop": stop, "total": len(ds.keys),
                        "keys_sha256": fingerprint["keys_sha256"]}
    result.meta = {
        "model": {"path": str(model), "sha256": fingerprint["model_sha256"],
                  **info.to_dict()},
        "preprocessing": choice.to_dict() if not ds.tensors else "input-bins (as stored)",
        "fit": _fit_record(choice, ds, opts, chunks),
        "dataset": ds.describe(), "batch_size": opts.batch_size,
        "backend": info.backend, "backend_choice": backend.choice,
        "precision": backend.precision, "engine": engine["name"], "fingerprint": fingerprint,
    }
    if opts.align is not None:
        result.meta["align"] = opts.align.finish(opts.out, store.dir, result.keys)
    WRITERS.get(opts.output_format).write(opts.out, result)
    folder.finish()
    return InferResult(opts.out, summary, result.skipped, result.meta)


def _fit_record(choice: PreprocessingChoice, ds: Dataset, opts: InferOptions,
                chunks: list[Chunk]) -> dict | str:
    """What was done to images of another size than the model's, and who chose it."""
    if ds.tensors:
        return "not applied: preprocessed input bins are fed as stored"
    if opts.align is not None:
        return "not applied: --align warps each face straight to the model's size"
    fitted = add_counts(c.fitted for c in chunks)
    return {**choice.fit_record(), "images_fitted": sum(fitted.values()),
            "fitted_from": fitted}


def _folder(out: Path) -> ResumableFolder:
    """``--out`` of massface-infer: its writes may leave temporaries in OUT and outputs/."""
    return ResumableFolder(out, "massface-infer", PARTIAL, temp_dirs=("", MSAME_RUN_DIR))


def _embed(backend: Backend, model: Path, ds: Dataset, opts: InferOptions,
           loader_opts: LoaderOptions, store: PartialStore, chunks: list[Chunk], start: int,
           stop: int, summary: InferSummary) -> dict[str, Any]:
    """Embed rows from the last complete chunk to ``stop``, saving each chunk as it fills
    (in this process: decode threads feeding ``backend``)."""
    chunk_rows = opts.batch_size * opts.chunk_batches
    resume_row = chunks[-1].stop if chunks else start
    summary.resumed_rows = resume_row - start
    progress = ProgressBar("embedding", stop - start, completed=resume_row - start,
                           enabled=opts.progress)
    stats = PipelineStats()
    acc: list[np.ndarray] = []
    acc_flip: list[np.ndarray] = []
    good: list[int] = []
    bad: list[tuple[int, str]] = []
    fitted: list[dict[str, int]] = []
    chunk_start, embedded = resume_row, 0
    t0 = time.perf_counter()
    try:
        batches = iter_batches(ds, resume_row, stop, opts.batch_size, loader_opts,
                               workers=opts.workers, prefetch=opts.prefetch)
        for item in embedded_batches(backend, batches, flip=opts.flip, stats=stats, ds=ds,
                                     skip_bad=opts.skip_bad):
            batch = item.batch
            if batch.good:
                acc.append(item.embeddings)
                if item.flip is not None:
                    acc_flip.append(item.flip)
            good += batch.good
            bad += batch.bad
            fitted.append(batch.fitted)
            embedded += len(batch.good)
            if batch.stop - chunk_start >= chunk_rows or batch.stop == stop:
                chunk = Chunk(len(chunks), chunk_start, batch.stop, good, bad,
                              add_counts(fitted))
                dim = backend.info.output_dim or 0
                emb = np.concatenate(acc) if acc else np.zeros((0, dim), np.float32)
                flip = None
                if opts.flip:
                    flip = np.concatenate(acc_flip) if acc_flip else np.zeros_like(emb)
                store.save(chunk, emb, flip)
                chunks.append(chunk)
                acc, acc_flip, good, bad, fitted = [], [], [], [], []
                chunk_start = batch.stop
            progress.update(batch.stop - start)
    finally:
        progress.close()
    wall = time.perf_counter() - t0
    summary.images = embedded
    summary.batches = len(stats.latencies)
    summary.wall_s = round(wall, 3)
    summary.images_per_s = round(embedded / wall, 2) if wall > 0 and embedded else 0.0
    summary.latency_ms = latency_percentiles(stats.latencies)
    summary.input_wait_s = round(stats.input_wait_s, 3)
    return {"name": "local"}


def _embed_on_ray(backend: Backend, model: Path, ds: Dataset, opts: InferOptions,
                  loader_opts: LoaderOptions, store: PartialStore, chunks: list[Chunk],
                  start: int, stop: int, summary: InferSummary) -> dict[str, Any]:
    """The same chunks embedded by a Ray actor pool (:mod:`massface.infer.ray_engine`);
    ``backend`` only describes the model here."""
    from massface.infer.ray_engine import embed_chunks

    return embed_chunks(model, ds, opts, loader_opts, store, chunks, start, stop, summary,
                        backend.info)


# Who embeds a run's chunks; everything before (checks, lock, resume) and after (assembly,
# writers) is shared, so both give the same folder. An engine returns what meta records.
EXECUTION_ENGINES: Registry[Callable[..., dict[str, Any]]] = Registry("execution engine")
EXECUTION_ENGINES.register("local", _embed, description="this process: decode threads + one model")
EXECUTION_ENGINES.register("ray", _embed_on_ray,
                 description="a Ray actor pool, --workers replicas (extra 'ray')")


def _assemble(store: PartialStore, chunks: list[Chunk], ds: Dataset, opts: InferOptions,
              start: int, stop: int) -> FinalResult:
    """Concatenate the chunks' good rows into one (memory-mapped) array."""
    from numpy.lib.format import open_memmap

    if not chunks or chunks[0].start != start or chunks[-1].stop != stop:
        raise RuntimeError(f"{store.dir}: chunks do not cover rows {start}..{stop}")
    rows = [r for c in chunks for r in c.good]
    skipped = [b for c in chunks for b in c.bad]
    if not rows:
        raise InputError(f"{ds.root}: no image could be embedded "
                         f"({len(skipped)} skipped; first: {skipped[0][1] if skipped else '-'})")
    dim = None
    parts: dict[str, np.ndarray] = {}
    for name in ("embeddings", "flip") if opts.flip else ("embeddings",):
        offset = 0
        mm = None
        for c, emb, flip in store.iter_arrays(chunks, opts.flip):
            arr = emb if name == "embeddings" else flip
            assert arr is not None
            if len(c.good) == 0:
                continue
            if mm is None:
                dim = arr.shape[1]
                mm = open_memmap(store.dir / f"assembled-{name}.npy", mode="w+",
                                 dtype=np.float32, shape=(len(rows), dim))
            mm[offset:offset + arr.shape[0]] = arr
            offset += arr.shape[0]
        assert mm is not None and offset == len(rows)
        mm.flush()
        del mm
        parts[name] = np.load(store.dir / f"assembled-{name}.npy", mmap_mode="r")
    return FinalResult(ds, rows, parts["embeddings"], parts.get("flip"), skipped)
