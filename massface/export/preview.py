"""Before the card: what the device will compute, predicted on the CPU, in ``export.json``.

Run by the export pipelines after the fp32 ONNX is verified, when ``--aipp`` or
``--precision-preview`` asks for it:

- ``--aipp``: ``aipp.cfg`` (the static AIPP stage from the model's preprocessing), its
  input contract, and the CPU twin ``<name>.aipp.onnx`` (uint8 RGB in, same arithmetic),
  held to the fp32 model on the parity faces like every artifact;
- ``--precision-preview fp16,int8``: one CPU artifact per target
  (:mod:`massface.export.precision`), its cosine to fp32;
- the **accuracy budget**: fp32 and every artifact over the same LFW pairs (all 6,000 by
  default, ``--precision-pairs N`` for a subset, 0 for none): LFW accuracy, per-image
  cosine to fp32 over every evaluated image, and images/s measured in the same run
  (:mod:`massface.export.budget`).

``export.json`` gets ``precision.<target>`` (``artifact``, ``min_cosine``,
``median_cosine``, ``lfw_accuracy``, ``lfw_accuracy_fp32``, ``images`` ...), ``aipp`` and
``accuracy_budget`` (the table, one row per variant).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface import shared_data
from massface.errors import InputError
from massface.export import budget as budget_mod
from massface.export.aipp import CONFIG_NAME, AippConfig
from massface.export.faces import FaceBatch
from massface.export.int8 import Int8Options
from massface.export.manifest import artifact_entry
from massface.export.parity import compare, require
from massface.export.precision import PRECISION_TARGETS, TargetContext, parse_targets
from massface.formats.preprocessing import Preprocessing
from massface.io import write_bytes, write_text
from massface.scoring.distances import cosine_rows

Log = Callable[[str], None]
AIPP_ROW = "aipp"
TWIN_MAX_ABS_DIFF = 1e-4
FP32_ROW = "fp32"


def parse_pair_count(text: str | int | None) -> int | None:
    """``--precision-pairs``: ``all`` (None), or a number of pairs (0: no LFW run)."""
    if text is None or str(text).strip().lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise InputError(f"--precision-pairs {text!r}: give 'all' or a number of pairs "
                         "(0 skips the LFW evaluation)") from None
    if n < 0:
        raise InputError(f"--precision-pairs {n}: must be 0 or more")
    return n


@dataclass
class PreviewOptions:
    """What to preview and on which faces (validated before any work)."""

    targets: tuple[str, ...] = ()
    aipp: bool = False
    pairs: int | None = None  # None: every pair; 0: no LFW evaluation
    lfw: str | None = None  # image root (default: the shared aligned LFW)
    lfw_pairs: str | None = None  # default: pairs.txt inside or beside --precision-lfw
    int8: Int8Options = field(default_factory=Int8Options)
    calibration_images: str | None = None
    calibration_count: int = 256
    progress: bool = True

    @property
    def active(self) -> bool:
        return bool(self.targets) or self.aipp

    def validate(self) -> None:
        self.targets = parse_targets(self.targets)
        self.int8.validate()
        if "int8" in self.targets and self.calibration_count < 2:
            raise InputError(f"--calibration-count {self.calibration_count}: int8 "
                             "calibration needs at least 2 images")

    def evaluation_files(self) -> tuple[Path, Path]:
        """(pairs file, image root) of the LFW evaluation."""
        from massface.formats.pairs import find_pairs_file

        why = "the accuracy budget's LFW pairs (or --precision-lfw DIR)"
        root = Path(self.lfw) if self.lfw else shared_data.lfw_dir(why)
        if not root.is_dir():
            raise InputError(f"--precision-lfw {root}: not a folder of aligned faces")
        pairs = (Path(self.lfw_pairs) if self.lfw_pairs
                 else find_pairs_file(root, "--precision-lfw-pairs"))
        if not pairs.is_file():
            raise InputError(f"--precision-lfw-pairs {pairs}: file not found")
        return pairs, root


def _pixels(faces: FaceBatch, prep: Preprocessing) -> np.ndarray:
    """The parity faces as uint8 RGB (what an AIPP model is fed)."""
    from massface.formats.pairs import require_reference
    from massface.runtime.preprocess import decode_image

    out = []
    for ref in faces.refs:
        path = require_reference(faces.root, ref, "the parity batch")
        out.append(decode_image(path, str(path), tuple(prep.size), fit=prep.fit))
    return np.stack(out)


def _aipp_step(staging: Path, stem: str, onnx_path: Path, fp32: Any,
               prep: Preprocessing, faces: FaceBatch, bound: float, manifest: dict,
               log: Log) -> budget_mod.Variant:
    """``aipp.cfg`` and the twin, which must give the fp32 ONNX's embeddings on the parity
    faces to :data:`TWIN_MAX_ABS_DIFF` (it computes the same arithmetic, reordered)."""
    from massface.errors import ParityError
    from massface.export import aipp
    from massface.export.onnx_graph import OnnxRunner

    config = AippConfig.from_preprocessing(prep)
    write_text(staging / CONFIG_NAME, config.render())
    twin_path = staging / f"{stem}.aipp.onnx"
    write_bytes(twin_path, aipp.twin(fp32, config).SerializeToString())
    pixels = _pixels(faces, prep)
    got = OnnxRunner(twin_path)(pixels)
    # same arithmetic: the float model on AIPP's (float16) output, computed in NumPy
    parity = compare("aipp twin", f"{onnx_path.name} on AIPP's float16 output",
                     OnnxRunner(onnx_path)(config.apply(pixels)), got, bound=bound)
    log(parity.describe())
    require([parity])
    if parity.max_abs_diff > TWIN_MAX_ABS_DIFF:
        raise ParityError(f"{parity.describe()}: the twin must match to "
                          f"{TWIN_MAX_ABS_DIFF} (is the preprocessing representable?)")
    # what the chip's float16 AIPP output costs against the host's float32 preprocessing
    rounding = compare("aipp fp16 input", f"{onnx_path.name} on float32 normalised floats",
                       OnnxRunner(onnx_path)(faces.images), got, bound=bound)
    log(rounding.describe())
    manifest["aipp"] = {
        "config": CONFIG_NAME, "settings": config.to_dict(),
        "input": config.input_contract(), "om_file": None,
        "twin": {**artifact_entry(twin_path), "parity": parity.to_dict(),
                 "fp16_input": rounding.to_dict()},
    }
    return _variant(AIPP_ROW, twin_path, {"simulates": "the .om with AIPP (uint8 input)"})


def _variant(name: str, path: Path, details: dict,
             opener: Callable[[], Any] | None = None) -> budget_mod.Variant:
    from massface.runtime.backends import SIMULATION_BACKEND, open_backend

    # ONNX Runtime, named: these graphs simulate the device's numerics (fp16 casts, QDQ),
    # which another engine (OpenVINO, --backend auto's CPU choice) may fuse or run natively.
    return budget_mod.Variant(name, path.name, opener or (
        lambda: open_backend(path, backend=SIMULATION_BACKEND)), details)


def run_previews(staging: Path, stem: str, onnx_path: Path, prep: Preprocessing,
                 faces: FaceBatch, ref: np.ndarray, options: PreviewOptions,
                 manifest: dict, *, bound: float, log: Log) -> None:
    """Build the AIPP and precision artifacts in ``staging`` and fill the manifest."""
    import onnx

    from massface.export.tflite_weights import calibration_faces

    fp32 = onnx.load(str(onnx_path))
    variants = [_variant(FP32_ROW, onnx_path, {"simulates": "the verified fp32 graph"})]
    if options.aipp:
        variants.append(_aipp_step(staging, stem, onnx_path, fp32, prep, faces, bound,
                                   manifest, log))
    ctx = TargetContext(fp32=fp32, fp32_file=onnx_path, folder=staging, stem=stem,
                        calibration=lambda: calibration_faces(
                            options.calibration_images, options.calibration_count, prep),
                        int8=options.int8)
    manifest["precision"] = {}
    parities = {}
    for name in options.targets:
        target = PRECISION_TARGETS.get(name)
        log(f"building the {name} preview ({target.simulates})")
        built = target.build(ctx)
        with built.opener()() as backend:
            parities[name] = cosine_rows(ref, backend.embed(faces.images))
        manifest["precision"][name] = {
            **artifact_entry(built.artifact), "artifact": built.artifact.name,
            "simulates": target.simulates, **built.details,
            "parity_faces": {"images": len(faces.refs),
                             "min_cosine": float(parities[name].min())}}
        variants.append(budget_mod.Variant(name, built.artifact.name, built.opener(),
                                           {"simulates": target.simulates}))
    _budget(options, variants, prep, faces, parities, manifest, log)


def _budget(options: PreviewOptions, variants: list[budget_mod.Variant],
            prep: Preprocessing, faces: FaceBatch, parities: dict, manifest: dict,
            log: Log) -> None:
    """Score every variant (LFW, unless --precision-pairs 0) and record the table."""
    if options.pairs == 0:
        _faces_only(variants, faces, parities, manifest)
        return
    pairs_file, root = options.evaluation_files()
    evalset = budget_mod.evaluation_set(pairs_file, root, options.pairs)
    log(f"accuracy budget: {len(variants)} variants x {len(evalset.keys)} images "
        f"({evalset.selection})")
    runs = budget_mod.run_variants(variants, evalset, prep, progress=options.progress)
    reference = runs[FP32_ROW]
    rows = []
    for v in variants:
        row = budget_mod.score(evalset, runs[v.name],
                               None if v.name == FP32_ROW else reference)
        rows.append({"variant": v.name, "artifact": v.artifact, **v.details, **row})
    fp32_acc = rows[0]["lfw_accuracy"]
    for row in rows[1:]:
        row["lfw_accuracy_fp32"] = fp32_acc
        entry = manifest["precision"].get(row["variant"])
        if entry is not None:
            entry.update({k: row.get(k) for k in (
                "min_cosine", "p1_cosine", "median_cosine", "max_abs_diff", "lfw_accuracy",
                "lfw_accuracy_std", "lfw_accuracy_fp32", "images", "images_per_s",
                "speed_vs_fp32")})
            entry["images_per_s_fp32"] = rows[0]["images_per_s"]
        elif row["variant"] == AIPP_ROW:
            manifest["aipp"]["twin"]["lfw"] = {k: row[k] for k in (
                "max_abs_diff", "min_cosine", "lfw_accuracy", "lfw_accuracy_fp32", "images")}
    manifest["accuracy_budget"] = {"evaluation": {**evalset.describe(), **_protocol()},
                                   "rows": rows}


def _protocol() -> dict[str, Any]:
    return {"protocol": "L2-normalised, squared L2, 10 contiguous folds, threshold step "
                        "0.01 (massface-eval defaults)",
            "speed": f"model time only, batch {budget_mod.BATCH_SIZE}, ONNX Runtime CPU "
                     "default threads, variants interleaved batch by batch in one run"}


def _faces_only(variants: list[budget_mod.Variant], faces: FaceBatch, parities: dict,
                manifest: dict) -> None:
    """``--precision-pairs 0``: cosines on the parity faces only, no accuracy."""
    rows = [{"variant": v.name, "artifact": v.artifact, **v.details} for v in variants]
    for row in rows:
        cos = parities.get(row["variant"])
        if cos is None:
            continue
        stats = {"min_cosine": float(cos.min()), "median_cosine": float(np.median(cos)),
                 "images": int(cos.size), "lfw_accuracy": None, "lfw_accuracy_fp32": None}
        row.update(stats)
        manifest["precision"][row["variant"]].update(stats)
    manifest["accuracy_budget"] = {
        "evaluation": {"images": len(faces.refs), "selection": "parity faces only "
                       "(--precision-pairs 0: no LFW evaluation)"}, "rows": rows}


#: Keys of an export config file (``export.yaml`` in a run folder, or ``--config``) and
#: the option each stands for.
CONFIG_KEYS = {
    "precision_preview": "--precision-preview", "aipp": "--aipp",
    "precision_pairs": "--precision-pairs", "precision_lfw": "--precision-lfw",
    "precision_lfw_pairs": "--precision-lfw-pairs", "int8_calibration": "--int8-calibration",
    "int8_keep_float": "--int8-keep-float", "calibration_images": "--calibration-images",
    "calibration_count": "--calibration-count",
}
CONFIG_NAME_IN_RUN = "export.yaml"


def read_export_config(path: Path) -> dict[str, Any]:
    """An export config file: a YAML (or JSON) mapping of :data:`CONFIG_KEYS`."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the export config: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: the export config must be a mapping of option: value")
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(unknown)} (known: "
                         f"{', '.join(CONFIG_KEYS)})")
    return data


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def preview_options(given: dict[str, Any], config: dict[str, Any], *,
                    progress: bool = True) -> PreviewOptions:
    """Options from the command line (``given``; None = not given) over the config file."""
    merged = {k: given[k] if given.get(k) is not None else config.get(k) for k in CONFIG_KEYS}
    keep = _as_list(merged["int8_keep_float"])
    keep = [] if keep == ["none"] else keep
    options = PreviewOptions(
        targets=parse_targets(_as_list(merged["precision_preview"])),
        aipp=bool(merged["aipp"]), pairs=parse_pair_count(merged["precision_pairs"]),
        lfw=merged["precision_lfw"], lfw_pairs=merged["precision_lfw_pairs"],
        int8=Int8Options(calibration=merged["int8_calibration"] or Int8Options().calibration,
                         keep_float=tuple(keep) if merged["int8_keep_float"] is not None
                         else Int8Options().keep_float),
        calibration_images=merged["calibration_images"],
        calibration_count=int(merged["calibration_count"] or 256), progress=progress)
    options.validate()
    return options
