"""The training loop behind ``massface-train``.

One run = one folder ``<work_dir>/<name>/``:

- ``config.yaml``: the full merged config (what :func:`massface.train.checkpoints.
  load_backbone` and the export stage read: ``model.embedding_size``, preprocessing);
- ``checkpoints/ckpt-<step>``: ``tf.train.Checkpoint(backbone, head, optimizer, step,
  loss_scale)`` through a ``CheckpointManager``; a run restarts from the latest one;
- ``logs/``: TensorBoard scalars; ``metrics.csv`` (every ``log_every`` steps),
  ``mining.csv`` (triplet objectives: triplets selected, fraction with positive loss,
  mean d(a,p), d(a,n), triplet loss at EVERY step; also TensorBoard ``mining/*``) and
  ``validation.jsonl`` (each periodic verification), ``summary.json`` at the end.

The step is one ``tf.function``: forward, objective (mining included), weight decay,
optional float16 loss scaling, gradient sum over replicas, optimiser update. Batch ``i``
and every random draw in step ``i`` are functions of ``(seed, i)``, so stopping and
resuming gives the same weights as an uninterrupted run. A non-finite loss stops the run
without saving (the last good checkpoint stays the latest); Ctrl-C / SIGTERM save a
checkpoint at the current step and stop.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import importlib.util
import json
import math
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.io import write_json, write_text
from massface.train import config as config_mod
from massface.train.checkpoints import CHECKPOINT_DIR, CONFIG_FILE, resolve_checkpoint

METRIC_FIELDS = ("step", "epoch", "lr", "loss", "objective", "weight_decay", "ce",
                 "train_acc", "triplets", "active_fraction", "d_ap", "d_an", "triplet_loss",
                 "loss_scale", "images_per_s", "elapsed_s")

#: ``mining.csv``: the mining statistics of EVERY step of a triplet run (metrics.csv and
#: the other TensorBoard scalars follow ``train.log_every``; mining is logged per step
#: because a bad selection, e.g. no triplet at all, must show at once, not on average).
MINING_FIELDS = ("step", "triplets", "active_fraction", "d_ap", "d_an", "triplet_loss")

#: Warn once when this many consecutive steps selected no triplet at all.
ZERO_TRIPLET_STEPS = 20


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


# ------------------------------------------------------------------ devices/precision


def setup_devices(cfg: dict[str, Any]) -> Any:
    """Apply ``train.device`` and determinism; open Ascend when asked (or auto and present).

    ``npu_device`` is imported only for ``device: npu``, or for ``auto`` when the module
    is installed; ``npu_precision_mode`` is set on its global options before it opens.
    Returns the opened NPU device handle or None.
    """
    import tensorflow as tf

    train = cfg["train"]
    device = train["device"]
    if train["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    if device == "cpu":
        with contextlib.suppress(RuntimeError):
            tf.config.set_visible_devices([], "GPU")
    elif device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise InputError("train.device is 'gpu' but TensorFlow sees no GPU")
    want_npu = device == "npu" or (device == "auto"
                                   and importlib.util.find_spec("npu_device") is not None)
    if not want_npu:
        return None
    try:
        npu_device = importlib.import_module("npu_device")
    except ImportError as exc:
        raise InputError(f"train.device is 'npu' but npu_device does not import ({exc}); "
                         "source the CANN set_env.sh and install the TF2 NPU adapter") from exc
    npu_device.global_options().precision_mode = train["npu_precision_mode"]
    npu = npu_device.open()
    npu.as_default()
    return npu


def make_strategy(cfg: dict[str, Any]) -> Any:
    """``none`` -> default strategy; ``mirrored`` -> all GPUs, else all logical CPUs;
    ``multi_worker`` -> MultiWorkerMirroredStrategy from ``TF_CONFIG``."""
    import tensorflow as tf

    kind = cfg["train"]["distribute"]
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if not os.environ.get("TF_CONFIG"):
        raise InputError("train.distribute is 'multi_worker' but TF_CONFIG is not set "
                         "(JSON with cluster.worker and task.index)")
    return tf.distribute.MultiWorkerMirroredStrategy()


def _is_chief(strategy: Any) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


# ------------------------------------------------------------------------- the trainer


class Trainer:
    """Build everything a run needs from a validated config; :meth:`run` trains."""

    def __init__(self, cfg: dict[str, Any], *, console: Any = None,
                 objective: Any = None) -> None:
        import tensorflow as tf

        from massface.train import data as data_mod
        from massface.train.heads import HEADS
        from massface.train.losses import build_objective
        from massface.train.mobilefacenet import MobileFaceNet
        from massface.train.optim import build_optimizer, build_schedule

        self.cfg = cfg
        self.console = console
        self.warnings: list[str] = []
        self.npu = setup_devices(cfg)
        self.strategy = make_strategy(cfg)
        self.replicas = self.strategy.num_replicas_in_sync
        self.chief = _is_chief(self.strategy)
        self.run_dir = Path(cfg["work_dir"]) / cfg["name"]

        d, tr = cfg["data"], cfg["train"]
        self.objective = objective or build_objective(cfg["loss"])
        triplet = self.objective.sampler == "pk"
        if d["train_dir"] is None:
            raise InputError("config: data.train_dir is not set")
        self.folder = data_mod.scan_image_folder(d["train_dir"], d["identities"],
                                                 int(d["min_images"]))
        if triplet and int(d["K"]) < 2:
            raise InputError(f"config: data.K must be at least 2 for a P x K (triplet) "
                             f"objective (got {d['K']}): with one image per identity no "
                             "(anchor, positive) pair exists and no triplet is ever selected")
        if triplet:
            counts = self.folder.counts()
            single = [self.folder.identities[i] for i in np.flatnonzero(counts < 2)]
            if single:
                shown = ", ".join(single[:10]) + (" ..." if len(single) > 10 else "")
                raise InputError(
                    f"{d['train_dir']}: {len(single)} identities have a single image and "
                    f"cannot give a positive pair in a triplet run ({shown}); set "
                    "data.min_images=2 to leave them out")
            self.batch_size = int(d["P"]) * int(d["K"])
            sampler = data_mod.PKSampler(self.folder.labels, int(d["P"]), int(d["K"]),
                                         int(cfg["seed"]))
        else:
            self.batch_size = int(d["batch_size"])
            sampler = data_mod.ShuffleSampler(self.folder.labels, self.batch_size,
                                              int(cfg["seed"]))
        if self.batch_size % self.replicas:
            raise InputError(f"config: the batch of {self.batch_size} images does not split "
                             f"evenly over {self.replicas} replicas")
        size = (int(d["image_size"][0]), int(d["image_size"][1]))
        cache = str(d["cache"]).lower()
        in_memory = (cache == "true" or (cache == "auto"
                     and len(self.folder) * size[0] * size[1] * 3 <= 2 * 1024**3))
        self.source = data_mod.BatchSource(self.folder, sampler, size, in_memory,
                                           int(d["threads"]))
        self.augment = data_mod.Augment.from_dict(d["augment"])
        self.steps_per_epoch = int(tr["steps_per_epoch"] or sampler.steps_per_epoch)
        self.total_steps = int(tr["max_steps"] if tr["max_steps"] is not None
                               else tr["epochs"] * self.steps_per_epoch)
        opt_cfg = cfg["optimizer"]
        self.schedule = build_schedule(cfg["schedule"], float(opt_cfg["learning_rate"]),
                                       self.steps_per_epoch, self.total_steps)
        precision = tr["precision"]
        compute = {"float32": "float32", "mixed_float16": "float16",
                   "mixed_bfloat16": "bfloat16"}[precision]
        self.loss_scaling = precision == "mixed_float16"

        with self.strategy.scope():
            self.model = MobileFaceNet(int(cfg["model"]["embedding_size"]),
                                       seed=int(cfg["seed"]), compute_dtype=compute)
            self.head = None
            if self.objective.head is not None:
                self.head = HEADS[self.objective.head](
                    int(cfg["model"]["embedding_size"]), self.folder.num_classes,
                    scale=float(cfg["loss"]["scale"]), margin=float(cfg["loss"]["margin"]),
                    seed=int(cfg["seed"]) + 1)
            self.variables = list(self.model.trainable_variables)
            self.decayed = list(self.model.regularized_variables())
            if self.head is not None:
                self.variables += list(self.head.trainable_variables)
                self.decayed += list(self.head.regularized_variables())
            self.optimizer = build_optimizer(opt_cfg, self.variables)
            agg = tf.VariableAggregation.ONLY_FIRST_REPLICA
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                    aggregation=agg)
            self.loss_scale = tf.Variable(2.0**15 if self.loss_scaling else 1.0,
                                          trainable=False, name="loss_scale", aggregation=agg)
            self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                          name="good_steps", aggregation=agg)
        parts: dict[str, Any] = {"backbone": self.model, "optimizer": self.optimizer,
                                 "step": self.step, "loss_scale": self.loss_scale,
                                 "good_steps": self.good_steps}
        if self.head is not None:
            parts["head"] = self.head
        self.checkpoint = tf.train.Checkpoint(**parts)
        ckpt_dir = self.run_dir / CHECKPOINT_DIR
        if not self.chief:  # multi-worker: only the chief's checkpoints are kept
            ckpt_dir = self.run_dir / f".worker-{self.strategy.cluster_resolver.task_id}"
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(ckpt_dir), max_to_keep=int(tr["keep_checkpoints"]),
            checkpoint_name="ckpt")
        self.validation = None
        v = cfg["validation"]
        if v["pairs"]:
            from massface.train.validation import PairsValidation

            self.validation = PairsValidation.load(
                v["pairs"], v["root"] or d["train_dir"], size, mean=float(d["mean"]),
                std=float(d["std"]), batch_size=int(v["batch_size"]))
        self._train_step = self._build_step()

    # ----------------------------------------------------------------- the compiled step

    def _build_step(self) -> Any:
        import tensorflow as tf

        model, head, objective = self.model, self.head, self.objective
        variables, decayed = self.variables, self.decayed
        wd = float(self.cfg["optimizer"]["weight_decay"])
        replicas = float(self.replicas)
        seed = int(self.cfg["seed"])
        scaling = self.loss_scaling

        def replica_step(images: Any, labels: Any, lr: Any, step: Any) -> dict[str, Any]:
            with tf.GradientTape() as tape:
                emb = model(images, training=True)
                loss, metrics = objective(emb, labels, head,
                                          tf.stack([tf.constant(seed, tf.int64), step]))
                decay = wd * tf.add_n([tf.nn.l2_loss(w) for w in decayed]) if wd else 0.0
                total = loss + decay
                scaled = total * self.loss_scale / replicas
            grads = tape.gradient(scaled, variables)
            grads = [g / self.loss_scale for g in grads]
            ok = self.optimizer.apply_gradients(grads, variables, lr, step)
            if scaling:
                self._update_loss_scale(ok)
            out = dict(metrics)
            out.update(loss=total, objective=loss, weight_decay=tf.cast(decay, tf.float32),
                       finite_grads=tf.cast(ok, tf.float32))
            return out

        @tf.function
        def train_step(images: Any, labels: Any, lr: Any, step: Any) -> dict[str, Any]:
            per = self.strategy.run(replica_step, args=(images, labels, lr, step))
            return {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                    for k, v in per.items()}

        return train_step

    def _update_loss_scale(self, ok: Any) -> None:
        """Dynamic loss scale: halve on overflow (step skipped), double after 2000 good."""
        import tensorflow as tf

        good = tf.where(ok, self.good_steps + 1, tf.zeros_like(self.good_steps))
        grow = good >= 2000
        scale = tf.where(ok, tf.where(grow, self.loss_scale * 2.0, self.loss_scale),
                         tf.maximum(self.loss_scale / 2.0, 1.0))
        self.loss_scale.assign(scale)
        self.good_steps.assign(tf.where(grow, tf.zeros_like(good), good))

    # --------------------------------------------------------------------- the loop

    def _dataset(self, start: int) -> Iterator[Any]:
        """Per-replica batches: each global batch split contiguously over all replicas.

        Every input pipeline (one per worker) builds the same global batch ``i`` and
        keeps the slices of its own replicas, so replica ``r`` of ``n`` always trains on
        rows ``[r B/n, (r+1) B/n)`` of the batch a single device would see (a P x K batch
        keeps whole identities together where P splits evenly).
        """
        from massface.train.data import make_dataset

        d = self.cfg["data"]

        def per_pipeline(ctx: Any) -> Any:
            local = ctx.num_replicas_in_sync // ctx.num_input_pipelines
            first = ctx.input_pipeline_id * local
            return make_dataset(self.source, self.batch_size, start_step=start,
                                seed=int(self.cfg["seed"]), augment=self.augment,
                                mean=float(d["mean"]), std=float(d["std"]),
                                num_parts=ctx.num_replicas_in_sync,
                                parts=range(first, first + local))

        return iter(self.strategy.distribute_datasets_from_function(per_pipeline))

    def _prepare_run_dir(self) -> int:
        """Snapshot the config, resume from the latest checkpoint or load --pretrained."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        snapshot = self.run_dir / CONFIG_FILE
        if snapshot.exists():
            old = config_mod.read_yaml(snapshot)
            changed = _diff(old, self.cfg)
            if changed:
                self._warn(f"{snapshot}: config changed since the last run: "
                           + ", ".join(changed[:8]))
        if self.chief:
            write_text(snapshot, config_mod.dump_config(self.cfg))
        latest = self.manager.latest_checkpoint
        if latest:
            import tensorflow as tf

            try:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as exc:
                raise InputError(f"{latest}: cannot resume this run with the current config "
                                 f"({str(exc).splitlines()[0][:300]}); use another --name "
                                 "or the run's own config.yaml") from exc
            self._say(f"resumed from {latest} (step {int(self.step.numpy())})")
            return int(self.step.numpy())
        pretrained = self.cfg["train"]["pretrained"]
        if pretrained:
            from massface.train.checkpoints import restore_backbone

            prefix, _ = resolve_checkpoint(pretrained)
            restore_backbone(self.model, prefix)
            self._say(f"backbone initialised from {prefix}")
        return 0

    def _say(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(msg, markup=False, soft_wrap=True)

    def _warn(self, msg: str) -> None:
        self.warnings.append(msg)
        if self.console is not None:
            from rich.text import Text

            self.console.print(Text.assemble(("warning: ", "yellow"), msg), soft_wrap=True)

    def _save(self, step: int) -> str:
        import tensorflow as tf

        self.step.assign(step)
        path = self.manager.save(checkpoint_number=step)
        if not self.chief:
            tf.io.gfile.rmtree(self.manager.directory)
        return path

    def validate(self) -> dict[str, Any]:
        if self.validation is None:
            return {}
        return self.validation.evaluate(self.model, flip=bool(self.cfg["validation"]["flip"]))

    def run(self) -> TrainResult:
        """Train to ``total_steps`` (resuming if the run folder has a checkpoint)."""
        import tensorflow as tf

        start = self._prepare_run_dir()
        tr = self.cfg["train"]
        metrics_path = self.run_dir / "metrics.csv"
        mining_path = self.run_dir / "mining.csv"
        mines = self.objective.sampler == "pk"
        zero_steps = 0
        if self.chief:  # multi-worker: only the chief logs
            _truncate_metrics(metrics_path, start)
            _truncate_metrics(mining_path, start, MINING_FIELDS)
            writer = tf.summary.create_file_writer(str(self.run_dir / "logs"))
        else:
            writer = tf.summary.create_noop_writer()
        stop = {"signal": None}

        def on_signal(signum: int, frame: Any) -> None:
            if stop["signal"] is not None:  # a second Ctrl-C: stop now, no checkpoint
                raise KeyboardInterrupt
            stop["signal"] = signum
            self._say("stopping: a checkpoint is saved after the current step "
                      "(press Ctrl-C again to quit without it)")

        handlers = _install(on_signal)
        status, step = "completed", start
        last_ckpt = self.manager.latest_checkpoint
        first_loss = last_loss = None
        validation: dict[str, Any] = {}
        t0 = time.perf_counter()
        t_rate = None
        rate = 0.0
        every_ckpt = int(tr["checkpoint_every"])
        every_log = int(tr["log_every"])
        every_val = int(self.cfg["validation"]["every"])
        images = 0
        try:
            it = self._dataset(start) if start < self.total_steps else iter(())
            with _progress(bool(tr["progress"]) and self.console is not None,
                           self.console, start, self.total_steps) as bar, writer.as_default():
                while step < self.total_steps:
                    lr = self.schedule(step)
                    try:
                        images_b, labels_b = next(it)
                    except tf.errors.OpError as exc:
                        raise _data_error(exc) from exc
                    out = self._train_step(images_b, labels_b, tf.constant(lr, tf.float32),
                                           tf.constant(step, tf.int64))
                    out = {k: float(v) for k, v in out.items()}
                    if not math.isfinite(out["loss"]):
                        status = "nan"
                        self._warn(f"loss is {out['loss']} at step {step}: stopped; last good "
                                   f"checkpoint {last_ckpt}")
                        break
                    step += 1
                    if t_rate is None:  # the first step traces the graph: time from its end
                        t_rate = time.perf_counter()
                    else:
                        images += self.batch_size
                        rate = images / max(time.perf_counter() - t_rate, 1e-9)
                    last_loss = out["loss"]
                    first_loss = out["loss"] if first_loss is None else first_loss
                    row = dict(out, step=step, epoch=step / self.steps_per_epoch, lr=lr,
                               loss_scale=float(self.loss_scale.numpy()), images_per_s=rate,
                               elapsed_s=time.perf_counter() - t0)
                    self._check_collapse(row)
                    if mines and "triplets" in row:
                        zero_steps = zero_steps + 1 if row["triplets"] == 0 else 0
                        if zero_steps == ZERO_TRIPLET_STEPS:
                            self._warn_no_triplets(step)
                        if self.chief:
                            _log_row(mining_path, row, MINING_FIELDS)
                        for k in MINING_FIELDS[1:]:
                            _scalar(f"mining/{k}", row[k], step)
                    if step % every_log == 0 or step == self.total_steps:
                        if self.chief:
                            _log_row(metrics_path, row)
                        for k, v in row.items():
                            if k in METRIC_FIELDS and k not in ("step", "elapsed_s"):
                                _scalar(f"train/{k}", v, step)
                    bar.update(step, loss=out["loss"], rate=rate)
                    if every_val and step % every_val == 0 and step < self.total_steps:
                        validation = self._validate_and_log(step)
                    if every_ckpt and step % every_ckpt == 0:
                        last_ckpt = self._save(step)
                    if stop["signal"] is not None:
                        status = "interrupted"
                        break
            if status != "nan":
                if last_ckpt is None or not last_ckpt.endswith(f"-{step}"):
                    last_ckpt = self._save(step)
                if status == "completed" and self.validation is not None:
                    with writer.as_default():
                        validation = self._validate_and_log(step)
        finally:
            _restore(handlers)
            writer.close()
        result = TrainResult(str(self.run_dir), start, step, status, last_ckpt, rate,
                             time.perf_counter() - t0, first_loss, last_loss, validation,
                             self.warnings)
        if self.chief:
            write_json(self.run_dir / "summary.json", result.to_dict())
        return result

    def _validate_and_log(self, step: int) -> dict[str, Any]:

        res = self.validate()
        for k, v in res.items():
            _scalar(f"val/{k}", v, step)
        if self.chief:
            with open(self.run_dir / "validation.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, **res}) + "\n")
        self._say(f"step {step}: verification accuracy {res['accuracy']:.4f}"
                  + (f", mirror-averaged {res['flip_accuracy']:.4f}"
                     if "flip_accuracy" in res else ""))
        return res

    def _warn_no_triplets(self, step: int) -> None:
        """Warn (once per run) when mining has selected nothing for many steps in a row."""
        if any("no triplet" in w for w in self.warnings):
            return
        loss = self.cfg["loss"]
        self._warn(f"step {step}: no triplet selected in the last {ZERO_TRIPLET_STEPS} "
                   f"steps (loss.mining={loss['mining']}, loss.alpha={loss['alpha']}, "
                   f"data.P={self.cfg['data']['P']}, data.K={self.cfg['data']['K']}): the "
                   "triplet loss is zero and teaches nothing; try batch_all/batch_hardest "
                   "mining, a larger alpha or larger P x K batches")

    def _check_collapse(self, row: dict[str, Any]) -> None:
        """Warn (once per run) when the triplet loss sits at alpha, distances collapsing."""
        from massface.train.mining import collapse_message

        if "d_ap" not in row:
            return
        msg = collapse_message(row, float(self.cfg["loss"]["alpha"]))
        if msg and not any("collapsing" in w for w in self.warnings):
            self._warn(f"step {row['step']}: {msg}")


# ------------------------------------------------------------------------------ helpers


def _scalar(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar via core ``tf.summary.write`` (no tensorboard package needed:
    ``tf.summary.scalar`` refuses to run without it)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=meta)


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [prefix.rstrip(".")] if old != new else []


def _install(handler: Any) -> dict[int, Any]:
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            old[sig] = signal.signal(sig, handler)
    return old


def _restore(old: dict[int, Any]) -> None:
    for sig, h in old.items():
        signal.signal(sig, h)


def _truncate_metrics(path: Path, start: int,
                      fields: tuple[str, ...] = METRIC_FIELDS) -> None:
    """On resume drop logged rows past the restored step (they will be redone)."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= start]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _log_row(path: Path, row: dict[str, Any], fields: tuple[str, ...] = METRIC_FIELDS) -> None:
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in fields})


def _data_error(exc: Exception) -> Exception:
    """A decode failure inside tf.data -> InputError naming the file."""
    m = re.search(r"InputError: (.*?cannot decode image[^\n]*)", str(exc))
    return InputError(m.group(1)) if m else exc


class _NoBar:
    def update(self, step: int, **_: Any) -> None:
        pass


@contextlib.contextmanager
def _progress(enabled: bool, console: Any, start: int, total: int) -> Iterator[Any]:
    if not enabled:
        yield _NoBar()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.4f}"),
                  TextColumn("{task.fields[rate]:.1f} img/s"), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task("train", total=total, completed=start, loss=float("nan"),
                                 rate=0.0)

        class Bar:
            def update(self, step: int, **fields: Any) -> None:
                progress.update(task, completed=step, **fields)

        yield Bar()
