"""A CPU preview of what ATC's fp16 precision modes do to a float32 graph.

On the AI Core (``../shared/docs/ascend.md``) the Cube unit multiplies float16 operands
and accumulates in float32, then writes the result in the operator's output dtype; under
``force_fp16`` every operator's weights, inputs and outputs are float16, and Vector-unit
operators (BatchNorm, PReLU, Add, ...) compute in float16 too.

The simulation reproduces exactly that arithmetic in an ordinary float32 ONNX that ONNX
Runtime runs on the CPU:

- every float initializer (weights, biases, PReLU slopes) is rounded to float16;
- the graph input and every float operator output are rounded to float16 (a ``Cast`` to
  float16 and back to float32 after each), so each operator sees float16 inputs and
  produces a float16 result;
- inside a convolution ONNX Runtime multiplies those float16-valued operands in float32
  (their products are exact in float32: 11 x 11 significand bits) and accumulates in
  float32, as the Cube does; the bias is added in the accumulator before the output is
  rounded.

Element-wise operators computed in float32 and then rounded to float16 give the same
bits as a native float16 operation (float32 carries more than 2 x 11 + 2 significand
bits, so the double rounding is innocuous for +, -, x, /). What it cannot know is the
Cube's exact summation order, so the device will differ from the simulation at the
level of float32 rounding inside each accumulation, far below the float16 steps.

This is the worst case of the fp16 modes: ``allow_fp32_to_fp16`` keeps operators that
have a float32 implementation on the chip in float32, so its result lies between fp32
and this. ORT keeps the Cast pairs (checked in the tests: the output differs from fp32
and every value is representable in float16).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

SUFFIX = "/fp16"


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of the float32 tensors of the graph (from ONNX shape inference)."""
    import onnx
    from onnx import TensorProto

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    return {v.name for v in (*g.value_info, *g.input, *g.output)
            if v.type.tensor_type.elem_type == TensorProto.FLOAT}


def _round_pair(name: str, out: str) -> list[onnx.NodeProto]:
    from onnx import TensorProto, helper

    half = name + SUFFIX
    return [helper.make_node("Cast", [name], [half], to=TensorProto.FLOAT16, name=half),
            helper.make_node("Cast", [half], [out], to=TensorProto.FLOAT, name=half + "/back")]


def simulate_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` computing as ATC's ``force_fp16`` does (see the module doc).

    Inputs and outputs keep their names and float32 type, so the simulation drops in
    wherever the fp32 model runs.
    """
    import onnx
    from onnx import TensorProto, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            rounded = numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(rounded, init.name))
    floats = _float_tensors(out)
    inits = {i.name for i in graph.initializer}
    graph_outputs = {o.name for o in graph.output}
    renamed: dict[str, str] = {}
    nodes: list[onnx.NodeProto] = []
    for inp in graph.input:
        if inp.name not in inits and inp.name in floats:
            renamed[inp.name] = inp.name + SUFFIX + "/rounded"
            nodes += _round_pair(inp.name, renamed[inp.name])
    for node in graph.node:
        node.input[:] = [renamed.get(x, x) for x in node.input]
        tail: list[onnx.NodeProto] = []
        for k, name in enumerate(list(node.output)):
            if name not in floats:
                continue
            if name in graph_outputs:  # the graph's output name goes to the rounded value
                node.output[k] = name + SUFFIX + "/unrounded"
                tail += _round_pair(node.output[k], name)
            else:
                renamed[name] = name + SUFFIX + "/rounded"
                tail += _round_pair(name, renamed[name])
        nodes += [node, *tail]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    onnx.checker.check_model(out)
    return out

