"""One process per output folder: an advisory lock file that the OS releases on death.

    with folder_lock(out, "massface-align"):
        ...  # nobody else writes here meanwhile

``fcntl.flock`` on ``<folder>/.massface.lock``, taken without waiting: a second process
gets an :class:`InputError` naming the holder ("in use by PID n (prog)"). A lock left by a
process that died (killed, crashed, machine reset) never blocks: the kernel dropped the
lock with the process, and the file's stale PID is simply overwritten. POSIX only.

A folder that is published whole by renaming a finished staging folder onto it
(:func:`massface.io.atomic_path`, ``massface-export``) cannot hold its own lock: the
rename would swap the lock file out with the old folder, and a second process would lock
the new one. :func:`path_lock` locks ``<parent>/.<name>.massface.lock`` beside it instead.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from massface.errors import InputError

LOCK_FILE = ".massface.lock"
SIBLING_SUFFIX = ".massface.lock"


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    pid, _, prog = text.partition(" ")
    return f"PID {pid} ({prog})" if pid.isdigit() else "another process"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], prog: str) -> Iterator[Path]:
    """Hold ``folder``'s lock (creating the folder) for the ``with`` block. A folder this
    lock created and nothing filled (a run that failed before writing) is removed again."""
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with _hold(folder / LOCK_FILE, folder, prog) as path:
            yield path
    finally:
        if created:
            with contextlib.suppress(OSError):  # not empty: somebody wrote there; keep it
                folder.rmdir()


@contextlib.contextmanager
def path_lock(target: str | os.PathLike[str], prog: str) -> Iterator[Path]:
    """Hold the lock of ``target``, a folder replaced whole when published, for the ``with``
    block: the lock file lives beside it (``.<name>.massface.lock``), not inside."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _hold(target.parent / f".{target.name}{SIBLING_SUFFIX}", target, prog) as path:
        yield path


@contextlib.contextmanager
def _hold(path: Path, folder: Path, prog: str) -> Iterator[Path]:
    """``flock`` ``path`` without waiting (see the module docstring); ``folder`` names the
    thing in use in the message."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise InputError(f"{folder}: in use by {holder}; wait for it to finish or choose "
                             "another output folder") from None
        try:  # the holder before us may have removed the file between our open and flock
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {prog}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
