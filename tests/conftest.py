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
