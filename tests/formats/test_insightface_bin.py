"""The restricted unpickler of massface.formats.insightface_bin."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from massface.errors import InputError
from massface.formats.insightface_bin import (
    read_insightface_bin,
    restricted_loads,
    write_insightface_bin,
)
from massface.infer.cli import app
from tests.helpers.cli import run_cli


def test_roundtrip_and_protocols(tmp_path):
    images = [b"\xff\xd8jpeg-a", b"\x89PNG-b", b"c", b"d"]
    path = tmp_path / "set.bin"
    write_insightface_bin(path, images, [True, False])
    data = read_insightface_bin(path)
    assert data.images == images and data.issame == [True, False]
    # insightface's own files: Python 2 str pickles (protocol 2) and bool lists
    for protocol in range(6):
        blob = pickle.dumps((images, [1, 0]), protocol=protocol)
        assert restricted_loads(blob) == (images, [1, 0]) or \
            restricted_loads(blob) == [images, [1, 0]]


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_reduce_exploit_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([_Exploit(str(marker))], [True]), protocol=2))
    with pytest.raises(InputError, match=r"evil\.bin: refused .*global (posix|os)\.system"):
        read_insightface_bin(path)
    assert not marker.exists()
    # through the CLI: exit 2, the file named, nothing executed, no output
    out = tmp_path / "out"
    result = run_cli(app, ["--model", str(path), "--bin", str(path), "--out",
                                      str(out)])
    assert result.exit_code == 2 and "evil.bin" in result.output
    assert not marker.exists() and not (out / "meta.json").exists()


@pytest.mark.parametrize("payload", [
    ([np.zeros(3)], [True]),  # numpy array: needs a global
    ([b"a", b"b"], [True], {"x": 1}),  # wrong structure
    ({"images": [b"a", b"b"]}, [True]),  # a dict: built without globals, refused after
    ([b"a", "text"], [True]),  # str image
    ([b"a", b"b", b"c"], [True]),  # 3 images for 1 pair
    ([b"a", b"b"], [2]),  # not a flag
])
def test_other_objects_and_shapes_are_refused(tmp_path, payload):
    path = tmp_path / "odd.bin"
    path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(InputError, match=r"odd\.bin"):
        read_insightface_bin(path)


def test_codecs_encode_only_latin1_text(tmp_path):
    # a protocol-2 pickle that calls _codecs.encode with another codec is refused
    blob = (b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcq\x01X\x05\x00\x00\x00"
            b"rot13q\x02\x86q\x03Rq\x04.")
    with pytest.raises(InputError, match="latin-1"):
        restricted_loads(blob)


def test_truncated_pickle(tmp_path):
    path = tmp_path / "cut.bin"
    path.write_bytes(pickle.dumps(([b"a", b"b"], [True]))[:-5])
    with pytest.raises(InputError, match=r"cut\.bin"):
        read_insightface_bin(path)


def _self_referential_list() -> bytes:
    loop: list = []
    loop.append(loop)
    return pickle.dumps(loop, protocol=4)


def _exponentially_shared() -> bytes:
    node: list = [b"x"]
    for _ in range(200):  # 2**200 paths to the leaf if walked as a tree
        node = [node, node]
    return pickle.dumps(([node, node], [True]), protocol=4)


@pytest.mark.parametrize("blob", [_self_referential_list(), _exponentially_shared()],
                         ids=["self-reference", "shared-dag"])
def test_cyclic_and_shared_graphs_terminate_with_an_error(tmp_path, blob):
    path = tmp_path / "graph.bin"
    path.write_bytes(blob)
    with pytest.raises(InputError, match=r"graph\.bin"):
        read_insightface_bin(path)


def test_self_referential_bin_through_the_cli_exits_2(tmp_path):
    """A 21-byte file that once hung massface-infer forever: a clean exit 2 now."""
    import subprocess
    import sys

    path = tmp_path / "loop.bin"
    path.write_bytes(_self_referential_list())
    assert path.stat().st_size <= 21
    proc = subprocess.run([sys.executable, "-m", "massface.infer.cli", "--model",
                           str(tmp_path / "m.onnx"), "--bin", str(path), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "loop.bin" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_opcode_budget_is_checked_before_building(tmp_path, monkeypatch):
    from massface.formats import insightface_bin

    monkeypatch.setattr(insightface_bin, "MAX_OPCODES", 50)
    blob = pickle.dumps(([b"a"] * 100, [True] * 50), protocol=4)
    built = []
    monkeypatch.setattr(insightface_bin.RestrictedUnpickler, "load",
                        lambda self: built.append(1))
    with pytest.raises(InputError, match="more than 50 objects"):
        restricted_loads(blob, tmp_path / "big.bin")
    assert not built  # refused before the unpickler ran


def test_object_building_opcodes_are_refused_before_loading():
    # protocol 0 INST: 'i' module name newline -- refused by the pre-scan
    blob = b"(ios\nsystem\n(S'true'\ntR."
    with pytest.raises(InputError, match="opcode INST"):
        restricted_loads(blob)
