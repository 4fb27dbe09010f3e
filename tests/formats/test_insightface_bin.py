"""The restricted unpickler of massface.formats.insightface_bin."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from typer.testing import CliRunner

from massface.errors import InputError
from massface.formats.insightface_bin import (
    read_insightface_bin,
    restricted_loads,
    write_insightface_bin,
)
from massface.infer.cli import app


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
    result = CliRunner().invoke(app, ["--model", str(path), "--bin", str(path), "--out",
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
