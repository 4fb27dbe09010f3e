"""Backends report their model correctly and batch any number of images right."""

from __future__ import annotations

import numpy as np
import pytest

from massface.errors import InputError
from massface.runtime.backends import BACKENDS, backend_for, open_backend
from massface.runtime.backends.onnx_backend import OnnxBackend
from tests.helpers.models import make_linear_onnx

SIZE = (12, 10)


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, *SIZE, 3)).astype(np.float32)


def test_auto_backend_is_chosen_by_suffix(tmp_path):
    assert set(BACKENDS) == {"onnxruntime", "openvino", "tensorflow", "acl"}
    assert backend_for("m.onnx") is OnnxBackend
    assert backend_for("m.ONNX") is OnnxBackend
    assert backend_for("m.xml").name == "openvino"
    assert backend_for("m.onnx", "openvino").name == "openvino"
    assert backend_for("m.pb").name == "tensorflow" and backend_for("m.om").name == "acl"
    with pytest.raises(InputError, match=r"unknown model type '\.tflite'"):
        backend_for("m.tflite")
    with pytest.raises(InputError, match=r"the tensorflow backend runs \.pb"):
        backend_for("m.onnx", "tensorflow")
    with pytest.raises(InputError, match=r"unknown backend 'trt' \(choose one of"):
        backend_for("m.onnx", "trt")


def test_shared_model_info(pretrained_onnx):
    with open_backend(pretrained_onnx, threads=1, device="cpu") as b:
        info = b.info
    assert (info.input_name, info.layout, info.height, info.width, info.channels) == \
        ("input", "NHWC", 112, 112, 3)
    assert (info.batch, info.output_name, info.output_dtype, info.output_dim) == \
        ("dynamic", "embeddings", "float32", 192)
    assert info.extra["providers"] == ["CPUExecutionProvider"]


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("batch", [None, 4])
def test_layout_and_static_batch_padding(tmp_path, layout, batch):
    path = tmp_path / "m.onnx"
    weight = make_linear_onnx(path, layout=layout, batch=batch, size=SIZE, dim=6)
    x = images(11)
    with open_backend(path) as b:
        assert b.info.layout == layout
        assert b.info.batch == ("static" if batch else "dynamic")
        assert b.info.size == SIZE
        calls = []
        run = b._run
        b._run = lambda arr: calls.append(arr.shape) or run(arr)
        y = b.embed(x)
    # reference: each image on its own, in the model's layout (slow and obvious)
    for i in range(11):
        img = x[i].transpose(2, 0, 1) if layout == "NCHW" else x[i]
        np.testing.assert_allclose(y[i], img.reshape(-1) @ weight, rtol=1e-4, atol=1e-4)
    assert y.shape == (11, 6)
    if batch:
        assert [c[0] for c in calls] == [4, 4, 4]  # 11 -> 4 + 4 + (3 padded to 4)
    else:
        assert [c[0] for c in calls] == [11]
    if layout == "NCHW":
        assert calls[0][1:] == (3, *SIZE)


def test_cuda_request_without_cuda_is_clear(pretrained_onnx):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(InputError, match="no CUDAExecutionProvider"):
        open_backend(pretrained_onnx, device="cuda")


def test_input_and_output_chosen_by_name(tmp_path):
    model = tmp_path / "m.onnx"
    make_linear_onnx(model, size=(8, 8), dim=4)
    backend = open_backend(model, input_name="input", output_name="embeddings")
    assert backend.info.input_name == "input"
    with pytest.raises(InputError, match=r"no input named 'image' \(inputs: input\)"):
        open_backend(model, input_name="image")
    with pytest.raises(InputError, match=r"no output named 'emb' \(outputs: embeddings\)"):
        open_backend(model, output_name="emb")


def test_tensorflow_pb_matches_onnx(frozen_pb, pretrained_onnx):
    x = np.random.default_rng(3).uniform(-1, 1, (5, 112, 112, 3)).astype(np.float32)
    with open_backend(frozen_pb, threads=2) as tf_b:
        info = tf_b.info
        assert (info.backend, info.input_name, info.output_name, info.layout, info.batch) == \
            ("tensorflow", "input", "embeddings", "NHWC", "dynamic")
        assert info.output_dim == 192
        y = tf_b.embed(x)
    with open_backend(pretrained_onnx) as ort_b:
        z = ort_b.embed(x)
    np.testing.assert_allclose(y, z, atol=1e-4)


def test_info_command(pretrained_onnx):
    import json

    from typer.testing import CliRunner

    from massface.infer.cli import app

    r = CliRunner().invoke(app, ["info", str(pretrained_onnx), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["layout"] == "NHWC" and info["output_dim"] == 192
