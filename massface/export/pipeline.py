"""The export pipelines: checkpoint -> .pb -> ONNX -> (.om), and TFLite -> ONNX -> (.om).

Every artifact is written into a staging folder beside ``--out``, checked against its
source on real faces as soon as it exists (from the written file, not from memory), and
the folder is renamed to ``--out`` only after ``export.json`` is written last: an export
that fails leaves nothing behind that looks finished. The one exception is a failing ATC
run: the verified ``.pb``/``.onnx`` are still published, ``export.json`` records the
failure (``atc.status == "failed"``, ATC's log in ``atc.log``) and the command fails.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import AtcError, AtcMissingError, InputError
from massface.export import atc as atc_mod
from massface.export.faces import FaceBatch, load_face_batch
from massface.export.manifest import MANIFEST_NAME, artifact_entry, new_manifest
from massface.export.onnx_graph import DEFAULT_OPSET, validate_opset
from massface.export.parity import MIN_COSINE, Parity, compare, require
from massface.export.preview import PreviewOptions
from massface.export.staging import check_out, staged_folder
from massface.formats.preprocessing import TRAIN_FIT, Preprocessing
from massface.io import sha256_file, write_bytes, write_json

INPUT_NAME, OUTPUT_NAME = "input", "embeddings"
Log = Callable[[str], None]



@dataclass
class ExportOptions:
    """Options shared by both pipelines (validated by :meth:`validate`, before any work)."""

    normalize: bool = False
    opset: int = DEFAULT_OPSET
    om: bool = True
    om_from: str = "pb"  # "pb" (ATC framework 3) or "onnx" (framework 5)
    require_om: bool = False
    soc: str = atc_mod.DEFAULT_SOC
    trust_soc: bool = False
    gears: tuple[int, ...] = atc_mod.DEFAULT_GEARS
    precision_mode: str = atc_mod.DEFAULT_PRECISION_MODE
    name: str = "model"
    parity_images: str | None = None
    parity_count: int = 16
    min_cosine: float = MIN_COSINE
    overwrite: bool = False
    preview: PreviewOptions = field(default_factory=PreviewOptions)  # --aipp, precision

    def validate(self) -> None:
        validate_opset(self.opset)
        self.preview.validate()
        if self.om_from not in ("pb", "onnx"):
            raise InputError(f"--om-from {self.om_from!r}: choose pb or onnx")
        atc_mod.validate_soc(self.soc, trust=self.trust_soc)
        self.gears = atc_mod.parse_gears(self.gears)
        atc_mod.validate_precision_mode(self.precision_mode)
        if not self.name or any(c in self.name for c in "/\\ \t\n") or self.name[0] == ".":
            raise InputError(f"--name {self.name!r}: use a plain file stem such as 'model'")
        if not 0.0 < self.min_cosine <= 1.0:
            raise InputError(f"--min-cosine {self.min_cosine}: must be in (0, 1]")
        if self.om and self.require_om and atc_mod.find_atc() is None:
            raise AtcMissingError("--require-om: atc is not on PATH (source CANN's "
                                  "set_env.sh first), so no .om could be built")


@dataclass
class ExportResult:
    out: Path
    manifest: dict
    parities: list[Parity] = field(default_factory=list)
    atc: atc_mod.AtcResult | None = None


def _atc_step(options: ExportOptions, folder: Path, model_file: str, log: Log, *,
              layout: str = "NHWC", aipp_config: str | None = None) -> dict:
    """Run (or script) ATC; returns the manifest's ``atc`` section. Failure is recorded,
    not raised: the caller publishes the verified artifacts, then raises."""
    if not options.om:
        return {"status": "skipped", "reason": "--no-om"}
    spec = atc_mod.AtcSpec(model=model_file, output=options.name, soc=options.soc,
                           gears=options.gears, precision_mode=options.precision_mode,
                           input_name=INPUT_NAME, output_name=OUTPUT_NAME, layout=layout,
                           insert_op_conf=aipp_config)
    if options.require_om and atc_mod.find_atc() is None:
        raise AtcMissingError("--require-om: atc is not on PATH (source CANN's set_env.sh)")
    if atc_mod.find_atc() is not None:
        log(f"running ATC: {spec.shell_command()}")
    try:
        result = atc_mod.run_atc(spec, folder)
    except AtcError as exc:
        return {"status": "failed", "error": str(exc), **spec.to_dict(),
                "script": "atc.sh", "log_file": "atc.log"}
    return {**spec.to_dict(), **result.to_dict()}


def _om_step(options: ExportOptions, staging: Path, model_file: str, manifest: dict,
             log: Log, faces: FaceBatch | None = None, ref: np.ndarray | None = None,
             parities: list[Parity] | None = None) -> None:
    """The ATC step, recorded in ``manifest["atc"]`` (and ``artifacts.om`` when built).

    With AIPP (``manifest["aipp"]``) ATC gets ``--insert_op_conf``; an ONNX source is then
    given as its NCHW-input twin (ATC's AIPP needs NCHW for ONNX), verified first."""
    aipp = manifest.get("aipp")
    layout, config = "NHWC", None
    if aipp and options.om:
        config = aipp["config"]
        if model_file.endswith(".onnx"):
            model_file = _publish_nchw(staging, model_file, options, manifest, faces, ref,
                                       parities, log)
            layout = "NCHW"
    manifest["atc"] = _atc_step(options, staging, model_file, log, layout=layout,
                                aipp_config=config)
    if aipp and options.om:
        # the .om this folder's ATC step makes (NAME_<os>_<arch>.om when ATC names it so)
        aipp["om_file"] = manifest["atc"].get("om_file") or f"{options.name}.om"
    if manifest["atc"].get("status") == "built":
        manifest["artifacts"]["om"] = artifact_entry(
            staging / manifest["atc"]["om_file"], built_from=model_file, soc=options.soc,
            precision_mode=options.precision_mode, gears=list(options.gears),
            input=aipp["input"] if aipp else manifest["input"],
            parity="not measured here (needs Ascend hardware: run massface-infer on it)")


def _publish_nchw(staging: Path, model_file: str, options: ExportOptions, manifest: dict,
                  faces: FaceBatch | None, ref: np.ndarray | None,
                  parities: list[Parity] | None, log: Log) -> str:
    """``<name>.nchw.onnx``: the ONNX behind a Transpose, input ``[N, 3, H, W]``, held to
    the reference like the other artifacts."""
    import onnx

    from massface.export.aipp import nchw_input
    from massface.export.onnx_graph import OnnxRunner

    path = staging / f"{options.name}.nchw.onnx"
    write_bytes(path, nchw_input(onnx.load(str(staging / model_file)),
                                 input_name=INPUT_NAME).SerializeToString())
    entry = {"input_layout": "NCHW", "for": "ATC with AIPP (--insert_op_conf)"}
    if faces is not None and ref is not None:
        out = OnnxRunner(path)(np.ascontiguousarray(faces.images.transpose(0, 3, 1, 2)))
        parity = compare("onnx_nchw", manifest["parity"].get("reference", "reference"),
                         ref, out, batch_sizes=(1, len(ref) - 1), bound=options.min_cosine)
        log(parity.describe())
        checked = [*(parities or []), parity]
        require(checked)
        manifest["parity"]["onnx_nchw"] = parity.to_dict()
    manifest["artifacts"]["onnx_nchw"] = artifact_entry(path, **entry)
    return path.name


def _previews(staging: Path, options: ExportOptions, onnx_path: Path,
              prep: Preprocessing, faces: FaceBatch, ref: np.ndarray, manifest: dict,
              log: Log) -> None:
    """``--aipp`` and ``--precision-preview`` (see :mod:`massface.export.preview`)."""
    if not options.preview.active:
        return
    from massface.export.preview import run_previews

    run_previews(staging, options.name, onnx_path, prep, faces, ref, options.preview,
                 manifest, bound=options.min_cosine, log=log)


def _faces(options: ExportOptions, prep: Preprocessing) -> FaceBatch:
    return load_face_batch(options.parity_images, count=options.parity_count,
                           preprocessing=prep)


def _preprocessing_from_config(config: dict) -> tuple[Preprocessing, str]:
    """The preprocessing the run trained with (``data.mean/std/color/image_size`` in
    massface-train's config.yaml), so that inference cannot use another one."""
    data = config.get("data") or {}
    keys = {"mean": "mean", "std": "std", "color": "color", "image_size": "size"}
    found = {ours: data[theirs] for theirs, ours in keys.items() if theirs in data}
    if not found:
        return (Preprocessing(fit=TRAIN_FIT),
                "massface default (the run config names none); fit: the trainer's")
    prep = Preprocessing.from_dict({**found, "fit": TRAIN_FIT})
    if tuple(prep.size) != (112, 112):
        raise InputError(f"run config: data.image_size {list(prep.size)}: the MobileFaceNet "
                         "export takes 112x112 input")
    return prep, "run config.yaml (data.mean/std/color/image_size); fit: the trainer's"


def _finish(result: ExportResult) -> ExportResult:
    atc = result.manifest["atc"]
    if atc.get("status") == "failed":
        raise AtcError(f"{atc['error']}\nThe verified .pb/.onnx were still written "
                                f"to {result.out} (export.json records the ATC failure).")
    return result


def _publish_onnx(onnx_model: Any, staging: Path, options: ExportOptions, manifest: dict,
                  parities: list[Parity], faces: FaceBatch, reference: str, ref: np.ndarray,
                  log: Log, **entry: Any) -> Path:
    """Write the ONNX into the staging folder, hold it to the reference at batch 1 and at a
    larger batch (the dynamic batch), and record it in the manifest; raise below the bound."""
    from massface.export.onnx_graph import OnnxRunner, op_histogram, prelu_form

    onnx_path = staging / f"{options.name}.onnx"
    write_bytes(onnx_path, onnx_model.SerializeToString())
    onnx_out = OnnxRunner(onnx_path)(faces.images)
    parities.append(compare("onnx", reference, ref, onnx_out,
                            batch_sizes=(1, len(ref) - 1), bound=options.min_cosine))
    log(parities[-1].describe())
    require(parities)
    manifest["artifacts"]["onnx"] = artifact_entry(
        onnx_path, opset=options.opset, ops=op_histogram(onnx_model),
        prelu=prelu_form(onnx_model), runtime="onnxruntime CPUExecutionProvider", **entry)
    return onnx_path


def export_checkpoint(ckpt: str | os.PathLike[str], out: str | os.PathLike[str],
                      options: ExportOptions | None = None, *,
                      log: Log = lambda _msg: None) -> ExportResult:
    """Checkpoint -> frozen ``.pb`` -> ONNX (-> ``.om``), each proven against the
    checkpoint on real faces; see the module docstring for what lands where."""
    options = options or ExportOptions()
    options.validate()
    out = Path(out)
    check_out(out, options.overwrite)
    import tensorflow as tf

    from massface.export import freeze as freeze_mod
    from massface.export.onnx_convert import graph_def_to_onnx
    from massface.train.checkpoints import load_backbone, resolve_checkpoint

    log(f"loading checkpoint {ckpt}")
    prefix, run_dir = resolve_checkpoint(ckpt)
    model, config = load_backbone(ckpt)
    prep, prep_source = _preprocessing_from_config(config)
    faces = _faces(options, prep)
    dim = int(model.embedding_size)

    ref = model(tf.constant(faces.images), training=False)
    if options.normalize:
        ref = tf.math.l2_normalize(ref, axis=1)
    ref = ref.numpy().astype(np.float32)
    reference = "checkpoint (TensorFlow eager, training=False)"

    manifest = new_manifest(
        source={"kind": "checkpoint", "path": str(ckpt), "prefix": prefix,
                "run_dir": str(run_dir) if run_dir else None, "embedding_size": dim},
        input_spec={"name": INPUT_NAME, "shape": [-1, *freeze_mod.IMAGE_SHAPE],
                    "layout": "NHWC", "dtype": "float32"},
        output_spec={"name": OUTPUT_NAME, "shape": [-1, dim], "dim": dim,
                     "normalized": bool(options.normalize), "dtype": "float32"},
        preprocessing={**prep.to_dict(), "source": prep_source},
    )
    parities: list[Parity] = []
    with staged_folder(out, options.overwrite) as staging:
        log("freezing the inference graph (BatchNorm folded)")
        graph_def, report = freeze_mod.freeze(model, normalize=options.normalize,
                                              input_name=INPUT_NAME, output_name=OUTPUT_NAME)
        pb_path = staging / f"{options.name}.pb"
        write_bytes(pb_path, graph_def.SerializeToString(deterministic=True))
        pb_out = freeze_mod.GraphRunner(pb_path.read_bytes(), input_name=INPUT_NAME,
                                        output_name=OUTPUT_NAME)(faces.images)
        parities.append(compare("pb", reference, ref, pb_out, batch_sizes=(1, len(ref) - 1),
                                bound=options.min_cosine))
        log(parities[-1].describe())
        require(parities)
        manifest["artifacts"]["pb"] = artifact_entry(pb_path, graph=report.to_dict())

        log(f"converting to ONNX (tf2onnx, opset {options.opset})")
        onnx_model = graph_def_to_onnx(graph_def, input_name=INPUT_NAME,
                                       output_name=OUTPUT_NAME, opset=options.opset,
                                       label=str(pb_path.name))
        onnx_path = _publish_onnx(onnx_model, staging, options, manifest, parities, faces,
                                  reference, ref, log)
        manifest["parity"] = {"bound": options.min_cosine, "reference": reference,
                              "images": faces.to_dict(),
                              **{p.artifact: p.to_dict() for p in parities}}

        _previews(staging, options, onnx_path, prep, faces, ref, manifest, log)
        model_file = pb_path.name if options.om_from == "pb" else onnx_path.name
        _om_step(options, staging, model_file, manifest, log, faces, ref, parities)
        write_json(staging / MANIFEST_NAME, manifest)
    return _finish(ExportResult(out=out, manifest=manifest, parities=parities))


def _begin_import(path: str | os.PathLike[str], out: str | os.PathLike[str],
                  options: ExportOptions | None, option: str
                  ) -> tuple[Path, Path, ExportOptions]:
    """The checks every import of a finished model (``--tflite``, ``--onnx``) starts with."""
    options = options or ExportOptions()
    options.validate()
    if options.normalize:
        raise InputError(f"--normalize is not available with {option}: the model is kept "
                         "exactly as given (normalise at evaluation time)")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{option} {path}: file not found")
    out = Path(out)
    check_out(out, options.overwrite)
    return path, out, options


def _publish_import(model: Any, dynamic_batch: Any, out: Path, options: ExportOptions,
                    manifest: dict, prep: Preprocessing, faces: FaceBatch, reference: str,
                    ref: np.ndarray, log: Log) -> ExportResult:
    """The common end of ``--tflite`` and ``--onnx``: the ONNX proven against the source's
    embeddings ``ref``, then the precision previews and the ATC step, published whole."""
    parities: list[Parity] = []
    with staged_folder(out, options.overwrite) as staging:
        onnx_path = _publish_onnx(model, staging, options, manifest, parities, faces,
                                  reference, ref, log, dynamic_batch=dynamic_batch)
        manifest["parity"] = {"bound": options.min_cosine, "reference": reference,
                              "images": faces.to_dict(), "onnx": parities[0].to_dict()}
        _previews(staging, options, onnx_path, prep, faces, ref, manifest, log)
        _om_step(options, staging, onnx_path.name, manifest, log, faces, ref, parities)
        write_json(staging / MANIFEST_NAME, manifest)
    return _finish(ExportResult(out=out, manifest=manifest, parities=parities))


def import_tflite(path: str | os.PathLike[str], out: str | os.PathLike[str],
                  options: ExportOptions | None = None, *,
                  log: Log = lambda _msg: None) -> ExportResult:
    """TFLite -> ONNX with a dynamic batch (-> ``.om`` from the ONNX), proven against the
    TFLite interpreter on real faces."""
    path, out, options = _begin_import(path, out, options, "--tflite")

    from massface.export.onnx_convert import tflite_to_onnx
    from massface.export.tflite_import import TFLiteRunner

    log(f"loading {path}")
    runner = TFLiteRunner(path)
    prep = Preprocessing(size=runner.image_shape[:2])
    faces = _faces(options, prep)
    ref = runner(faces.images)
    reference = f"TFLite interpreter (native batch {runner.batch})"
    dim = runner.output_dim
    manifest = new_manifest(
        source={"kind": "tflite", "path": str(path), "sha256": sha256_file(path),
                **runner.describe()},
        input_spec={"name": INPUT_NAME, "shape": [-1, *runner.image_shape], "layout": "NHWC",
                    "dtype": "float32"},
        output_spec={"name": OUTPUT_NAME, "shape": [-1, dim], "dim": dim, "normalized": False,
                     "dtype": "float32"},
        preprocessing={**prep.to_dict(),
                       "source": "assumed: MobileFaceNet convention, RGB (x-127.5)/128"},
    )
    if options.om and options.om_from == "pb":
        options.om_from = "onnx"  # there is no .pb on this path
    log(f"converting to ONNX (tf2onnx, opset {options.opset}), batch made dynamic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        onnx_model, batch_rewrite = tflite_to_onnx(
            path, input_name=INPUT_NAME, output_name=OUTPUT_NAME, opset=options.opset)
    return _publish_import(onnx_model, batch_rewrite, out, options, manifest, prep, faces,
                           reference, ref, log)


def _onnx_preprocessing(path: Path, size: tuple[int, int]) -> tuple[Preprocessing, str]:
    """The preprocessing recorded in an ``export.json`` beside an existing ONNX, else
    massface's MobileFaceNet convention (said so in the manifest)."""
    from massface.runtime.preprocess import read_export_json

    export = read_export_json(path)
    if export is not None and isinstance(export.get("preprocessing"), dict):
        return Preprocessing.from_dict(export["preprocessing"]), f"{path.parent}/export.json"
    return (Preprocessing(size=size),
            "assumed: MobileFaceNet convention, RGB (x-127.5)/128")


def import_onnx(path: str | os.PathLike[str], out: str | os.PathLike[str],
                options: ExportOptions | None = None, *,
                log: Log = lambda _msg: None) -> ExportResult:
    """An existing NHWC float32 face ONNX -> the export folder (inputs renamed ``input`` /
    ``embeddings``, batch made dynamic), proven against the original under ONNX Runtime;
    then the AIPP, precision and ATC steps as for the other sources."""
    import onnx

    from massface.export.onnx_graph import (
        OnnxRunner,
        check_standard_ops,
        make_batch_dynamic,
        model_opset,
        set_io,
    )

    path, out, options = _begin_import(path, out, options, "--onnx")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and others for a bad file
        raise InputError(f"--onnx {path}: not a readable ONNX model: {exc}") from exc
    check_standard_ops(model, str(path))
    set_io(model, input_name=INPUT_NAME, output_name=OUTPUT_NAME)
    batch = make_batch_dynamic(model)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[3] != 3 or not dims[1] or not dims[2]:
        raise InputError(f"--onnx {path}: input shape {dims} is not NHWC [N, H, W, 3]")
    prep, prep_source = _onnx_preprocessing(path, (dims[1], dims[2]))
    faces = _faces(options, prep)
    source_runner = OnnxRunner(path)
    ref = source_runner(faces.images)
    reference = f"the given ONNX ({path.name}) on ONNX Runtime"
    dim = int(ref.shape[1])
    manifest = new_manifest(
        source={"kind": "onnx", "path": str(path), "sha256": sha256_file(path),
                "opset": model_opset(model)},
        input_spec={"name": INPUT_NAME, "shape": [-1, *dims[1:]], "layout": "NHWC",
                    "dtype": "float32"},
        output_spec={"name": OUTPUT_NAME, "shape": [-1, dim], "dim": dim, "normalized": False,
                     "dtype": "float32"},
        preprocessing={**prep.to_dict(), "source": prep_source})
    options.om_from = "onnx"  # the only model file on this path
    options.opset = model_opset(model)
    return _publish_import(model, batch, out, options, manifest, prep, faces, reference, ref,
                           log)


def tflite_to_run(path: str | os.PathLike[str], run_dir: str | os.PathLike[str],
                  options: ExportOptions | None = None, *,
                  calibration_images: str | None = None, calibration_count: int = 256,
                  log: Log = lambda _msg: None) -> dict:
    """Map a MobileFaceNet TFLite model's weights onto massface's MobileFaceNet and write
    them as a massface-train run folder (``massface-train --pretrained RUN``), after
    checking the mapped model against the TFLite interpreter on the parity faces."""
    from massface.export.tflite_weights import calibration_faces, map_weights, write_run

    options = options or ExportOptions()
    path, run_dir = Path(path), Path(run_dir)
    if not path.is_file():
        raise InputError(f"--tflite {path}: file not found")
    check_out(run_dir, options.overwrite)
    if calibration_count < 2:
        raise InputError(f"--calibration-count {calibration_count}: need at least 2 images")
    prep = Preprocessing()
    calibration = calibration_faces(calibration_images, calibration_count, prep)
    check = _faces(options, prep)
    log(f"mapping {path.name} onto massface's MobileFaceNet (BN statistics from "
        f"{calibration.source})")
    model, report = map_weights(path, calibration=calibration, check=check,
                                min_cosine=options.min_cosine)
    prefix = write_run(model, run_dir, prep=prep, overwrite=options.overwrite, report=report,
                       source={"kind": "tflite", "path": str(path), "sha256": sha256_file(path)})
    log(f"massface run folder {run_dir}: {report.parity['artifact']} vs TFLite min cosine "
        f"{report.parity['min_cosine']:.8f}")
    return {"run_dir": str(run_dir), "prefix": prefix, **report.to_dict()}
