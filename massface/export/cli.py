"""`massface-export`: checkpoint or TFLite model -> .pb / ONNX / Ascend .om, with proof.

Every artifact is checked against its source on real faces before it is published; an
export that fails leaves nothing in OUT that looks finished (a failing ATC run keeps the
verified .pb/.onnx and records the failure in export.json). The exit statuses are listed
in ``--help``, generated from :mod:`massface.errors`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from massface.cli import command, exit_help
from massface.errors import AtcError, AtcMissingError, InputError, VerificationError
from massface.export import atc as atc_mod
from massface.export.onnx_graph import DEFAULT_OPSET
from massface.export.parity import MIN_COSINE
from massface.export.pipeline import (
    ExportOptions,
    export_checkpoint,
    import_tflite,
    tflite_to_run,
)

app = typer.Typer(add_completion=False, help=__doc__, rich_markup_mode=None)
err = Console(stderr=True)


def _summary(result) -> None:
    m = result.manifest
    table = Table(title=f"massface-export -> {result.out}")
    for col in ("artifact", "file", "min cosine", "max |diff|", "sha256"):
        table.add_column(col)
    for kind, art in m["artifacts"].items():
        p = m["parity"].get(kind, {})
        table.add_row(kind, art["file"],
                      f"{p['min_cosine']:.10f}" if p else "not measured",
                      f"{p['max_abs_diff']:.3g}" if p else "-", art["sha256"][:16])
    err.print(table)
    atc = m["atc"]
    if atc.get("status") == "deferred":
        err.print(f"WARNING: no .om built: {atc['message']}\n  {result.out / 'atc.sh'}: "
                  f"{atc['command']}", style="yellow", markup=False, highlight=False,
                  soft_wrap=True)
    elif atc.get("status") == "built":
        err.print(atc["message"], style="green", markup=False, highlight=False, soft_wrap=True)
    elif atc.get("status") == "skipped":
        err.print("no .om requested (--no-om)")


EXIT_HELP = exit_help(
    InputError, VerificationError, AtcError, AtcMissingError,
    done="done (the .om built, skipped with --no-om, or deferred: no atc on PATH, the "
         "exact command written to OUT/atc.sh, with a warning)")


@app.command(epilog=EXIT_HELP)
@command("massface-export")
def export(
    out: Annotated[Path, typer.Option("--out", help="Output folder (created; must be new "
                                      "or empty unless --overwrite).")],
    ckpt: Annotated[str | None, typer.Option(
        "--ckpt", help="massface-train run folder (latest checkpoint) or a checkpoint "
        "prefix.")] = None,
    tflite: Annotated[Path | None, typer.Option(
        "--tflite", help="Import a TFLite model instead (-> ONNX, dynamic batch).")] = None,
    soc: Annotated[str, typer.Option(
        "--soc", help="Ascend SoC for ATC (--soc_version), as `npu-smi info` names it."
    )] = atc_mod.DEFAULT_SOC,
    trust_soc: Annotated[bool, typer.Option(
        "--trust-soc", help="Accept a SoC name newer than massface's list.")] = False,
    opset: Annotated[int, typer.Option(
        "--opset", help="ONNX opset (11 for older CANN/ATC).")] = DEFAULT_OPSET,
    normalize: Annotated[bool, typer.Option(
        "--normalize/--no-normalize", help="L2-normalise the embeddings inside the "
        "exported graph.")] = False,
    dynamic_batch: Annotated[str, typer.Option(
        "--dynamic-batch", help="ATC batch gears (2-100 sizes, each 1-2048); one value = "
        "static batch.")] = ",".join(map(str, atc_mod.DEFAULT_GEARS)),
    precision_mode: Annotated[str, typer.Option(
        "--precision-mode", help="ATC --precision_mode: " + ", ".join(atc_mod.PRECISION_MODES)
    )] = atc_mod.DEFAULT_PRECISION_MODE,
    om: Annotated[bool, typer.Option(
        "--om/--no-om", help="Build (or script, without atc) the Ascend .om.")] = True,
    om_from: Annotated[str, typer.Option(
        "--om-from", help="Model ATC converts: pb (framework 3) or onnx (framework 5).")
    ] = "pb",
    require_om: Annotated[bool, typer.Option(
        "--require-om", help="Fail (exit 5) when atc is not on PATH instead of writing "
        "atc.sh.")] = False,
    name: Annotated[str, typer.Option("--name", help="File stem of the artifacts.")] = "model",
    parity_images: Annotated[str | None, typer.Option(
        "--parity-images", help="Folder of aligned faces (or an LFW pairs.txt) for the "
        "parity check; default: the shared LFW.")] = None,
    parity_count: Annotated[int, typer.Option(
        "--parity-count", help="Faces in the parity batch.")] = 16,
    min_cosine: Annotated[float, typer.Option(
        "--min-cosine", help="Parity bound: minimum per-image cosine similarity.")
    ] = MIN_COSINE,
    to_checkpoint: Annotated[Path | None, typer.Option(
        "--to-checkpoint", help="With --tflite: also map its weights onto massface's "
        "MobileFaceNet and write a massface-train run folder here (for --pretrained)."
    )] = None,
    calibration_images: Annotated[str | None, typer.Option(
        "--calibration-images", help="Faces for the mapped BatchNorm statistics (default: "
        "LFW images not in pairs.txt).")] = None,
    calibration_count: Annotated[int, typer.Option(
        "--calibration-count", help="How many calibration faces.")] = 256,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace a non-empty --out (only once the new export is "
        "complete).")] = False,
) -> None:
    """Export a checkpoint (or import a TFLite model) and prove each artifact matches."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if (ckpt is None) == (tflite is None):
        raise InputError("give exactly one of --ckpt (a massface-train run or "
                         "checkpoint prefix) or --tflite (a TFLite model)")
    if to_checkpoint is not None and tflite is None:
        raise InputError("--to-checkpoint needs --tflite (it maps a TFLite model's "
                         "weights onto massface's MobileFaceNet)")
    options = ExportOptions(
        normalize=normalize, opset=opset, om=om, om_from=om_from, require_om=require_om,
        soc=soc, trust_soc=trust_soc, gears=dynamic_batch, precision_mode=precision_mode,
        name=name, parity_images=parity_images, parity_count=parity_count,
        min_cosine=min_cosine, overwrite=overwrite)
    options.validate()

    def log(msg: str) -> None:
        err.print(msg, style="dim", markup=False, highlight=False, soft_wrap=True)

    with err.status("exporting..."):
        if ckpt is not None:
            result = export_checkpoint(ckpt, out, options, log=log)
        else:
            result = import_tflite(tflite, out, options, log=log)
    if to_checkpoint is not None:
        with err.status("mapping the TFLite weights..."):
            run = tflite_to_run(tflite, to_checkpoint, options, log=log,
                                calibration_images=calibration_images,
                                calibration_count=calibration_count)
        err.print(f"massface-train run folder: {run['run_dir']} (massface-train "
                  f"--pretrained {run['run_dir']} --set model.embedding_size="
                  f"{run['embedding_size']}); mapped model vs TFLite: min cosine "
                  f"{run['parity']['min_cosine']:.8f}", markup=False, highlight=False,
                  soft_wrap=True)
    _summary(result)


def main() -> None:
    """Console entry point (`massface-export`)."""
    app()


if __name__ == "__main__":
    main()
