"""The page of an LFW-protocol evaluation (``massface-eval INPUTS... --html FILE``).

For one or several scored inputs (:class:`massface.evaluate.report.Run`): the inputs and
the protocol, the headline figures with their std, the ROC (log FAR) and DET of every
input overlaid, and per input the genuine/impostor distance histograms with each fold's
threshold, the per-fold table and the worst false accepts and false rejects with both
faces.

A pair is accepted when its distance is strictly below its test fold's threshold
(``dist < t``, SPEC section 1), the rule the accuracy counts; so the galleries hold
exactly the pairs the accuracy counts as wrong, each with the distance its fold scored
(after that fold's mean subtraction, with ``--subtract-mean``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from massface.evaluate.report import Run, fold_rows, protocol_lines, summary_rows
from massface.report.header import input_block, short_sha
from massface.report.page import (
    Card,
    Face,
    Figure,
    Gallery,
    Notes,
    Page,
    Section,
    Table,
    anchor,
)
from massface.report.plots import (
    GENUINE_COLOUR,
    IMPOSTOR_COLOUR,
    Axes,
    HistogramChart,
    LineChart,
    Point,
    Series,
    VLine,
    log_positive,
    render_svg,
)
from massface.report.thumbs import ImageSource
from massface.scoring.distances import DISTANCES

#: Worst false accepts and false rejects shown per input (``--html-worst``).
DEFAULT_WORST = 12


@dataclass
class FailedPair:
    """A pair the accuracy counts as wrong."""

    pair: int             # index in the labels / pairs file (original numbering, from 0)
    refs: tuple[str, str] | None
    same: bool
    distance: float
    threshold: float
    fold: int             # from 0


def short_names(names: list[str]) -> list[str]:
    """Legend labels: the last path part, or more of the path where they would clash."""
    for depth in range(1, 8):
        short = [str(PurePath(*PurePath(n).parts[-depth:])) for n in names]
        if len(set(short)) == len(short):
            return short
    return names


def _distances(run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each scored pair's distance, its fold's threshold and its fold."""
    r = run.result
    if r.pair_distances is None or r.pair_folds is None:
        raise ValueError("the result has no per-pair distances (made by an older verify?)")
    folds = np.asarray(r.pair_folds, dtype=np.int64)
    return np.asarray(r.pair_distances), np.asarray(r.fold_threshold)[folds], folds


def original_pair_numbers(run: Run) -> np.ndarray:
    """The pairs-file index of each scored pair (pairs dropped by --allow-missing skipped)."""
    total = run.input.n_pairs_total or run.input.issame.size
    return np.delete(np.arange(total), run.input.dropped_pairs)


def failed_pairs(run: Run, worst: int | None = None) -> tuple[list[FailedPair],
                                                              list[FailedPair]]:
    """(false accepts, closest first; false rejects, farthest first), ``worst`` of each."""
    dist, thr, folds = _distances(run)
    same = np.asarray(run.input.issame, dtype=bool)
    accepted = dist < thr
    fa = np.flatnonzero(~same & accepted)
    fa = fa[np.argsort(dist[fa], kind="stable")]
    fr = np.flatnonzero(same & ~accepted)
    fr = fr[np.argsort(-dist[fr], kind="stable")]
    numbers = original_pair_numbers(run)
    refs = run.input.pair_refs

    def describe(rows: np.ndarray) -> list[FailedPair]:
        return [FailedPair(int(numbers[i]), refs[i] if refs is not None else None,
                           bool(same[i]), float(dist[i]), float(thr[i]), int(folds[i]))
                for i in rows[:worst]]

    return describe(fa), describe(fr)


def error_counts(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """False accepts and false rejects per fold."""
    dist, thr, folds = _distances(run)
    same = np.asarray(run.input.issame, dtype=bool)
    accepted = dist < thr
    n = run.result.protocol.n_folds
    return (np.bincount(folds[~same & accepted], minlength=n),
            np.bincount(folds[same & ~accepted], minlength=n))


def operating_point(run: Run) -> tuple[float, float]:
    """Mean over the folds of the test FAR and TAR at each fold's accuracy threshold."""
    dist, thr, folds = _distances(run)
    same = np.asarray(run.input.issame, dtype=bool)
    fars, tars = [], []
    for f in range(run.result.protocol.n_folds):
        test = folds == f
        fars.append(np.mean(dist[test & ~same] < thr[test & ~same]))
        tars.append(np.mean(dist[test & same] < thr[test & same]))
    return float(np.mean(fars)), float(np.mean(tars))


def roc_chart(runs: list[Run]) -> LineChart:
    """TAR against log-scale FAR (mean over the test folds), every input overlaid."""
    names = short_names([run.input.name for run in runs])
    series, points = [], []
    for i, (run, name) in enumerate(zip(runs, names, strict=True)):
        r = run.result
        x, y = log_positive(r.fpr, r.tpr)
        series.append(Series(f"{name}: AUC {r.auc:.5f}", x, y, steps=True))
        far, tar = operating_point(run)
        if far > 0:
            points.append(Point(f"{name}: accuracy threshold (FAR {100 * far:.2f}%)", far, tar,
                                series=i))
        if r.far > 0:
            points.append(Point(f"{name}: VAL {100 * r.val:.2f}% @ FAR "
                                f"{r.protocol.far_target:g}", r.far, r.val, series=i,
                                marker="s"))
    return LineChart("roc", "ROC (mean over the test folds)",
                     Axes("false accept rate (FAR, log)", "true accept rate (TAR)",
                          xscale="log"), series, points, legend="lower right")


def det_chart(runs: list[Run]) -> LineChart:
    """False reject rate against false accept rate, both log-scale."""
    names = short_names([run.input.name for run in runs])
    series = []
    for run, name in zip(runs, names, strict=True):
        r = run.result
        x, y = log_positive(r.fpr, 1.0 - r.tpr)
        series.append(Series(f"{name}: EER {100 * r.eer:.2f}%", x, y, steps=True))
    return LineChart("det", "DET (mean over the test folds)",
                     Axes("false accept rate (FAR, log)", "false reject rate (FRR, log)",
                          xscale="log", yscale="log"), series, legend="upper right")


def histogram_chart(run: Run, index: int, name: str) -> HistogramChart:
    """Genuine and impostor distances with each fold's accuracy threshold."""
    dist, _, _ = _distances(run)
    same = np.asarray(run.input.issame, dtype=bool)
    r = run.result
    lines = [VLine(float(t), f"fold thresholds ({r.protocol.n_folds})")
             for t in np.unique(r.fold_threshold)]
    return HistogramChart(f"hist-{index}", f"{name}: distances",
                          Axes(DISTANCES.description(r.protocol.distance), "density"),
                          [("genuine pairs", dist[same], GENUINE_COLOUR),
                           ("impostor pairs", dist[~same], IMPOSTOR_COLOUR)], lines=lines)


def _card(p: FailedPair, images: ImageSource) -> Card:
    refs = p.refs or (f"pair {p.pair}, image a", f"pair {p.pair}, image b")
    faces = [Face(ref, images.thumbnail(ref) if p.refs else None) for ref in refs]
    rel = "<" if p.distance < p.threshold else ">="
    return Card(f"pair {p.pair} · fold {p.fold + 1} · {'same' if p.same else 'different'}",
                faces, [("distance", f"{p.distance:.4f}"), (rel, f"{p.threshold:.4f}")])


def galleries(run: Run, worst: int) -> list[Gallery]:
    """The worst false accepts and false rejects of one input, with their faces."""
    fa, fr = failed_pairs(run, worst)
    n_fa, n_fr = (int(c.sum()) for c in error_counts(run))
    images = ImageSource.from_meta(run.input.source_meta)
    where = "" if images.problem is None else f" No face images: {images.problem}."
    if run.input.pair_refs is None:
        where = " No face images: the input does not name its images (a pairs file does)."
    where += " Pairs are numbered from 0 in the pairs file's order; folds from 1."
    return [
        Gallery(f"Worst false accepts ({len(fa)} of {n_fa})", [_card(p, images) for p in fa],
                "Different people accepted: distance below the fold's threshold, smallest "
                f"first.{where}", "No false accepts."),
        Gallery(f"Worst false rejects ({len(fr)} of {n_fr})", [_card(p, images) for p in fr],
                "Same person rejected: distance at or above the fold's threshold, largest "
                f"first.{where}", "No false rejects."),
    ]


def fold_table(run: Run) -> Table:
    """The per-fold table of the console report, plus each fold's errors."""
    header, rows = fold_rows(run)
    fa, fr = error_counts(run)
    rows = [[*row, str(int(fa[f])), str(int(fr[f]))] for f, row in enumerate(rows)]
    return Table("Per fold", [*header, "FA", "FR"], rows,
                 "Threshold: the first best threshold on the training folds, applied to the "
                 "test fold (accept when distance < threshold); FA, FR: the fold's false "
                 "accepts and false rejects at it.", wide=False)


def summary_table(runs: list[Run]) -> Table:
    """Metrics as rows, inputs as columns (as on the console)."""
    header, rows = summary_rows(runs)
    names = short_names([run.input.name for run in runs])
    return Table("Headline figures", ["metric", *names],
                 [[h, *[row[i] for row in rows]] for i, h in enumerate(header) if i > 0],
                 wide=False)


def _overview(runs: list[Run]) -> Section:
    blocks: list = [summary_table(runs)]
    for run, name in zip(runs, short_names([run.input.name for run in runs]), strict=True):
        d = run.input
        facts = [("path", d.name), ("pairs scored", f"{d.issame.size:,}"
                                    + (f" of {d.n_pairs_total:,}" if d.dropped_pairs else "")),
                 ("embedding width", str(d.embeddings.shape[1]))]
        if d.details.get("labels"):
            facts.append(("labels", str(d.details["labels"])))
        blocks.append(input_block(name, d.kind, d.source_meta, facts + short_sha(d.files)))
    lines = protocol_lines(runs)
    blocks.append(Notes(lines[:1]))
    if lines[1:]:
        blocks.append(Notes(lines[1:], warning=True))
    return Section("Overview", blocks, "overview")


def pairs_page(runs: list[Run], worst: int = DEFAULT_WORST) -> Page:
    """The whole page for the LFW pair protocol."""
    names = short_names([run.input.name for run in runs])
    subtitle = "; ".join(f"{n}: {100 * run.result.accuracy:.3f}% ± "
                         f"{100 * run.result.accuracy_std:.3f} ({run.result.n_pairs:,} "
                         f"pairs, {run.result.protocol.n_folds} folds)"
                         for n, run in zip(names, runs, strict=True))
    sections = [
        _overview(runs),
        Section("Curves", [Figure(render_svg(roc_chart(runs)),
                                  "Circles: the mean test FAR/TAR at each fold's accuracy "
                                  "threshold; squares: VAL@FAR."),
                           Figure(render_svg(det_chart(runs)))], "curves"),
    ]
    for i, (run, name) in enumerate(zip(runs, names, strict=True)):
        blocks = [Figure(render_svg(histogram_chart(run, i, name)),
                         "Each pair's distance as its test fold scored it; dashed: the folds' "
                         "accuracy thresholds."), fold_table(run),
                  *(galleries(run, worst) if worst else [])]
        sections.append(Section(name if len(runs) > 1 else "Folds and failed pairs", blocks,
                                anchor(f"input-{i}-{name}")))
    return Page("LFW-protocol verification", subtitle, sections)
