"""A model that yields NaN/Inf embeddings for some images: the run fails naming them (exit 3,
nothing complete-looking written), or ``--skip-bad`` lists them like unreadable images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from massface.formats.embedding_dir import read_embedding_dir
from massface.infer.cli import app
from tests.helpers.cli import run_cli

SIZE = (8, 8)
DIM = 4
DARK = {"a/1.png", "b/4.png"}  # these hold pixels below the mean: normalised < 0


def nan_on_dark_onnx(path: Path) -> np.ndarray:
    """``flatten(x) @ W + 0 * log(min(x))``: finite where every normalised pixel is > 0,
    NaN where one is negative (log of a negative number). Returns W."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    flat = SIZE[0] * SIZE[1] * 3
    weight = np.random.default_rng(0).standard_normal((flat, DIM)).astype(np.float32) / 50
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "W"], ["lin"]),
             helper.make_node("ReduceMin", ["flat"], ["low"], axes=[1], keepdims=1),
             helper.make_node("Log", ["low"], ["log"]),
             helper.make_node("Mul", ["log", "zero"], ["nan_or_zero"]),
             helper.make_node("Add", ["lin", "nan_or_zero"], ["embeddings"])]
    graph = helper.make_graph(
        nodes, "nan_on_dark",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *SIZE, 3])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", DIM])],
        [numpy_helper.from_array(weight, "W"),
         numpy_helper.from_array(np.zeros((1, 1), np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return weight


@pytest.fixture
def world(tmp_path) -> tuple[Path, Path]:
    model = tmp_path / "nan.onnx"
    nan_on_dark_onnx(model)
    rng = np.random.default_rng(1)
    for i in range(6):
        key = f"{'ab'[i // 3]}/{i}.png"
        (tmp_path / "ds" / key).parent.mkdir(parents=True, exist_ok=True)
        low, high = (0, 100) if key in DARK else (200, 256)
        Image.fromarray(rng.integers(low, high, (*SIZE, 3), dtype=np.uint8)).save(
            tmp_path / "ds" / key)
    return model, tmp_path / "ds"


def test_nan_embeddings_fail_naming_the_images_and_the_model(tmp_path, world):
    model, ds = world
    out = tmp_path / "out"
    r = run_cli(app, ["--model", str(model), "--images", str(ds), "--out", str(out),
                            "--batch-size", "4", "--quiet"])
    assert r.exit_code == 3, r.output
    text = " ".join(r.output.split())
    assert "NaN/Inf" in text and str(model) in text and "Traceback" not in r.output
    assert str(ds / "a/1.png") in text  # the first batch (rows 0..3) holds a/1.png
    assert not (out / "meta.json").exists() and not (out / "embeddings.npy").exists()


def test_skip_bad_lists_the_nan_rows_like_bad_images(tmp_path, world):
    model, ds = world
    out = tmp_path / "out"
    r = run_cli(app, ["--model", str(model), "--images", str(ds), "--out", str(out),
                            "--batch-size", "4", "--flip", "--skip-bad", "--quiet"])
    assert r.exit_code == 0, r.output
    es = read_embedding_dir(out)
    assert sorted(es.paths) == sorted({"a/0.png", "a/2.png", "b/3.png", "b/5.png"})
    assert np.isfinite(es.embeddings).all() and np.isfinite(es.flip).all()
    lines = (out / "skipped.txt").read_text().splitlines()[1:]
    assert sorted(line.split("\t")[0] for line in lines) == sorted(DARK)
    assert all("NaN/Inf" in line and str(model) in line for line in lines)
    assert {s["path"] for s in es.meta["skipped"]} == DARK
