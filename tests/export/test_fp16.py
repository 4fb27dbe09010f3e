"""The fp16 simulation: ATC force_fp16 arithmetic as an ONNX that ONNX Runtime runs."""

from __future__ import annotations

import numpy as np
import pytest

from massface.export.fp16 import simulate_fp16
from massface.scoring.distances import cosine_rows

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _session(model, level=None):
    opts = ort.SessionOptions()
    if level is not None:
        opts.graph_optimization_level = level
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _run(model, x, level=None):
    sess = _session(model, level)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _is_half(a: np.ndarray) -> bool:
    return bool(np.array_equal(a, a.astype(np.float16).astype(np.float32)))


def test_elementwise_graph_matches_native_float16_arithmetic():
    """PReLU as the export writes it, plus a residual Add: every op's result must be the
    bits NumPy's native float16 arithmetic gives (an obviously-correct reference)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    alpha = rng.uniform(0.05, 0.4, (1, 1, 1, 8)).astype(np.float32)
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Abs", ["x"], ["a"]),
             helper.make_node("Sub", ["x", "a"], ["s"]),
             helper.make_node("Mul", ["s", "alpha"], ["m"]),
             helper.make_node("Add", ["r", "m"], ["p"]),
             helper.make_node("Add", ["p", "x"], ["y"])]
    graph = helper.make_graph(
        nodes, "prelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4, 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4, 4, 8])],
        [numpy_helper.from_array(alpha, "alpha")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = (rng.standard_normal((3, 4, 4, 8)) * 30).astype(np.float32)
    got = _run(simulate_fp16(model), x)

    h, al = x.astype(np.float16), alpha.astype(np.float16)
    want = (np.maximum(h, np.float16(0)) + (h - np.abs(h)) * al) + h  # float16 throughout
    assert want.dtype == np.float16
    np.testing.assert_array_equal(got, want.astype(np.float32))
    assert not np.array_equal(got, _run(model, x))  # the rounding really happened


def test_shared_model_simulation_rounds_and_ort_keeps_the_casts(pretrained_onnx, faces):
    model = onnx.load(str(pretrained_onnx))
    sim = simulate_fp16(model)
    assert [i.name for i in sim.graph.input] == ["input"]
    assert [o.name for o in sim.graph.output] == ["embeddings"]
    for init in sim.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            assert _is_half(onnx.numpy_helper.to_array(init)), init.name
    fp32 = _run(model, faces.images)
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  ort.GraphOptimizationLevel.ORT_ENABLE_ALL):  # massface-infer's level
        got = _run(sim, faces.images, level)
        assert _is_half(got)
        assert not np.array_equal(got, fp32)
        cos = cosine_rows(fp32, got)
        assert cos.min() >= 0.9999 and cos.min() < 1 - 1e-9


@pytest.mark.slow
def test_simulation_agrees_with_tensorflow_running_the_graph_in_float16(pretrained_onnx,
                                                                        faces):
    """An independent half-precision execution: the same graph as a frozen TensorFlow
    GraphDef with every tensor float16, on TensorFlow's own fp16 CPU kernels."""
    pytest.importorskip("tensorflow")
    from tests.helpers.onnx_to_pb import build_graph_def
    from tests.helpers.tf_half import run_half

    graph_def = build_graph_def(pretrained_onnx)
    tf_half = run_half(graph_def, faces.images)
    sim = _run(simulate_fp16(onnx.load(str(pretrained_onnx))), faces.images)
    fp32 = _run(onnx.load(str(pretrained_onnx)), faces.images)
    assert len(faces.images) == 16
    assert cosine_rows(sim, tf_half).min() >= 0.9999
    # and TensorFlow's fp16 run really is fp16: it differs from fp32 as much as the sim
    assert cosine_rows(fp32, tf_half).min() < 1 - 1e-7
