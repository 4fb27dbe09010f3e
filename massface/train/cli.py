"""`massface-train`: train MobileFaceNet from a YAML experiment config.

    massface-train configs/orl_cosface.yaml --set optimizer.learning_rate=0.05
    massface-train configs/massface_triplet.yaml --pretrained work_dirs/massface_pretrain
    massface-train report work_dirs/orl_cosface        # the run's HTML report

Outputs go to ``<work_dir>/<name>/`` (config snapshot, checkpoints, TensorBoard logs,
metrics.csv, validation.jsonl, summary.json); running the same command again resumes
from the latest checkpoint. Exit codes: 0 done, 2 bad input, 3 NaN loss (last good
checkpoint kept), 130 interrupted (checkpoint saved).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from massface.cli import MAIN, MainAndSubcommands, command, exit_help
from massface.errors import InputError, NonFiniteLossError, RunInterruptedError

app = typer.Typer(cls=MainAndSubcommands, add_completion=False, help=__doc__)


@app.command(MAIN, hidden=True, no_args_is_help=True,
             epilog=exit_help(InputError, NonFiniteLossError, RunInterruptedError))
@command("massface-train")
def train(
    config: Annotated[Path | None, typer.Argument(help="experiment YAML (may name a "
                                                  "'base:' file)")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="override a config key: --set optimizer.learning_rate=0.01")] = None,
    name: Annotated[str | None, typer.Option(help="run name (folder under work_dir)")] = None,
    work_dir: Annotated[str | None, typer.Option(help="parent folder of runs")] = None,
    pretrained: Annotated[str | None, typer.Option(
        help="run folder or checkpoint whose backbone starts this run")] = None,
    max_steps: Annotated[int | None, typer.Option(help="stop after this many steps")] = None,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="print the merged config and exit")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Train (or resume) one experiment: outputs in <work_dir>/<name>/ (config.yaml,
    checkpoints/, logs/, metrics.csv, validation.jsonl, summary.json). Running it again
    resumes from the latest checkpoint. Exit codes: 0 done, 2 bad input, 3 NaN loss (last
    good checkpoint kept), 130 interrupted by Ctrl-C/SIGTERM (checkpoint saved)."""
    console = Console(stderr=True)
    from massface.train.config import dump_config, load_config

    # Options are set as typed (no YAML reading: --name 2024 / --name yes stay text).
    values = {key: value for key, value in (
        ("name", name), ("work_dir", work_dir), ("train.pretrained", pretrained),
        ("train.max_steps", max_steps)) if value is not None}
    if not progress:
        values["train.progress"] = False
    cfg = load_config(config, list(set_ or []), values)
    if print_config:
        typer.echo(dump_config(cfg), nl=False)
        return
    from massface.io import check_output_dir

    check_output_dir(cfg.run_dir, "work_dir/name")  # before TensorFlow loads
    from massface.train.trainer import Trainer

    result = Trainer(cfg, console=console).run()
    console.print(f"{result.status}: step {result.final_step}, checkpoint "
                  f"{result.last_checkpoint}, {result.images_per_s:.1f} images/s")
    if result.validation:
        console.print("verification: " + ", ".join(f"{k} {v:.4f}" for k, v in
                                                   result.validation.items()))
    if result.status == "nan":
        raise NonFiniteLossError(f"{result.run_dir}: the loss became NaN/Inf at step "
                                 f"{result.final_step}; the last good checkpoint is "
                                 f"{result.last_checkpoint}")
    if result.status == "interrupted":
        raise RunInterruptedError(f"{result.run_dir}: interrupted at step {result.final_step};"
                                  f" checkpoint {result.last_checkpoint} saved (run the same "
                                  "command to resume)")


@app.command("report", no_args_is_help=True, epilog=exit_help(InputError))
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
    from massface.io import check_output_file
    from massface.report import write_training_report
    from massface.report.html import require_report_packages, say_written

    target = out if out is not None else run / "report.html"
    check_output_file(target, "--out")
    require_report_packages("massface-train report")
    say_written(Console(), target, write_training_report(run, target))


def main() -> None:
    """Console entry point: ``massface-train CONFIG`` and ``massface-train report RUN``."""
    app(prog_name="massface-train")


if __name__ == "__main__":
    sys.exit(main())
