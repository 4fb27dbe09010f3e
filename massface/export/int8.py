"""A CPU preview of an int8 model: post-training static quantization, Ascend-AMCT-like.

AMCT (Ascend's model-compression toolkit) quantizes the compute operators (convolutions,
matrix products) after training: per-channel int8 weights, int8 activations with a
calibrated scale and offset, int32 accumulation; everything else stays in float; the
first and last layers are usually left in float. The preview does the same with ONNX
Runtime's ``quantize_static``:

- QDQ format (QuantizeLinear/DequantizeLinear pairs around the quantized operators, so
  the graph states exactly which tensors are int8);
- only ``Conv``/``Gemm``/``MatMul`` quantized (what AMCT quantizes), weights per output
  channel, symmetric int8; activations int8 with a zero point (AMCT's offset);
- ranges calibrated on faces that are *not* in the evaluation pairs (LFW images outside
  ``pairs.txt`` by default, the export's calibration faces);
- optionally the first and last convolutions kept in float (``keep_float``).

What it does not reproduce: AMCT's own calibration search (IFMR) and the Ascend kernels;
the accuracy is a prediction of int8 PTQ on this model, not of a particular ``.om``.

Speed on the CPU: ONNX Runtime runs a convolution in int8 (``QLinearConv``) only when
its input *and output* are quantized. In MobileFaceNet nearly every convolution feeds a
PReLU, which ONNX Runtime cannot quantize (there is no quantized PReLU; massface's graph
even spells it as Relu/Abs/Sub/Mul/Add), so those convolutions run as dequantize ->
float32 convolution, plus a quantize of the activation before the next one: the int8
model does more work than the float one and is slower on this CPU (measured in
``bench/bench_precision.py``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from massface.errors import InputError
from massface.registry import Registry

if TYPE_CHECKING:
    import onnx

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
CALIBRATION_BATCH = 16

#: Activation-range calibration methods (ONNX Runtime's names).
CALIBRATIONS: Registry[str] = Registry("int8 calibration method")
CALIBRATIONS.register("minmax", "MinMax", description="full observed range")
CALIBRATIONS.register("percentile", "Percentile",
                      description="99.999th percentile of |x| (clips outliers)")


@dataclass(frozen=True)
class Int8Options:
    calibration: str = "percentile"  # AMCT clips outliers too (its IFMR search)
    keep_float: tuple[str, ...] = ("first", "last")  # convolutions left in float

    def validate(self) -> None:
        CALIBRATIONS.get(self.calibration, "--int8-calibration")
        bad = [k for k in self.keep_float if k not in ("first", "last")]
        if bad:
            raise InputError(f"--int8-keep-float {','.join(self.keep_float)}: choose from "
                             "first, last (or none)")


class _Reader:
    """ONNX Runtime's calibration-data reader protocol over an in-memory batch."""

    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self._batches = iter([{input_name: images[i:i + CALIBRATION_BATCH]}
                              for i in range(0, len(images), CALIBRATION_BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _float_nodes(model: onnx.ModelProto, keep: tuple[str, ...]) -> list[str]:
    convs = [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS]
    chosen = []
    if convs and "first" in keep:
        chosen.append(convs[0])
    if convs and "last" in keep and convs[-1] not in chosen:
        chosen.append(convs[-1])
    return chosen


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every node a unique name (``nodes_to_exclude`` refers to names)."""
    seen: set[str] = set()
    for k, n in enumerate(model.graph.node):
        if not n.name or n.name in seen:
            n.name = f"{n.op_type}_{k}"
        seen.add(n.name)
    return model


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence quantize_static's chatter: histogram progress on stdout and a root-logger
    hint to pre-process (shape inference and graph optimisation, which the export's
    graph, BatchNorm folded and shape-inferred, does not need)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def quantize_int8(model: onnx.ModelProto, calibration: np.ndarray,
                  options: Int8Options) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The QDQ int8 model and what was done (for ``export.json``)."""
    import onnx
    from onnxruntime import quantization as q

    options.validate()
    if len(calibration) < 2:
        raise InputError("int8 calibration needs at least 2 images")
    source = onnx.ModelProto()
    source.CopyFrom(model)
    _named(source)
    inits = {i.name for i in source.graph.initializer}
    input_name = next(i.name for i in source.graph.input if i.name not in inits)
    excluded = _float_nodes(source, options.keep_float)
    with tempfile.TemporaryDirectory(prefix="massface-int8-") as tmp, _quiet():
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(source, src)
        q.quantize_static(
            str(src), str(dst), _Reader(input_name, calibration),
            quant_format=q.QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True, activation_type=q.QuantType.QInt8,
            weight_type=q.QuantType.QInt8, nodes_to_exclude=excluded,
            calibrate_method=getattr(q.CalibrationMethod,
                                     CALIBRATIONS.get(options.calibration)),
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        quantized = onnx.load(str(dst))
    counted = sum(n.op_type in QUANTIZED_OPS for n in source.graph.node)
    report = {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ", "quantized_ops": list(QUANTIZED_OPS),
        "weights": "int8, per output channel, symmetric",
        "activations": "int8 with zero point (asymmetric), per tensor",
        "calibration_method": options.calibration,
        "calibration_images": len(calibration),
        "kept_float": excluded, "quantized_nodes": counted - len(excluded),
        "prelu": "not quantized (ONNX Runtime has no quantized PReLU): float between the "
                 "int8 convolutions",
    }
    return quantized, report
