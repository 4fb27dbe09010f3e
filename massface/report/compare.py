"""The page of a device diagnosis (``massface-eval compare REF CANDIDATE``).

Built from the comparison report (the JSON-ready dict of
:func:`massface.evaluate.diagnose.compare`: ``reference``, ``candidate``, ``images``,
``per``, ``min_cosine`` / ``p1_cosine`` / ``median_cosine``, ``worst`` [{path, cosine}],
``accuracy`` {reference, candidate, difference, standard_error, beyond_fold_noise,
fold_differences...}, ``thresholds``, ``cause``, ``verdict``, ``evidence``) plus the
per-image cosines it was computed from, and the reference's producer description for the
faces of the worst images.

The cosine histogram is drawn over ``1 - cosine`` on a log scale: two float32 runs of one
model agree to about 1e-10, a float16 device to about 1e-6, a broken pipeline to 1e-2 or
worse, and a linear axis near 1 would show all of these as one bar.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from massface.report.page import (
    Card,
    Face,
    Figure,
    Gallery,
    KeyValues,
    Notes,
    Page,
    Section,
    Table,
)
from massface.report.plots import Axes, HistogramChart, VLine, render_svg
from massface.report.thumbs import ImageSource

#: ``1 - cosine`` below this is drawn at it (exact agreement has no logarithm).
GAP_FLOOR = 1e-12


def cosine_gap_chart(cosines: np.ndarray, thresholds: dict[str, float]) -> HistogramChart:
    """Histogram of log10(1 - cosine) per image, with the verdict's cosine bounds."""
    gap = np.maximum(1.0 - np.asarray(cosines, dtype=np.float64), GAP_FLOOR)
    lines = []
    for key, label in (("none_min_cosine", "bound of verdict 'none'"),
                       ("reproduce_median_cosine", "hypothesis reproduces (median)")):
        if key in thresholds:
            lines.append(VLine(float(np.log10(max(1.0 - thresholds[key], GAP_FLOOR))), label))
    return HistogramChart("cosine-gap", "Per-image agreement of CANDIDATE with REF",
                          Axes("log10(1 - cosine)", "images"),
                          [("images", np.log10(gap), "#1f77b4")], bins=60, lines=lines,
                          density=False)


def _accuracy_table(acc: dict[str, Any]) -> Table:
    def pct(x: float) -> str:
        return f"{100 * x:.3f}"

    rows = [["reference", pct(acc["reference"]), pct(acc.get("reference_std", np.nan))],
            ["candidate", pct(acc["candidate"]), pct(acc.get("candidate_std", np.nan))]]
    return Table("LFW accuracy", ["run", "accuracy %", "± std"], rows,
                 f"Difference {100 * acc['difference']:+.3f} points, standard error "
                 f"{100 * acc['standard_error']:.3f}: "
                 f"{'beyond' if acc['beyond_fold_noise'] else 'within'} the fold noise "
                 f"({acc.get('rule', '')}).", wide=False)


def _evidence_table(evidence: list[dict[str, Any]]) -> Table:
    rows = []
    for e in evidence:
        if not e.get("tried"):
            rows.append([e["hypothesis"], e.get("cause", ""), "not tried", "", "-"])
        else:
            rows.append([e["hypothesis"], e.get("cause", ""), f"{e['median_cosine']:.9f}",
                         f"{e['min_cosine']:.9f}", "yes" if e.get("reproduces") else "no"])
    return Table("Hypotheses (each re-embeds a sample under one deployment mistake)",
                 ["hypothesis", "cause", "median cosine", "min cosine", "reproduces"], rows)


def worst_gallery(report: dict[str, Any], images: ImageSource) -> Gallery:
    cards = [Card(f"{i + 1}. cosine {w['cosine']:.9f}",
                  [Face(w["path"], images.thumbnail(w["path"]))])
             for i, w in enumerate(report.get("worst", []))]
    where = "" if images.problem is None else f" No face images: {images.problem}."
    return Gallery(f"Worst {len(cards)} {report.get('per', 'image')}s", cards,
                   f"Lowest cosine between CANDIDATE's and REF's embeddings first.{where}")


def compare_page(report: dict[str, Any], cosines: np.ndarray,
                 reference_meta: dict[str, Any] | None = None) -> Page:
    """The whole comparison page."""
    images = ImageSource.from_meta(reference_meta or {})
    overview = KeyValues("Runs", [
        ("reference (REF)", str(report["reference"])),
        ("candidate", str(report["candidate"])),
        (f"{report.get('per', 'image')}s compared", f"{report['images']:,}"),
        ("cosine min", f"{report['min_cosine']:.9f}"),
        ("cosine 1st percentile", f"{report['p1_cosine']:.9f}"),
        ("cosine median", f"{report['median_cosine']:.9f}")])
    accuracy = [] if report.get("accuracy") is None else [_accuracy_table(report["accuracy"])]
    blocks: list = [overview, *accuracy,
                    Notes([f"Cause: {report['cause']} ({report['verdict']})"],
                          warning=report["cause"] != "none")]
    sections = [Section("Verdict", blocks, "verdict"),
                Section("Agreement", [Figure(render_svg(cosine_gap_chart(
                    cosines, report.get("thresholds", {}))), "Each image's 1 - cosine; "
                    f"exact agreement is drawn at {GAP_FLOOR:g}."),
                    worst_gallery(report, images)], "agreement")]
    if report.get("evidence"):
        sections.append(Section("Diagnosis", [_evidence_table(report["evidence"])],
                                "diagnosis"))
    return Page("Device comparison", f"{report['candidate']} vs {report['reference']}: "
                f"cause {report['cause']}", sections)
