"""The resumable output folder: the one way ``massface-infer`` and ``massface-align`` own
their ``--out``.

A run on ``OUT`` holds its lock (:mod:`massface.lock`) from start to end. Its settings are
a *fingerprint* (a flat dict: model hash, input list hash, options). While it works, it
keeps ``OUT/<partial>/run.json`` (the fingerprint) and its progress beside it; at the end
it writes its outputs and a *done marker* (a JSON file holding the fingerprint), then
removes the partial folder. Run again on the same folder, it:

- finds the done marker with the same fingerprint: nothing to do (``COMPLETE``);
- finds an unfinished run with the same fingerprint: continues it (``RESUME``);
- finds either with another fingerprint: refuses, naming the fields that differ, unless
  ``--overwrite``, which removes what the earlier run wrote (and nothing else);
- otherwise starts afresh (``FRESH``).

Temporaries that a killed run left (:func:`massface.io.remove_stale_temps`) are removed
on start and on finish: holding the lock, nobody else is writing them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from massface import io
from massface.errors import InputError
from massface.lock import folder_lock

RUN_FILE = "run.json"
COMPLETE, RESUME, FRESH = "complete", "resume", "fresh"


def fingerprint_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Names of the fingerprint fields that differ."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


@dataclass
class ResumableFolder:
    """``out`` as owned by the command ``prog``."""

    out: Path
    prog: str
    partial: str = ".partial"  # the unfinished run's folder, inside out
    temp_dirs: tuple[str, ...] = ("",)  # where its writes may leave temporaries ("" = out)
    recursive_temps: bool = False  # ... and below them (a mirrored tree of crops)

    @property
    def partial_dir(self) -> Path:
        return self.out / self.partial

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One run per folder: a second one exits 2 naming the holder's PID."""
        with folder_lock(self.out, self.prog):
            yield

    def remove_stale_temps(self) -> None:
        for name in (*self.temp_dirs, self.partial):
            io.remove_stale_temps(self.out / name, recursive=self.recursive_temps)

    def prepare(self, fingerprint: dict[str, Any], finished: dict[str, Any] | None, *,
                overwrite: bool, remove_outputs: Callable[[], None]) -> str:
        """``COMPLETE``, ``RESUME`` or ``FRESH`` (see the module's docstring); ``finished``
        is the fingerprint in the done marker (None: no finished run). Call it holding the
        lock; ``remove_outputs`` deletes what an earlier run wrote (``--overwrite``)."""
        io.check_output_dir(self.out, "--out")
        self.remove_stale_temps()
        run_file = self.partial_dir / RUN_FILE
        if not overwrite and finished is not None:
            if finished == fingerprint:
                shutil.rmtree(self.partial_dir, ignore_errors=True)
                return COMPLETE
            raise self._refusal("already holds a finished", finished, fingerprint, "replace it")
        if not overwrite and run_file.is_file():
            old = io.read_json(run_file, f"unfinished {self.prog} run's settings "
                                         "(--overwrite starts again)")
            if old == fingerprint:
                return RESUME
            raise self._refusal("holds an unfinished", old, fingerprint, "start again")
        if overwrite:
            remove_outputs()
        # a partial folder without run.json was never started properly
        shutil.rmtree(self.partial_dir, ignore_errors=True)
        self.partial_dir.mkdir(parents=True)
        io.write_json(run_file, fingerprint)
        return FRESH

    def _refusal(self, holds: str, old: Any, new: dict[str, Any], verb: str) -> InputError:
        diff = fingerprint_diff(old, new) if isinstance(old, dict) else ["(unreadable)"]
        return InputError(f"{self.out}: {holds} {self.prog} run with other settings (differs "
                          f"in: {', '.join(diff)}); rerun with --overwrite to {verb}, or "
                          "choose another --out")

    def finish(self) -> None:
        """After the outputs and the done marker are written: drop the partial folder."""
        shutil.rmtree(self.partial_dir, ignore_errors=True)
        self.remove_stale_temps()


def finished_fingerprint(marker: Path, what: str) -> dict[str, Any] | None:
    """The fingerprint recorded in a done marker (None: no marker; ``{}``: a marker
    without one, which matches no run)."""
    if not marker.is_file():
        return None
    meta = io.read_json(marker, f"{what} (--overwrite replaces it)")
    found = meta.get("fingerprint") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else {}
