"""`massface-export --ckpt`: a real-looking run -> .pb / ONNX / stand-in .om, proven.

One export (module fixture) is checked from every side; the failure cases each run only
the parts of the pipeline they need. Parity is re-measured here, independently of the
numbers the pipeline reports about itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from massface.export.cli import app
from massface.io import sha256_file
from tests.helpers.cli import run_cli
from tests.helpers.models import make_training_run
from tests.helpers.standin_atc import install_standin_atc

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

EMBEDDING = 128


def _invoke(args: list[str]):
    result = run_cli(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _hidden(parent: Path) -> list[str]:
    """Staging / backup folders the export may have left beside --out."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, faces) -> Path:
    return make_training_run(tmp_path_factory.mktemp("train") / "orl-run", faces.images,
                              embedding_size=EMBEDDING)


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    """One full export spelt as the design card does (``--ckpt RUN --soc SOC``, no --out:
    RUN/export), with a stand-in atc that succeeds, and what the stand-in saw."""
    base = tmp_path_factory.mktemp("export")
    run = shutil.copytree(run_dir, base / "run")
    with pytest.MonkeyPatch.context() as mp:
        bin_dir = install_standin_atc(base / "bin", "success", mp)
        result = _invoke(["--ckpt", run, "--soc", "Ascend310P3"])
    assert f"writing to {run / 'export'}" in " ".join(result.output.split())
    return result, run / "export", bin_dir


@pytest.fixture(scope="module")
def reference(run_dir, faces):
    """The checkpoint's own embeddings of the parity faces (TF eager)."""
    from massface.train.checkpoints import load_backbone

    model, _ = load_backbone(run_dir)
    return model(tf.constant(faces.images), training=False).numpy()


def test_export_writes_every_artifact_with_its_proof(exported):
    result, out, bin_dir = exported
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "atc.log", "atc.sh", "export.json", "model.om", "model.onnx", "model.pb"]
    assert _hidden(out.parent) == []
    m = json.loads((out / "export.json").read_text())
    assert m["format"] == "massface-export" and m["version"] == 1
    assert m["input"] == {"name": "input", "shape": [-1, 112, 112, 3], "layout": "NHWC",
                          "dtype": "float32"}
    assert m["output"]["name"] == "embeddings" and m["output"]["dim"] == EMBEDDING
    assert m["output"]["normalized"] is False
    assert {k: m["preprocessing"][k] for k in ("color", "mean", "std", "size", "layout")} == {
        "color": "RGB", "mean": 127.5, "std": 128.0, "size": [112, 112], "layout": "NHWC"}
    assert m["preprocessing"]["source"].startswith("run config.yaml")
    assert m["preprocessing"]["fit"] == "squash"  # as massface-train fed the images
    for kind, art in m["artifacts"].items():
        assert art["sha256"] == sha256_file(out / art["file"]), kind
    for kind in ("pb", "onnx"):
        p = m["parity"][kind]
        assert p["count"] == 16 and p["min_cosine"] >= 0.9999 and p["passed"], p
        assert p["batch_sizes"] == [1, 15]
    assert m["parity"]["images"]["count"] == 16
    assert m["artifacts"]["onnx"]["opset"] == 13
    assert {"tensorflow", "tf2onnx", "onnx", "onnxruntime", "numpy"} <= set(m["tools"])
    # ATC: the stand-in ran the recorded command in the export folder
    atc = m["atc"]
    assert atc["status"] == "built" and atc["soc"] == "Ascend310P3"
    assert atc["precision_mode"] == "allow_fp32_to_fp16"
    assert (bin_dir / "argv.txt").read_text().splitlines() == atc["command"].split()[1:]
    assert "--framework=3" in atc["command"] and "--out_nodes=embeddings:0" in atc["command"]
    assert m["artifacts"]["om"]["built_from"] == "model.pb"


def test_frozen_graph_is_a_clean_inference_graph(exported):
    _, out, _ = exported
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString((out / "model.pb").read_bytes())
    ops = {n.op for n in gd.node}
    assert not ops & {"FusedBatchNorm", "FusedBatchNormV3", "VarHandleOp", "ReadVariableOp",
                      "If", "StatelessIf", "PartitionedCall", "StatefulPartitionedCall"}
    assert [n.name for n in gd.node if n.op == "Placeholder"] == ["input"]
    assert any(n.name == "embeddings" for n in gd.node)
    graph = json.loads((out / "export.json").read_text())["artifacts"]["pb"]["graph"]
    assert graph["batchnorm_folded"] == 52 and graph["batchnorm_left"] == 0
    assert "relu(-x)" in graph["prelu_form"]


def test_onnx_has_standard_ops_no_batchnorm_and_a_dynamic_batch(exported):
    import onnx

    _, out, _ = exported
    model = onnx.load(str(out / "model.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops
    assert all(onnx.defs.has(op) for op in ops)
    (inp,) = model.graph.input
    assert inp.name == "input" and model.graph.output[0].name == "embeddings"
    dims = inp.type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value")  # dynamic batch
    assert [d.dim_value for d in dims[1:]] == [112, 112, 3]


def test_artifacts_reproduce_the_checkpoint_measured_independently(exported, faces, reference):
    import onnxruntime as ort

    _, out, _ = exported
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = np.concatenate([sess.run(None, {"input": faces.images[s]})[0]
                               for s in (slice(0, 3), slice(3, 16))])
    assert _cosines(reference, onnx_out).min() >= 0.9999
    np.testing.assert_allclose(onnx_out, reference, atol=1e-4 * np.abs(reference).max())

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString((out / "model.pb").read_bytes())
    fn = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(gd, name=""), [])
    pb_out = fn.prune("input:0", "embeddings:0")(tf.constant(faces.images[:5])).numpy()
    assert _cosines(reference[:5], pb_out).min() >= 0.9999
    # The recorded numbers are the ones measured here (to float noise).
    m = json.loads((out / "export.json").read_text())
    assert m["parity"]["onnx"]["max_abs_diff"] == pytest.approx(
        np.abs(onnx_out - reference).max(), abs=1e-5)


def test_normalized_export_at_opset_11(run_dir, faces, reference, tmp_path, no_atc):
    out = tmp_path / "norm"
    prefix = run_dir / "checkpoints" / "ckpt-1"  # a checkpoint prefix works as well
    result = _invoke(["--ckpt", prefix, "--out", out, "--normalize", "--opset", "11",
                      "--om-from", "onnx"])
    assert result.exit_code == 0, result.output
    m = json.loads((out / "export.json").read_text())
    assert m["source"]["prefix"] == str(prefix) and m["source"]["run_dir"] == str(run_dir)
    assert m["output"]["normalized"] is True and m["artifacts"]["onnx"]["opset"] == 11
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    emb = sess.run(None, {"input": faces.images})[0]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    assert _cosines(unit, emb).min() >= 0.9999
    # No atc here: the ONNX command is scripted, the export still succeeds, and says so.
    assert m["atc"]["status"] == "deferred" and "model.om" not in m["artifacts"]
    assert "--framework=5" in (out / "atc.sh").read_text()
    assert "no .om built" in result.output


def test_no_checkpoint_in_folder(tmp_path, no_atc):
    empty = tmp_path / "run"
    (empty / "checkpoints").mkdir(parents=True)
    result = _invoke(["--ckpt", empty, "--out", tmp_path / "out"])
    assert result.exit_code == 2
    assert "no checkpoint found" in result.output and str(empty) in result.output
    assert not (tmp_path / "out").exists()


def test_variables_that_do_not_match_the_model(run_dir, tmp_path, no_atc):
    other = tmp_path / "run"
    shutil.copytree(run_dir, other)
    (other / "config.yaml").write_text("model: {embedding_size: 256}\n")
    result = _invoke(["--ckpt", other, "--out", tmp_path / "out"])
    assert result.exit_code == 2
    assert "does not match" in result.output and "embedding/kernel" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--soc", "Ascend999"], "not an Ascend SoC"),
    (["--dynamic-batch", "1,4096"], "out of range"),
    (["--dynamic-batch", "0,8"], "out of range"),
    (["--opset", "9"], "--opset 9"),
    (["--precision-mode", "fp8"], "precision-mode"),
    (["--om-from", "tflite"], "--om-from"),
    (["--to-checkpoint", "run"], "--to-checkpoint needs --tflite"),
])
def test_bad_options_fail_before_any_work(args, message, tmp_path, no_atc):
    result = _invoke(["--ckpt", tmp_path / "nowhere", "--out", tmp_path / "out", *args])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists()


def test_require_om_without_atc_fails_up_front(tmp_path, no_atc):
    result = _invoke(["--ckpt", tmp_path / "nowhere", "--out", tmp_path / "out",
                      "--require-om"])
    assert result.exit_code == 5 and "atc is not on PATH" in result.output


def test_one_gear_means_a_static_batch():
    from massface.export.pipeline import ExportOptions

    opts = ExportOptions(gears="8")
    opts.validate()
    assert opts.gears == (8,)


def test_ckpt_and_tflite_are_exclusive(tmp_path):
    result = _invoke(["--out", tmp_path / "o"])
    assert result.exit_code == 2 and "exactly one of --ckpt" in result.output


def _perturbed_freeze(original):
    """Wrap freeze(): shift the last folded bias so the .pb no longer matches."""

    def freeze(*args, **kwargs):
        gd, report = original(*args, **kwargs)
        node = [n for n in gd.node if n.name.endswith("folded_bias")][-1]
        value = tf.make_ndarray(node.attr["value"].tensor)
        rng = np.random.default_rng(0)
        value = value + rng.normal(0, 1.0, value.shape).astype(np.float32)
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        return gd, report

    return freeze


def test_parity_below_bound_fails_and_keeps_the_previous_export(run_dir, tmp_path,
                                                                 monkeypatch, no_atc):
    import massface.export.freeze as freeze_mod

    out = tmp_path / "out"
    out.mkdir()
    (out / "export.json").write_text('{"previous": true}')
    monkeypatch.setattr(freeze_mod, "freeze", _perturbed_freeze(freeze_mod.freeze))
    result = _invoke(["--ckpt", run_dir, "--out", out, "--overwrite"])
    assert result.exit_code == 3, result.output
    assert "parity check failed for pb" in result.output and "min cosine 0." in result.output
    assert json.loads((out / "export.json").read_text()) == {"previous": True}
    assert sorted(p.name for p in out.iterdir()) == ["export.json"]
    assert _hidden(tmp_path) == []


def _unconvertible_freeze(original):
    """Wrap freeze(): route the output through Bitcast (no ONNX equivalent), which keeps
    the values (so the .pb still passes parity) but cannot be converted."""

    def freeze(*args, **kwargs):
        gd, report = original(*args, **kwargs)
        out = next(n for n in gd.node if n.name == "embeddings")
        src = out.input[0]
        a = gd.node.add(name="to_int", op="Bitcast", input=[src])
        a.attr["T"].type = tf.float32.as_datatype_enum
        a.attr["type"].type = tf.int32.as_datatype_enum
        b = gd.node.add(name="to_float", op="Bitcast", input=["to_int"])
        b.attr["T"].type = tf.int32.as_datatype_enum
        b.attr["type"].type = tf.float32.as_datatype_enum
        out.input[0] = "to_float"
        return gd, report

    return freeze


def test_failed_onnx_conversion_shows_tf2onnx_reason(run_dir, tmp_path, monkeypatch, no_atc):
    import massface.export.freeze as freeze_mod

    monkeypatch.setattr(freeze_mod, "freeze", _unconvertible_freeze(freeze_mod.freeze))
    result = _invoke(["--ckpt", run_dir, "--out", tmp_path / "out"])
    assert result.exit_code == 3, result.output
    assert "Bitcast" in result.output and "tf2onnx" in result.output
    assert not (tmp_path / "out").exists() and _hidden(tmp_path) == []


def test_atc_failure_publishes_verified_models_and_exits_4(run_dir, tmp_path, standin_atc):
    standin_atc("fail")
    out = tmp_path / "out"
    result = _invoke(["--ckpt", run_dir, "--out", out, "--no-normalize"])
    assert result.exit_code == 4, result.output
    assert "ATC run failed" in result.output
    m = json.loads((out / "export.json").read_text())
    assert m["atc"]["status"] == "failed" and "exit status 255" in m["atc"]["error"]
    assert "om" not in m["artifacts"] and not (out / "model.om").exists()
    assert m["parity"]["onnx"]["passed"] and (out / "atc.log").is_file()


def test_existing_output_needs_overwrite(exported, run_dir):
    _, out, _ = exported
    result = _invoke(["--ckpt", run_dir, "--out", out, "--no-om"])
    assert result.exit_code == 2 and "--overwrite" in result.output


@pytest.mark.parametrize("damage, named", [
    ("truncate", "ckpt-1.data-00000-of-00001"),
    ("index", "ckpt-1.index"),
])
def test_damaged_checkpoint_files_are_named(damage, named, run_dir, tmp_path, no_atc):
    other = tmp_path / "run"
    shutil.copytree(run_dir, other)
    files = other / "checkpoints"
    if damage == "truncate":
        data = files / "ckpt-1.data-00000-of-00001"
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    else:
        (files / "ckpt-1.index").write_bytes(b"\x00garbage" * 16)
    result = _invoke(["--ckpt", other, "--out", tmp_path / "out"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert str(files / named) in text and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() and _hidden(tmp_path) == []


def test_an_out_in_use_is_refused_and_a_stale_lock_is_not(exported, run_dir):
    import os

    from massface.lock import path_lock

    _, out, _ = exported
    with path_lock(out, "holder"):
        result = _invoke(["--ckpt", run_dir, "--out", out, "--no-om"])
    assert result.exit_code == 2 and f"in use by PID {os.getpid()} (holder)" in result.output
    # a lock file left by a killed export beside --out does not block: the run gets as far
    # as the next check (this --out is full and --overwrite is not given)
    (out.parent / f".{out.name}.massface.lock").write_text("999999 massface-export\n")
    result = _invoke(["--ckpt", run_dir, "--out", out, "--no-om"])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert not (out.parent / f".{out.name}.massface.lock").exists()
