"""``massface-eval compare REF CANDIDATE``: explain why a device's embeddings differ.

A subcommand of ``massface-eval``'s app (:class:`massface.cli.MainAndSubcommands`). See
:mod:`massface.evaluate.diagnose` for what is measured and the thresholds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from massface import io
from massface.cli import command
from massface.errors import InputError
from massface.evaluate.diagnose import align, compare_aligned
from massface.evaluate.inputs import LoadOptions
from massface.formats.msame import DTYPES
from massface.report.html import HtmlReport


@command("massface-eval compare")
def compare_cmd(
    reference: Annotated[Path, typer.Argument(
        help="The trusted run (e.g. the CPU's embedding folder).", show_default=False)],
    candidate: Annotated[Path, typer.Argument(
        help="The run to explain (e.g. the device's msame/ais_bench output folder) of the "
             "same images: as pairs when both have labels, else image by image (matched by "
             "name, with or without the extension, when both name them).",
        show_default=False)],
    model: Annotated[Path | None, typer.Option(
        help="The reference model (.onnx or .pb): re-embeds a sample under each common "
             "deployment mistake to name the cause.")] = None,
    images: Annotated[Path | None, typer.Option(
        help="Root of the images (the LFW folder) for --model.")] = None,
    labels: Annotated[Path | None, typer.Option(
        help="Pair labels for inputs without their own; a pairs.txt also names the "
             "images (needed for --model with bare msame outputs).")] = None,
    dtype: Annotated[str, typer.Option(help="Raw .bin output type: float32, float16, "
                                            "auto.")] = "auto",
    dim: Annotated[int | None, typer.Option(help="Embedding size.")] = None,
    output_index: Annotated[int, typer.Option(help="Output k of <i>_output_<k>.bin.")] = 0,
    color: Annotated[str | None, typer.Option(help="--model's colour order, if not in its "
                                                   "export.json (RGB | BGR).")] = None,
    mean: Annotated[float | None, typer.Option(help="--model's mean, if not in export.json."
                                               )] = None,
    std: Annotated[float | None, typer.Option(help="--model's std, if not in export.json.")
                   ] = None,
    sample: Annotated[int, typer.Option(help="Images re-embedded per hypothesis.")] = 32,
    worst: Annotated[int, typer.Option(help="Worst images listed.")] = 10,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON."
                                                   )] = None,
    html: Annotated[Path | None, typer.Option(
        help="Write a self-contained HTML page: the per-image cosine histogram, the worst "
             "images with their faces, the evidence.")] = None,
) -> None:
    """Per-image cosine, accuracy difference and (with --model --images) the cause."""
    if (model is None) != (images is None):
        raise InputError("--model and --images go together (the reference model and the "
                         "folder its images are under)")
    if dtype not in ("auto", *DTYPES):
        raise InputError(f"--dtype {dtype!r}: choose auto, {', '.join(DTYPES)}")
    if sample < 2 or worst < 1:
        raise InputError("--sample must be at least 2 and --worst at least 1")
    for option, path in (("--json", json_path), ("--html", html)):
        if path is not None:
            io.check_output_file(path, option)
    page = HtmlReport(html) if html is not None else None
    opts = LoadOptions(labels=labels, dtype=dtype, dim=dim, output_index=output_index)
    reference_model = None
    if model is not None:
        from massface.evaluate.hypotheses import ReferenceModel

        reference_model = ReferenceModel(model, images, {"color": color, "mean": mean,
                                                         "std": std})
    try:
        aligned = align(reference, candidate, opts)
        report = compare_aligned(aligned, reference, candidate, model=reference_model,
                                 sample=sample, worst=worst)
    finally:
        if reference_model is not None:
            reference_model.close()
    console = Console()
    print_report(report, console)
    if json_path is not None:
        io.write_json(json_path, report)
    if page is not None:
        page.write_compare(report, aligned.cosines, _faces_meta(aligned.ref.source_meta, images),
                           console)


def _faces_meta(meta: dict[str, Any], images: Path | None) -> dict[str, Any]:
    """Where the page finds the faces: REF's recorded dataset, else ``--images``."""
    dataset = meta.get("dataset") if isinstance(meta, dict) else None
    if (isinstance(dataset, dict) and dataset.get("root")) or images is None:
        return meta
    return {**meta, "dataset": {"kind": "images", "root": str(images)}}


def print_report(r: dict[str, Any], console: Console) -> None:
    """The report as tables: agreement, accuracy, evidence, verdict."""
    console.print(f"{r['candidate']} vs {r['reference']}: {r['images']} {r['per']}s, "
                  f"cosine min {r['min_cosine']:.9f}, 1st percentile {r['p1_cosine']:.9f}, "
                  f"median {r['median_cosine']:.9f}", highlight=False)
    worst = Table(title="worst images")
    worst.add_column("image")
    worst.add_column("cosine")
    for w in r["worst"]:
        worst.add_row(w["path"], f"{w['cosine']:.9f}")
    console.print(worst)
    a = r["accuracy"]
    console.print(f"images matched by {r['matched_by']}", highlight=False)
    if a is None:
        console.print("accuracy: not compared (no pair labels: give --labels with the pairs "
                      "file both runs embedded to compare accuracies)", highlight=False)
    else:
        _print_accuracy(a, console)
    _print_evidence(r, console)
    console.print(f"cause: {r['cause']} ({r['verdict']})", style="bold", highlight=False)


def _print_accuracy(a: dict[str, Any], console: Console) -> None:
    console.print(f"LFW accuracy: reference {100 * a['reference']:.3f}% ± "
                  f"{100 * a['reference_std']:.3f}, candidate {100 * a['candidate']:.3f}% ± "
                  f"{100 * a['candidate_std']:.3f}, difference {100 * a['difference']:+.3f} "
                  f"points (standard error {100 * a['standard_error']:.3f}): "
                  + ("beyond" if a["beyond_fold_noise"] else "within") + " the fold noise",
                  highlight=False)


def _print_evidence(r: dict[str, Any], console: Console) -> None:
    if r["evidence"]:
        t = Table(title=f"hypotheses on {r['sample']['images']} images (reproduces: median "
                        f"cosine >= {r['thresholds']['reproduce_median_cosine']} and gap <= "
                        f"{r['thresholds']['explains_fraction_of_gap']} x the correct "
                        "pipeline's)")
        for col in ("hypothesis", "cause", "median cosine", "min cosine", "reproduces"):
            t.add_column(col)
        b = r["baseline"]
        t.add_row("(correct pipeline)", "-", f"{b['median_cosine']:.9f}",
                  f"{b['min_cosine']:.9f}", "-")
        for e in r["evidence"]:
            if not e["tried"]:
                t.add_row(e["hypothesis"], e["cause"], "not tried", e["reason"] or "", "-")
                continue
            t.add_row(e["hypothesis"], e["cause"], f"{e['median_cosine']:.9f}",
                      f"{e['min_cosine']:.9f}", "yes" if e["reproduces"] else "no")
        console.print(t)
        if not r["reference_check"]["ok"]:
            console.print("WARNING: the reference model does not reproduce REF on the "
                          f"sample (median cosine {r['reference_check']['median_cosine']:.6f}"
                          "): check --model, --images and the preprocessing", style="yellow",
                          highlight=False)
