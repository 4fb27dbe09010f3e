"""`massface-export`: checkpoint or TFLite model -> .pb / ONNX / Ascend .om, with proof.

Every artifact is checked against its source on real faces before it is published; an
export that fails leaves nothing in OUT that looks finished (a failing ATC run keeps the
verified .pb/.onnx and records the failure in export.json). The exit statuses are listed
in ``--help``, generated from :mod:`massface.errors`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from massface.cli import command, exit_help
from massface.errors import AtcError, AtcMissingError, InputError, VerificationError
from massface.export import atc as atc_mod
from massface.export.int8 import CALIBRATIONS
from massface.export.onnx_graph import DEFAULT_OPSET
from massface.export.parity import MIN_COSINE
from massface.export.pipeline import (
    ExportOptions,
    export_checkpoint,
    import_onnx,
    import_tflite,
    tflite_to_run,
)
from massface.export.precision import PRECISION_TARGETS
from massface.export.preview import CONFIG_NAME_IN_RUN, preview_options, read_export_config
from massface.io import check_output_dir
from massface.lock import path_lock

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


def _default_out(out: Path | None, ckpt: str | None) -> Path:
    """``--out``, else (with ``--ckpt``) ``export/`` in the run folder, said aloud."""
    if out is not None:
        return out
    if ckpt is None:
        raise InputError("--out is required with --tflite and --onnx (the folder the export "
                         "writes)")
    run = Path(ckpt) if Path(ckpt).is_dir() else Path(ckpt).parent
    err.print(f"--out not given: writing to {run / 'export'}", markup=False, highlight=False)
    return run / "export"


@app.command(epilog=EXIT_HELP)
@command("massface-export")
def export(
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (created; must be "
                                             "new or empty unless --overwrite). Default with "
                                             "--ckpt: the run folder's export/.")] = None,
    ckpt: Annotated[str | None, typer.Option(
        "--ckpt", help="massface-train run folder (latest checkpoint) or a checkpoint "
        "prefix.")] = None,
    tflite: Annotated[Path | None, typer.Option(
        "--tflite", help="Import a TFLite model instead (-> ONNX, dynamic batch).")] = None,
    onnx_model: Annotated[Path | None, typer.Option(
        "--onnx", help="Start from an existing NHWC face ONNX (no TensorFlow needed): for "
        "--aipp, --precision-preview and the ATC command.")] = None,
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
        "--precision-mode",
        help="ATC --precision_mode: " + ", ".join(atc_mod.PRECISION_MODES.names()))
    ] = atc_mod.DEFAULT_PRECISION_MODE,
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
    calibration_count: Annotated[int | None, typer.Option(
        "--calibration-count", help="How many calibration faces (default 256).")] = None,
    precision_preview: Annotated[str | None, typer.Option(
        "--precision-preview", help="CPU previews of the device's numerics, scored "
        "against fp32 in an accuracy budget: " + PRECISION_TARGETS.choices()
        + ". E.g. fp16,int8.")] = None,
    aipp: Annotated[bool | None, typer.Option(
        "--aipp/--no-aipp", help="Move the preprocessing onto the chip (ATC static AIPP: "
        "the .om takes uint8 RGB); also writes the CPU twin <name>.aipp.onnx.")] = None,
    precision_pairs: Annotated[str | None, typer.Option(
        "--precision-pairs", help="Accuracy budget over 'all' LFW pairs (default; about a "
        "minute per variant on 2 cores), N pairs spread over the 10 folds, or 0 (parity "
        "faces only, no accuracy).")] = None,
    precision_lfw: Annotated[str | None, typer.Option(
        "--precision-lfw", help="Aligned faces for the accuracy budget (default: the "
        "shared LFW).")] = None,
    precision_lfw_pairs: Annotated[str | None, typer.Option(
        "--precision-lfw-pairs", help="Their pairs file (default: pairs.txt inside or "
        "beside --precision-lfw).")] = None,
    int8_calibration: Annotated[str | None, typer.Option(
        "--int8-calibration", help="int8 activation ranges: " + CALIBRATIONS.choices()
        + " (default percentile, closest to AMCT's clipping search; measured on the "
        "shared model: percentile -0.15, minmax -0.47 LFW points).")] = None,
    int8_keep_float: Annotated[str | None, typer.Option(
        "--int8-keep-float", help="Convolutions int8 leaves in float: first,last "
        "(default, as AMCT usually does), first, last or none.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="Export config (YAML: precision_preview, aipp, precision_pairs, "
        "...); default: export.yaml in the --ckpt run folder, if any.")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace a non-empty --out (only once the new export is "
        "complete).")] = False,
) -> None:
    """Export a checkpoint (or import a TFLite model) and prove each artifact matches."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if sum(x is not None for x in (ckpt, tflite, onnx_model)) != 1:
        raise InputError("give exactly one of --ckpt (a massface-train run or "
                         "checkpoint prefix), --tflite (a TFLite model) or --onnx (an "
                         "existing ONNX)")
    out = _default_out(out, ckpt)
    if to_checkpoint is not None and tflite is None:
        raise InputError("--to-checkpoint needs --tflite (it maps a TFLite model's "
                         "weights onto massface's MobileFaceNet)")
    given = {"precision_preview": precision_preview, "aipp": aipp,
             "precision_pairs": precision_pairs, "precision_lfw": precision_lfw,
             "precision_lfw_pairs": precision_lfw_pairs, "int8_calibration": int8_calibration,
             "int8_keep_float": int8_keep_float, "calibration_images": calibration_images,
             "calibration_count": calibration_count}
    preview = preview_options(given, _export_config(config, ckpt),
                              progress=sys.stderr.isatty())
    options = ExportOptions(
        normalize=normalize, opset=opset, om=om, om_from=om_from, require_om=require_om,
        soc=soc, trust_soc=trust_soc, gears=dynamic_batch, precision_mode=precision_mode,
        name=name, parity_images=parity_images, parity_count=parity_count,
        min_cosine=min_cosine, overwrite=overwrite, preview=preview)
    options.validate()

    def log(msg: str) -> None:
        err.print(msg, style="dim", markup=False, highlight=False, soft_wrap=True)

    # The accuracy budget draws its own progress bar; rich allows one live display.
    busy = contextlib.nullcontext() if preview.progress and preview.active \
        else err.status("exporting...")
    # One export per output folder. The folder is published by renaming a finished
    # staging folder onto it, so its lock lives beside it (lock.path_lock), not inside.
    with contextlib.ExitStack() as locks:
        for option, folder in (("--out", out), ("--to-checkpoint", to_checkpoint)):
            if folder is not None:
                check_output_dir(folder, option)  # its lock file goes beside it
                locks.enter_context(path_lock(folder, "massface-export"))
        with busy:
            if ckpt is not None:
                result = export_checkpoint(ckpt, out, options, log=log)
            elif tflite is not None:
                result = import_tflite(tflite, out, options, log=log)
            else:
                result = import_onnx(onnx_model, out, options, log=log)
        if to_checkpoint is not None:
            with err.status("mapping the TFLite weights..."):
                run = tflite_to_run(tflite, to_checkpoint, options, log=log,
                                    calibration_images=calibration_images,
                                    calibration_count=calibration_count or 256)
            err.print(f"massface-train run folder: {run['run_dir']} (massface-train "
                      f"--pretrained {run['run_dir']} --set model.embedding_size="
                      f"{run['embedding_size']}); mapped model vs TFLite: min cosine "
                      f"{run['parity']['min_cosine']:.8f}", markup=False, highlight=False,
                      soft_wrap=True)
    _summary(result)
    _budget_summary(result.manifest)


def _export_config(path: Path | None, ckpt: str | None) -> dict:
    """``--config``, else ``export.yaml`` in the ``--ckpt`` run folder, else nothing."""
    if path is not None:
        if not path.is_file():
            raise InputError(f"--config {path}: file not found")
        return read_export_config(path)
    if ckpt is not None and (Path(ckpt) / CONFIG_NAME_IN_RUN).is_file():
        found = Path(ckpt) / CONFIG_NAME_IN_RUN
        err.print(f"export config: {found}", style="dim", highlight=False)
        return read_export_config(found)
    return {}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _budget_summary(m: dict) -> None:
    """The accuracy budget table (and the AIPP input contract) after the artifacts."""
    budget = m.get("accuracy_budget")
    if not budget:
        return
    ev = budget["evaluation"]
    table = Table(title=f"accuracy budget: {ev.get('selection')}, {ev.get('images')} images")
    for col in ("variant", "LFW acc %", "vs fp32", "min cos", "median cos", "img/s",
                "x fp32"):
        table.add_column(col)
    fp32 = budget["rows"][0].get("lfw_accuracy")
    for row in budget["rows"]:
        acc = row.get("lfw_accuracy")
        delta = None if acc is None or fp32 is None or row["variant"] == "fp32" \
            else 100 * (acc - fp32)
        table.add_row(row["variant"], _fmt(acc and 100 * acc, ".3f"),
                      _fmt(delta, "+.3f"), _fmt(row.get("min_cosine"), ".6f"),
                      _fmt(row.get("median_cosine"), ".6f"), _fmt(row.get("images_per_s"),
                                                                  ".1f"),
                      _fmt(row.get("speed_vs_fp32"), ".2f"))
    err.print(table)
    for row in budget["rows"]:
        if row["variant"] == "int8" and (row.get("speed_vs_fp32") or 1) < 1:
            err.print("int8 is slower than fp32 on this CPU: ONNX Runtime runs a convolution "
                      "in int8 only when its output is quantized too, and nearly every "
                      "MobileFaceNet convolution feeds a PReLU, which it cannot quantize; "
                      "those run as dequantize -> fp32 convolution -> quantize. The device's "
                      "int8 kernels are another matter: this row predicts accuracy, not "
                      "Ascend speed.", style="yellow", markup=False, highlight=False)
    if m.get("aipp"):
        a = m["aipp"]
        err.print(f"AIPP: {a['config']} (the .om takes {a['input']['dtype']} "
                  f"{a['input']['color']} {a['input']['layout']} "
                  f"{a['input']['shape']}); CPU twin {a['twin']['file']}",
                  markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Console entry point (`massface-export`)."""
    app()


if __name__ == "__main__":
    main()
