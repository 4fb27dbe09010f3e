"""Shared fixtures: the real data in ../shared (or $MASSFACE_SHARED)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import shared

shared.use_shared_root()  # library defaults (export parity faces) read MASSFACE_SHARED


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (set {shared.ENV_VAR} to the shared "
                    "data folder)")
    return path


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    return _require(shared.lfw_dir(), "aligned LFW (lfw-112x112)")


@pytest.fixture(scope="session")
def lfw_pairs() -> Path:
    return _require(shared.lfw_pairs(), "LFW pairs.txt")


@pytest.fixture(scope="session")
def orl_dir() -> Path:
    return _require(shared.orl_dir(), "ORL faces")


@pytest.fixture(scope="session")
def pretrained_onnx() -> Path:
    return _require(shared.pretrained_onnx(), "pretrained MobileFaceNet ONNX")


@pytest.fixture(scope="session")
def pretrained_tflite() -> Path:
    return _require(shared.pretrained_tflite(), "pretrained MobileFaceNet TFLite")


@pytest.fixture(scope="session")
def lfw_onnx_run(request, tmp_path_factory, pretrained_onnx, lfw_dir, lfw_pairs) -> Path:
    """``massface-infer`` of the shared model over LFW's 7,701 pair images (the demo's
    command line), run ONCE per test run: the xdist workers share it through a folder
    under the run's common temporary root, the first to arrive computing it under a lock
    while the others wait. Several test files need these embeddings, and each full pass
    costs minutes on 2 cores."""
    import fcntl

    from tests.helpers.cli import invoke_ok

    uid = getattr(request.config, "workerinput", {}).get("testrunuid")
    root = tmp_path_factory.getbasetemp().parent if uid else tmp_path_factory.getbasetemp()
    out = root / f"lfw-onnx-{uid or 'local'}"
    with open(root / f".lfw-onnx-{uid or 'local'}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "summary.json").is_file():
            invoke_ok("--model", pretrained_onnx, "--lfw", lfw_dir, "--pairs", lfw_pairs,
                      "--out", out, "--quiet")
    return out


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the session (per xdist worker), started as ``--engine ray``
    starts its embedded default; in-process runs reuse it. Yields its address (for
    ``--ray-address``: subprocesses join it as drivers join a cluster)."""
    pytest.importorskip("ray.data", reason="--engine ray needs the 'ray' extra (pip install "
                                           "'massface[ray]')")
    import ray

    from massface.runtime.ray_pool import connect

    session = connect(None)
    assert session.started_here and session.address is None
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def lfw_flip_run(request, tmp_path_factory, pretrained_onnx, lfw_dir, lfw_pairs) -> Path:
    """:func:`lfw_onnx_run` with ``--flip``: the 7,701 pair images and their mirrors
    (what the SphereFace protocol and the flip fusions score), once per test run."""
    import fcntl

    from tests.helpers.cli import invoke_ok

    uid = getattr(request.config, "workerinput", {}).get("testrunuid")
    root = tmp_path_factory.getbasetemp().parent if uid else tmp_path_factory.getbasetemp()
    out = root / f"lfw-flip-{uid or 'local'}"
    with open(root / f".lfw-flip-{uid or 'local'}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "summary.json").is_file():
            invoke_ok("--model", pretrained_onnx, "--lfw", lfw_dir, "--pairs", lfw_pairs,
                      "--out", out, "--flip", "--quiet")
    return out
