"""The HTML report as the commands ask for it.

:class:`HtmlReport` is ``massface-eval --html FILE [--html-worst N]``: created before any
work, it checks that jinja2 and matplotlib are installed (a missing one is an
:class:`~massface.errors.InputError` saying ``pip install 'massface[report]'``, exit 2,
before minutes of evaluation are spent), then writes the page of whatever the protocol
produced. ``massface-train report RUN`` is in :mod:`massface.train.cli`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from massface.optional import require


def require_report_packages(purpose: str) -> None:
    """jinja2 and matplotlib, or the install message (exit 2)."""
    require("jinja2", extra="report", purpose=purpose)
    require("matplotlib", extra="report", purpose=purpose)


def say_written(console: Any, path: Path, size: int) -> None:
    console.print(f"HTML report: {path} ({size / 1e6:.2f} MB)", highlight=False,
                  soft_wrap=True)


@dataclass
class HtmlReport:
    """``--html PATH`` with ``--html-worst N``."""

    path: Path
    worst: int = 12

    def __post_init__(self) -> None:
        require_report_packages("--html")

    def write(self, kind: str, runs: list[Any], console: Any) -> int:
        """The page of an evaluation's ``runs`` of report kind ``kind``."""
        from massface.report import write_eval_report

        size = write_eval_report(kind, self.path, runs, self.worst)
        say_written(console, self.path, size)
        return size

    def write_compare(self, report: dict[str, Any], cosines: Any,
                      reference_meta: dict[str, Any], console: Any) -> int:
        from massface.report import write_compare_report

        size = write_compare_report(self.path, report, cosines, reference_meta)
        say_written(console, self.path, size)
        return size
