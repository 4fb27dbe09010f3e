"""The page of a labelled-set evaluation (``--protocol blufr | identification | all-pairs``).

The inputs and the protocol, the headline figures, the protocol's curves with every input
overlaid, and each input's tables (``result.tables()``: per trial, by FAR, by rank). The
curves come from the result's arrays, chosen per protocol by the registry
:data:`CURVES`:

``blufr``
    ROC (VR mean over the trials against log FAR, ± one std shaded), DET, and open-set
    DIR at rank 1 against log FAR (± std);
``identification``
    the closed-set CMC and open-set DIR (rank 1) against log FAR;
``all-pairs``
    ROC (TAR against the actual FAR ``k / Nimp``) and DET.

``identification`` pages also show each input's probe scores (genuine probes' mate
scores against impostor probes' best scores) and its worst false alarms and misses with
the faces (:mod:`.probes`). BLUFR and all-pairs keep no per-pair scores (a BLUFR trial
has 47 million impostor pairs), so their pages have no histograms or galleries.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from massface.evaluate.protocols.identification import IdentificationResult
from massface.evaluate.report import (
    ProtocolRun,
    protocol_run_lines,
    protocol_summary,
    protocol_title,
)
from massface.registry import Registry
from massface.report.header import input_block, short_sha
from massface.report.page import Figure, Notes, Page, Section, Table, anchor
from massface.report.pairs import short_names
from massface.report.plots import Axes, LineChart, Series, render_svg
from massface.report.probes import probe_galleries, score_histogram
from massface.report.thumbs import ImageSource

ChartsOf = Callable[[list[ProtocolRun], list[str]], list[LineChart]]
CURVES: Registry[ChartsOf] = Registry("protocol curves")

ROC_AXES = Axes("false accept rate (FAR, log)", "verification rate", xscale="log")
DET_AXES = Axes("false accept rate (FAR, log)", "false reject rate (log)", xscale="log",
                yscale="log")
DIR_AXES = Axes("false alarm rate (FAR, log)", "detection and identification rate",
                xscale="log")


def _log_far(far: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    """The FAR points above 0 (a log axis cannot show FAR 0), with the matching values."""
    keep = np.asarray(far) > 0
    return [np.asarray(far)[keep], *[np.asarray(a)[..., keep] for a in arrays]]


def _band(mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if np.all(np.isnan(std)):
        return None
    return np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1)


@CURVES.register("blufr", description="ROC, DET and DIR at rank 1, mean ± std of trials")
def blufr_charts(runs: list[ProtocolRun], names: list[str]) -> list[LineChart]:
    roc, det, dir_ = [], [], []
    for run, name in zip(runs, names, strict=True):
        v, o = run.result.verification, run.result.open_set  # type: ignore[attr-defined]
        far, mean, std = _log_far(v.far_points, v.mean, v.std)
        roc.append(Series(name, far, mean, band=_band(mean, std), marker="."))
        x, y = _positive(far, 1 - mean)
        det.append(Series(name, x, y, marker="."))
        r1 = o.ranks.index(1)
        far, mean, std = _log_far(o.far_points, o.mean[r1], o.std[r1])
        dir_.append(Series(f"{name}: rank 1", far, mean, band=_band(mean, std), marker="."))
    n = len(runs[0].result.trials)  # type: ignore[attr-defined]
    return [LineChart("roc", f"Verification ROC (mean ± std of {n} trials)", ROC_AXES, roc,
                      legend="lower right"),
            LineChart("det", "DET (mean of the trials)", DET_AXES, det, legend="upper right"),
            LineChart("dir", "Open-set identification: DIR at rank 1", DIR_AXES, dir_,
                      legend="lower right")]


@CURVES.register("identification", description="CMC and DIR against FAR")
def identification_charts(runs: list[ProtocolRun], names: list[str]) -> list[LineChart]:
    cmc, dir_ = [], []
    for run, name in zip(runs, names, strict=True):
        r = run.result
        ranks = np.arange(1, r.cmc.size + 1)  # type: ignore[attr-defined]
        cmc.append(Series(name, ranks, r.cmc, marker="." if ranks.size <= 30 else None))  # type: ignore[attr-defined]
        o = r.open_set  # type: ignore[attr-defined]
        if o is not None:
            for rank in [k for k in (1, 5) if k in o.ranks]:
                far, rate = _log_far(o.thresholds.far_points, o.dir[o.ranks.index(rank)])
                dir_.append(Series(f"{name}: rank {rank}", far, rate, marker="."))
    charts = [LineChart("cmc", "Closed-set CMC", Axes("rank (log)", "identification rate",
                                                      xscale="log"), cmc,
                        legend="lower right")]
    if dir_:
        charts.append(LineChart("dir", "Open-set identification: DIR against FAR", DIR_AXES,
                                dir_, legend="lower right"))
    return charts


@CURVES.register("all-pairs", description="ROC and DET over every pair")
def all_pairs_charts(runs: list[ProtocolRun], names: list[str]) -> list[LineChart]:
    roc, det = [], []
    for run, name in zip(runs, names, strict=True):
        r = run.result
        far, tar = _positive(r.roc.far, r.tar)  # type: ignore[attr-defined]
        roc.append(Series(name, far, tar, marker="."))
        x, y = _positive(r.roc.far, 1 - r.tar)  # type: ignore[attr-defined]
        det.append(Series(name, x, y, marker="."))
    return [LineChart("roc", "ROC over every pair (actual FAR k/Nimp)", ROC_AXES, roc,
                      legend="lower right"),
            LineChart("det", "DET over every pair", DET_AXES, det, legend="upper right")]


def _positive(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = (x > 0) & (y > 0) & np.isfinite(y)
    return x[keep], y[keep]


def _overview(runs: list[ProtocolRun], names: list[str]) -> Section:
    rows = protocol_summary(runs)[1]
    blocks: list = [Table("Headline figures", ["metric", *names], rows, wide=False)]
    for run, name in zip(runs, names, strict=True):
        fs = run.input
        facts = [("path", str(fs.path)), ("images", f"{len(fs.keys):,}"),
                 ("embedding width", str(fs.features.shape[1]))]
        blocks.append(input_block(name, "embeddings", fs.source_meta,
                                  facts + short_sha(fs.files)))
    blocks.append(Notes(protocol_run_lines(runs)))
    notes = [f"{name}: {note}" for run, name in zip(runs, names, strict=True)
             for note in run.result.notes()]
    if notes:
        blocks.append(Notes(notes, warning=True))
    return Section("Overview", blocks, "overview")


def _details(run: ProtocolRun, index: int, name: str, worst: int) -> list:
    """Histogram and failure galleries where the result keeps per-probe outcomes."""
    r = run.result
    if not isinstance(r, IdentificationResult) or r.outcomes is None:
        return []
    blocks: list = []
    chart = score_histogram(r, index, name)
    if chart is not None:
        blocks.append(Figure(render_svg(chart), "Scores are cosine similarities; dashed: "
                                                "the open-set threshold at FAR 1%."))
    if worst:
        blocks += probe_galleries(r, ImageSource.from_meta(run.input.source_meta), worst)
    return blocks


def labelled_page(runs: list[ProtocolRun], worst: int = 12) -> Page:
    """The whole page for a labelled-set protocol (every run scored by the same one)."""
    names = short_names([str(run.input.path) for run in runs])
    charts = CURVES.get(runs[0].result.protocol_name, "--protocol")(runs, names)
    sections = [_overview(runs, names),
                Section("Curves", [Figure(render_svg(c)) for c in charts], "curves")]
    for i, (run, name) in enumerate(zip(runs, names, strict=True)):
        tables = [Table(t.title, t.header, t.rows, wide=len(t.header) > 5)
                  for t in run.result.tables()]
        sections.append(Section(name if len(runs) > 1 else "Details",
                                [*_details(run, i, name, worst), *tables],
                                anchor(f"input-{i}-{name}")))
    subtitle = "; ".join(f"{n}: " + ", ".join(f"{k} {v}" for k, v in
                                               run.result.headline()[:3])
                         for n, run in zip(names, runs, strict=True))
    return Page(protocol_title(runs), subtitle, sections)

