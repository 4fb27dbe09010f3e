"""Files: written so that a reader never sees a half-written one, read with one message.

Everything massface writes for another tool to read (embeddings, reports, models, whole
export folders) goes through :func:`atomic_path`: the data lands under a hidden
temporary name in the same folder and is renamed into place only when complete, so an
interrupted run leaves nothing that looks finished. :func:`read_json` and
:func:`sha256_file` are the one way to read a JSON file and hash a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from massface.errors import InputError

PathLike = str | os.PathLike[str]

# atomic_path's temporary names: ``.<name>.<8 random>.tmp`` (the data being written) and
# ``.<name>.old-<8 random>`` (a replaced folder awaiting deletion); tempfile picks the 8
# characters from [a-z0-9_].
_TMP_SUFFIX = ".tmp"
_OLD_INFIX = ".old-"
_TEMP_NAME = re.compile(rf"\..+(?:\.[a-z0-9_]{{8}}{re.escape(_TMP_SUFFIX)}"
                        rf"|{re.escape(_OLD_INFIX)}[a-z0-9_]{{8}})")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; move it onto ``path`` on success.

    The caller writes a file, or creates a folder, at the yielded path. On success it
    replaces ``path`` (an existing folder is moved aside first and deleted after the swap,
    so ``path`` is never missing or half-filled); on an exception the temporary is removed
    and ``path`` is untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=_TMP_SUFFIX, dir=final.parent))
    tmp.rmdir()  # only the unique name is wanted: the caller makes a file or a folder
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    old = None
    if final.is_dir() and not final.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}{_OLD_INFIX}", dir=final.parent))
        os.replace(final, old)  # onto the empty temporary folder
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_temps(folder: PathLike, *, recursive: bool = False) -> list[Path]:
    """Delete the leftovers of :func:`atomic_path` writes that a killed process never
    finished (files or folders named like its temporaries) in ``folder`` (and, with
    ``recursive``, its subfolders); returns what was removed.

    Only for a folder the caller owns (holds its :mod:`massface.lock`): a temporary of a
    write still in progress looks the same as a stale one.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    found = root.rglob(".*") if recursive else root.glob(".*")
    stale = sorted({p for p in found if _TEMP_NAME.fullmatch(p.name)})
    removed = []
    for p in stale:
        if not any(q in stale for q in p.parents):  # inside a removed folder: gone with it
            _remove(p)
            removed.append(p)
    return removed


def check_output_file(path: PathLike, option: str) -> Path:
    """Refuse, before any work, an output file that cannot be written: a folder in its
    place, a parent that is a file, or a folder where files cannot be created."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{option} {p}: is a folder; give a file name")
    parent = _existing_ancestor(p.parent)
    if not parent.is_dir():
        raise InputError(f"{option} {p}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{option} {p}: cannot write in {parent} (permission denied)")
    return p


def check_output_dir(path: PathLike, option: str) -> Path:
    """Like :func:`check_output_file` for an output folder (which may exist)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{option} {p}: exists and is not a folder")
    target = p if p.is_dir() else _existing_ancestor(p.parent)
    if not target.is_dir():
        raise InputError(f"{option} {p}: {target} is a file, not a folder")
    if not os.access(target, os.W_OK | os.X_OK):
        raise InputError(f"{option} {p}: cannot write in {target} (permission denied)")
    return p


def _existing_ancestor(p: Path) -> Path:
    """``p`` or its nearest existing ancestor (what ``mkdir(parents=True)`` would start in)."""
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def write_bytes(path: PathLike, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_npy(path: PathLike, array: Any) -> None:
    """Atomically write a NumPy array as ``.npy`` (never pickled)."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)


def load_arrays(path: PathLike, what: str) -> dict[str, Any]:
    """Every array of an ``.npy`` (key ``""``) or ``.npz``, read eagerly and never unpickled.

    A truncated or corrupt file, an object array (which only unpickling could read) or a
    damaged member is an :class:`InputError` naming the file as ``what``.
    """
    import zipfile
    import zlib

    import numpy as np

    p = Path(path)
    try:
        with open(p, "rb") as fh:
            loaded = np.load(fh, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return {"": loaded}
            with loaded:
                return {k: loaded[k] for k in loaded.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"{p}: cannot read {what}: {exc}") from exc


def load_array(path: PathLike, what: str) -> Any:
    """The array of an ``.npy`` file (see :func:`load_arrays`)."""
    arrays = load_arrays(path, what)
    if list(arrays) != [""]:
        raise InputError(f"{path}: expected one .npy array as {what}, found an archive")
    return arrays[""]


def read_json(path: PathLike, what: str) -> Any:
    """The JSON document at ``path``; :class:`InputError` naming it as ``what`` otherwise."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{p}: cannot read {what}: {exc}") from exc
    except RecursionError:
        raise InputError(f"{p}: cannot read {what}: nested too deeply") from None


def tsv_field(text: str) -> str:
    """``text`` as one field of a tab-separated line: backslash, tab, CR and newline
    escaped (``\\\\``, ``\\t``, ``\\r``, ``\\n``) so that a file name holding them cannot
    break the line."""
    return (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r")
            .replace("\n", "\\n"))


def read_jsonl(path: PathLike, what: str) -> list[Any]:
    """The records of a JSON Lines file (one JSON document per line, blank lines skipped).

    A last line without its newline is a write cut short by a kill (see :class:`Journal`)
    and is dropped; any other line that is not JSON is an :class:`InputError` naming
    ``path:line``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read {what}: {exc}") from exc
    lines = text.split("\n")
    lines.pop()  # after the last newline: "" or a record cut short (Journal drops it too)
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as exc:
            raise InputError(f"{p}:{number}: cannot read {what}: not JSON: {exc}") from exc
    return records


class Journal:
    """An append-only JSON Lines file, each record flushed as it is written, that a killed
    run can leave with a last line cut short: opening it again first cuts that line off,
    so the next record starts on a line of its own (:func:`read_jsonl` reads it)."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        _drop_torn_tail(self.path)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close)

    def write(self, record: Any) -> None:
        self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_torn_tail(path: Path) -> None:
    """Truncate ``path`` after its last newline (nothing when it ends with one)."""
    if not path.is_file():
        return
    with open(path, "rb+") as fh:
        end = fh.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(0, pos - 65536)
            fh.seek(start)
            block = fh.read(pos - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                if start + cut + 1 < end:
                    fh.truncate(start + cut + 1)
                return
            pos = start
        fh.truncate(0)  # one line, cut short


def keys_sha256(keys: list[str]) -> str:
    """Hex SHA-256 of an ordered key list (its lines, each ending in a newline)."""
    h = hashlib.sha256()
    for k in keys:
        h.update(k.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes; :class:`InputError` when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise InputError(f"{path}: unreadable: {exc}") from exc
    return h.hexdigest()
