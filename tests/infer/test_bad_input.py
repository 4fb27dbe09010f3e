"""Bad input: a clear message naming the file, exit status 2, no complete-looking output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from massface.formats.embedding_dir import read_embedding_dir
from massface.infer.cli import app
from tests.helpers.cli import run_cli
from tests.helpers.models import make_linear_onnx

SIZE = (16, 16)


def run(*args: object):
    return run_cli(app, [str(a) for a in args])


def failed(result, *names: str) -> None:
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    for name in names:
        assert name in text, text


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.onnx"
    make_linear_onnx(path, size=SIZE, dim=4)
    return path


def dataset(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"id{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


def test_truncated_image_is_named_and_nothing_complete_is_left(tmp_path, tiny):
    root = dataset(tmp_path / "ds")
    jpg = root / "id0" / "broken.jpg"
    Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(jpg)
    jpg.write_bytes(jpg.read_bytes()[:40])
    out = tmp_path / "out"
    failed(run("--model", tiny, "--images", root, "--out", out, "--quiet"), "broken.jpg",
           "cannot decode")
    assert not (out / "meta.json").exists() and not (out / "embeddings.npy").exists()


def test_skip_bad_lists_every_skipped_file_and_marks_pairs(tmp_path, tiny):
    root = dataset(tmp_path / "ds")
    (root / "id1" / "junk.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("# massface-pairs v1\nid0/0.png\tid0/2.png\t1\n"
                     "id1/1.png\tid1/junk.jpg\t1\nid0/0.png\tid1/3.png\t0\n")
    out = tmp_path / "out"
    r = run("--model", tiny, "--images", root, "--pairs", pairs, "--out", out, "--skip-bad",
            "--quiet", "--batch-size", 2)
    assert r.exit_code == 0, r.output
    es = read_embedding_dir(out)
    assert "id1/junk.jpg" not in es.paths and len(es.paths) == 4
    assert es.meta["skipped"][0]["path"] == "id1/junk.jpg"
    assert es.meta["skipped_pairs"] == [1]
    lines = (out / "skipped.txt").read_text().splitlines()
    assert lines[0].endswith("pairs naming them (0-based pair indices): 1")
    assert lines[1].startswith("id1/junk.jpg\t")


def test_missing_lfw_image(tmp_path, tiny):
    root = dataset(tmp_path / "lfw")
    (root / "Ann").mkdir()
    Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(root / "Ann" / "Ann_0001.jpg")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1 1\nAnn 1 2\n")
    failed(run("--model", tiny, "--lfw", root, "--pairs", pairs, "--out", tmp_path / "o"),
           "Ann_0002", "not found")
    r = run("--model", tiny, "--lfw", root, "--pairs", pairs, "--out", tmp_path / "o2",
            "--skip-bad", "--quiet")
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "o2" / "meta.json").read_text())
    assert [s["path"] for s in meta["skipped"]] == ["Ann/Ann_0002"]
    assert meta["skipped_pairs"] == [0]


def test_image_that_cannot_feed_the_model(tmp_path, tiny):
    root = tmp_path / "ds"
    (root / "a").mkdir(parents=True)
    Image.fromarray(np.zeros(SIZE, np.uint16)).save(root / "a" / "deep.png")  # 16-bit grey
    failed(run("--model", tiny, "--images", root, "--out", tmp_path / "o"), "deep.png",
           "pixel mode")
    root2 = dataset(tmp_path / "ds2")
    Image.fromarray(np.zeros((20, 18, 3), np.uint8)).save(root2 / "id0" / "big.png")
    failed(run("--model", tiny, "--images", root2, "--out", tmp_path / "o2", "--fit", "error"),
           "big.png", "--fit is error")
    # resized by default (greyscale, palette and odd sizes are converted)
    Image.fromarray(np.zeros((20, 18), np.uint8)).save(root2 / "id1" / "grey.png")
    r = run("--model", tiny, "--images", root2, "--out", tmp_path / "o3", "--quiet")
    assert r.exit_code == 0, r.output


def test_input_bin_of_the_wrong_size(tmp_path, tiny):
    bins = tmp_path / "bins"
    bins.mkdir()
    for i in range(2):
        np.zeros((1, *SIZE, 3), np.float32).tofile(bins / f"{i}.bin")
    np.zeros((1, 8, 8, 3), np.float32).tofile(bins / "2.bin")
    failed(run("--model", tiny, "--input-bins", bins, "--out", tmp_path / "o"), "2.bin",
           "bytes")


@pytest.mark.parametrize("suffix", [".onnx", ".pb"])
def test_model_file_that_is_not_what_its_suffix_says(tmp_path, suffix):
    if suffix == ".pb":
        pytest.importorskip("tensorflow")
    root = dataset(tmp_path / "ds")
    model = tmp_path / f"garbage{suffix}"
    model.write_bytes(os.urandom(64) + b"\x00garbage\xff" * 40)
    failed(run("--model", model, "--images", root, "--out", tmp_path / "o"),
           f"garbage{suffix}", "not a")
    assert not (tmp_path / "o" / "meta.json").exists()


@pytest.mark.parametrize("shape, why", [
    (["N", 768], "not a 4-D image"),
    (["N", 16, 16, 5], "no channel axis"),
])
def test_model_input_not_image_like(tmp_path, shape, why):
    model = tmp_path / "odd.onnx"
    make_linear_onnx(model, input_shape=shape, dim=4)
    root = dataset(tmp_path / "ds")
    failed(run("--model", model, "--images", root, "--out", tmp_path / "o"), "odd.onnx", why)


def test_option_mistakes(tmp_path, tiny):
    root = dataset(tmp_path / "ds")
    failed(run("--model", tiny, "--out", tmp_path / "o"), "give exactly one input")
    failed(run("--model", tiny, "--lfw", root, "--out", tmp_path / "o"),
           "no pairs.txt inside or beside it", "name one with --pairs")
    failed(run("--model", tiny, "--images", root, "--out", tmp_path / "o", "--shard", "3/3"),
           "--shard")
    failed(run("--model", tmp_path / "m.tflite", "--images", root, "--out", tmp_path / "o"),
           "m.tflite")
    failed(run("--model", tiny, "--images", root, "--out", tmp_path / "o", "--format", "msame",
               "--flip"), "flip")


def test_decompression_bomb_is_a_bad_image_and_cmyk_converts(tmp_path, tiny, monkeypatch):
    root = dataset(tmp_path / "ds")
    Image.fromarray(np.full((*SIZE, 3), 90, np.uint8)).convert("CMYK").save(
        root / "id0" / "print.jpg", quality=95)
    assert run("--model", tiny, "--images", root, "--out", tmp_path / "o", "--quiet"
               ).exit_code == 0
    # Pillow's bomb limit, lowered so that a 16x16 image trips it as a huge one would
    big = root / "id1" / "bomb.png"
    Image.fromarray(np.zeros((SIZE[0] * 4, SIZE[1] * 4), np.uint8)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", SIZE[0] * SIZE[1])
    failed(run("--model", tiny, "--images", root, "--out", tmp_path / "o2"), "bomb.png",
           "decompression bomb")
    r = run("--model", tiny, "--images", root, "--out", tmp_path / "o3", "--skip-bad", "--quiet")
    assert r.exit_code == 0, r.output
    assert "id1/bomb.png" in (tmp_path / "o3" / "skipped.txt").read_text()
