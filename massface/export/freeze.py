"""A trained MobileFaceNet -> a frozen inference GraphDef (``.pb``) with BatchNorm folded.

The graph is traced with ``training=False`` (BatchNorm reads its moving statistics; no
training branch exists in the trace), variables become constants
(``convert_variables_to_constants_v2``), then every inference-mode ``FusedBatchNorm``
that follows a convolution with constant weights is folded into that convolution:
``w' = w * gamma / sqrt(var + eps)`` and a ``BiasAdd`` of ``beta - mean * gamma /
sqrt(var + eps)``. What is left is Conv/DepthwiseConv + BiasAdd + the PReLU arithmetic,
which every consumer (TensorFlow, tf2onnx, ATC framework 3) reads the same way. The
checks in :func:`inspect_graph` refuse a graph that still holds variables, control flow or
a training-mode BatchNorm: the faults that silently change deployed embeddings.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from massface.errors import FreezeError, InputError

if TYPE_CHECKING:
    import tensorflow as tf

IMAGE_SHAPE = (112, 112, 3)
_CONV_OPS = ("Conv2D", "DepthwiseConv2dNative")
_BN_OPS = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
_VARIABLE_OPS = ("VarHandleOp", "ReadVariableOp", "VariableV2", "Variable", "Assign",
                 "AssignVariableOp", "AssignSubVariableOp", "AssignAddVariableOp")
_CONTROL_FLOW_OPS = ("If", "StatelessIf", "While", "StatelessWhile", "Switch", "Merge",
                     "PartitionedCall", "StatefulPartitionedCall")



@dataclass
class GraphReport:
    """What the frozen graph holds (recorded in ``export.json``)."""

    nodes: int
    ops: dict[str, int]
    batchnorm_folded: int
    batchnorm_left: int
    batchnorm_training_mode: int
    prelu_form: str
    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def inference_function(model: Any, *, normalize: bool, input_name: str = "input",
                       output_name: str = "embeddings"):
    """``tf.function`` images [N,112,112,3] -> embeddings [N,D] (``training=False``)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32,
                                                name=input_name)])
    def serve(images):
        emb = model(images, training=False)
        if normalize:
            emb = tf.math.l2_normalize(emb, axis=1)
        return tf.identity(emb, name=output_name)

    return serve


def _const_value(node) -> np.ndarray:
    import tensorflow as tf

    return tf.make_ndarray(node.attr["value"].tensor)


def _const_node(name: str, value: np.ndarray):
    import tensorflow as tf

    node = tf.compat.v1.NodeDef(name=name, op="Const")
    node.attr["dtype"].type = tf.dtypes.as_dtype(value.dtype).as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    return node


def fold_batchnorm(graph_def: tf.compat.v1.GraphDef) -> tuple[tf.compat.v1.GraphDef, int]:
    """Fold inference-mode BatchNorms into the preceding constant-weight convolutions.

    Returns (new graph, number folded). A BatchNorm is folded only when it is in
    inference mode, NHWC, all four statistics are constants, its input is a Conv2D or
    DepthwiseConv2dNative with a constant filter, no other node reads that convolution,
    and only its first output is used; anything else is left as it is (and reported).
    """
    import tensorflow as tf

    nodes = {n.name: n for n in graph_def.node}
    consumers: Counter = Counter()
    used_ports: dict[str, set[int]] = {}
    for n in graph_def.node:
        for x in n.input:
            name = x.lstrip("^").split(":")[0]
            consumers[name] += 1
            port = int(x.split(":")[1]) if ":" in x and not x.startswith("^") else 0
            used_ports.setdefault(name, set()).add(port)

    def const_of(ref: str):
        name = ref.split(":")[0]
        node = nodes.get(name)
        while node is not None and node.op == "Identity":
            node = nodes.get(node.input[0].split(":")[0])
        return node if node is not None and node.op == "Const" else None

    replace: dict[str, list] = {}
    folded = 0
    for bn in graph_def.node:
        if bn.op not in _BN_OPS or bn.attr["is_training"].b:
            continue
        if bn.attr["data_format"].s.decode() not in ("NHWC", ""):
            continue
        if used_ports.get(bn.name, {0}) - {0}:
            continue
        conv = nodes.get(bn.input[0].split(":")[0])
        if conv is None or conv.op not in _CONV_OPS or consumers[conv.name] != 1:
            continue
        filt = const_of(conv.input[1])
        params = [const_of(x) for x in bn.input[1:5]]
        if filt is None or any(p is None for p in params):
            continue
        gamma, beta, mean, var = (_const_value(p).astype(np.float64) for p in params)
        eps = float(bn.attr["epsilon"].f)
        scale = gamma / np.sqrt(var + eps)
        w = _const_value(filt).astype(np.float64)
        if conv.op == "Conv2D":
            w = w * scale  # [H, W, I, O]: scale the output channel
        else:
            _, _, c, m = w.shape  # depthwise [H, W, C, M]: output channel c*M + m
            w = w * scale.reshape(c, m)
        bias = beta - mean * scale
        w_node = _const_node(f"{bn.name}/folded_filter", w.astype(np.float32))
        b_node = _const_node(f"{bn.name}/folded_bias", bias.astype(np.float32))
        new_conv = tf.compat.v1.NodeDef()
        new_conv.CopyFrom(conv)
        new_conv.input[1] = w_node.name
        bias_add = tf.compat.v1.NodeDef(name=bn.name, op="BiasAdd",
                                        input=[conv.name, b_node.name])
        bias_add.attr["T"].CopyFrom(bn.attr["T"])
        bias_add.attr["data_format"].s = b"NHWC"
        replace[conv.name] = [new_conv, w_node, b_node]
        replace[bn.name] = [bias_add]
        folded += 1

    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    for n in graph_def.node:
        out.node.extend(replace.get(n.name, [n]))
    return out, folded


def bypass_const_identities(graph_def: tf.compat.v1.GraphDef,
                            protected: set[str]) -> tf.compat.v1.GraphDef:
    """Point readers of ``Identity(Const)`` (frozen variable reads) at the constant."""
    import tensorflow as tf

    nodes = {n.name: n for n in graph_def.node}
    alias = {
        n.name: n.input[0]
        for n in graph_def.node
        if n.op == "Identity" and n.name not in protected and len(n.input) == 1
        and nodes.get(n.input[0].split(":")[0]) is not None
        and nodes[n.input[0].split(":")[0]].op == "Const"
    }
    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    del out.node[:]
    for n in graph_def.node:
        if n.name in alias:
            continue
        m = tf.compat.v1.NodeDef()
        m.CopyFrom(n)
        m.input[:] = [alias.get(x, x) for x in n.input]
        out.node.append(m)
    return out


def prelu_form(ops: dict[str, int]) -> str:
    """Name the form PReLU takes in a graph, from its operator histogram."""
    if ops.get("Prelu") or ops.get("PRelu"):
        return "native PReLU op"
    if ops.get("Neg") and ops.get("Relu", 0) >= 2 * ops["Neg"]:
        return "relu(x) - alpha * relu(-x) (Relu, Neg, Mul, Sub)"
    if ops.get("Abs") and ops.get("Relu"):
        return "relu(x) + alpha * (x - |x|) / 2 (Relu, Abs, Sub, Mul, Add)"
    if ops.get("Maximum") and ops.get("Minimum"):
        return "max(x, 0) + alpha * min(x, 0) (Maximum, Minimum, Mul, Add)"
    return "none found"


def inspect_graph(graph_def: tf.compat.v1.GraphDef, *, input_name: str, output_name: str,
                  folded: int = 0) -> GraphReport:
    """Check the frozen graph is a clean inference graph; describe it."""
    ops = dict(sorted(Counter(n.op for n in graph_def.node).items()))
    problems = []
    if bad := sorted({o for o in ops if o in _VARIABLE_OPS}):
        problems.append(f"variable operations left: {bad}")
    if bad := sorted({o for o in ops if o in _CONTROL_FLOW_OPS}):
        problems.append(f"control flow / function calls left: {bad}")
    if len(graph_def.library.function):
        problems.append(f"{len(graph_def.library.function)} library functions left")
    bns = [n for n in graph_def.node if n.op in _BN_OPS]
    training = [n.name for n in bns if n.attr["is_training"].b]
    if training:
        problems.append(f"BatchNorm in training mode (batch statistics): {training[:5]}")
    names = {n.name: n for n in graph_def.node}
    placeholders = [n for n in graph_def.node if n.op == "Placeholder"]
    if [p.name for p in placeholders] != [input_name]:
        problems.append(f"expected one input {input_name!r}, found "
                        f"{[p.name for p in placeholders]}")
    if output_name not in names:
        problems.append(f"no output node {output_name!r}")
    if problems:
        raise FreezeError("frozen graph is not a clean inference graph: " + "; ".join(problems))
    shape = [d.size for d in placeholders[0].attr["shape"].shape.dim]
    return GraphReport(
        nodes=len(graph_def.node),
        ops=ops,
        batchnorm_folded=folded,
        batchnorm_left=len(bns),
        batchnorm_training_mode=len(training),
        prelu_form=prelu_form(ops),
        input={"name": input_name, "tensor": f"{input_name}:0", "shape": shape,
               "dtype": "float32"},
        output={"name": output_name, "tensor": f"{output_name}:0"},
    )


def freeze(model: Any, *, normalize: bool, input_name: str = "input",
           output_name: str = "embeddings") -> tuple[tf.compat.v1.GraphDef, GraphReport]:
    """Trace ``model`` for inference, freeze it, fold BatchNorm, prune, check."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    serve = inference_function(model, normalize=normalize, input_name=input_name,
                               output_name=output_name)
    concrete = serve.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    graph_def = tf.compat.v1.graph_util.remove_training_nodes(
        graph_def, protected_nodes=[input_name, output_name])
    graph_def = bypass_const_identities(graph_def, {input_name, output_name})
    graph_def, folded = fold_batchnorm(graph_def)
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [output_name])
    report = inspect_graph(graph_def, input_name=input_name, output_name=output_name,
                           folded=folded)
    return graph_def, report


class GraphRunner:
    """A frozen GraphDef (``.pb`` bytes) run by TensorFlow, in the parity batch split."""

    def __init__(self, pb: bytes, *, input_name: str = "input",
                 output_name: str = "embeddings") -> None:
        import tensorflow as tf

        gd = tf.compat.v1.GraphDef()
        try:
            gd.ParseFromString(pb)
        except Exception as exc:  # protobuf's DecodeError
            raise InputError(f"not a TensorFlow GraphDef: {exc}") from exc

        def _import():
            tf.compat.v1.import_graph_def(gd, name="")

        wrapped = tf.compat.v1.wrap_function(_import, [])
        self._fn = wrapped.prune(f"{input_name}:0", f"{output_name}:0")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        from massface.export.parity import split_batches

        outs = [self._fn(tf.constant(images[s])).numpy() for s in split_batches(len(images))]
        return np.concatenate(outs).astype(np.float32)
