"""Command-line glue of the HTML reports.

:class:`HtmlReport` is ``massface-eval --html FILE [--html-worst N]``: created before any
work, it checks that jinja2 and matplotlib are installed (a missing one is an
:class:`~massface.errors.InputError` saying ``pip install 'massface[report]'``, exit 2,
before minutes of evaluation are spent), then writes the page of whatever the protocol
produced. :data:`train_app` is ``massface-train report RUN``, dispatched by
``massface-train``'s ``main()`` (``massface-train CONFIG`` stays one command).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from massface.cli import command, exit_help
from massface.errors import InputError
from massface.io import check_output_file
from massface.optional import require


def require_report_packages(purpose: str) -> None:
    """jinja2 and matplotlib, or the install message (exit 2)."""
    require("jinja2", extra="report", purpose=purpose)
    require("matplotlib", extra="report", purpose=purpose)


def _say_written(console: Any, path: Path, size: int) -> None:
    console.print(f"HTML report: {path} ({size / 1e6:.2f} MB)", highlight=False,
                  soft_wrap=True)


@dataclass
class HtmlReport:
    """``--html PATH`` with ``--html-worst N``."""

    path: Path
    worst: int = 12

    def __post_init__(self) -> None:
        require_report_packages("--html")

    def write_pairs(self, runs: list[Any], console: Any) -> int:
        from massface.report import write_pairs_report

        size = write_pairs_report(self.path, runs, self.worst)
        _say_written(console, self.path, size)
        return size

    def write_protocol(self, runs: list[Any], console: Any) -> int:
        from massface.report import write_protocol_report

        size = write_protocol_report(self.path, runs, self.worst)
        _say_written(console, self.path, size)
        return size

    def write_compare(self, report: dict[str, Any], cosines: Any,
                      reference_meta: dict[str, Any], console: Any) -> int:
        from massface.report import write_compare_report

        size = write_compare_report(self.path, report, cosines, reference_meta)
        _say_written(console, self.path, size)
        return size


train_app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                        help="Write the HTML report of a training run folder.")


@train_app.command(epilog=exit_help(InputError))
@command("massface-train report")
def train_report(
    run: Annotated[Path, typer.Argument(
        help="A run folder of massface-train (metrics.csv, config.yaml, ...).",
        show_default=False)],
    out: Annotated[Path | None, typer.Option(
        help="Where to write the page (default: RUN/report.html).")] = None,
) -> None:
    """Loss, accuracy, learning rate, periodic verification and mining curves of RUN,
    its config and summary, as one self-contained HTML page."""
    from rich.console import Console

    target = out if out is not None else run / "report.html"
    check_output_file(target, "--out")
    require_report_packages("massface-train report")
    from massface.report import write_training_report

    _say_written(Console(), target, write_training_report(run, target))


def train_main(argv: list[str] | None = None) -> None:
    """``massface-train report ...`` (``argv`` without the word ``report``)."""
    train_app(args=argv, prog_name="massface-train report")
