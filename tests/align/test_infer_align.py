"""massface-infer --align: detect, align and embed raw photos in one pass."""

from __future__ import annotations

import json

import numpy as np
import pytest

from massface.align.cli import app as align_app
from massface.infer.cli import app as infer_app
from tests.helpers.cli import invoke_ok, run_cli
from tests.helpers.faults import failing_backend


@pytest.mark.slow
def test_align_in_infer_equals_align_then_infer(small_tree, tmp_path, pretrained_onnx):
    (small_tree / "broken.jpg").unlink()
    out = tmp_path / "emb"
    invoke_ok("--model", pretrained_onnx, "--images", small_tree, "--out", out, "--align",
              "arcface", "--skip-bad", "--workers", "2", "--quiet")
    index = (out / "index.txt").read_text().splitlines()
    assert len(index) == 4
    landmarks = json.loads((out / "landmarks.json").read_text())
    assert list(landmarks) == index
    assert "blank.png" in (out / "skipped.txt").read_text()
    assert json.loads((out / "meta.json").read_text())["align"]["template"]["name"] == "arcface"
    # the same crops through massface-align (lossless PNG), then plain massface-infer
    aligned = tmp_path / "aligned"
    result = run_cli(align_app, [str(small_tree), "--out", str(aligned),
                                            "--format", "png", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((aligned / "landmarks.json").read_text()) == landmarks
    plain = tmp_path / "plain"
    invoke_ok("--model", pretrained_onnx, "--images", aligned, "--out", plain, "--quiet")
    np.testing.assert_allclose(np.load(out / "embeddings.npy"),
                               np.load(plain / "embeddings.npy"), atol=1e-5)
    # rerun: finished, nothing recomputed
    again = invoke_ok("--model", pretrained_onnx, "--images", small_tree, "--out", out,
                      "--align", "arcface", "--skip-bad", "--quiet")
    assert "already complete" in again.output


def test_no_face_without_skip_bad_names_the_image(small_tree, tmp_path, pretrained_onnx):
    result = run_cli(infer_app, ["--model", str(pretrained_onnx), "--images",
                                            str(small_tree), "--out", str(tmp_path / "o"),
                                            "--align", "arcface", "--quiet"])
    assert result.exit_code == 2
    assert "blank.png: no face" in result.output or "broken.jpg: unreadable" in result.output


def test_template_must_fit_the_model(small_tree, tmp_path, pretrained_onnx):
    result = run_cli(infer_app, ["--model", str(pretrained_onnx), "--images",
                                            str(small_tree), "--out", str(tmp_path / "o"),
                                            "--align", "sphereface", "--quiet"])
    assert result.exit_code == 2
    assert "112x96 crops but the model takes 112x112" in result.output




@pytest.mark.slow
def test_interrupted_align_run_resumes_with_all_landmarks(small_tree, tmp_path,
                                                          pretrained_onnx):
    from massface.align.infer_step import AlignStep
    from massface.infer import InferOptions, run_inference
    from massface.runtime.backends import open_backend
    from massface.runtime.sources import images_dataset

    (small_tree / "broken.jpg").unlink()
    (small_tree / "blank.png").unlink()
    ds = images_dataset(small_tree)

    def opts(out):
        # ONNX Runtime, named: synchronous model calls, so the injected failure is exact
        return InferOptions(out=out, batch_size=1, chunk_batches=1, progress=False,
                            align=AlignStep("arcface"), backend="onnxruntime")

    whole = tmp_path / "whole"
    run_inference(pretrained_onnx, ds, opts(whole))
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected"):
        run_inference(pretrained_onnx, ds, opts(out),
                      backend=failing_backend(open_backend(pretrained_onnx,
                                                           backend="onnxruntime"), 2))
    result = run_inference(pretrained_onnx, ds, opts(out))
    assert result.summary.resumed_rows == 2
    assert (out / "landmarks.json").read_text() == (whole / "landmarks.json").read_text()
    np.testing.assert_array_equal(np.load(out / "embeddings.npy"),
                                  np.load(whole / "embeddings.npy"))
