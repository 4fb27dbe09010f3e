"""Precision targets: CPU artifacts that reproduce the numerics a device will use.

A registry (``PRECISION_TARGETS``) of named targets; each builds, from the verified fp32
ONNX, a model that massface-infer's backends run on the CPU with the device's
arithmetic, and says what it simulates. ``massface-export --precision-preview fp16,int8``
builds the ones named and scores them against fp32 in the accuracy budget
(:mod:`massface.export.preview`).

Adding a row to the budget is registering a target here: a ``build`` that returns the
file to run and how to open it (``open``; by default massface-infer's backend for the
file's suffix, so a target that runs the fp32 ONNX on another runtime at another
precision only supplies ``open``).

- ``fp16``: ATC's ``force_fp16`` (the worst case of the fp16 modes), as
  :mod:`massface.export.fp16` explains;
- ``int8``: AMCT-like post-training static quantization, :mod:`massface.export.int8`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from massface.errors import InputError
from massface.export.faces import FaceBatch
from massface.export.int8 import Int8Options
from massface.io import write_bytes
from massface.registry import Registry

if TYPE_CHECKING:
    import onnx

    from massface.runtime.backends import Backend


@dataclass
class TargetContext:
    """What a target's builder may use."""

    fp32: onnx.ModelProto  # the verified fp32 ONNX
    fp32_file: Path
    folder: Path  # where artifacts go (the export's staging folder)
    stem: str  # artifact file stem (--name)
    calibration: Callable[[], FaceBatch]  # faces outside the evaluation pairs (lazy)
    int8: Int8Options = field(default_factory=Int8Options)


@dataclass
class BuiltTarget:
    """A target's artifact, ready to run."""

    artifact: Path
    details: dict[str, Any]
    open: Callable[[], Backend] | None = None  # None: SIMULATION_BACKEND

    def opener(self) -> Callable[[], Backend]:
        if self.open is not None:
            return self.open
        from massface.runtime.backends import SIMULATION_BACKEND, open_backend

        return lambda: open_backend(self.artifact, backend=SIMULATION_BACKEND)


@dataclass(frozen=True)
class PrecisionTarget:
    build: Callable[[TargetContext], BuiltTarget]
    simulates: str  # the device numerics it stands for, for the report


def _write(model: onnx.ModelProto, path: Path) -> Path:
    write_bytes(path, model.SerializeToString())
    return path


def _build_fp16(ctx: TargetContext) -> BuiltTarget:
    from massface.export.fp16 import simulate_fp16

    path = _write(simulate_fp16(ctx.fp32), ctx.folder / f"{ctx.stem}.fp16sim.onnx")
    return BuiltTarget(path, {
        "method": "weights, graph input and every operator output rounded to float16 "
                  "(Cast pairs); convolutions multiply float16 values and accumulate in "
                  "float32, as the Cube unit does"})


def _build_int8(ctx: TargetContext) -> BuiltTarget:
    from massface.export.int8 import quantize_int8

    faces = ctx.calibration()
    model, report = quantize_int8(ctx.fp32, faces.images, ctx.int8)
    path = _write(model, ctx.folder / f"{ctx.stem}.int8.onnx")
    return BuiltTarget(path, {**report, "calibration": faces.to_dict() | {"images": None}})


PRECISION_TARGETS: Registry[PrecisionTarget] = Registry("precision target")
PRECISION_TARGETS.register(
    "fp16", PrecisionTarget(_build_fp16, "ATC --precision_mode=force_fp16 (and the fp16 "
                            "fallback of allow_fp32_to_fp16) on the AI Core"),
    description="float16 weights and activations, float32 accumulation (ATC fp16 modes)")
PRECISION_TARGETS.register(
    "int8", PrecisionTarget(_build_int8, "AMCT-style post-training int8 quantization"),
    description="QDQ int8, per-channel weights, calibrated activations (AMCT-like)")


def parse_targets(text: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"fp16,int8"`` (or a list) -> validated, de-duplicated target names."""
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else [str(t) for t in text]
    names: list[str] = []
    for item in (t.strip() for t in items):
        if not item:
            continue
        PRECISION_TARGETS.get(item, "--precision-preview")
        if item in names:
            raise InputError(f"--precision-preview: {item!r} given twice")
        names.append(item)
    return tuple(names)
