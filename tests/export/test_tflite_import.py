"""`massface-export --tflite`: the shared pretrained MobileFaceNet -> ONNX, dynamic batch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from massface.export.cli import app
from massface.io import sha256_file
from tests.helpers.cli import run_cli

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")


def _cosines(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def imported(pretrained_tflite, lfw_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite") / "sirius"
    with pytest.MonkeyPatch.context() as mp:
        empty = out.parent / "empty-bin"
        empty.mkdir()
        mp.setenv("PATH", str(empty))  # no atc: the .om step is scripted
        result = run_cli(app, [
            "--tflite", str(pretrained_tflite), "--out", str(out),
            "--to-checkpoint", str(out.parent / "sirius-run"), "--calibration-count", "64"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result, out


def test_import_is_proven_against_the_tflite_interpreter(imported, pretrained_tflite):
    result, out = imported
    assert result.exit_code == 0, result.output
    m = json.loads((out / "export.json").read_text())
    assert m["source"]["kind"] == "tflite"
    assert m["source"]["sha256"] == sha256_file(pretrained_tflite)
    assert m["source"]["input"]["shape"] == [2, 112, 112, 3]  # as shipped
    assert m["input"]["shape"] == [-1, 112, 112, 3] and m["output"]["dim"] == 192
    p = m["parity"]["onnx"]
    assert p["passed"] and p["min_cosine"] >= 0.9999 and p["count"] == 16
    assert p["reference"].startswith("TFLite interpreter")
    assert m["artifacts"]["onnx"]["dynamic_batch"] == {"was": 2, "reshapes_rewritten": 2}
    assert m["artifacts"]["onnx"]["sha256"] == sha256_file(out / "model.onnx")
    assert m["atc"]["status"] == "deferred"
    assert "--framework=5" in (out / "atc.sh").read_text()


def test_imported_onnx_runs_any_batch_and_matches_the_interpreter(imported, faces,
                                                                   pretrained_tflite):
    import onnxruntime as ort

    from massface.export.tflite_import import TFLiteRunner

    _, out = imported
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    images = faces.images[:7]
    ref = TFLiteRunner(pretrained_tflite)(images)
    for batch in (1, 3, 7):
        got = np.concatenate([sess.run(None, {"input": images[i:i + batch]})[0]
                              for i in range(0, 7, batch)])
        assert got.shape == (7, 192)
        assert _cosines(ref, got).min() >= 0.9999


def test_imported_onnx_agrees_with_the_shipped_onnx(imported, faces, pretrained_onnx):
    import onnxruntime as ort

    _, out = imported
    ours = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    shipped = ort.InferenceSession(str(pretrained_onnx), providers=["CPUExecutionProvider"])
    a = ours.run(None, {"input": faces.images})[0]
    b = shipped.run(None, {shipped.get_inputs()[0].name: faces.images})[0]
    assert _cosines(a, b).min() >= 0.9999
    assert np.abs(a - b).max() < 1e-3


def test_missing_or_broken_tflite(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    for path, message in ((tmp_path / "none.tflite", "not found"), (bad, "TFLite")):
        result = run_cli(app, ["--tflite", str(path), "--out", str(tmp_path / "o"),
                                          "--parity-images", str(tmp_path)])
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert not (tmp_path / "o").exists()


def test_normalize_is_refused_for_tflite(pretrained_tflite, tmp_path):
    result = run_cli(app, ["--tflite", str(pretrained_tflite), "--out",
                                      str(tmp_path / "o"), "--normalize"])
    assert result.exit_code == 2 and "--normalize is not available" in result.output


def test_tflite_weights_map_onto_massface_mobilefacenet(imported, faces, pretrained_tflite):
    """The run folder loads with massface.train's own loader and computes what the TFLite
    model computes (inference mode), measured here."""
    import tensorflow as tf

    from massface.export.tflite_import import TFLiteRunner
    from massface.train.checkpoints import load_backbone

    result, out = imported
    run = out.parent / "sirius-run"
    assert result.exit_code == 0, result.output
    assert "massface-train run folder" in result.output
    model, config = load_backbone(run)
    assert config["model"]["embedding_size"] == 192 and model.embedding_size == 192
    got = model(tf.constant(faces.images), training=False).numpy()
    ref = TFLiteRunner(pretrained_tflite)(faces.images)
    assert _cosines(ref, got).min() >= 0.9999
    report = json.loads((run / "imported_from.json").read_text())
    assert report["layers"] == 52 and report["prelu_layers"] == 33
    assert report["parity"]["passed"]
    assert "not in pairs.txt" in report["calibration"]["source"]


def test_a_tflite_that_is_not_mobilefacenet_imports_but_does_not_map(tmp_path, faces):
    import tensorflow as tf

    from massface.errors import InputError
    from massface.export.tflite_weights import map_weights

    kernel = tf.constant(np.random.default_rng(0).normal(size=(3, 3, 3, 8)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, 112, 112, 3], tf.float32)])
    def tiny(x):
        y = tf.nn.conv2d(x, kernel, 2, "SAME") + 0.1
        return tf.reduce_mean(y, axis=[1, 2])

    conv = tf.lite.TFLiteConverter.from_concrete_functions([tiny.get_concrete_function()],
                                                           tiny)
    path = tmp_path / "tiny.tflite"
    path.write_bytes(conv.convert())
    with pytest.raises(InputError, match="1 convolutions; massface's MobileFaceNet has 52"):
        map_weights(path, calibration=faces, check=faces, min_cosine=0.9999)
    # ... but it imports to ONNX (batch 1 made dynamic) with parity proven
    result = run_cli(app, ["--tflite", str(path), "--out", str(tmp_path / "o"),
                                      "--no-om"])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "o" / "export.json").read_text())
    assert m["parity"]["onnx"]["passed"] and m["output"]["dim"] == 8


@pytest.mark.slow
def test_truncated_tflite_is_a_clear_error_not_a_crash(tmp_path, pretrained_tflite):
    """TFLite's interpreter segfaults on a cut file; export must refuse it (exit 2)."""
    import subprocess
    import sys

    cut = tmp_path / "cut.tflite"
    cut.write_bytes(pretrained_tflite.read_bytes()[:2_000_000])
    proc = subprocess.run(
        [sys.executable, "-m", "massface.export.cli", "--tflite", str(cut), "--out",
         str(tmp_path / "o"), "--parity-images", str(tmp_path), "--no-om"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    # The interpreter either crashes on the cut file (a signal in the child) or raises
    # (seen on CI: "Did not get tensors in subgraph 0"); which one varies from run to run.
    # Both must end as one line naming the file, never a traceback.
    assert "cut.tflite" in proc.stderr and "Traceback" not in proc.stderr
    assert ("truncated or damaged" in proc.stderr
            or "not a readable TFLite model" in proc.stderr), proc.stderr[-2000:]
    assert not (tmp_path / "o").exists()


def test_out_is_required_without_a_run_folder(pretrained_tflite, tmp_path):
    result = run_cli(app, ["--tflite", str(pretrained_tflite)])
    assert result.exit_code == 2, result.output
    assert "--out is required with --tflite" in " ".join(result.output.split())


@pytest.mark.parametrize("option", ["--tflite", "--onnx"])
def test_imports_refuse_normalize_and_a_missing_model_alike(option, tmp_path):
    model = tmp_path / "m.bin"
    model.write_bytes(b"x")
    normalized = run_cli(app, [option, str(model), "--out", str(tmp_path / "o"),
                                          "--normalize"])
    assert normalized.exit_code == 2
    assert f"--normalize is not available with {option}" in " ".join(normalized.output.split())
    missing = run_cli(app, [option, str(tmp_path / "none"), "--out",
                                       str(tmp_path / "o")])
    assert missing.exit_code == 2 and "file not found" in missing.output
    assert not (tmp_path / "o").exists()
