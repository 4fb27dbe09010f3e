"""Second hostile pass on massface-infer: nothing finished is destroyed, nothing shifts."""

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

SIZE = (8, 8)


def run(*args: object):
    return run_cli(app, [str(a) for a in args])


def refused(result, *words: str) -> str:
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for w in words:
        assert w in text, text
    return text


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    """(tiny linear model, 8 random images in 2 identity folders)."""
    base = tmp_path_factory.mktemp("hardening")
    model = base / "tiny.onnx"
    make_linear_onnx(model, size=SIZE, dim=4)
    rng = np.random.default_rng(1)
    for i in range(8):
        d = base / "ds" / f"id{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return model, base / "ds"


def _shards(tmp_path: Path, world) -> list[Path]:
    model, ds = world
    shards = [tmp_path / f"s{k}" for k in range(2)]
    for k, d in enumerate(shards):
        assert run("--model", model, "--images", ds, "--out", d, "--shard", f"{k}/2",
                   "--quiet").exit_code == 0
    return shards


def test_merge_never_replaces_a_result_or_a_shard_without_overwrite(tmp_path, world):
    model, ds = world
    shards = _shards(tmp_path, world)
    before = [(d / "embeddings.npy").read_bytes() for d in shards]
    # --out one of its own inputs (by any path): refused, even with --overwrite
    refused(run("merge", *shards, "--out", shards[0]), "shard folder", "another --out")
    (tmp_path / "link").symlink_to(shards[1])
    refused(run("merge", *shards, "--out", tmp_path / "link", "--overwrite"), "shard folder")
    assert [(d / "embeddings.npy").read_bytes() for d in shards] == before
    # a finished result in --out: kept unless --overwrite
    done = tmp_path / "done"
    assert run("--model", model, "--images", ds, "--out", done, "--quiet",
               "--flip").exit_code == 0
    meta = (done / "meta.json").read_bytes()
    refused(run("merge", *shards, "--out", done), "already holds a result", "--overwrite")
    assert (done / "meta.json").read_bytes() == meta and (done / "embeddings_flip.npy").exists()
    assert run("merge", *shards, "--out", done, "--overwrite").exit_code == 0
    assert len(read_embedding_dir(done).paths) == 8
    assert not (done / "embeddings_flip.npy").exists()  # the old run's files are gone


def _bins(folder: Path, n: int, labels: list[int] | None = None) -> Path:
    inputs = folder / "inputs"
    inputs.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for i in range(n):
        rng.random((1, *SIZE, 3), dtype=np.float32).tofile(inputs / f"{i}.bin")
    if labels is not None:
        (folder / "actual_issame.txt").write_text(" ".join(map(str, labels)) + "\n")
    return folder


def test_input_bins_with_a_gap_in_the_numbering_are_refused(tmp_path, world):
    model, _ = world
    bins = _bins(tmp_path / "bins", 6, [1, 0, 1])
    os.replace(bins / "inputs" / "5.bin", bins / "inputs" / "120.bin")
    refused(run("--model", model, "--input-bins", bins, "--out", tmp_path / "o"),
            "5.bin is missing", "shift")
    os.replace(bins / "inputs" / "120.bin", bins / "inputs" / "image5.bin")
    refused(run("--model", model, "--input-bins", bins, "--out", tmp_path / "o"),
            "image5.bin", "named <i>.bin")
    os.replace(bins / "inputs" / "image5.bin", bins / "inputs" / "5.bin")
    assert run("--model", model, "--input-bins", bins, "--out", tmp_path / "o",
               "--quiet").exit_code == 0


def test_input_bins_checked_against_the_count_inputs_json_records(tmp_path, world):
    model, ds = world
    bins = tmp_path / "bins"
    r = run("prepare-bins", "--images", ds, "--model", model, "--out", bins)
    assert r.exit_code == 0, r.output
    assert json.loads((bins / "inputs.json").read_text())["files"] == 8
    for i in (6, 7):  # two bins lost: the numbering has no gap, the count does not match
        (bins / "inputs" / f"{i}.bin").unlink()
    refused(run("--model", model, "--input-bins", bins, "--out", tmp_path / "o"),
            "inputs.json", "records 8 input bins", "holds 6")


def test_a_fifo_in_the_list_is_a_bad_image_not_a_hang(tmp_path, world):
    model, ds = world
    os.mkfifo(tmp_path / "pipe.png")  # opening it would block until someone writes
    listing = tmp_path / "list.txt"
    listing.write_text(f"{ds}/id0/0.png\n{tmp_path}/pipe.png\n")
    refused(run("--model", model, "--list", listing, "--out", tmp_path / "o"), "pipe.png",
            "a FIFO")
    r = run("--model", model, "--list", listing, "--out", tmp_path / "o2", "--skip-bad",
            "--quiet")
    assert r.exit_code == 0, r.output
    assert "a FIFO" in (tmp_path / "o2" / "skipped.txt").read_text()


def test_workers_zero_is_a_usage_error(tmp_path, world):
    model, ds = world
    refused(run("--model", model, "--images", ds, "--out", tmp_path / "o", "--workers", 0),
            "--workers 0", "at least 1")
    refused(run("prepare-bins", "--images", ds, "--out", tmp_path / "b", "--workers", 0),
            "--workers 0")


def test_a_refusal_before_any_chunk_leaves_no_partial_stub(tmp_path, world):
    model, _ = world
    root = tmp_path / "ds"
    (root / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(root / "a" / "0.png")
    (root / "a" / "1.png").write_bytes(b"not a png")
    out = tmp_path / "o"
    refused(run("--model", model, "--images", root, "--out", out, "--quiet"), "1.png")
    assert not (out / ".partial").exists()


def test_prepare_bins_resumes_after_a_kill_and_refuses_foreign_bins(tmp_path, world,
                                                                    monkeypatch):
    model, ds = world
    whole = tmp_path / "whole"
    assert run("prepare-bins", "--images", ds, "--model", model, "--out", whole).exit_code == 0
    from tests.helpers.faults import full_disk_after

    bins = tmp_path / "bins"
    args = ("prepare-bins", "--images", ds, "--model", model, "--out", bins, "--batch-size", 2)
    full_disk_after(monkeypatch, 4)  # the settings record and three bins, then killed
    assert run(*args).exit_code == 2
    monkeypatch.undo()
    assert not (bins / "inputs.json").exists() and len(list((bins / "inputs").iterdir())) == 3
    refused(run("--model", model, "--input-bins", bins, "--out", tmp_path / "o"),
            "unfinished prepare-bins")
    refused(run(*args, "--mean", 1), "unfinished prepare-bins run with other settings")
    r = run(*args)
    assert r.exit_code == 0, r.output
    for i in range(8):
        name = f"inputs/{i}.bin"
        assert (bins / name).read_bytes() == (whole / name).read_bytes()
    assert not (bins / ".prepare-bins.json").exists()
    foreign = tmp_path / "foreign"
    (foreign / "inputs").mkdir(parents=True)
    (foreign / "inputs" / "0.bin").write_bytes(b"mine")
    refused(run("prepare-bins", "--images", ds, "--out", foreign, "--size", "8x8"),
            "did not write", "--overwrite")
    assert (foreign / "inputs" / "0.bin").read_bytes() == b"mine"


def test_skipped_txt_keeps_one_line_per_image_whatever_its_name(tmp_path, world):
    model, _ = world
    odd = tmp_path / "bad\tname\nx.png"
    odd.write_bytes(b"not a png")
    # a name with a newline cannot be listed one per line: give it through --images
    root = tmp_path / "ds"
    (root / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(root / "a" / "0.png")
    os.replace(odd, root / "a" / odd.name)
    r = run("--model", model, "--images", root, "--out", tmp_path / "o", "--skip-bad",
            "--quiet")
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "o" / "skipped.txt").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("a/bad\\tname\\nx.png\t")
