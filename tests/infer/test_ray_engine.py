"""``massface-infer --engine ray``: the same folder as the local engine, through replica and
driver deaths.

One local Ray instance serves the test session (``ray_session`` in tests/conftest.py,
started the way the command starts it without ``--ray-address``: the embedded default,
sized to this machine with a small object store); in-process runs reuse it and a
subprocess joins it by address, as a driver joins a cluster.
"""

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

from massface.formats.embedding_dir import read_embedding_dir
from massface.infer.cli import app
from tests.helpers.cli import invoke_ok as invoke
from tests.helpers.cli import run_cli

pytest.importorskip("ray.data", reason="--engine ray needs the 'ray' extra (pip install "
                                       "'massface[ray]')")
pytestmark = pytest.mark.slow  # each run starts Ray actors (seconds); the Ray instance is shared

REPO = Path(__file__).resolve().parents[2]
CHUNK = ["--batch-size", 8, "--chunk-batches", 1]  # 8-row chunks: several per test run


@pytest.fixture(scope="module")
def pairs40(tmp_path_factory, lfw_pairs) -> Path:
    """40 LFW pairs in 10 folds (about 77 distinct images): each official set's first 2
    same and first 2 different pairs."""
    lines = lfw_pairs.read_text().splitlines()[1:]
    chosen = [line for s in range(10)
              for line in lines[600 * s:600 * s + 2] + lines[600 * s + 300:600 * s + 302]]
    path = tmp_path_factory.mktemp("pairs") / "pairs40.txt"
    path.write_text("10\t2\n" + "\n".join(chosen) + "\n")
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory, lfw_dir) -> Path:
    """A --list of 30 LFW faces with one unreadable file among them."""
    people = sorted(p for p in lfw_dir.iterdir() if p.is_dir())[:30]
    root = tmp_path_factory.mktemp("photos")
    lines = [str(sorted(p.iterdir())[0].relative_to(lfw_dir)) for p in people]
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "with-bad.txt").write_text("\n".join([*lines[:20], str(root / "broken.jpg"),
                                                  *lines[20:]]) + "\n")
    return root


def _args(model: Path, lfw_dir: Path, pairs: Path, out: Path, *extra: object) -> list:
    return ["--model", model, "--lfw", lfw_dir, "--pairs", pairs, "--out", out, *CHUNK,
            "--quiet", *extra]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, pretrained_onnx, lfw_dir, pairs40) -> Path:
    out = tmp_path_factory.mktemp("local") / "run"
    invoke(*_args(pretrained_onnx, lfw_dir, pairs40, out))
    return out


def _rows(out: Path) -> int:
    return len(read_embedding_dir(out).paths)


def _same(a: Path, b: Path) -> None:
    ea, eb = read_embedding_dir(a), read_embedding_dir(b)
    assert ea.paths == eb.paths
    assert ea.embeddings.dtype == eb.embeddings.dtype == np.float32
    np.testing.assert_array_equal(ea.embeddings, eb.embeddings)  # bit-identical


def _eval(out: Path) -> dict:
    from massface.evaluate.cli import app as eval_app

    r = run_cli(eval_app, [str(out), "--json", str(out.parent / "eval.json")])
    assert r.exit_code == 0, r.output
    return json.loads((out.parent / "eval.json").read_text())


def test_local_default_gives_the_local_engines_folder(ray_session, tmp_path, local_run,
                                                       pretrained_onnx, lfw_dir, pairs40):
    out = tmp_path / "ray" / "run"
    invoke(*_args(pretrained_onnx, lfw_dir, pairs40, out, "--engine", "ray", "--workers", 2,
                  "--threads", 1))
    _same(out, local_run)
    assert (out / "pairs.txt").read_bytes() == (local_run / "pairs.txt").read_bytes()
    meta = json.loads((out / "meta.json").read_text())
    local_meta = json.loads((local_run / "meta.json").read_text())
    assert meta["engine"] == "ray" and local_meta["engine"] == "local"
    assert meta["fingerprint"] == local_meta["fingerprint"]  # same run, so either resumes
    engine = json.loads((out / "summary.json").read_text())["engine"]
    assert engine["replicas"] == 2 and engine["cpus_per_replica"] == 1
    assert engine["chunks"] == -(-_rows(out) // 8) and engine["startup_s"] > 0
    # where the pipeline's seconds went: replicas working on chunks (two replicas can be
    # busy longer than the pipeline's wall time), and the wait for the first chunk
    assert engine["replica_busy_s"] > 0 and engine["first_chunk_after_ready_s"] >= 0
    # the local instance runs its replicas at the driver's priority, not Ray's nice 15
    assert engine["replica_niceness"] == [os.nice(0)]
    assert not (out / ".partial").exists()
    ray_eval, local_eval = _eval(out), _eval(local_run)  # massface-eval reads it unchanged
    assert ray_eval["accuracy"] == local_eval["accuracy"]


def test_a_killed_replica_is_restarted_and_its_chunk_redone(ray_session, tmp_path, local_run,
                                                            pretrained_onnx, lfw_dir, pairs40,
                                                            monkeypatch):
    marker = tmp_path / "died"
    monkeypatch.setenv("MASSFACE_RAY_FAULT", f"die@3:{marker}")
    out = tmp_path / "ray"
    invoke(*_args(pretrained_onnx, lfw_dir, pairs40, out, "--engine", "ray", "--workers", 1))
    assert marker.exists()  # the replica did die (os._exit) on chunk 3
    engine = json.loads((out / "summary.json").read_text())["engine"]
    assert engine["replica_processes"] == 2  # chunks 0-2 by one process, the rest by its heir
    _same(out, local_run)


def test_a_killed_driver_resumes_without_redoing_saved_chunks(ray_session, tmp_path,
                                                              local_run, pretrained_onnx,
                                                              lfw_dir, pairs40):
    out = tmp_path / "ray"
    args = [str(a) for a in _args(pretrained_onnx, lfw_dir, pairs40, out, "--engine", "ray",
                                  "--ray-address", ray_session)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "MASSFACE_RAY_FAULT": "sleep=0.5"}
    proc = subprocess.Popen([sys.executable, "-m", "massface.infer.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not (out / ".partial" / "chunk_00002.json").exists():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "meta.json").exists()
    saved = len(list((out / ".partial").glob("chunk_*.json")))
    assert saved >= 3
    rerun = invoke(*_args(pretrained_onnx, lfw_dir, pairs40, out, "--engine", "ray"))
    assert "resumed after" in rerun.output
    summary = json.loads((out / "summary.json").read_text())
    rows = _rows(local_run)
    assert summary["resumed_rows"] == 8 * saved
    assert summary["images"] == rows - summary["resumed_rows"]  # only the rest was embedded
    assert summary["engine"]["chunks"] == -(-rows // 8) - saved
    _same(out, local_run)


def test_a_bad_image_follows_skip_bad_in_msame_format_too(ray_session, tmp_path,
                                                          pretrained_onnx, lfw_dir, photos):
    base = ["--model", pretrained_onnx, "--list", photos / "with-bad.txt", "--root", lfw_dir,
            *CHUNK, "--quiet"]
    r = run_cli(app, [str(a) for a in [*base, "--out", tmp_path / "refused",
                                                  "--engine", "ray"]])
    assert r.exit_code == 2, r.output
    assert "broken.jpg" in r.output and "Traceback" not in r.output
    outs = {}
    for engine in ("local", "ray"):
        out = outs[engine] = tmp_path / engine
        invoke(*base, "--out", out, "--skip-bad", "--format", "msame", "--engine", engine)
    bins = {e: {f.name: f.read_bytes() for f in sorted((o / "outputs").iterdir())}
            for e, o in outs.items()}
    assert bins["ray"] == bins["local"] and len(bins["ray"]) == 30
    skipped = (outs["ray"] / "skipped.txt").read_text()
    assert skipped == (outs["local"] / "skipped.txt").read_text() and "broken.jpg" in skipped
