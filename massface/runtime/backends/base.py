"""What every inference backend offers, and the batching rules they share.

A backend loads one model file and runs it on batches of preprocessed images. It reports
what it learnt from the model (:class:`ModelInfo`): the input's name, layout and size,
whether the batch dimension is dynamic, fixed, or a set of gears (Ascend dynamic batch),
and the output's name, dtype and width. :meth:`Backend.embed` takes NHWC float32 batches
of any size and takes care of layout, padding to a size the model accepts (the padding
rows are dropped again) and conversion of the output to float32. :meth:`Backend.embed_many`
does the same for a stream of batches, keeping up to :attr:`Backend.in_flight` model calls
running at once on backends with asynchronous requests (the subclass hooks ``_start`` /
``_ready`` / ``_collect``); synchronous backends run each call at once, in order.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.registry import Registry

DYNAMIC = "dynamic"
STATIC = "static"
GEARS = "gears"

#: ``--precision``: the arithmetic a backend runs the model in. Each backend lists the ones
#: it runs (:attr:`Backend.precisions`); fp32 everywhere, so results are exact unless asked.
PRECISIONS: Registry[str] = Registry("precision")
PRECISIONS.register("fp32", "fp32", description="float32, exact (default)")
PRECISIONS.register("bf16", "bf16", description="bfloat16, OpenVINO on CPUs with native bf16")
PRECISIONS.register("fp16", "fp16", description="float16, OpenVINO on CPUs with native fp16")

#: ``--device`` (ONNX Runtime and OpenVINO; an Ascend device is ``--device-id``).
DEVICES: Registry[str] = Registry("device")
DEVICES.register("auto", "auto", description="the backend's choice: ONNX Runtime's CUDA "
                 "where installed, else the CPU")
DEVICES.register("cpu", "cpu", description="the CPU")
DEVICES.register("cuda", "cuda", description="ONNX Runtime's CUDA provider")


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


@dataclass
class _Call:
    """One model call of :meth:`Backend.embed_many`: started, then collected."""

    handle: Any
    fed: int  # rows fed (after padding)
    rows: int  # real rows among them
    out: np.ndarray | None = None


@dataclass
class _Job:
    """One batch of :meth:`Backend.embed_many`: its calls, and when it was handed in."""

    started: float
    calls: list[_Call] = field(default_factory=list)


#: BackendOptions fields and the command-line options that set them.
OPTION_FLAGS = {"threads": "--threads", "device": "--device", "device_id": "--device-id",
                "input_name": "--input-name", "output_name": "--output-name",
                "streams": "--streams"}


@dataclass(frozen=True)
class BackendOptions:
    """What the caller asks of a backend: the one object every backend takes. A backend
    names the fields it honours (:attr:`Backend.options`); ``open_backend`` refuses a
    field set to anything but its default for a backend that would ignore it."""

    threads: int | None = None  # intra-op threads (None: the runtime's default)
    device: str = "auto"
    device_id: int = 0
    input_name: str | None = None
    output_name: str | None = None
    precision: str = "fp32"  # checked against Backend.precisions
    streams: int | None = None  # parallel request streams
    batch_size: int | None = None  # a hint: the batch the caller will feed

    def given(self) -> list[str]:
        """The fields of :data:`OPTION_FLAGS` set to anything but their default."""
        default = BackendOptions()
        return [f for f in OPTION_FLAGS if getattr(self, f) != getattr(default, f)]


class Backend(ABC):
    """One loaded model. Use as a context manager, or call :meth:`close`."""

    name = "backend"
    suffixes: tuple[str, ...] = ()  # model files this backend runs (``--backend auto``)
    precisions: tuple[str, ...] = ("fp32",)  # ``--precision`` values it runs
    precision = "fp32"  # the one this instance runs
    options: frozenset[str] = frozenset()  # the BackendOptions fields it honours
    choice = ""  # how open_backend chose it ("auto: ..." or "--backend NAME"), for the record
    in_flight = 1  # model calls :meth:`embed_many` keeps started at once
    info: ModelInfo

    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Run a batch already in the model's layout and an accepted size; return [n, ...]."""

    def _start(self, batch: np.ndarray) -> Any:
        """Start a model call (same input as :meth:`_run`); :meth:`_collect` takes the result.

        Synchronous backends run it here. At most :attr:`in_flight` calls are started and
        not yet collected, and they are collected in the order they were started."""
        return self._run(batch)

    def _ready(self, handle: Any) -> bool:
        """Whether the call ``handle`` has finished (collecting it would not wait)."""
        return True

    def _collect(self, handle: Any) -> np.ndarray:
        """The output of a started call, waiting for it; an array the caller may keep."""
        return handle

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
        if batch.shape[0] == 0:
            return self._empty()
        parts = [self._finish(self._run(feed), feed.shape[0], rows)
                 for feed, rows in self._feeds(batch)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def embed_many(self, batches: Iterable[np.ndarray],
                   latencies: list[float] | None = None) -> Iterator[np.ndarray]:
        """:meth:`embed` of each batch, in order, with up to :attr:`in_flight` calls running.

        The next batch is taken from ``batches`` while earlier ones are still in the
        model. ``latencies`` (if given) gets, per batch that needed the model, the seconds
        from handing it in to its result (for a synchronous backend: the call's time)."""
        jobs: deque[_Job] = deque()
        running: deque[_Call] = deque()
        for batch in batches:
            job = _Job(time.perf_counter())
            jobs.append(job)
            for feed, rows in self._feeds(batch):
                while len(running) >= max(1, self.in_flight):
                    self._wait(running.popleft())
                call = _Call(self._start(feed), feed.shape[0], rows)
                job.calls.append(call)
                running.append(call)
            while jobs and all(c.out is not None or self._ready(c.handle)
                               for c in jobs[0].calls):
                yield self._job_result(jobs.popleft(), running, latencies)
        while jobs:
            yield self._job_result(jobs.popleft(), running, latencies)

    def _wait(self, call: _Call) -> None:
        call.out = self._finish(self._collect(call.handle), call.fed, call.rows)

    def _job_result(self, job: _Job, running: deque[_Call],
                    latencies: list[float] | None) -> np.ndarray:
        for call in job.calls:  # the oldest job's calls are the oldest running ones
            if call.out is None:
                self._wait(running.popleft())
        if latencies is not None and job.calls:
            latencies.append(time.perf_counter() - job.started)
        if not job.calls:
            return self._empty()
        parts = [c.out for c in job.calls if c.out is not None]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.info.output_dim or 0), np.float32)

    def _feeds(self, batch: np.ndarray) -> Iterator[tuple[np.ndarray, int]]:
        """Model-ready pieces of ``batch``: (padded, in the model's layout and input dtype),
        rows."""
        if (self.info.input_dtype == "uint8") != (batch.dtype == np.uint8):
            raise InputError(f"{self.info.path}: the model takes {self.info.input_dtype} "
                             f"input but was given {batch.dtype} images")
        limit = self.info.max_batch or max(1, batch.shape[0])
        for i in range(0, batch.shape[0], limit):
            part = batch[i:i + limit]
            n = part.shape[0]
            size = self.info.feed_size(n)
            if size != n:
                pad = np.zeros((size - n, *part.shape[1:]), part.dtype)
                part = np.concatenate([part, pad])
            if self.info.layout == "NCHW":
                part = part.transpose(0, 3, 1, 2)
            yield np.ascontiguousarray(part, dtype=self.info.input_dtype), n

    def _finish(self, out: np.ndarray, size: int, n: int) -> np.ndarray:
        """The model's output for a fed batch of ``size``: its first ``n`` rows, float32."""
        out = np.asarray(out)
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
