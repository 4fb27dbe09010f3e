"""``massface-align``: detect faces in photos and align them to a template.

    massface-align PHOTOS --out ALIGNED                          # MTCNN + ArcFace 112x112
    massface-align raw --out crops --template sphereface --pick largest --all-faces
    massface-align raw --out crops --landmarks landmarks.json    # no detection: given points

Mirrors SRC's folder tree in DST and writes ``DST/landmarks.json``, ``DST/skipped.txt``
and ``DST/align.json``; rerunning an interrupted command continues where it stopped.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from massface.align.faces import PICKS, AlignSettings
from massface.align.mtcnn import DetectorOptions
from massface.align.nets import ENGINES
from massface.align.run import EXECUTION_ENGINES, FORMATS, AlignJob, AlignSummary, run_align
from massface.align.templates import TEMPLATES, resolve_template
from massface.align.transform import WARPS
from massface.cli import command, exit_help
from massface.errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None)
err = Console(stderr=True, soft_wrap=True)


@app.command(epilog=exit_help(InputError))
@command("massface-align", resume="the images done so far are kept (OUT/.align-partial); "
         "rerun the same command to continue from them")
def align(
    src: Annotated[Path, typer.Argument(help="folder of photos (any depth)")],
    out: Annotated[Path, typer.Option(help="output folder (mirrors SRC's tree)")],
    template: Annotated[str, typer.Option(
        help=f"{TEMPLATES.choices()}, or a template .json file")] = "arcface",
    landmarks: Annotated[Path | None, typer.Option(
        help="align from these points (landmarks.json schema) instead of detecting")] = None,
    pick: Annotated[str, typer.Option(help=f"which face: {PICKS.choices()}")] = "central",
    all_faces: Annotated[bool, typer.Option(
        help="write every face, as <stem>_<k> (k from 0, ranked by --pick)")] = False,
    min_face: Annotated[float, typer.Option(
        help="smallest face side searched for and kept, in pixels")] = 20.0,
    image_format: Annotated[str, typer.Option("--format", help=FORMATS.choices())] = "jpg",
    quality: Annotated[int, typer.Option(help="JPEG quality")] = 95,
    warp: Annotated[str, typer.Option(help=WARPS.choices())] = "opencv",
    detect_size: Annotated[int, typer.Option(
        help="longer sides above this are downscaled for detection (the warp reads the "
             "original)")] = 1024,
    workers: Annotated[int, typer.Option(help="groups of images processed in parallel "
                                              "(--engine ray: replicas)")] = 2,
    batch: Annotated[int, typer.Option(
        help="images detected together (each MTCNN stage runs once per group)")] = 8,
    detector_engine: Annotated[str, typer.Option(
        help=f"MTCNN's nets: auto (OpenVINO on x86 where installed) | "
             f"{' | '.join(ENGINES)}")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="discard an earlier run in --out")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    engine: Annotated[str, typer.Option(
        help=f"who aligns (same output): {EXECUTION_ENGINES.choices()}; ray: --workers "
             "replicas of one CPU each")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        help="--engine ray: join this Ray cluster (default: $RAY_ADDRESS, else a local "
             "instance sized to this machine)")] = None,
) -> None:
    """Detect, choose and align faces; mirror SRC into --out."""
    if workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1")
    settings = AlignSettings(resolve_template(template), pick, all_faces, warp,
                             DetectorOptions(min_face=min_face, detect_size=detect_size,
                                             engine=detector_engine, streams=workers))
    if batch < 1:
        raise InputError(f"--batch {batch}: must be at least 1")
    job = AlignJob(src, out, settings, landmarks, image_format, quality, workers,
                   overwrite, batch=batch, progress=not quiet and sys.stderr.isatty(),
                   engine=engine, ray_address=ray_address)
    _report(run_align(job), out)


def _report(s: AlignSummary, out: Path) -> None:
    if s.already_complete:
        err.print(f"{out}: already complete for these images and settings (--overwrite to "
                  "redo)", highlight=False)
    skipped = sum(s.skipped.values())
    detail = ", ".join(f"{reason} {n}" for reason, n in s.skipped.items())
    msg = (f"{s.images} images: {s.aligned} aligned ({s.faces_written} faces written), "
           f"{skipped} skipped" + (f" ({detail}; see {out}/skipped.txt)" if skipped else ""))
    if not s.already_complete:
        msg += f", {s.images_per_s:.1f} img/s"
        if s.resumed:
            msg += f" (resumed after {s.resumed} images)"
        if s.redone:
            msg += f" ({s.redone} changed since the interrupted run: aligned again)"
    if s.ignored:
        msg += "; ignored: " + ", ".join(f"{n} {reason}" for reason, n in s.ignored.items())
    err.print(f"{msg} -> {out}", highlight=False)


def main() -> None:
    """Console entry point (``massface-align``)."""
    app()


if __name__ == "__main__":
    main()
