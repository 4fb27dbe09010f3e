"""What watches a run: logs, TensorBoard scalars, warnings, progress and verification.

In the spirit of insightface's ``utils_callbacks.py``: the loop hands every finished step
to each monitor as one row (the step's metrics plus ``step``, ``epoch``, ``lr``,
``loss_scale``, ``images_per_s``, ``elapsed_s``), and each monitor decides what to do:

- :class:`MetricsLog`: ``metrics.csv`` and TensorBoard ``train/*`` every ``log_every``;
- :class:`MiningLog`: ``mining.csv`` and ``mining/*`` at EVERY step of a triplet run
  (a bad selection, e.g. no triplet at all, must show at once, not on average);
- :class:`NoTripletWarning`, :class:`CollapseWarning`: a triplet run that teaches
  nothing says so (once per run);
- :class:`Progress`: the progress bar;
- :class:`Verification`: periodic verification on a pairs file (``validation.jsonl``,
  ``val/*``), called by the loop when :meth:`Verification.due`.

Only the chief of a multi-worker run writes files; TensorBoard scalars go to the
default summary writer (a no-op one on the other workers).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from massface.io import Journal
from massface.progress import ProgressBar

METRIC_FIELDS = ("step", "epoch", "lr", "loss", "objective", "weight_decay", "ce",
                 "train_acc", "triplets", "active_fraction", "d_ap", "d_an", "triplet_loss",
                 "loss_scale", "images_per_s", "elapsed_s")

#: ``mining.csv``: the mining statistics of EVERY step of a triplet run.
MINING_FIELDS = ("step", "triplets", "active_fraction", "d_ap", "d_an", "triplet_loss")

#: Warn once when this many consecutive steps selected no triplet at all.
ZERO_TRIPLET_STEPS = 20


class RunLog:
    """Messages of a run on the console (if any); warnings are also kept for the summary."""

    def __init__(self, console: Any = None) -> None:
        self.console = console
        self.warnings: list[str] = []

    def say(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(msg, markup=False, soft_wrap=True)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
        if self.console is not None:
            from rich.text import Text

            self.console.print(Text.assemble(("warning: ", "yellow"), msg), soft_wrap=True)

    def warned(self, fragment: str) -> bool:
        """Whether a warning containing ``fragment`` was given already."""
        return any(fragment in w for w in self.warnings)


class Callback:
    """A monitor: told when the loop starts (at ``start_step``), of each step, at the end."""

    def on_start(self, start_step: int) -> None:
        """The loop is about to run from ``start_step`` (resumed runs: > 0)."""

    def on_step(self, step: int, row: dict[str, float]) -> None:
        """Step ``step`` (1-based count of steps done) finished with ``row``."""

    def on_end(self, step: int, status: str) -> None:
        """The loop stopped at ``step`` ("completed", "interrupted" or "nan")."""


def scalar(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar via core ``tf.summary.write`` (no tensorboard package needed:
    ``tf.summary.scalar`` refuses to run without it)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=meta)


def summary_writer(run_dir: Path, chief: bool) -> Any:
    """The TensorBoard writer of ``run_dir/logs`` (a no-op one off the chief)."""
    import tensorflow as tf

    if chief:
        return tf.summary.create_file_writer(str(run_dir / "logs"))
    return tf.summary.create_noop_writer()


class CsvLog:
    """A CSV file of rows with fixed columns that a resumed run cuts back to its step."""

    def __init__(self, path: Path, fields: tuple[str, ...], enabled: bool = True) -> None:
        self.path, self.fields, self.enabled = path, fields, enabled

    def truncate(self, start: int) -> None:
        """On resume drop logged rows past the restored step (they will be redone)."""
        if not self.enabled or not self.path.exists():
            return
        with open(self.path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= start]
        with open(self.path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        new = not self.path.exists()
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in self.fields})


class MetricsLog(Callback):
    """``metrics.csv`` + TensorBoard ``train/*`` every ``every`` steps and at the last."""

    def __init__(self, run_dir: Path, every: int, total_steps: int, chief: bool) -> None:
        self.csv = CsvLog(run_dir / "metrics.csv", METRIC_FIELDS, enabled=chief)
        self.every, self.total_steps = every, total_steps

    def on_start(self, start_step: int) -> None:
        self.csv.truncate(start_step)

    def on_step(self, step: int, row: dict[str, float]) -> None:
        if step % self.every and step != self.total_steps:
            return
        self.csv.append(row)
        for k, v in row.items():
            if k in METRIC_FIELDS and k not in ("step", "elapsed_s"):
                scalar(f"train/{k}", v, step)


class MiningLog(Callback):
    """``mining.csv`` + TensorBoard ``mining/*`` at every step that mined triplets."""

    def __init__(self, run_dir: Path, chief: bool) -> None:
        self.csv = CsvLog(run_dir / "mining.csv", MINING_FIELDS, enabled=chief)

    def on_start(self, start_step: int) -> None:
        self.csv.truncate(start_step)

    def on_step(self, step: int, row: dict[str, float]) -> None:
        if "triplets" not in row:
            return
        self.csv.append(row)
        for k in MINING_FIELDS[1:]:
            scalar(f"mining/{k}", row[k], step)


class NoTripletWarning(Callback):
    """Warn (once per run) when mining has selected nothing for many steps in a row."""

    def __init__(self, log: RunLog, cfg: Any) -> None:
        self.log, self.cfg = log, cfg
        self.zero_steps = 0

    def on_step(self, step: int, row: dict[str, float]) -> None:
        if "triplets" not in row:
            return
        self.zero_steps = self.zero_steps + 1 if row["triplets"] == 0 else 0
        # read at call time: tests lower the threshold on this module
        if self.zero_steps == ZERO_TRIPLET_STEPS and not self.log.warned("no triplet"):
            loss, data = self.cfg.loss, self.cfg.data
            self.log.warn(
                f"step {step}: no triplet selected in the last {ZERO_TRIPLET_STEPS} "
                f"steps (loss.mining={loss.mining}, loss.alpha={loss.alpha}, "
                f"data.P={data.P}, data.K={data.K}): the triplet loss is zero and teaches "
                "nothing; try batch_all/batch_hardest mining, a larger alpha or larger "
                "P x K batches")


class CollapseWarning(Callback):
    """Warn (once per run) when the triplet loss sits at alpha, distances collapsing."""

    def __init__(self, log: RunLog, alpha: float) -> None:
        self.log, self.alpha = log, alpha

    def on_step(self, step: int, row: dict[str, float]) -> None:
        if "d_ap" not in row:
            return
        from massface.train.mining import collapse_message

        msg = collapse_message(row, self.alpha)
        if msg and not self.log.warned("collapsing"):
            self.log.warn(f"step {row['step']}: {msg}")


class Progress(Callback):
    """The progress bar (:class:`massface.progress.ProgressBar`): steps, loss, images/s."""

    def __init__(self, total_steps: int, *, enabled: bool, console: Any) -> None:
        self.total_steps, self.enabled, self.console = total_steps, enabled, console
        self.bar: ProgressBar | None = None

    def on_start(self, start_step: int) -> None:
        self.bar = ProgressBar("train", self.total_steps, completed=start_step,
                               enabled=self.enabled, console=self.console,
                               rate_unit="img/s", fields=("loss",))

    def on_step(self, step: int, row: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(step, rate=row["images_per_s"], loss=row["loss"])

    def on_end(self, step: int, status: str) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Verification:
    """Verification of the model on a pairs file: ``validation.jsonl``, ``val/*``, console.

    Due every ``every`` steps before the last (0: never periodically); the loop also
    calls it once at the end of a completed run.
    """

    def __init__(self, validation: Any, model: Any, *, every: int, flip: bool,
                 run_dir: Path, chief: bool, log: RunLog) -> None:
        self.validation, self.model, self.flip, self.every = validation, model, flip, every
        self.path = run_dir / "validation.jsonl"
        self.chief, self.log = chief, log

    @property
    def enabled(self) -> bool:
        return self.validation is not None

    def due(self, step: int, total_steps: int) -> bool:
        """Periodic verification after ``step`` (the last step's comes from the end)."""
        return (self.enabled and bool(self.every) and step % self.every == 0
                and step < total_steps)

    def evaluate(self) -> dict[str, Any]:
        if self.validation is None:
            return {}
        return self.validation.evaluate(self.model, flip=self.flip)

    def __call__(self, step: int) -> dict[str, Any]:
        """Evaluate now and log the result as at ``step``."""
        res = self.evaluate()
        for k, v in res.items():
            scalar(f"val/{k}", v, step)
        if self.chief:
            with Journal(self.path) as journal:
                journal.write({"step": step, **res})
        self.log.say(f"step {step}: verification accuracy {res['accuracy']:.4f}"
                     + (f", mirror-averaged {res['flip_accuracy']:.4f}"
                        if "flip_accuracy" in res else ""))
        return res
