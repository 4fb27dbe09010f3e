"""``massface-infer``: batched offline inference writing embeddings for ``massface-eval``.

    massface-infer --model M.onnx --lfw LFW_DIR --pairs pairs.txt --out OUTDIR
    massface-infer --model M.pb --images DATASET --out OUTDIR [--flip]
    massface-infer --om M.om --lfw LFW_DIR --out OUTDIR     (pairs.txt found beside LFW_DIR)
    massface-infer --model M.om --input-bins BINS --out OUTDIR --format msame
    massface-infer --model M.onnx --lfw ... --shard 0/4 --out part0           (then merge)
    massface-infer merge part0 part1 part2 part3 --out OUTDIR
    massface-infer prepare-bins --lfw LFW_DIR --pairs pairs.txt --out BINS    (the 2bin step)
    massface-infer info M.onnx
    massface-infer --model M.onnx --backend openvino [--precision bf16] --lfw ... --out OUTDIR

Bad input (a file that cannot be read or cannot feed the model) is reported with its
name and exit status 2; nothing that looks like complete output is left behind.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from massface.cli import command, exit_help
from massface.errors import InputError, NonFiniteEmbeddingError, ToolError
from massface.imaging import FITS
from massface.infer.outputs import WRITERS
from massface.infer.runner import EXECUTION_ENGINES
from massface.runtime.backends import BACKENDS, DEVICES, PRECISIONS

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Batched offline inference (ONNX Runtime, OpenVINO, TensorFlow .pb, "
                       "Ascend .om) writing embeddings for massface-eval or msame-style "
                       "outputs.")
err = Console(stderr=True, soft_wrap=True)
EXIT_HELP = exit_help(InputError, NonFiniteEmbeddingError, ToolError)

# Options shared by the main command and `prepare-bins` (declared once).
MODEL_SUFFIXES = sorted({s for n in BACKENDS for s in BACKENDS.get(n).suffixes})
Model = Annotated[Path | None, typer.Option(
    help=f"model file: {', '.join(MODEL_SUFFIXES)} (the backend by its suffix: --backend)")]
Lfw = Annotated[Path | None, typer.Option(help="LFW-style image root (--pairs, default: "
                                               "pairs.txt inside or beside it)")]
Pairs = Annotated[Path | None, typer.Option(help="LFW pairs.txt or massface path pairs")]
Images = Annotated[Path | None, typer.Option(help="folder-per-identity dataset")]
ListFile = Annotated[Path | None, typer.Option("--list", help="file of image paths, one per "
                                                                "line")]
Root = Annotated[Path | None, typer.Option(help="base of --list paths (default: the list's "
                                                "folder)")]
BinFile = Annotated[Path | None, typer.Option("--bin", help="insightface .bin (lfw.bin ...)")]
InputBins = Annotated[Path | None, typer.Option(help="folder of preprocessed <i>.bin inputs")]
Labels = Annotated[Path | None, typer.Option(help="actual_issame.txt for --input-bins")]
Color = Annotated[str | None, typer.Option(help="RGB | BGR")]
Mean = Annotated[float | None, typer.Option(help="x' = (x - mean) / std")]
Std = Annotated[float | None, typer.Option()]
Size = Annotated[str | None, typer.Option(help="HxW (default: the model's)")]
Fit = Annotated[str | None, typer.Option(
    help=f"images of another size than the model's input: {FITS.choices()}; default: "
         "export.json's, else center (a 112x112 crop for a 112x96 model keeps columns "
         "8..103). Recorded in meta.json (fit)")]
BatchSize = Annotated[int, typer.Option(help="images per model call")]
Workers = Annotated[int, typer.Option(help="decode threads (--engine ray: model replicas, "
                                            "one Ray actor each)")]
Overwrite = Annotated[bool, typer.Option(help="discard earlier (partial) output")]
BackendName = Annotated[str, typer.Option(
    "--backend", help="auto (the fastest exact engine for the model: .onnx OpenVINO fp32 on "
                      "x86 where installed, else ONNX Runtime; .xml OpenVINO, .pb TensorFlow, "
                      f".om pyACL), {BACKENDS.choices()}")]


def _parse_size(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size {text!r}: expected HxW, e.g. 112x112") from None
    return [h, w]


def _dataset(sources_given: dict[str, Path | None], pairs: Path | None, root: Path | None,
             labels: Path | None, skip_bad: bool) -> Any:
    from massface.runtime.sources import SourceArgs, open_source

    lfw = sources_given.get("lfw")
    if lfw is not None and pairs is None:  # --lfw DIR alone: its pairs.txt, said aloud
        from massface.formats.pairs import find_pairs_file

        if not lfw.is_dir():
            raise InputError(f"{lfw}: --lfw folder not found")
        pairs = find_pairs_file(lfw)
        err.print(f"--lfw {lfw}: using pairs {pairs}", highlight=False)
    return open_source(sources_given, SourceArgs(pairs, root, labels, skip_bad))


def _check_workers(workers: int) -> None:
    if workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1 (decode threads)")


def _om_model(model: Path | None, om: Path | None) -> Path | None:
    """``--om M.om`` is the ``.om``-only spelling of ``--model M.om``."""
    if om is None:
        return model
    if model is not None:
        raise InputError("give --model or --om, not both")
    if om.suffix.lower() != ".om":
        raise InputError(f"--om {om}: not an .om file (use --model for .onnx and .pb)")
    return om


@app.callback(invoke_without_command=True, epilog=EXIT_HELP)
@command("massface-infer", resume="the finished chunks are kept in OUT/.partial; rerun the "
         "same command to resume from them")
def infer(
    ctx: typer.Context,
    model: Model = None,
    om: Annotated[Path | None, typer.Option(help="Ascend .om model (same as --model)")] = None,
    lfw: Lfw = None,
    pairs: Pairs = None,
    images: Images = None,
    list_file: ListFile = None,
    root: Root = None,
    bin_file: BinFile = None,
    input_bins: InputBins = None,
    labels: Labels = None,
    out: Annotated[Path | None, typer.Option(help="output folder")] = None,
    output_format: Annotated[str, typer.Option("--format", help=WRITERS.choices())] =
        "embeddings",
    to_input_bins: Annotated[Path | None, typer.Option(
        help="moved: use `massface-infer prepare-bins --out DIR` (still accepted)")] = None,
    batch_size: BatchSize = 32,
    threads: Annotated[int | None, typer.Option(help="runtime intra-op threads "
                                                     "(default: runtime's choice)")] = None,
    workers: Workers = 1,
    prefetch: Annotated[int, typer.Option(help="batches decoded ahead")] = 3,
    device: Annotated[str, typer.Option(help=DEVICES.choices())] = "auto",
    backend: BackendName = "auto",
    precision: Annotated[str, typer.Option(
        help=f"arithmetic of the model: {PRECISIONS.choices()}")] = "fp32",
    streams: Annotated[int | None, typer.Option(
        help="OpenVINO: parallel inference streams (default: OpenVINO's throughput "
             "choice; requests in flight: streams + 1)")] = None,
    device_id: Annotated[int, typer.Option(help="Ascend device id (.om)")] = 0,
    input_name: Annotated[str | None, typer.Option(help="model input to feed")] = None,
    output_name: Annotated[str | None, typer.Option(help="model output to read")] = None,
    color: Color = None,
    mean: Mean = None,
    std: Std = None,
    size: Size = None,
    fit: Fit = None,
    flip: Annotated[bool, typer.Option(help="also embed mirrored images "
                                            "(embeddings_flip.npy)")] = False,
    skip_bad: Annotated[bool, typer.Option(help="skip unreadable images, listing them in "
                                                "skipped.txt and meta.json")] = False,
    overwrite: Overwrite = False,
    shard: Annotated[str | None, typer.Option(help="K/N: embed the K-th (from 0) of N "
                                                   "slices; auto (SLURM job array) or auto/N "
                                                   "(Kubernetes indexed Job): K from the "
                                                   "environment")] = None,
    chunk_batches: Annotated[int, typer.Option(help="batches per resumable chunk")] = 16,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    align: Annotated[str | None, typer.Option(
        help="raw photos: detect (MTCNN) and align to this template first: arcface | "
             "sphereface | template .json; landmarks -> OUT/landmarks.json")] = None,
    engine: Annotated[str, typer.Option(
        help=f"who embeds (same output folder): {EXECUTION_ENGINES.choices()}; ray: "
             "--workers replicas of --threads CPUs each")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        help="--engine ray: join this Ray cluster (default: $RAY_ADDRESS, else a local "
             "instance sized to this machine)")] = None,
) -> None:
    """Embed a dataset with a model; see `massface-infer --help`."""
    if ctx.invoked_subcommand is not None:
        return
    model = _om_model(model, om)
    _check_workers(workers)
    given = {"lfw": lfw, "images": images, "list": list_file, "bin": bin_file,
             "input-bins": input_bins}
    ds = _dataset(given, pairs, root, labels, skip_bad)
    overrides = {"color": color, "mean": mean, "std": std, "size": _parse_size(size),
                 "fit": _fit_name(fit)}
    if to_input_bins is not None:
        err.print(f"note: --to-input-bins moved to `massface-infer prepare-bins --out "
                  f"{to_input_bins}`", highlight=False)
        _prepare_bins(ds, to_input_bins, model, overrides, batch_size, workers, overwrite)
        return
    if model is None or out is None:
        raise InputError("--model and --out are required (or `massface-infer prepare-bins` "
                         "to write msame inputs)")
    from massface.infer.runner import InferOptions, run_inference

    opts = InferOptions(
        out=out, output_format=output_format, batch_size=batch_size, threads=threads,
        workers=workers, prefetch=prefetch, device=device, device_id=device_id,
        backend=backend, precision=precision, streams=streams, input_name=input_name,
        output_name=output_name, preprocessing=overrides,
        flip=flip, skip_bad=skip_bad, overwrite=overwrite,
        shard=_shard(shard), chunk_batches=chunk_batches,
        progress=not quiet and sys.stderr.isatty(), align=_align_step(align, workers),
        engine=engine, ray_address=ray_address,
    )
    _report(run_inference(model, ds, opts), out)


def _shard(text: str | None) -> tuple[int, int] | None:
    """--shard K/N, or auto[/N] from the scheduler's environment (said aloud)."""
    if text is None:
        return None
    import os

    from massface.infer.runner import parse_shard, shard_from_env

    if text == "auto" or text.startswith("auto/"):
        (k, n), source = shard_from_env(text, os.environ)
        err.print(f"--shard {text}: shard {k}/{n} (from {source})", highlight=False)
        return k, n
    return parse_shard(text)


def _align_step(template: str | None, workers: int) -> Any:
    if template is None:
        return None
    from massface.align.infer_step import AlignStep

    return AlignStep(template, workers=workers)


def _report(result: Any, out: Path) -> None:
    s = result.summary
    if s.already_complete:
        err.print(f"{out}: already complete for this model, input and settings "
                  "(--overwrite to recompute)")
        return
    msg = (f"{s.images} images in {s.wall_s:.1f} s ({s.images_per_s:.1f} img/s, batch "
           f"latency p50 {s.latency_ms.get('p50', 0):.1f} ms, p95 "
           f"{s.latency_ms.get('p95', 0):.1f} ms) -> {out}")
    if s.resumed_rows:
        msg += f" (resumed after {s.resumed_rows} rows)"
    err.print(msg, highlight=False)
    meta = result.meta
    err.print(f"backend: {meta.get('backend')} {meta.get('precision')} "
              f"({meta.get('backend_choice') or 'given'})", highlight=False)
    if result.skipped:
        err.print(f"[yellow]skipped {len(result.skipped)} bad images: see {out}/skipped.txt"
                  "[/yellow]")


def _fit_name(fit: str | None) -> str | None:
    """``--fit`` checked against the fit modes before any work."""
    if fit is not None:
        FITS.get(fit, "--fit")
    return fit


def _prepare_bins(ds: Any, dest: Path, model: Path | None, overrides: dict,
                  batch_size: int, workers: int, overwrite: bool) -> None:
    from massface.formats import msame
    from massface.infer.input_bins import write_input_bins
    from massface.runtime.preprocess import choose_preprocessing
    from massface.runtime.sources import INPUTS_SUBDIR

    _check_workers(workers)
    channels, model_size, dtype = 3, None, "float32"
    gears: tuple[int, ...] = (1,)  # massface-export's default .om: gears 1,8,32
    static: int | None = None
    out_dtype = "float32"  # massface-export builds with ATC --output_type=FP32
    om = model if model is not None and model.suffix.lower() == ".om" else None
    if model is not None:
        from massface.runtime.backends import open_backend

        with open_backend(model) as backend:
            channels, model_size = backend.info.channels, backend.info.size
            dtype = backend.info.input_dtype  # uint8: AIPP; float16: --input_fp16_nodes
            if om is not None:
                out_dtype = backend.info.output_dtype
                dynamic = backend.info.batch == "gears"
                gears = tuple(backend.info.batch_sizes) if dynamic else ()
                static = None if dynamic else backend.info.batch_sizes[0]
    # the exact msame command, checked before anything is written
    command = msame.msame_command(om or "MODEL.om", dest / INPUTS_SUBDIR,
                                  dest / msame.MSAME_OUTPUT_DIR, gears=gears,
                                  static_batch=static)
    ais_bench = msame.ais_bench_command(om or "MODEL.om", dest / INPUTS_SUBDIR,
                                        dest / msame.AIS_BENCH_OUTPUT_DIR, gears=gears,
                                        static_batch=static)
    choice = choose_preprocessing(model or Path("."), overrides, model_size)
    info = write_input_bins(ds, dest, choice, channels=channels,
                            batch_size=batch_size, workers=workers, overwrite=overwrite,
                            pixels=dtype == "uint8", dtype=dtype,
                            extra={"msame_command": shlex.join(command),
                                   "ais_bench_command": shlex.join(ais_bench)})
    err.print(f"{info['files']} {info['dtype']} input bins -> {dest}/inputs"
              + (f", labels -> {dest}/{info['labels']}" if info["labels"] else ""),
              highlight=False)
    note = "" if om is not None else (
        " (MODEL.om: your .om; --dymBatch 1 fits massface-export's dynamic-batch .om, "
        "drop it for a static batch-1 .om)")
    err.print(f"run on the Ascend host{note}:\n  {shlex.join(command)}", highlight=False,
              soft_wrap=True)
    err.print(f"or with ais_bench (outputs in {dest / msame.AIS_BENCH_OUTPUT_DIR}):\n  "
              f"{shlex.join(ais_bench)}", highlight=False, soft_wrap=True)
    if info["labels"]:
        # msame's raw .bin records no dtype: 768 bytes may be 192 float32 or 384 float16
        evaluate = ["massface-eval", str(dest / msame.MSAME_OUTPUT_DIR), "--labels",
                    str(dest / info["labels"]), "--dtype", out_dtype]
        err.print(f"then: {shlex.join(evaluate)}", highlight=False, soft_wrap=True)


@app.command("prepare-bins", epilog=EXIT_HELP)
@command("massface-infer prepare-bins", resume="the bins written so far are kept; rerun "
         "the same command to resume")
def prepare_bins(
    out: Annotated[Path, typer.Option(help="folder for inputs/<i>.bin, actual_issame.txt "
                                           "and inputs.json")],
    lfw: Lfw = None,
    pairs: Pairs = None,
    images: Images = None,
    list_file: ListFile = None,
    root: Root = None,
    bin_file: BinFile = None,
    model: Annotated[Path | None, typer.Option(
        help="take channels, input size and export.json preprocessing from this model")] = None,
    color: Color = None,
    mean: Mean = None,
    std: Std = None,
    size: Size = None,
    fit: Fit = None,
    batch_size: BatchSize = 64,
    workers: Workers = 1,
    overwrite: Overwrite = False,
) -> None:
    """The seed's 2bin step: preprocessed float32 inputs for msame / ais_bench (raw uint8
    pixels when --model takes them: an AIPP model)."""
    given = {"lfw": lfw, "images": images, "list": list_file, "bin": bin_file}
    ds = _dataset(given, pairs, root, None, False)
    overrides = {"color": color, "mean": mean, "std": std, "size": _parse_size(size),
                 "fit": _fit_name(fit)}
    _prepare_bins(ds, out, model, overrides, batch_size, workers, overwrite)


@app.command("merge", epilog=EXIT_HELP)
@command("massface-infer merge")
def merge(
    shard_dirs: Annotated[list[Path], typer.Argument(help="folders written with --shard")],
    out: Annotated[Path, typer.Option(help="merged output folder")],
    output_format: Annotated[str, typer.Option("--format", help=WRITERS.choices())] =
        "embeddings",
    overwrite: Annotated[bool, typer.Option(help="replace a result already in --out")] = False,
) -> None:
    """Assemble --shard K/N outputs, in order, into one output folder."""
    from massface.infer.merge import merge_shards

    merge_shards(list(shard_dirs), out, output_format=output_format, overwrite=overwrite)
    err.print(f"merged {len(shard_dirs)} shards -> {out}", highlight=False)


@app.command("info", epilog=EXIT_HELP)
@command("massface-infer info")
def info(model: Annotated[Path, typer.Argument(help="model file")],
         as_json: Annotated[bool, typer.Option("--json")] = False,
         backend: BackendName = "auto") -> None:
    """Print what the backend reads from a model (input, layout, batch, output)."""
    from massface.runtime.backends import open_backend

    with open_backend(model, backend=backend) as opened:
        d = opened.info.to_dict()
    if as_json:
        print(json.dumps(d, indent=2))
        return
    for k, v in d.items():
        print(f"{k:14s} {v}")


def main() -> None:
    """Console entry point (``massface-infer``)."""
    app()


if __name__ == "__main__":
    main()
