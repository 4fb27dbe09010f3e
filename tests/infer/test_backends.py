"""Backends report their model correctly and batch any number of images right."""

from __future__ import annotations

import numpy as np
import pytest

from massface.errors import InputError
from massface.runtime.backends import BACKENDS, backend_for, choose_backend, open_backend
from massface.runtime.backends.onnx_backend import OnnxBackend
from tests.helpers.models import make_linear_onnx

SIZE = (12, 10)


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, *SIZE, 3)).astype(np.float32)


def _host(monkeypatch, machine: str = "x86_64", openvino: bool = True,
          cuda: bool = False) -> None:
    """Pretend to be another host: its CPU, whether OpenVINO is installed, ORT's CUDA."""
    import importlib.util
    import platform

    import onnxruntime

    monkeypatch.undo()  # each call describes the whole host
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
        (find_spec(name, *a) if openvino else None) if name == "openvino"
        else find_spec(name, *a)))
    providers = ["CUDAExecutionProvider"] * cuda + ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)


def test_auto_picks_openvino_for_onnx_on_x86_when_installed(monkeypatch):
    pytest.importorskip("openvino")
    _host(monkeypatch)
    cls, why = choose_backend("m.onnx")
    assert cls.name == "openvino" and why.startswith("auto: OpenVINO")
    assert backend_for("m.ONNX", device="cpu").name == "openvino"
    for kw, reason in (({"machine": "aarch64"}, "not an x86 CPU (aarch64)"),
                       ({"openvino": False}, "OpenVINO is not installed"),
                       ({"cuda": True}, "ONNX Runtime has CUDA here")):
        _host(monkeypatch, **kw)
        cls, why = choose_backend("m.onnx")
        assert cls is OnnxBackend and reason in why, (kw, why)
    _host(monkeypatch, cuda=True)  # a CUDA ONNX Runtime, but the CPU asked for
    assert backend_for("m.onnx", device="cpu").name == "openvino"
    assert choose_backend("m.onnx", device="cuda") == (OnnxBackend, "auto: onnxruntime "
                                                                    "(--device cuda)")


def test_auto_falls_back_to_onnxruntime_and_says_why(tmp_path, monkeypatch):
    """A model OpenVINO refuses (uint8 input, as an AIPP twin) runs on ONNX Runtime."""
    pytest.importorskip("openvino")
    _host(monkeypatch)
    path = tmp_path / "m.onnx"
    make_linear_onnx(path, size=SIZE, dim=6, input_dtype="uint8")
    with open_backend(path) as b:
        assert b.info.backend == "onnxruntime"
        assert b.choice.startswith("auto: onnxruntime (OpenVINO cannot run this model: ")
        assert "not float32" in b.choice
    with pytest.raises(InputError, match="not float32"):  # named: no fallback
        open_backend(path, backend="openvino")


def test_auto_backend_is_chosen_by_suffix(tmp_path, monkeypatch):
    assert set(BACKENDS) == {"onnxruntime", "openvino", "tensorflow", "acl"}
    _host(monkeypatch, openvino=False)
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
    with open_backend(pretrained_onnx, backend="onnxruntime", threads=1, device="cpu") as b:
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

    from massface.infer.cli import app
    from tests.helpers.cli import run_cli

    r = run_cli(app, ["info", str(pretrained_onnx), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["layout"] == "NHWC" and info["output_dim"] == 192


# --- one options object: what a backend would ignore is refused ---------------------------


def test_every_backend_declares_the_options_it_honours():
    from massface.runtime.backends.base import OPTION_FLAGS

    for name in BACKENDS:
        cls = BACKENDS.get(name)
        assert cls.options <= set(OPTION_FLAGS), name
    # the ones the review found dropped in silence for an .om, and --streams elsewhere
    assert "threads" not in BACKENDS.get("acl").options
    assert "input_name" not in BACKENDS.get("acl").options
    assert "streams" not in BACKENDS.get("onnxruntime").options


@pytest.mark.parametrize("flag, value, backend", [
    ("--threads", "2", "acl"), ("--input-name", "input", "acl"), ("--device", "cpu", "acl"),
    ("--streams", "2", "acl"), ("--device-id", "1", "onnxruntime"),
    ("--streams", "2", "onnxruntime"), ("--device", "cpu", "tensorflow"),
])
def test_cli_refuses_an_option_the_backend_would_ignore(monkeypatch, tmp_path, flag, value,
                                                        backend):
    """Exit 2 naming the option and the backends that take it, before any model loads."""
    from massface.infer.cli import app
    from tests.helpers.cli import run_cli

    suffix = {"acl": ".om", "onnxruntime": ".onnx", "tensorflow": ".pb"}[backend]
    model = tmp_path / f"m{suffix}"
    model.write_bytes(b"never read")  # refused before the model is opened
    loaded = []
    cls = BACKENDS.get(backend)
    monkeypatch.setattr(cls, "__init__", lambda self, *a, **k: loaded.append(a))
    (tmp_path / "imgs" / "p").mkdir(parents=True)
    (tmp_path / "imgs" / "p" / "a.png").write_bytes(b"")
    r = run_cli(app, ["--model", str(model), "--images", str(tmp_path / "imgs"),
                                 "--out", str(tmp_path / "out"), "--backend", backend, flag,
                                 value, "--quiet"])
    takers = [n for n in BACKENDS if flag.lstrip("-").replace("-", "_") in
              BACKENDS.get(n).options]
    assert r.exit_code == 2, r.output
    assert f"{flag}: the {backend} backend has no use for it (only {', '.join(takers)})" \
        in " ".join(r.output.split())
    assert not loaded
