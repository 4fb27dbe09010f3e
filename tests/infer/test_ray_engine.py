"""``massface-infer --engine ray``: the same folder as the local engine, through replica and
driver deaths.

One local Ray instance serves the whole module: the fixture starts it the way the command
does without ``--ray-address`` (``ray_engine.connect(None)``, the embedded default, sized
to this machine with a small object store); in-process runs reuse it and a subprocess
joins it by address, as a driver joins a cluster.
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
from typer.testing import CliRunner

from massface.formats.embedding_dir import read_embedding_dir
from massface.infer.cli import app
from tests.helpers.cli import invoke_ok as invoke

pytest.importorskip("ray.data", reason="--engine ray needs the 'ray' extra (pip install "
                                       "'massface[ray]')")

REPO = Path(__file__).resolve().parents[2]
CHUNK = ["--batch-size", 8, "--chunk-batches", 1]  # 8-row chunks: several per test run


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from massface.infer.ray_engine import connect

    session = connect(None)
    assert session.started_here and session.address is None
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory, lfw_dir) -> Path:
    """A --list of 64 LFW faces (32 people x 2), plus one unreadable file."""
    people = sorted(p for p in lfw_dir.iterdir() if p.is_dir()
                    and len(list(p.iterdir())) >= 2)[:32]
    root = tmp_path_factory.mktemp("photos")
    lines = [str(f.relative_to(lfw_dir)) for p in people for f in sorted(p.iterdir())[:2]]
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    bad = root / "bad"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "with-bad.txt").write_text("\n".join([*lines[:20], str(bad / "broken.jpg"),
                                                  *lines[20:30]]) + "\n")
    return root


def _args(model: Path, lfw_dir: Path, photos: Path, out: Path, *extra: object) -> list:
    return ["--model", model, "--list", photos / "list.txt", "--root", lfw_dir, "--out", out,
            *CHUNK, "--quiet", *extra]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, pretrained_onnx, lfw_dir, photos) -> Path:
    out = tmp_path_factory.mktemp("local") / "run"
    invoke(*_args(pretrained_onnx, lfw_dir, photos, out))
    return out


def _same(a: Path, b: Path) -> None:
    ea, eb = read_embedding_dir(a), read_embedding_dir(b)
    assert ea.paths == eb.paths
    assert ea.embeddings.dtype == eb.embeddings.dtype == np.float32
    np.testing.assert_array_equal(ea.embeddings, eb.embeddings)  # bit-identical


def test_local_default_gives_the_local_engines_folder(ray_session, tmp_path, local_run,
                                                       pretrained_onnx, lfw_dir, photos):
    out = tmp_path / "ray"
    invoke(*_args(pretrained_onnx, lfw_dir, photos, out, "--engine", "ray", "--workers", 2,
                  "--threads", 1))
    _same(out, local_run)
    meta = json.loads((out / "meta.json").read_text())
    local_meta = json.loads((local_run / "meta.json").read_text())
    assert meta["engine"] == "ray" and local_meta["engine"] == "local"
    assert meta["fingerprint"] == local_meta["fingerprint"]  # same run, so either resumes
    engine = json.loads((out / "summary.json").read_text())["engine"]
    assert engine["replicas"] == 2 and engine["cpus_per_replica"] == 1
    assert engine["chunks"] == 8 and engine["startup_s"] > 0
    assert not (out / ".partial").exists()


def test_msame_format_and_pairs_through_massface_eval(ray_session, tmp_path, pretrained_onnx,
                                                      lfw_dir, subset_pairs):
    from massface.evaluate.cli import app as eval_app

    results = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        invoke("--model", pretrained_onnx, "--lfw", lfw_dir, "--pairs", subset_pairs, "--out",
               out, "--format", "msame", *CHUNK, "--quiet", "--engine", engine)
        r = CliRunner().invoke(eval_app, [str(out), "--json", str(tmp_path / f"{engine}.json")])
        assert r.exit_code == 0, r.output
        results[engine] = json.loads((tmp_path / f"{engine}.json").read_text())
        results[engine + "-bins"] = {f.name: f.read_bytes()
                                     for f in sorted((out / "outputs").iterdir())}
    assert results["ray-bins"] == results["local-bins"] and len(results["ray-bins"]) == 120
    assert results["ray"]["accuracy"] == results["local"]["accuracy"]


def test_a_killed_replica_is_restarted_and_its_chunk_redone(ray_session, tmp_path, local_run,
                                                            pretrained_onnx, lfw_dir, photos,
                                                            monkeypatch):
    marker = tmp_path / "died"
    monkeypatch.setenv("MASSFACE_RAY_FAULT", f"die@3:{marker}")
    out = tmp_path / "ray"
    invoke(*_args(pretrained_onnx, lfw_dir, photos, out, "--engine", "ray", "--workers", 1))
    assert marker.exists()  # the replica did die (os._exit) on chunk 3
    engine = json.loads((out / "summary.json").read_text())["engine"]
    assert engine["replica_processes"] == 2  # chunks 0-2 by one process, the rest by its heir
    _same(out, local_run)


def test_a_killed_driver_resumes_without_redoing_saved_chunks(ray_session, tmp_path,
                                                              local_run, pretrained_onnx,
                                                              lfw_dir, photos):
    out = tmp_path / "ray"
    args = [str(a) for a in _args(pretrained_onnx, lfw_dir, photos, out, "--engine", "ray",
                                  "--ray-address", ray_session)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "MASSFACE_RAY_FAULT": "sleep=0.5"}
    proc = subprocess.Popen([sys.executable, "-m", "massface.infer.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while not (out / ".partial" / "chunk_00002.json").exists():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "meta.json").exists()
    saved = {f.name: f.stat().st_mtime_ns for f in (out / ".partial").glob("chunk_*.npy")}
    assert len(saved) >= 3
    rerun = invoke(*_args(pretrained_onnx, lfw_dir, photos, out, "--engine", "ray"))
    assert "resumed after" in rerun.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_rows"] == 8 * len(saved)
    assert summary["images"] == 64 - summary["resumed_rows"]  # only the rest was embedded
    assert summary["engine"]["chunks"] == 8 - len(saved)
    _same(out, local_run)


def test_a_bad_image_follows_skip_bad(ray_session, tmp_path, pretrained_onnx, lfw_dir, photos):
    base = ["--model", pretrained_onnx, "--list", photos / "with-bad.txt", "--root", lfw_dir,
            *CHUNK, "--quiet"]
    r = CliRunner().invoke(app, [str(a) for a in [*base, "--out", tmp_path / "refused",
                                                  "--engine", "ray"]])
    assert r.exit_code == 2, r.output
    assert "broken.jpg" in r.output and "Traceback" not in r.output
    for engine in ("local", "ray"):
        invoke(*base, "--out", tmp_path / engine, "--skip-bad", "--engine", engine)
    _same(tmp_path / "ray", tmp_path / "local")
    assert (tmp_path / "ray" / "skipped.txt").read_text() == \
        (tmp_path / "local" / "skipped.txt").read_text()
    assert "broken.jpg" in (tmp_path / "ray" / "skipped.txt").read_text()
