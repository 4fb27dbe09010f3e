"""``massface-align --engine ray``: the same folder as the local engine, through a replica's
death (the Ray instance: ``ray_session`` in tests/conftest.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from massface.align.cli import app
from tests.helpers.cli import run_cli

pytest.importorskip("ray.data", reason="--engine ray needs the 'ray' extra (pip install "
                                       "'massface[ray]')")
pytestmark = pytest.mark.slow  # each run starts Ray actors (seconds); the Ray instance is shared


def _invoke(*args: object):
    result = run_cli(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "align.json"}


def test_ray_engine_writes_the_local_engines_folder(ray_session, tmp_path, raw_dir, raw_keys,
                                                    monkeypatch):
    src = tmp_path / "photos"
    for key in raw_keys[:18]:  # two chunks of 16 images
        (src / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(raw_dir / key, src / key)
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    _invoke(src, "--out", tmp_path / "local", "--quiet", "--workers", 1)
    marker = tmp_path / "died"
    monkeypatch.setenv("MASSFACE_RAY_FAULT", f"die@1:{marker}")
    _invoke(src, "--out", tmp_path / "ray", "--quiet", "--workers", 1, "--engine", "ray")
    assert marker.exists()  # the replica died on the second chunk, which was redone
    local, ray = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert len(local) == 18 + 2  # crops, landmarks.json, skipped.txt
    assert ray == local  # byte for byte: crops, landmarks, skipped list
    done = json.loads((tmp_path / "ray" / "align.json").read_text())
    assert done["summary"]["engine"] == "ray" and done["summary"]["aligned"] == 18
    assert done["written"] == json.loads((tmp_path / "local" / "align.json").read_text()
                                         )["written"]
