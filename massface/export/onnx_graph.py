"""Inspect and adjust converted ONNX graphs, and run them with ONNX Runtime.

tf2onnx converts with ``continue_on_error``: an operator it cannot translate stays in the
graph under its TensorFlow name and the model only fails later, in the runtime or in ATC.
:func:`check_standard_ops` turns that into an error at export time. The other helpers make
a fixed batch dynamic (models such as the shipped TFLite bake batch 2 into ``Reshape``
shapes) and describe how PReLU came out, since runtimes and ATC differ in what they take.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from massface.errors import ConversionError, InputError
from massface.export.parity import split_batches

if TYPE_CHECKING:
    import onnx

BATCH_DIM_PARAM = "N"
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 11, 18, 13



def validate_opset(opset: int) -> int:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise InputError(
            f"--opset {opset}: supported are {MIN_OPSET} (widest ATC support) to {MAX_OPSET}"
        )
    return opset


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Operator type -> count (``domain::Op`` for non-default domains), sorted by name."""
    counts = Counter(
        f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
        for n in model.graph.node
    )
    return dict(sorted(counts.items()))


def model_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def check_standard_ops(model: onnx.ModelProto, label: str, reasons: list[str] = ()) -> None:
    """Raise :class:`ConversionError` unless every node is a standard ONNX operator."""
    import onnx

    opset = model_opset(model)
    unknown = sorted(
        {
            f"{n.op_type} ({n.name})"
            for n in model.graph.node
            if n.domain not in ("", "ai.onnx") or not onnx.defs.has(n.op_type)
        }
    )
    if unknown:
        why = ("\ntf2onnx said:\n  " + "\n  ".join(reasons)) if reasons else ""
        raise ConversionError(
            f"{label}: tf2onnx left operators with no ONNX equivalent at opset {opset}: "
            f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}{why}"
        )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"{label}: converted ONNX model is invalid: {exc}") from exc


def prelu_form(model: onnx.ModelProto) -> dict:
    """How PReLU came out: native ``PRelu`` nodes (with their slope shapes, which ATC and
    runtimes are picky about) or one of the element-wise decompositions, which every
    runtime and ATC accept as plain Relu/Neg/Abs/Mul/Sub/Add."""
    import onnx.numpy_helper

    from massface.export.freeze import prelu_form as describe

    inits = {i.name: i for i in model.graph.initializer}
    slopes: Counter = Counter()
    for n in model.graph.node:
        if n.op_type == "PRelu":
            s = inits.get(n.input[1])
            shape = list(onnx.numpy_helper.to_array(s).shape) if s is not None else "dynamic"
            slopes[str(shape)] += 1
    return {"form": describe(op_histogram(model)), "prelu_nodes": sum(slopes.values()),
            "prelu_slope_shapes": dict(slopes)}


def set_io(model: onnx.ModelProto, *, input_name: str, output_name: str) -> None:
    """Rename the single graph input/output (and every reference to them) in place."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ConversionError(
            f"expected one input and one output, got inputs {[i.name for i in inputs]} and "
            f"outputs {[o.name for o in graph.output]}"
        )
    renames = {inputs[0].name: input_name, graph.output[0].name: output_name}
    renames = {a: b for a, b in renames.items() if a != b}
    if not renames:
        return
    for node in graph.node:
        node.input[:] = [renames.get(x, x) for x in node.input]
        node.output[:] = [renames.get(x, x) for x in node.output]
    inputs[0].name = renames.get(inputs[0].name, inputs[0].name)
    graph.output[0].name = renames.get(graph.output[0].name, graph.output[0].name)


def make_batch_dynamic(model: onnx.ModelProto) -> dict:
    """Turn a fixed batch (dim 0 of the single input) into ``N`` in place.

    Graph input and output get ``dim_param N``; every ``Reshape`` whose constant target
    shape starts with the old batch size gets ``0`` there (ONNX: copy that dimension from
    the input), so the batch flows through; stale intermediate shapes are dropped. The
    caller must still run the model at two batch sizes (parity does) to prove it worked.
    """
    import onnx.numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    inp = next(i for i in graph.input if i.name not in inits)
    dim0 = inp.type.tensor_type.shape.dim[0]
    if dim0.HasField("dim_param") or not dim0.HasField("dim_value"):
        return {"was": dim0.dim_param or None, "reshapes_rewritten": 0}
    batch = int(dim0.dim_value)
    for vi in (inp, *graph.output):
        d = vi.type.tensor_type.shape.dim[0]
        d.Clear()
        d.dim_param = BATCH_DIM_PARAM
    rewritten = 0  # a shape shared by several Reshapes is rewritten (and counted) once
    for n in graph.node:
        if n.op_type != "Reshape" or n.input[1] not in inits:
            continue
        init = inits[n.input[1]]
        shape = onnx.numpy_helper.to_array(init).copy()
        if shape.ndim == 1 and shape.size and shape[0] == batch:
            shape[0] = 0
            init.CopyFrom(onnx.numpy_helper.from_array(shape.astype(np.int64), init.name))
            rewritten += 1
    del graph.value_info[:]
    return {"was": batch, "reshapes_rewritten": rewritten}


class OnnxRunner:
    """An ONNX model on ONNX Runtime's CPU provider, run in the parity batch split."""

    def __init__(self, path_or_bytes, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes),
                sess_options=opts,
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # ORT raises its own exception types
            raise ConversionError(f"ONNX Runtime cannot load the model: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, images: np.ndarray) -> np.ndarray:
        outs = [
            self.session.run([self.output_name], {self.input_name: images[s]})[0]
            for s in split_batches(len(images))
        ]
        return np.concatenate(outs).astype(np.float32)
