"""The page of a training run folder (``massface-train report RUN``).

Reads the files ``massface-train`` writes into a run folder (README "Training"):
``metrics.csv`` (every ``train.log_every`` steps: loss and its parts, training accuracy,
learning rate, throughput...), ``mining.csv`` (triplet runs, every step: triplets
selected, fraction with positive loss, mean d(a,p) and d(a,n)), ``validation.jsonl``
(each periodic verification), ``config.yaml`` and ``summary.json``. Only
``metrics.csv`` is required; a column the run did not fill (empty cells) is not drawn.
No TensorFlow is imported: the page is made from the logs alone.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError, excerpt
from massface.io import read_json, read_jsonl
from massface.report.page import Figure, KeyValues, Notes, Page, Preformatted, Section, Table
from massface.report.plots import Axes, LineChart, Series, render_svg

METRICS = "metrics.csv"
MINING = "mining.csv"
VALIDATION = "validation.jsonl"
CONFIG = "config.yaml"
SUMMARY = "summary.json"

#: Loss curves drawn when the run logged them (metrics.csv column -> legend).
LOSS_COLUMNS = {"loss": "total loss", "objective": "objective", "ce": "cross-entropy",
                "triplet_loss": "triplet loss", "weight_decay": "weight decay"}


@dataclass
class Columns:
    """A CSV log as float columns (NaN where a cell is empty)."""

    path: Path
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.columns and bool(np.isfinite(self.columns[name]).any())

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __len__(self) -> int:
        return len(self.columns.get("step", ()))


def _number(text: str | None, path: Path, line: int, column: str) -> float:
    if text is None or text.strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{path}:{line}: column {column!r} holds {excerpt(text)}, not a number"
                         ) from None


def read_columns(path: Path) -> Columns:
    """A ``metrics.csv`` / ``mining.csv``; :class:`InputError` naming the file if bad."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            names = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    if "step" not in names:
        raise InputError(f"{path}: no 'step' column (header: {', '.join(names) or 'none'}): "
                         "not a massface-train log")
    cols = {n: np.array([_number(r.get(n), path, i + 2, n) for i, r in enumerate(rows)])
            for n in names}
    return Columns(path, cols)


def read_validation(path: Path) -> list[dict[str, Any]]:
    """The records of ``validation.jsonl`` (one JSON object per line)."""
    out = read_jsonl(path, "verification records")
    for i, rec in enumerate(out, start=1):
        if not isinstance(rec, dict) or "step" not in rec:
            raise InputError(f"{path}: record {i}: expected an object with a 'step'")
    return out


@dataclass
class RunLogs:
    """Everything a run folder holds for the report."""

    folder: Path
    metrics: Columns
    mining: Columns | None
    validation: list[dict[str, Any]]
    config: str | None
    summary: dict[str, Any] | None


def read_run(folder: Path) -> RunLogs:
    """Read a run folder; only ``metrics.csv`` must be there."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such run folder")
    if not (folder / METRICS).is_file():
        raise InputError(f"{folder}: no {METRICS}: not a massface-train run folder, or the "
                         "run has not logged a step yet")
    mining = read_columns(folder / MINING) if (folder / MINING).is_file() else None
    val = read_validation(folder / VALIDATION) if (folder / VALIDATION).is_file() else []
    config = None
    if (folder / CONFIG).is_file():
        try:
            config = (folder / CONFIG).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{folder / CONFIG}: cannot read: {exc}") from exc
    summary = read_json(folder / SUMMARY, "run summary") if (folder / SUMMARY).is_file() \
        else None
    return RunLogs(folder, read_columns(folder / METRICS), mining, val, config,
                   summary if isinstance(summary, dict) else None)


STEP = "step"


def loss_chart(m: Columns) -> LineChart | None:
    series = [Series(label, m[STEP], m[col]) for col, label in LOSS_COLUMNS.items()
              if m.has(col)]
    positive = all(np.nanmin(s.y) > 0 for s in series)
    return LineChart("loss", "Loss", Axes(STEP, "loss (log)" if positive else "loss",
                                          yscale="log" if positive else "linear"),
                     series) if series else None


def single_chart(m: Columns, column: str, name: str, title: str, ylabel: str
                 ) -> LineChart | None:
    if not m.has(column):
        return None
    return LineChart(name, title, Axes(STEP, ylabel), [Series(ylabel, m[STEP], m[column])])


def validation_chart(records: list[dict[str, Any]]) -> LineChart | None:
    """Periodic verification accuracy (± std shaded), plain and mirror-averaged."""
    if not records:
        return None
    steps = np.array([r["step"] for r in records], dtype=float)
    series = []
    for key, label in (("accuracy", "accuracy"), ("flip_accuracy", "mirror-averaged")):
        if all(key in r for r in records):
            y = np.array([r[key] for r in records], dtype=float)
            std = np.array([r.get(f"{key}_std", math.nan) for r in records], dtype=float)
            band = None if np.isnan(std).all() else (y - std, y + std)
            series.append(Series(label, steps, y, band=band, marker="o"))
    return LineChart("validation", "Periodic verification (10-fold accuracy ± std)",
                     Axes(STEP, "accuracy"), series, legend="lower right") if series else None


def mining_charts(mining: Columns) -> list[LineChart]:
    """Triplets selected, fraction with positive loss, and the mean distances."""
    charts = []
    for col, title in (("triplets", "Triplets selected per step"),
                       ("active_fraction", "Fraction of triplets with positive loss")):
        chart = single_chart(mining, col, f"mining-{col}", title, col.replace("_", " "))
        if chart is not None:
            charts.append(chart)
    dist = [Series(label, mining[STEP], mining[col]) for col, label in
            (("d_ap", "mean d(anchor, positive)"), ("d_an", "mean d(anchor, negative)"))
            if mining.has(col)]
    if dist:
        charts.append(LineChart("mining-distances", "Mining: mean distances",
                                Axes(STEP, "distance"), dist))
    return charts


def validation_table(records: list[dict[str, Any]]) -> Table:
    keys = [k for k in ("accuracy", "accuracy_std", "val", "auc", "eer", "flip_accuracy",
                        "flip_accuracy_std", "flip_val", "flip_auc") if any(k in r for r in
                                                                             records)]

    def cell(r: dict[str, Any], k: str) -> str:
        v = r.get(k)
        return "-" if v is None else (f"{v:.6f}" if k in ("auc", "flip_auc")
                                      else f"{100 * v:.3f}")

    return Table("Periodic verification", ["step", *[k.replace("_", " ") + (
        "" if k in ("auc", "flip_auc") else " %") for k in keys]],
        [[str(r["step"]), *[cell(r, k) for k in keys]] for r in records])


def _summary_block(summary: dict[str, Any]) -> KeyValues:
    items = []
    for k, v in summary.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a} {b:.4f}" if isinstance(b, float) else f"{a} {b}"
                          for a, b in v.items())
        elif isinstance(v, list):
            v = "; ".join(str(x) for x in v) or "none"
        elif isinstance(v, float):
            v = f"{v:.4g}"
        items.append((k.replace("_", " "), str(v)))
    return KeyValues("summary.json", items)


def training_page(logs: RunLogs) -> Page:
    m = logs.metrics
    charts = [loss_chart(m), single_chart(m, "train_acc", "train-acc", "Training accuracy",
                                          "accuracy"),
              single_chart(m, "lr", "lr", "Learning rate", "learning rate"),
              validation_chart(logs.validation),
              single_chart(m, "images_per_s", "throughput", "Throughput", "images/s")]
    sections = [Section("Curves", [Figure(render_svg(c)) for c in charts if c is not None],
                        "curves")]
    if logs.mining is not None and len(logs.mining):
        sections.append(Section("Triplet mining", [Figure(render_svg(c)) for c in
                                                   mining_charts(logs.mining)], "mining"))
    facts: list = []
    if logs.summary is not None:
        facts.append(_summary_block(logs.summary))
    if logs.validation:
        facts.append(validation_table(logs.validation))
    if not logs.validation:
        facts.append(Notes(["No periodic verification was logged (validation.pairs not "
                            "set, or the run stopped before validation.every steps)."]))
    sections.append(Section("Results", facts, "results"))
    if logs.config is not None:
        sections.append(Section("Config", [Preformatted(CONFIG, logs.config)], "config"))
    last = int(np.nanmax(m[STEP])) if len(m) else 0
    status = (logs.summary or {}).get("status", "running or stopped without summary.json")
    return Page(f"Training run {logs.folder.name}",
                f"{logs.folder} · {len(m):,} logged steps, last step {last:,} · {status}",
                sections)
