"""Fixtures for the export tests: a stand-in `atc` and a real-looking training run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.standin_atc import install_standin_atc


@pytest.fixture
def standin_atc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``standin_atc(mode)`` -> folder holding the stand-in and, after a run, argv.txt."""

    def install(mode: str) -> Path:
        return install_standin_atc(tmp_path / f"atc-{mode}", mode, monkeypatch)

    return install


@pytest.fixture
def no_atc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH with no `atc` on it."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture(scope="session")
def faces(lfw_dir, lfw_pairs):
    """The export's default parity batch: the first 16 images of the LFW pairs."""
    from massface.export.faces import load_face_batch

    return load_face_batch()
