"""Fixtures for massface.align tests: the shared raw LFW originals and their landmarks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import shared


def _lfw(name: str) -> Path:
    path = shared.shared_root() / "data" / "lfw" / name
    if not path.exists():
        pytest.skip(f"{path} not found (set {shared.ENV_VAR} to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def raw_dir() -> Path:
    return _lfw("raw-set1")


@pytest.fixture(scope="session")
def crops_dir() -> Path:
    return _lfw("lfw-112x112")


@pytest.fixture(scope="session")
def shared_landmarks_path() -> Path:
    return _lfw("landmarks-mtcnn.json")


@pytest.fixture(scope="session")
def shared_landmarks(shared_landmarks_path: Path) -> dict:
    return json.loads(shared_landmarks_path.read_text())


@pytest.fixture(scope="session")
def raw_keys(raw_dir: Path) -> list[str]:
    return sorted(p.relative_to(raw_dir).as_posix() for p in raw_dir.rglob("*.jpg"))


@pytest.fixture()
def small_tree(tmp_path: Path, raw_dir: Path, raw_keys: list[str]) -> Path:
    """Four real photos in two sub-folders, a blank image, a broken file and a text file."""
    from PIL import Image

    root = tmp_path / "photos"
    for key in raw_keys[:4]:
        dest = root / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(raw_dir / key, dest)
    Image.new("RGB", (200, 160), (128, 128, 128)).save(root / "blank.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root
