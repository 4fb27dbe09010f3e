"""Rebuild an ONNX image model as a frozen TensorFlow GraphDef (test utility).

Covers the operators of the shared MobileFaceNet ONNX (opset 13): Conv (plain and
depthwise), Add, Sub, Mul, Relu, Abs, Reshape, Transpose. ONNX tensors are NCHW; the TF
graph keeps every 4-D activation in NHWC (TensorFlow's CPU convolutions are NHWC-only),
so each ONNX op is translated for that layout: the input Transpose NHWC->NCHW becomes an
identity, Conv weights ``[O, I/g, kh, kw]`` become ``[kh, kw, I, O]`` (or depthwise
``[kh, kw, C, 1]``), per-channel constants ``[1, C, 1, 1]`` become ``[1, 1, 1, C]``, and a
Reshape is accepted only where spatial dims are 1 (where both layouts agree).

The result has a float32 placeholder ``input [N, H, W, C]`` and an ``embeddings`` output
and contains only constants: it is a frozen GraphDef, written with ``write_frozen_pb``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_graph_def(onnx_path: str | Path):
    import onnx
    import tensorflow as tf
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    inp = g.input[0]
    dims = [d.dim_value or None for d in inp.type.tensor_type.shape.dim]
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, *dims[1:]], name="input")
        vals: dict[str, tf.Tensor] = {inp.name: x}
        nchw: dict[str, bool] = {inp.name: False}  # is the ONNX tensor NCHW (stored NHWC)?

        def get(name: str):
            if name in vals:
                return vals[name], nchw[name]
            c = consts[name]
            if c.ndim == 4:
                return tf.constant(np.transpose(c, (0, 2, 3, 1))), True
            return tf.constant(c), False

        for node in g.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            op = node.op_type
            if op == "Transpose":
                t, is_nchw = get(node.input[0])
                if list(attrs["perm"]) != [0, 3, 1, 2] or is_nchw:
                    raise NotImplementedError(f"Transpose {attrs['perm']}")
                y, y_nchw = tf.identity(t), True
            elif op == "Conv":
                t, _ = get(node.input[0])
                w = consts[node.input[1]]
                group = attrs.get("group", 1)
                pads = attrs.get("pads", [0, 0, 0, 0])
                sh, sw = attrs.get("strides", [1, 1])
                if any(d != 1 for d in attrs.get("dilations", [1, 1])):
                    raise NotImplementedError("dilated Conv")
                if any(pads):
                    t = tf.pad(t, [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]])
                if group == 1:
                    y = tf.nn.conv2d(t, tf.constant(np.transpose(w, (2, 3, 1, 0))),
                                     strides=[1, sh, sw, 1], padding="VALID")
                elif group == w.shape[0] and w.shape[1] == 1:
                    y = tf.nn.depthwise_conv2d(t, tf.constant(np.transpose(w, (2, 3, 0, 1))),
                                               strides=[1, sh, sw, 1], padding="VALID")
                else:
                    raise NotImplementedError(f"grouped Conv group={group}")
                if len(node.input) > 2:
                    y = tf.nn.bias_add(y, tf.constant(consts[node.input[2]]))
                y_nchw = True
            elif op in ("Add", "Sub", "Mul"):
                (a, a4), (b, b4) = get(node.input[0]), get(node.input[1])
                fn = {"Add": tf.add, "Sub": tf.subtract, "Mul": tf.multiply}[op]
                y, y_nchw = fn(a, b), a4 or b4
            elif op in ("Relu", "Abs"):
                t, y_nchw = get(node.input[0])
                y = tf.nn.relu(t) if op == "Relu" else tf.abs(t)
            elif op == "Reshape":
                t, is_nchw = get(node.input[0])
                shape = [int(v) for v in consts[node.input[1]]]
                if len(shape) == 4:
                    if shape[2:] != [1, 1]:
                        raise NotImplementedError(f"Reshape to {shape}")
                    y, y_nchw = tf.reshape(t, [shape[0], 1, 1, shape[1]]), True
                else:
                    if is_nchw and t.shape.rank == 4 and t.shape[1:3] != (1, 1):
                        raise NotImplementedError("Reshape flattening spatial dims")
                    y, y_nchw = tf.reshape(t, shape), False
            else:
                raise NotImplementedError(f"ONNX op {op}")
            vals[node.output[0]], nchw[node.output[0]] = y, y_nchw
        out = vals[g.output[0].name]
        tf.identity(out, name="embeddings")
    return graph.as_graph_def()


def write_frozen_pb(onnx_path: str | Path, pb_path: str | Path) -> Path:
    """Build and write the frozen GraphDef; returns ``pb_path``."""
    pb = Path(pb_path)
    pb.write_bytes(build_graph_def(onnx_path).SerializeToString())
    return pb
