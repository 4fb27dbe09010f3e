"""The done-when figures: the shared model over all 6,000 LFW pairs through ONNX Runtime
and OpenVINO fp32; the TensorFlow .pb backend checked against ONNX Runtime's embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from massface.infer.cli import app
from tests.helpers.scoring import lfw_accuracy_of

pytestmark = pytest.mark.slow
runner = CliRunner()
PUBLISHED = 0.9925


@pytest.fixture(scope="module")
def onnx_accuracy(lfw_onnx_run) -> float:
    """massface-infer with the demo's options (the shared ``lfw_onnx_run``)."""
    summary = json.loads((lfw_onnx_run / "summary.json").read_text())
    assert summary["images"] == 7701
    return lfw_accuracy_of(lfw_onnx_run)


def test_embeddings_equal_a_plain_onnxruntime_loop(lfw_onnx_run, pretrained_onnx, lfw_dir):
    """The first 256 rows against a loop written here: PIL decode, RGB, (x - 127.5) / 128,
    batches of 32, nothing of massface.infer."""
    import onnxruntime as ort
    from PIL import Image

    from massface.formats.embedding_dir import read_embedding_dir

    es = read_embedding_dir(lfw_onnx_run)
    session = ort.InferenceSession(str(pretrained_onnx), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    mine = []
    for start in range(0, 256, 32):
        batch = np.stack([
            (np.asarray(Image.open(lfw_dir / p).convert("RGB"), np.float32) - 127.5) / 128.0
            for p in es.paths[start:start + 32]])
        mine.append(session.run(None, {name: batch})[0])
    np.testing.assert_allclose(es.embeddings[:256], np.concatenate(mine), rtol=0, atol=1e-5)


def test_onnx_lfw_accuracy_matches_the_publisher(onnx_accuracy):
    print(f"LFW accuracy (ONNX Runtime): {onnx_accuracy:.6f}")
    assert abs(onnx_accuracy - PUBLISHED) <= 0.001


def test_tensorflow_pb_gives_the_same_embeddings(tmp_path, frozen_pb, lfw_onnx_run, lfw_dir,
                                                subset_pairs):
    """The TensorFlow backend on 60 pairs (10 folds) against ONNX Runtime's rows for the
    same images: the same embeddings to float32 rounding, so the same decisions. (Over all
    6,000 pairs it measured 99.2667%, as ONNX Runtime; at about 30 img/s that run costs
    four minutes of CI, so the suite checks the embeddings instead.)"""
    from massface.formats.embedding_dir import read_embedding_dir

    out = tmp_path / "pb"
    r = runner.invoke(app, ["--model", str(frozen_pb), "--lfw", str(lfw_dir), "--pairs",
                            str(subset_pairs), "--out", str(out), "--threads", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    tf_run, ort_run = read_embedding_dir(out), read_embedding_dir(lfw_onnx_run)
    ort_rows = ort_run.row_of()
    ort = ort_run.embeddings[[ort_rows[p] for p in tf_run.paths]].astype(np.float64)
    tf = tf_run.embeddings.astype(np.float64)
    assert len(tf) >= 90  # the 120 pair slots name 96 distinct images
    cos = (tf * ort).sum(1) / np.linalg.norm(tf, axis=1) / np.linalg.norm(ort, axis=1)
    assert cos.min() >= 0.99999, cos.min()
    np.testing.assert_allclose(tf, ort, rtol=0, atol=1e-3 * np.abs(ort).max())


def test_openvino_fp32_gives_the_same_accuracy(tmp_path, onnx_accuracy, pretrained_onnx,
                                               lfw_dir, lfw_pairs):
    pytest.importorskip("openvino")
    out = tmp_path / "openvino"
    r = runner.invoke(app, ["--model", str(pretrained_onnx), "--lfw", str(lfw_dir), "--pairs",
                            str(lfw_pairs), "--out", str(out), "--backend", "openvino",
                            "--threads", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "meta.json").read_text())["precision"] == "fp32"
    acc = lfw_accuracy_of(out)
    print(f"LFW accuracy (OpenVINO fp32): {acc:.6f}")
    assert acc == onnx_accuracy
