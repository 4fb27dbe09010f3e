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

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from massface.evaluate.report import ProtocolRun, Run


def _pairs_page(runs: list[Run], worst: int) -> Any:
    from massface.report.pairs import pairs_page

    return pairs_page(runs, worst)


def _labelled_page(runs: list[ProtocolRun], worst: int) -> Any:
    from massface.report.labelled import labelled_page

    return labelled_page(runs, worst)


#: The page builder of each evaluation report kind (``massface.evaluate.report.REPORT_KINDS``):
#: ``pairs`` (LFW: curves, folds, failed pairs) and ``protocol`` (labelled sets, sphereface).
PAGES: dict[str, Callable[[list[Any], int], Any]] = {"pairs": _pairs_page,
                                                     "protocol": _labelled_page}


def write_eval_report(kind: str, path: str | Path, runs: list[Any], worst: int = 12) -> int:
    """The ``massface-eval --html`` page of ``runs`` of report kind ``kind`` at ``path``
    (every protocol's page goes through here); returns its size in bytes."""
    from massface.report.page import write_page

    return write_page(path, PAGES[kind](runs, worst))


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
