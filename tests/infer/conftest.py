"""Fixtures for massface.infer tests: small real subsets and a frozen .pb."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def subset_pairs(tmp_path_factory: pytest.TempPathFactory, lfw_pairs: Path) -> Path:
    """60 LFW pairs in 10 folds: from each official set, its first 3 same + 3 different."""
    lines = lfw_pairs.read_text().splitlines()[1:]
    chosen = [line for s in range(10)
              for line in lines[600 * s:600 * s + 3] + lines[600 * s + 300:600 * s + 303]]
    path = tmp_path_factory.mktemp("pairs") / "pairs60.txt"
    path.write_text("\n".join(chosen) + "\n")
    return path


@pytest.fixture(scope="session")
def frozen_pb(tmp_path_factory: pytest.TempPathFactory, pretrained_onnx: Path) -> Path:
    """The shared ONNX model rebuilt as a frozen TensorFlow GraphDef."""
    pytest.importorskip("tensorflow")
    from tests.helpers.onnx_to_pb import write_frozen_pb

    return write_frozen_pb(pretrained_onnx, tmp_path_factory.mktemp("pb") / "mobilefacenet.pb")
