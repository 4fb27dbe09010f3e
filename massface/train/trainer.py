"""The training loop behind ``massface-train``.

One run = one folder ``<work_dir>/<name>/`` (:mod:`massface.train.run_folder`: config
snapshot, checkpoints, ``summary.json``) watched by monitors
(:mod:`massface.train.callbacks`: ``metrics.csv``, ``mining.csv``, ``validation.jsonl``,
TensorBoard ``logs/``, warnings, the progress bar), trained by one compiled step
(:mod:`massface.train.step`) on the devices :mod:`massface.train.devices` chose.

Batch ``i`` and every random draw in step ``i`` are functions of ``(seed, i)``, so
stopping and resuming gives the same weights as an uninterrupted run. A non-finite loss
stops the run without saving (the last good checkpoint stays the latest); Ctrl-C /
SIGTERM save a checkpoint at the current step and stop.
"""

from __future__ import annotations

import contextlib
import math
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from massface.errors import InputError
from massface.lock import folder_lock
from massface.train.callbacks import (
    Callback,
    CollapseWarning,
    MetricsLog,
    MiningLog,
    NoTripletWarning,
    Progress,
    RunLog,
    Verification,
    summary_writer,
)
from massface.train.config import ExperimentConfig
from massface.train.devices import (
    is_chief,
    make_strategy,
    npu_needs_loss_scaling,
    npu_overflow_check,
    setup_devices,
)

#: ``train.precision`` -> the dtype the model computes in (weights stay float32).
COMPUTE_DTYPES = {"float32": "float32", "mixed_float16": "float16",
                  "mixed_bfloat16": "bfloat16"}


@dataclass
class TrainResult:
    """What a run did (also written as ``summary.json``)."""

    run_dir: str
    start_step: int
    final_step: int
    status: str                     # "completed" | "interrupted" | "nan"
    last_checkpoint: str | None
    images_per_s: float
    wall_s: float
    first_loss: float | None = None
    last_loss: float | None = None
    validation: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Trainer:
    """Build everything a run needs from a validated config; :meth:`run` trains."""

    def __init__(self, cfg: ExperimentConfig, *, console: Any = None,
                 objective: Any = None) -> None:
        from massface.train.losses import build_objective
        from massface.train.run_folder import RunFolder

        self.cfg = cfg
        self.console = console
        self.log = RunLog(console)
        self.npu = setup_devices(cfg)
        self.strategy = make_strategy(cfg)
        self.replicas = self.strategy.num_replicas_in_sync
        self.chief = is_chief(self.strategy)
        self.run_dir = cfg.run_dir
        self.objective = objective or build_objective(cfg.loss)
        self._build_data()
        self._build_model()
        worker = None if self.chief else self.strategy.cluster_resolver.task_id
        self.run_folder = RunFolder(cfg, self._checkpoint_parts(), chief=self.chief,
                                    worker=worker, log=self.log)
        self.verification = Verification(
            self._load_validation(), self.model, every=int(cfg.validation.every),
            flip=bool(cfg.validation.flip), run_dir=self.run_dir, chief=self.chief,
            log=self.log)

    @property
    def warnings(self) -> list[str]:
        return self.log.warnings

    # ------------------------------------------------------------------------ assembly

    def _build_data(self) -> None:
        """Images, the sampler the objective names, augmentation, run length, schedule."""
        from massface.train import data as data_mod
        from massface.train.optim import build_schedule

        cfg = self.cfg
        self.source = data_mod.build_source(cfg.data, self.objective.sampler, int(cfg.seed))
        self.folder = self.source.folder
        self.batch_size = int(self.source.sampler.batch_size)
        if self.batch_size % self.replicas:
            raise InputError(f"config: the batch of {self.batch_size} images does not split "
                             f"evenly over {self.replicas} replicas")
        self.augment = data_mod.Augment.from_config(cfg.data.augment)
        tr = cfg.train
        self.steps_per_epoch = int(tr.steps_per_epoch or self.source.sampler.steps_per_epoch)
        self.total_steps = int(tr.max_steps if tr.max_steps is not None
                               else tr.epochs * self.steps_per_epoch)
        self.schedule = build_schedule(cfg.schedule, float(cfg.optimizer.learning_rate),
                                       self.steps_per_epoch, self.total_steps)

    def _build_model(self) -> None:
        """Backbone, head, optimiser (under the strategy) and the compiled step."""
        from massface.train.heads import HEADS
        from massface.train.mobilefacenet import MobileFaceNet
        from massface.train.optim import build_optimizer
        from massface.train.step import TrainStep

        cfg, seed, dim = self.cfg, int(self.cfg.seed), int(self.cfg.model.embedding_size)
        with self.strategy.scope():
            self.model = MobileFaceNet(dim, seed=seed,
                                       compute_dtype=COMPUTE_DTYPES[cfg.train.precision])
            self.head = None
            if self.objective.head is not None:
                self.head = HEADS.get(self.objective.head, "objective")(
                    dim, self.folder.num_classes, scale=float(cfg.loss.scale),
                    margin=float(cfg.loss.margin), seed=seed + 1)
            self.variables = list(self.model.trainable_variables)
            self.decayed = list(self.model.regularized_variables())
            if self.head is not None:
                self.variables += list(self.head.trainable_variables)
                self.decayed += list(self.head.regularized_variables())
            self.optimizer = build_optimizer(cfg.optimizer, self.variables)
        self.train_step = TrainStep(
            self.strategy, self.model, self.head, self.objective, self.optimizer,
            variables=self.variables, decayed=self.decayed,
            weight_decay=float(cfg.optimizer.weight_decay), seed=seed,
            loss_scaling=cfg.train.precision == "mixed_float16"
            or npu_needs_loss_scaling(cfg, self.npu),
            overflow_check=npu_overflow_check(self.npu))

    def _checkpoint_parts(self) -> dict[str, Any]:
        parts: dict[str, Any] = {"backbone": self.model, "optimizer": self.optimizer,
                                 **self.train_step.checkpoint_parts()}
        if self.head is not None:
            parts["head"] = self.head
        return parts

    def _load_validation(self) -> Any:
        v, d = self.cfg.validation, self.cfg.data
        if not v.pairs:
            return None
        from massface.formats.preprocessing import Preprocessing
        from massface.train.validation import PairsValidation, check_no_leak

        check_no_leak(v.pairs, self.folder, allow=bool(v.allow_overlap), warn=self.log.warn)

        return PairsValidation.load(
            v.pairs, v.root or d.train_dir, d.size,
            preprocessing=Preprocessing(mean=float(d.mean), std=float(d.std)),
            batch_size=int(v.batch_size))

    def _callbacks(self) -> list[Callback]:
        """The per-step monitors, in the order they see each step."""
        cfg, log = self.cfg, self.log
        return [CollapseWarning(log, float(cfg.loss.alpha)),
                NoTripletWarning(log, cfg),
                MiningLog(self.run_dir, self.chief),
                MetricsLog(self.run_dir, int(cfg.train.log_every), self.total_steps,
                           self.chief),
                Progress(self.total_steps, console=self.console,
                         enabled=bool(cfg.train.progress) and self.console is not None)]

    def _dataset(self, start: int) -> Iterator[Any]:
        """Per-replica batches: each global batch split contiguously over all replicas.

        Every input pipeline (one per worker) builds the same global batch ``i`` and
        keeps the slices of its own replicas, so replica ``r`` of ``n`` always trains on
        rows ``[r B/n, (r+1) B/n)`` of the batch a single device would see (a P x K batch
        keeps whole identities together where P splits evenly).
        """
        from massface.train.data import make_dataset

        d = self.cfg.data

        def per_pipeline(ctx: Any) -> Any:
            local = ctx.num_replicas_in_sync // ctx.num_input_pipelines
            first = ctx.input_pipeline_id * local
            return make_dataset(self.source, self.batch_size, start_step=start,
                                seed=int(self.cfg.seed), augment=self.augment,
                                mean=float(d.mean), std=float(d.std),
                                num_parts=ctx.num_replicas_in_sync,
                                parts=range(first, first + local))

        return iter(self.strategy.distribute_datasets_from_function(per_pipeline))

    # ----------------------------------------------------------------------------- run

    def _prepare_run_dir(self) -> int:
        """Snapshot the config, resume or load --pretrained; the step to start at."""
        return self.run_folder.prepare(self.model)

    def validate(self) -> dict[str, Any]:
        """Verification on ``validation.pairs`` now ({} without a pairs file)."""
        return self.verification.evaluate()

    def run(self) -> TrainResult:
        """Train to ``total_steps`` (resuming if the run folder has a checkpoint).

        The run folder is locked (:mod:`massface.lock`) for the whole run, resume
        included: a second process on it stops at once. Only the chief locks: the other
        workers of a multi-worker run share the folder (writing their own ``.worker-<i>``)."""
        lock = folder_lock(self.run_dir, "massface-train") if self.chief \
            else contextlib.nullcontext()
        with lock:
            return self._run()

    def _run(self) -> TrainResult:
        state = _RunState(self._prepare_run_dir(), self.run_folder.latest)
        callbacks = self._callbacks()
        writer = summary_writer(self.run_dir, self.chief)
        try:
            with _StopOnSignal(self.log) as stop, writer.as_default():
                for cb in callbacks:
                    cb.on_start(state.start)
                try:
                    self._loop(state, callbacks, stop)
                finally:
                    for cb in callbacks:
                        cb.on_end(state.step, state.status)
                self._finish(state)
        finally:
            writer.close()
        result = TrainResult(str(self.run_dir), state.start, state.step, state.status,
                             state.last_ckpt, state.rate, time.perf_counter() - state.t0,
                             state.first_loss, state.last_loss, state.validation,
                             self.warnings)
        self.run_folder.write_summary(result.to_dict())
        return result

    def _loop(self, s: _RunState, callbacks: list[Callback], stop: _StopOnSignal) -> None:
        """Batch, step, monitors, maybe verify, maybe save, until done or stopped."""
        every_ckpt = int(self.cfg.train.checkpoint_every)
        it = self._dataset(s.start) if s.start < self.total_steps else iter(())
        while s.step < self.total_steps:
            lr = self.schedule(s.step)
            out = self.train_step(*_next_batch(it), lr, s.step)
            if not math.isfinite(out["loss"]):
                s.status = "nan"
                self.log.warn(f"loss is {out['loss']} at step {s.step}: stopped; last good "
                              f"checkpoint {s.last_ckpt}")
                return
            s.step += 1
            row = self._row(s, out, lr)
            for cb in callbacks:
                cb.on_step(s.step, row)
            if self.verification.due(s.step, self.total_steps):
                s.validation = self.verification(s.step)
            if every_ckpt and s.step % every_ckpt == 0:
                s.last_ckpt = self.run_folder.save(s.step)
            if stop.requested:
                s.status = "interrupted"
                return

    def _row(self, s: _RunState, out: dict[str, float], lr: float) -> dict[str, float]:
        """The monitors' view of the step just done."""
        s.count(self.batch_size, out["loss"])
        return dict(out, step=s.step, epoch=s.step / self.steps_per_epoch, lr=lr,
                    loss_scale=float(self.train_step.loss_scale.numpy()),
                    images_per_s=s.rate, elapsed_s=time.perf_counter() - s.t0)

    def _finish(self, s: _RunState) -> None:
        """Save the final step (unless the loss went non-finite); verify a completed run."""
        if s.status == "nan":
            return
        if s.last_ckpt is None or not s.last_ckpt.endswith(f"-{s.step}"):
            s.last_ckpt = self.run_folder.save(s.step)
        if s.status == "completed" and self.verification.enabled:
            s.validation = self.verification(s.step)


# ------------------------------------------------------------------------------ helpers


@dataclass
class _RunState:
    """Where one :meth:`Trainer.run` stands."""

    start: int
    last_ckpt: str | None
    step: int = -1
    status: str = "completed"
    first_loss: float | None = None
    last_loss: float | None = None
    validation: dict[str, Any] = field(default_factory=dict)
    rate: float = 0.0
    t0: float = field(default_factory=time.perf_counter)
    _t_rate: float | None = None
    _images: int = 0

    def __post_init__(self) -> None:
        self.step = self.start

    def count(self, batch_size: int, loss: float) -> None:
        """A step is done: update the rate and the first/last loss."""
        if self._t_rate is None:  # the first step traces the graph: time from its end
            self._t_rate = time.perf_counter()
        else:
            self._images += batch_size
            self.rate = self._images / max(time.perf_counter() - self._t_rate, 1e-9)
        self.last_loss = loss
        self.first_loss = loss if self.first_loss is None else self.first_loss


class _StopOnSignal:
    """Ctrl-C / SIGTERM: finish the current step, save and stop; a second one quits now."""

    def __init__(self, log: RunLog) -> None:
        self.log = log
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # a second Ctrl-C: stop now, no checkpoint
            raise KeyboardInterrupt
        self.signal = signum
        self.log.say("stopping: a checkpoint is saved after the current step "
                     "(press Ctrl-C again to quit without it)")

    def __enter__(self) -> _StopOnSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)


def _next_batch(it: Iterator[Any]) -> Any:
    import tensorflow as tf

    try:
        return next(it)
    except tf.errors.OpError as exc:
        raise _data_error(exc) from exc


def _data_error(exc: Exception) -> Exception:
    """A decode failure inside tf.data -> InputError naming the file."""
    m = re.search(r"InputError: (.*?cannot decode image[^\n]*)", str(exc))
    return InputError(m.group(1)) if m else exc
