"""The OpenVINO backend against ONNX Runtime, its IR models, precisions, and its absence.

Parity: fp32 OpenVINO and ONNX Runtime embeddings agree to cosine >= 0.99999 on the shared
MobileFaceNet (NHWC, dynamic batch), an NCHW convolution model, a static-batch model and a
model with symbolic height and width; through ``embed`` and through the asynchronous
``embed_many`` path. bf16/fp16 run only where the CPU has them natively (tolerance: cosine
>= 0.995 to fp32 on real LFW faces); elsewhere they are refused with exit 2.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from massface.errors import InputError
from massface.infer.cli import app
from massface.runtime.backends import open_backend
from tests.helpers.cli import run_cli
from tests.helpers.models import make_conv_onnx, make_linear_onnx

FP32_COSINE = 0.99999
HALF_COSINE = 0.995  # bf16/fp16 vs fp32, real faces


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def _images(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, *size, 3)).astype(np.float32)


def _faces(lfw_dir, n: int = 16) -> np.ndarray:
    from massface.runtime.loader import LoaderOptions, load_rows
    from massface.runtime.preprocess import Preprocessing
    from massface.runtime.sources import images_dataset

    ds = images_dataset(lfw_dir)
    return load_rows(ds, 0, n, LoaderOptions(Preprocessing())).array


def _native(precision: str) -> bool:
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return {"bf16": "BF16", "fp16": "FP16"}[precision] in caps


def test_missing_openvino_says_how_to_install(tmp_path, monkeypatch):
    model = tmp_path / "m.onnx"
    make_linear_onnx(model, size=(8, 8), dim=4)
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    r = run_cli(app, ["info", str(model), "--backend", "openvino"])
    assert r.exit_code == 2, r.output
    assert "pip install 'massface[openvino]'" in r.output
    xml = tmp_path / "m.xml"
    xml.write_text("<net/>")
    with pytest.raises(InputError, match=r"needs OpenVINO, which is not installed"):
        open_backend(xml)  # auto: .xml is OpenVINO IR


@pytest.fixture(scope="module")
def ov():
    return pytest.importorskip("openvino")


def _check_parity(model, x: np.ndarray, **kw) -> None:
    with open_backend(model, threads=1) as ort_b:
        want = ort_b.embed(x)
    with open_backend(model, backend="openvino", threads=2, **kw) as ov_b:
        assert ov_b.info.backend == "openvino" and ov_b.precision == "fp32"
        one = ov_b.embed(x)
        parts = [x[:5], x[5:5], x[5:]]
        many = np.concatenate(list(ov_b.embed_many(parts)))
    assert one.shape == want.shape == many.shape
    assert _min_cosine(one, want) >= FP32_COSINE
    assert _min_cosine(many, want) >= FP32_COSINE
    np.testing.assert_allclose(many, one, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_shared_model_matches_onnxruntime(ov, pretrained_onnx, lfw_dir):
    x = _faces(lfw_dir, 13)
    _check_parity(pretrained_onnx, x)
    _check_parity(pretrained_onnx, x, batch_size=4, streams=2)  # compiled static, 2 streams
    with open_backend(pretrained_onnx, backend="openvino", batch_size=4, streams=2) as b:
        info = b.info
    assert (info.input_name, info.layout, info.size, info.output_name, info.output_dim) == \
        ("input", "NHWC", (112, 112), "embeddings", 192)
    assert (info.batch, info.batch_sizes) == ("static", (4,))
    assert info.extra["model_batch"] == "dynamic" and info.extra["compiled_batch"] == 4
    assert info.extra["streams"] == 2 and info.extra["requests_in_flight"] == 3
    assert info.extra["inference_precision"] == "f32"


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_conv_model_layouts_match_onnxruntime(ov, tmp_path, layout):
    model = tmp_path / "conv.onnx"
    make_conv_onnx(model, layout=layout, size=(16, 12))
    with open_backend(model, backend="openvino") as b:
        assert (b.info.layout, b.info.size, b.info.batch) == (layout, (16, 12), "dynamic")
    _check_parity(model, _images(9, (16, 12)))


def test_static_batch_model_pads_the_last_batch(ov, tmp_path):
    model = tmp_path / "static.onnx"
    make_conv_onnx(model, batch=4, size=(10, 10))
    x = _images(11, (10, 10))
    with open_backend(model, backend="openvino") as b:
        assert (b.info.batch, b.info.batch_sizes) == ("static", (4,))
        assert "compiled_batch" not in b.info.extra
        fed: list[int] = []
        start = b._start
        b._start = lambda arr: fed.append(arr.shape[0]) or start(arr)
        list(b.embed_many([x]))
    assert fed == [4, 4, 4]
    _check_parity(model, x)


def test_symbolic_size_model(ov, tmp_path):
    model = tmp_path / "any.onnx"
    make_conv_onnx(model, size=None)
    with open_backend(model, backend="openvino", batch_size=8) as b:
        assert b.info.size is None and b.info.input_shape == [None, 3, None, None]
    for size in ((20, 14), (7, 9)):
        _check_parity(model, _images(6, size), batch_size=8)


def test_openvino_ir_runs_by_suffix(ov, tmp_path):
    onnx_model = tmp_path / "conv.onnx"
    make_conv_onnx(onnx_model, layout="NHWC", size=(12, 12))
    xml = tmp_path / "conv.xml"
    ov.save_model(ov.Core().read_model(str(onnx_model)), str(xml), compress_to_fp16=False)
    x = _images(7, (12, 12))
    with open_backend(onnx_model) as ort_b:
        want = ort_b.embed(x)
    with open_backend(xml) as b:  # auto: .xml -> openvino
        assert b.info.backend == "openvino" and b.info.layout == "NHWC"
        assert _min_cosine(b.embed(x), want) >= FP32_COSINE
    r = run_cli(app, ["info", str(xml), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["backend"] == "openvino"
    xml.with_suffix(".bin").unlink()
    with pytest.raises(InputError, match=r"conv\.xml: OpenVINO IR needs its weights file "
                                         r"conv\.bin"):
        open_backend(xml)


def test_bad_models_and_options_are_input_errors(ov, tmp_path, pretrained_onnx):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match=r"bad\.onnx: OpenVINO cannot read this model"):
        open_backend(bad, backend="openvino")
    with pytest.raises(InputError, match=r"runs \.onnx, \.xml models"):
        open_backend(tmp_path / "m.pb", backend="openvino")
    with pytest.raises(InputError, match=r"no output named 'emb' \(outputs: embeddings\)"):
        open_backend(pretrained_onnx, backend="openvino", output_name="emb")
    with pytest.raises(InputError, match=r"--device 'cuda': the openvino backend runs on the CPU"):
        open_backend(pretrained_onnx, backend="openvino", device="cuda")
    with pytest.raises(InputError, match=r"--streams: the onnxruntime backend has no use for"):
        open_backend(pretrained_onnx, backend="onnxruntime", streams=2)
    with pytest.raises(InputError, match=r"the onnxruntime backend runs fp32 only; use "
                                         r"--backend openvino"):
        open_backend(pretrained_onnx, backend="onnxruntime", precision="bf16")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_is_native_or_refused(ov, tmp_path, pretrained_onnx, lfw_dir, precision):
    if not _native(precision):
        out = tmp_path / "out"
        r = run_cli(app, ["--model", str(pretrained_onnx), "--images", str(lfw_dir),
                                "--out", str(out), "--backend", "openvino", "--precision",
                                precision, "--quiet"])
        assert r.exit_code == 2, r.output
        assert f"no native {precision} arithmetic" in r.output
        assert not (out / "meta.json").exists()
        return
    x = _faces(lfw_dir, 16)
    with open_backend(pretrained_onnx, backend="openvino") as b:
        fp32 = b.embed(x)
    with open_backend(pretrained_onnx, backend="openvino", precision=precision) as b:
        assert b.info.extra["inference_precision"] == {"bf16": "bf16", "fp16": "f16"}[precision]
        half = b.embed(x)
    cos = _min_cosine(half, fp32)
    print(f"{precision}: min cosine to fp32 {cos:.6f}")
    assert HALF_COSINE <= cos < 1.0


@pytest.mark.slow
def test_cli_run_records_backend_and_precision(ov, tmp_path, pretrained_onnx, lfw_dir,
                                               subset_pairs):
    from massface.evaluate.cli import app as eval_app
    from massface.formats.embedding_dir import read_embedding_dir
    from massface.infer import InferOptions, run_inference
    from massface.runtime.sources import lfw_dataset

    base = ["--model", str(pretrained_onnx), "--lfw", str(lfw_dir), "--pairs",
            str(subset_pairs), "--batch-size", "16", "--quiet"]
    out, ref = tmp_path / "ov", tmp_path / "ort"
    r = run_cli(app, [*base, "--out", str(out), "--backend", "openvino", "--threads", "2",
                            "--streams", "2"])
    assert r.exit_code == 0, r.output
    assert run_cli(app, [*base, "--out", str(ref), "--backend", "onnxruntime"]
                         ).exit_code == 0
    got, want = read_embedding_dir(out), read_embedding_dir(ref)
    assert got.paths == want.paths
    assert _min_cosine(got.embeddings, want.embeddings) >= FP32_COSINE
    meta = json.loads((out / "meta.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert (meta["backend"], meta["precision"]) == ("openvino", "fp32")
    assert (meta["fingerprint"]["backend"], meta["fingerprint"]["precision"]) == \
        ("openvino", "fp32")
    assert (summary["backend"], summary["precision"], summary["streams"]) == \
        ("openvino", "fp32", 2)
    assert summary["batches"] == -(-summary["images"] // 16)
    # the same loop in memory (what a precision preview embeds LFW with)
    from massface.runtime.pipeline import embed_dataset

    ds = lfw_dataset(lfw_dir, subset_pairs)
    with open_backend(pretrained_onnx, backend="openvino", batch_size=16) as b:
        emb, flips = embed_dataset(b, ds, batch_size=16, flip=True)
    assert flips is not None and flips.shape == emb.shape
    np.testing.assert_allclose(emb, got.embeddings, rtol=1e-5, atol=1e-5)
    report = tmp_path / "r.md"
    r = run_cli(eval_app, [str(out), "--markdown", str(report)])
    assert r.exit_code == 0, r.output
    assert f"{out}: embedded by openvino in fp32" in report.read_text().split("| run")[0]
    # the same folder with another backend is another run: refused, not mixed
    r = run_cli(app, [*base, "--out", str(out), "--backend", "onnxruntime"])
    assert r.exit_code == 2 and "--overwrite" in r.output
    # an unfinished fp32 run is not resumed in another precision
    part = tmp_path / "part"
    opts = InferOptions(out=part, batch_size=8, chunk_batches=2, progress=False,
                        backend="openvino")
    with open_backend(pretrained_onnx, backend="openvino") as b:
        b._start = lambda arr: (_ for _ in ()).throw(RuntimeError("injected failure"))
        with pytest.raises(RuntimeError, match="injected"):
            run_inference(pretrained_onnx, ds, opts, backend=b)
    with open_backend(pretrained_onnx, backend="openvino") as b:
        b.precision = "bf16"  # stands for a bf16 backend on a CPU that has bf16
        with pytest.raises(InputError, match=r"unfinished massface-infer run with other "
                                             r"settings \(differs in: precision\)"):
            run_inference(pretrained_onnx, ds, opts, backend=b)


def test_no_backend_option_runs_the_fastest_exact_engine_and_says_so(ov, tmp_path,
                                                                    pretrained_onnx, lfw_dir,
                                                                    subset_pairs, monkeypatch):
    """`massface-infer --model shared.onnx` without --backend: OpenVINO fp32 on x86 (where
    installed), the choice in the log, meta.json, summary.json and massface-eval's report;
    the same embeddings as ONNX Runtime. Without OpenVINO: ONNX Runtime, saying why."""
    import platform

    from massface.evaluate.cli import app as eval_app
    from massface.formats.embedding_dir import read_embedding_dir

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"auto picks OpenVINO on x86 CPUs only; this is {platform.machine()}")
    base = ["--model", str(pretrained_onnx), "--lfw", str(lfw_dir), "--pairs",
            str(subset_pairs), "--batch-size", "16", "--quiet"]
    out = tmp_path / "auto"
    r = run_cli(app, [*base, "--out", str(out)])
    assert r.exit_code == 0, r.output
    why = "auto: OpenVINO, the fastest exact CPU engine for .onnx on x86"
    assert f"backend: openvino fp32 ({why})" in r.output
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["backend"], meta["precision"], meta["backend_choice"]) == \
        ("openvino", "fp32", why)
    assert json.loads((out / "summary.json").read_text())["backend_choice"] == why
    report = tmp_path / "r.md"
    assert run_cli(eval_app, [str(out), "--markdown", str(report)]).exit_code == 0
    assert f"embedded by openvino in fp32 ({why})" in report.read_text()

    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    ref = tmp_path / "no-openvino"
    r = run_cli(app, [*base, "--out", str(ref)])
    assert r.exit_code == 0, r.output
    assert "backend: onnxruntime fp32 (auto: onnxruntime (OpenVINO is not installed" in r.output
    got, want = read_embedding_dir(out), read_embedding_dir(ref)
    assert got.paths == want.paths
    assert _min_cosine(got.embeddings, want.embeddings) >= FP32_COSINE
