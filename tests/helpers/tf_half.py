"""Run a frozen TensorFlow GraphDef entirely in float16 (test utility).

Every float32 type attribute becomes float16 and every float32 constant is stored as
float16, so TensorFlow's own half-precision CPU kernels execute the graph: an fp16
execution independent of massface's simulation (which rounds an fp32 graph's tensors).
"""

from __future__ import annotations

import numpy as np


def to_half(graph_def):
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    for node in out.node:
        for attr in node.attr.values():
            if attr.HasField("type") and attr.type == types_pb2.DT_FLOAT:
                attr.type = types_pb2.DT_HALF
            if attr.HasField("tensor") and attr.tensor.dtype == types_pb2.DT_FLOAT:
                value = tf.make_ndarray(attr.tensor).astype(np.float16)
                attr.tensor.CopyFrom(tf.make_tensor_proto(value))
    return out


def run_half(graph_def, images: np.ndarray, *, input_name: str = "input",
             output_name: str = "embeddings") -> np.ndarray:
    """``graph_def`` run in float16 on ``images`` (cast to float16); float32 result."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(to_half(graph_def), name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        out = sess.run(f"{output_name}:0", {f"{input_name}:0": images.astype(np.float16)})
    assert out.dtype == np.float16
    return out.astype(np.float32)
