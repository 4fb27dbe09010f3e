"""Atomic writes: a failed write leaves neither a partial file nor a temporary one."""

from __future__ import annotations

import numpy as np
import pytest

from massface import io


def test_write_text_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "report.json"
    io.write_json(target, {"a": 1})
    io.write_json(target, {"b": 2})
    assert target.read_text() == '{\n  "b": 2\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_failure_inside_keeps_old_content_and_no_temp(tmp_path):
    target = tmp_path / "emb.npy"
    io.save_npy(target, np.arange(3))
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    np.testing.assert_array_equal(np.load(target), np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["emb.npy"]


def test_save_npy_refuses_object_arrays(tmp_path):
    with pytest.raises(ValueError):
        io.save_npy(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object))
    assert list(tmp_path.iterdir()) == []
