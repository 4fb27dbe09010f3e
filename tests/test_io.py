"""Atomic writes: a failed write leaves neither a partial file nor a temporary one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from massface import io
from massface.errors import InputError


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


def test_atomic_path_replaces_a_whole_folder(tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with io.atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
        assert not (target / "new.txt").exists()  # not visible until complete
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temporaries left


def test_read_json_names_the_file_and_what_it_is(tmp_path):
    bad = tmp_path / "meta.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"meta\.json: cannot read run description"):
        io.read_json(bad, "run description")
    with pytest.raises(InputError, match=r"missing\.json: cannot read x"):
        io.read_json(tmp_path / "missing.json", "x")


def test_sha256_file(tmp_path):
    import hashlib

    (tmp_path / "f").write_bytes(b"abc")
    assert io.sha256_file(tmp_path / "f") == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(InputError, match="unreadable"):
        io.sha256_file(tmp_path / "nope")
    assert io.keys_sha256(["a/1.jpg", "b é"]) == hashlib.sha256(
        "a/1.jpg\nb é\n".encode()).hexdigest()


def _npz_bytes(**arrays) -> bytes:
    import io as stdio

    buf = stdio.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("name, data, match", [
    ("cut.npz", _npz_bytes(a=np.arange(1000.0))[:300], ""),
    ("objects.npz", _npz_bytes(a=np.array([1, "x", None], dtype=object)), "Object arrays"),
    ("cut.npy", b"\x93NUMPY\x01\x00", ""),
    ("empty.npz", b"", ""),
    ("text.npy", b"hello", ""),
])
def test_corrupt_arrays_are_input_errors(tmp_path, name, data, match):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError, match=rf"{name}: cannot read test arrays.*{match}"):
        io.load_arrays(path, "test arrays")


def test_load_arrays_reads_npy_and_npz(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(3))
    np.savez(tmp_path / "b.npz", x=np.ones(2), y=np.zeros(1))
    assert io.load_array(tmp_path / "a.npy", "a").tolist() == [0, 1, 2]
    got = io.load_arrays(tmp_path / "b.npz", "b")
    assert sorted(got) == ["x", "y"] and got["x"].tolist() == [1.0, 1.0]


# --- JSON Lines journals -------------------------------------------------------------


def test_jsonl_reads_records_and_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"key": "a"}\n\n[1, 2]\n{"key": "b", "x"', encoding="utf-8")
    assert io.read_jsonl(path, "journal") == [{"key": "a"}, [1, 2]]
    path.write_text('{"key": "a"}\n{"key": "b"}\n', encoding="utf-8")
    assert io.read_jsonl(path, "journal") == [{"key": "a"}, {"key": "b"}]


def test_jsonl_refuses_a_bad_line_before_the_last_naming_it(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"key": "a"}\n{"key": \n{"key": "c"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"j.jsonl:2: cannot read journal: not JSON"):
        io.read_jsonl(path, "journal")
    with pytest.raises(InputError, match="cannot read journal"):
        io.read_jsonl(tmp_path / "absent.jsonl", "journal")


def test_journal_reopened_after_a_kill_continues_on_a_line_of_its_own(tmp_path):
    path = tmp_path / "j.jsonl"
    with io.Journal(path) as journal:
        journal.write({"key": "a"})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"key": "b", "ou')  # the kill
    assert io.read_jsonl(path, "journal") == [{"key": "a"}]
    with io.Journal(path) as journal:
        journal.write({"key": "c"})
    assert path.read_text(encoding="utf-8") == '{"key":"a"}\n{"key":"c"}\n'
    assert io.read_jsonl(path, "journal") == [{"key": "a"}, {"key": "c"}]
    path.write_text('{"key": "only one, cut', encoding="utf-8")
    with io.Journal(path) as journal:
        journal.write({"key": "d"})
    assert io.read_jsonl(path, "journal") == [{"key": "d"}]
    big = {"key": "e" * 100_000}  # the torn tail is searched backwards in 64 KiB blocks
    path.write_text('{"key":"a"}\n' + json.dumps(big)[:-5], encoding="utf-8")
    with io.Journal(path) as journal:
        journal.write(big)
    assert io.read_jsonl(path, "journal") == [{"key": "a"}, big]
