"""Self-contained HTML reports: one page per evaluation, training run or comparison.

    massface-eval INPUTS... --html report.html      # any protocol, one or several inputs
    massface-train report RUN [--out RUN/report.html]

A page is built as a view-model (:mod:`.page`) from result objects by one builder per
kind of page (:mod:`.pairs`, :mod:`.labelled`, :mod:`.training`, :mod:`.compare`), with
charts drawn by matplotlib as inline SVG (:mod:`.plots`) and faces inlined as small JPEG
``data:`` URIs (:mod:`.thumbs`), then rendered by one jinja2 template. Nothing here is
imported by the evaluation itself: matplotlib and jinja2 (the ``report`` extra) load only
when a page is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from massface.evaluate.report import ProtocolRun, Run


def write_pairs_report(path: str | Path, runs: list[Run], worst: int = 12) -> int:
    """The LFW-protocol page of ``runs`` at ``path``; returns its size in bytes."""
    from massface.report.page import write_page
    from massface.report.pairs import pairs_page

    return write_page(path, pairs_page(runs, worst))


def write_protocol_report(path: str | Path, runs: list[ProtocolRun], worst: int = 12) -> int:
    """The page of a labelled-set protocol (blufr, identification, all-pairs)."""
    from massface.report.labelled import labelled_page
    from massface.report.page import write_page

    return write_page(path, labelled_page(runs, worst))


def write_training_report(run_dir: str | Path, path: str | Path) -> int:
    """The page of the ``massface-train`` run folder ``run_dir``, written at ``path``."""
    from massface.report.page import write_page
    from massface.report.training import read_run, training_page

    return write_page(path, training_page(read_run(Path(run_dir))))


def write_compare_report(path: str | Path, report: dict[str, Any], cosines: Any,
                         reference_meta: dict[str, Any] | None = None) -> int:
    """The page of a ``massface-eval compare`` report (its dict, the per-image cosines it
    was computed from, and REF's producer description for the faces)."""
    from massface.report.compare import compare_page
    from massface.report.page import write_page

    return write_page(path, compare_page(report, cosines, reference_meta))
