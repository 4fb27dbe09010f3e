"""The resumable output folder (massface-infer and massface-align own --out through it)."""

from __future__ import annotations

import pytest

from massface import io
from massface.errors import InputError
from massface.outdir import COMPLETE, FRESH, RESUME, ResumableFolder, finished_fingerprint


def test_fresh_resume_refuse_overwrite_complete(tmp_path):
    out = tmp_path / "out"
    folder = ResumableFolder(out, "massface-x", ".part")
    removed: list[str] = []
    fp = {"model": "m1", "batch": 8}
    kw = {"overwrite": False, "remove_outputs": lambda: removed.append("outputs")}
    assert folder.prepare(fp, None, **kw) == FRESH
    assert io.read_json(out / ".part" / "run.json", "x") == fp
    (out / ".part" / "progress").write_text("kept")
    assert folder.prepare(fp, None, **kw) == RESUME
    assert (out / ".part" / "progress").is_file()
    with pytest.raises(InputError, match=r"out: holds an unfinished massface-x run with other "
                                         r"settings \(differs in: batch, extra\); rerun with "
                                         r"--overwrite to start again"):
        folder.prepare({"model": "m1", "batch": 16, "extra": 1}, None, **kw)
    assert folder.prepare(fp, None, overwrite=True,
                          remove_outputs=lambda: removed.append("outputs")) == FRESH
    assert removed == ["outputs"] and not (out / ".part" / "progress").exists()
    folder.finish()
    assert not (out / ".part").exists()
    io.write_json(out / "done.json", {"fingerprint": fp})
    finished = finished_fingerprint(out / "done.json", "done marker")
    assert finished == fp and folder.prepare(fp, finished, **kw) == COMPLETE
    with pytest.raises(InputError, match=r"already holds a finished massface-x run with other "
                                         r"settings \(differs in: model\); rerun with "
                                         r"--overwrite to replace it"):
        folder.prepare({**fp, "model": "m2"}, finished, **kw)


def test_markers_and_stale_temporaries(tmp_path):
    assert finished_fingerprint(tmp_path / "none.json", "m") is None
    io.write_json(tmp_path / "bare.json", {"format": "x"})
    assert finished_fingerprint(tmp_path / "bare.json", "m") == {}  # matches no run
    out = tmp_path / "tree"
    (out / "a" / "b").mkdir(parents=True)
    stale = [out / ".x.jpg.abcd1234.tmp", out / "a" / "b" / ".y.jpg.abcd1234.tmp"]
    for p in stale:
        p.write_text("half")
    ResumableFolder(out, "p", temp_dirs=("",)).remove_stale_temps()
    assert not stale[0].exists() and stale[1].exists()
    ResumableFolder(out, "p", recursive_temps=True).remove_stale_temps()
    assert not stale[1].exists()
    with pytest.raises(InputError, match="exists and is not a folder"):
        ResumableFolder(tmp_path / "bare.json", "p").prepare({}, None, overwrite=False,
                                                            remove_outputs=lambda: None)
