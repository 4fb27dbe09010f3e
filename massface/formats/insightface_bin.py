"""Read insightface-style ``.bin`` validation sets (``lfw.bin``, ``cfp_fp.bin``, ...) safely.

Such a file is a pickle of ``(bins, issame)``: ``bins`` the encoded images (JPEG/PNG
bytes) in pair order ``[p0a, p0b, p1a, p1b, ...]``, ``issame`` one flag per pair.
Unpickling runs code named by the file, so it is read with an unpickler whose
``find_class`` refuses every global: only the built-in containers and scalars the opcodes
make directly (bytes, list, tuple, bool, int) can come out. A file that would build any
other object (``os.system`` through ``__reduce__``, a NumPy array, a class instance) is
refused before anything it names is looked up, let alone called.

One global is translated rather than refused: Python 3 pickles ``bytes`` with protocols
0-2 as ``_codecs.encode(text, "latin1")``. It is answered with a local function that
only turns a ``str`` into ``bytes`` with latin-1, never the real ``_codecs.encode``.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from massface.errors import InputError

_ADMITTED = (bytes, list, tuple, bool, int)


def _latin1_bytes(text: object, encoding: object = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is admitted only as str -> latin-1 bytes")
    return text.encode("latin-1")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds no object other than bytes/list/tuple/bool/int."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        raise pickle.UnpicklingError(f"refused global {module}.{name}: this file would build "
                                     "an object that is not bytes/list/tuple/bool/int")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id: not a plain data pickle")


#: Upper bounds checked on the opcode stream BEFORE anything is built. Unpickling builds
#: at most one object per opcode, so the opcode count bounds the objects, and the declared
#: byte lengths bound the memory; a real insightface set (lfw.bin: 12,000 JPEGs) is far
#: below both.
MAX_OPCODES = 20_000_000
MAX_BYTES = 8 << 30


def _prescan(data: bytes, path: Path) -> None:
    """Walk the opcode stream (nothing is built) and refuse absurd or hostile sizes."""
    import pickletools

    ops = total = 0
    try:
        for op, arg, _pos in pickletools.genops(data):
            ops += 1
            if isinstance(arg, bytes | str):
                total += len(arg)
            if ops > MAX_OPCODES or total > MAX_BYTES:
                raise InputError(f"{path}: refused pickle: more than {MAX_OPCODES:,} objects "
                                 f"or {MAX_BYTES >> 30} GB of data would be built")
            if op.name in ("PERSID", "BINPERSID", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"):
                raise InputError(f"{path}: refused pickle: opcode {op.name} builds objects "
                                 "that are not bytes/list/tuple/bool/int")
    except (ValueError, EOFError) as exc:  # pickletools' message for a malformed stream
        raise InputError(f"{path}: refused or unreadable pickle: {exc}") from exc


def _check_types(obj: Any, path: Path, where: str = "root") -> None:
    """Every reachable object is admitted; each container is visited once, so
    self-references and shared sub-structures cannot make this loop or explode."""
    seen: set[int] = set()
    stack = [(obj, where)]
    while stack:
        item, loc = stack.pop()
        if not isinstance(item, _ADMITTED):
            raise InputError(f"{path}: {loc} is a {type(item).__name__}; an insightface .bin "
                             "holds only bytes, lists, tuples, bools and ints")
        if isinstance(item, list | tuple):
            if id(item) in seen:
                continue
            seen.add(id(item))
            stack.extend((v, f"{loc}[{i}]") for i, v in enumerate(item))


@dataclass
class InsightfaceBin:
    """Encoded images in pair order and one flag per pair."""

    images: list[bytes]
    issame: list[bool]

    def __len__(self) -> int:
        return len(self.images)


def restricted_loads(data: bytes, path: str | os.PathLike[str] = "<bytes>") -> Any:
    """Unpickle ``data`` admitting only bytes/list/tuple/bool/int; :class:`InputError` else."""
    import io

    p = Path(path)
    _prescan(data, p)
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
            KeyError, AttributeError, OverflowError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: refused or unreadable pickle: {exc}") from exc
    _check_types(obj, p)
    return obj


def read_insightface_bin(path: str | os.PathLike[str]) -> InsightfaceBin:
    """Read an insightface ``.bin``: checks the structure and that images = 2 x pairs."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot read: {exc}") from exc
    obj = restricted_loads(data, p)
    if not isinstance(obj, list | tuple) or len(obj) != 2:
        raise InputError(f"{p}: expected a pickled (images, issame) pair, got a "
                         f"{type(obj).__name__}")
    images, flags = obj
    if images is obj or flags is obj:
        raise InputError(f"{p}: the (images, issame) pair contains itself")
    if not isinstance(images, list | tuple) or not all(isinstance(b, bytes) for b in images):
        raise InputError(f"{p}: the first element must be a list of encoded image bytes")
    if not isinstance(flags, list | tuple) or not all(
            isinstance(f, bool) or (isinstance(f, int) and f in (0, 1)) for f in flags):
        raise InputError(f"{p}: the second element must be a list of 0/1 or bool flags")
    if len(images) != 2 * len(flags):
        raise InputError(f"{p}: {len(images)} images for {len(flags)} pairs (need exactly 2 per "
                         "pair)")
    return InsightfaceBin(list(images), [bool(f) for f in flags])


def write_insightface_bin(path: str | os.PathLike[str], images: list[bytes],
                          issame: list[bool]) -> None:
    """Write a ``.bin`` in the insightface layout (for tests and for converting sets)."""
    from massface.io import write_bytes

    write_bytes(path, pickle.dumps((list(images), [bool(f) for f in issame]), protocol=4))
