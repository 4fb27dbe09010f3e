"""The CLI harness (massface/cli.py) under faults: a full disk and an unwritable output
end in one line (exit 2), SIGTERM like Ctrl-C (exit 130, what was kept, how to resume)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from massface.align.cli import app as align_app
from massface.align.templates import ARCFACE_POINTS
from massface.formats.embedding_dir import read_embedding_dir
from massface.infer.cli import app as infer_app
from tests.helpers.cli import run_cli
from tests.helpers.faults import full_disk_after
from tests.helpers.models import make_linear_onnx

REPO = Path(__file__).resolve().parents[1]


def _images(root: Path, n: int, size: int) -> list[str]:
    rng = np.random.default_rng(0)
    keys = []
    for i in range(n):
        key = f"p{i % 4}/img{i}.png"
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / key)
        keys.append(key)
    return keys


def _landmarks(path: Path, keys: list[str]) -> Path:
    path.write_text(json.dumps({k: {"lm": [list(p) for p in ARCFACE_POINTS]} for k in keys}))
    return path


def _invoke(app, *args: object):
    return run_cli(app, [str(a) for a in args])


def _one_line_exit_2(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    for w in words:
        assert w in text, text


def test_a_full_disk_is_one_line_and_the_rerun_resumes(tmp_path, monkeypatch):
    model = tmp_path / "m.onnx"
    make_linear_onnx(model, size=(8, 8), dim=4)
    _images(tmp_path / "ds", 24, 8)
    out = tmp_path / "out"
    args = ("--model", model, "--images", tmp_path / "ds", "--out", out, "--quiet",
            "--batch-size", 4, "--chunk-batches", 1)
    full_disk_after(monkeypatch, 5)  # run.json and two chunks, then the disk is full
    _one_line_exit_2(_invoke(infer_app, *args), "no space left on device", "free some space",
                     "rerun the same command")
    assert not (out / "meta.json").exists()
    monkeypatch.undo()
    result = _invoke(infer_app, *args)
    assert result.exit_code == 0 and "resumed after 8 rows" in result.output, result.output
    assert len(read_embedding_dir(out).paths) == 24
    # massface-align: the same
    keys = _images(tmp_path / "photos", 6, 112)
    given = _landmarks(tmp_path / "lm.json", keys)
    full_disk_after(monkeypatch, 3)
    aligned = tmp_path / "aligned"
    _one_line_exit_2(_invoke(align_app, tmp_path / "photos", "--out", aligned, "--landmarks",
                             given, "--quiet", "--workers", 1, "--batch", 1),
                     "no space left on device")
    assert not (aligned / "align.json").exists()
    monkeypatch.undo()
    result = _invoke(align_app, tmp_path / "photos", "--out", aligned, "--landmarks", given,
                     "--quiet", "--workers", 1, "--batch", 1)
    assert result.exit_code == 0 and "resumed after" in result.output, result.output


def test_outputs_under_a_file_are_refused_by_every_writing_command(tmp_path, orl_dir):
    blocker = tmp_path / "file"
    blocker.write_text("a regular file where a folder should be")
    bad = blocker / "sub"
    keys = _images(tmp_path / "photos", 1, 112)
    _one_line_exit_2(_invoke(align_app, tmp_path / "photos", "--out", bad, "--landmarks",
                             _landmarks(tmp_path / "lm.json", keys)), "is a file")
    from massface.tools.pairs_generate import app as pairs_app

    _one_line_exit_2(_invoke(pairs_app, tmp_path / "photos", "--out", bad / "p.txt"),
                     "is a file")
    from massface.train.cli import app as train_app

    _one_line_exit_2(_invoke(train_app, REPO / "configs" / "orl_cosface.yaml", "--work-dir",
                             bad), "is a file")
    model = tmp_path / "m.onnx"
    make_linear_onnx(model, size=(8, 8), dim=4)
    from massface.export.cli import app as export_app

    _one_line_exit_2(_invoke(export_app, "--onnx", model, "--out", bad), "--out", "is a file")


def _terminated(cmd: list[str], started: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``cmd``, SIGTERM it once ``started`` holds something, return (status, stderr)."""
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if started.exists() and started.stat().st_size > 0:
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.fail(f"finished before the signal: {proc.communicate()[1]}")
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=120), proc.communicate()[1]


def test_sigterm_ends_infer_and_align_with_130_and_says_how_to_resume(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    model = tmp_path / "m.onnx"
    make_linear_onnx(model, size=(8, 8), dim=4)
    _images(tmp_path / "ds", 2000, 8)
    out = tmp_path / "out"
    args = ["--model", str(model), "--images", str(tmp_path / "ds"), "--out", str(out),
            "--quiet", "--batch-size", "4", "--chunk-batches", "1"]
    code, err = _terminated([sys.executable, "-m", "massface.infer.cli", *args],
                            out / ".partial" / "chunk_00000.json", env)
    assert code == 130 and "Traceback" not in err, err
    assert f"interrupted; the finished chunks are kept in {out}/.partial" in err
    result = _invoke(infer_app, *args)
    assert result.exit_code == 0 and "resumed after" in result.output, result.output
    keys = _images(tmp_path / "photos", 300, 112)
    given = _landmarks(tmp_path / "lm.json", keys)
    aligned = tmp_path / "aligned"
    args = [str(tmp_path / "photos"), "--out", str(aligned), "--landmarks", str(given),
            "--quiet", "--workers", "1"]
    code, err = _terminated([sys.executable, "-m", "massface.align.cli", *args],
                            aligned / ".align-partial" / "journal.jsonl", env)
    assert code == 130 and "Traceback" not in err, err
    assert f"({aligned}/.align-partial); rerun the same command" in err
    result = _invoke(align_app, *args)
    assert result.exit_code == 0 and "resumed after" in result.output, result.output


def test_only_unwritable_output_oserrors_become_one_line():
    """EACCES / EROFS ... name the path (exit 2); any other OSError is a bug: traceback."""
    import errno

    import typer

    from massface.cli import command

    app = typer.Typer()

    @app.command()
    @command("massface-test")
    def fails(code: int) -> None:
        raise OSError(code, os.strerror(code), "/data/out/x.npy")

    r = run_cli(app, [str(errno.EROFS)])
    _one_line_exit_2(r, "massface-test: /data/out/x.npy: read-only file system",
                     "check the path")
    r = run_cli(app, [str(errno.EIO)])
    assert r.exit_code != 2 and isinstance(r.exception, OSError)
