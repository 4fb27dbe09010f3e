"""The export's output folder: refused when it holds something (unless ``--overwrite``),
built under a temporary name and put in place only once complete."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from massface.errors import InputError
from massface.io import atomic_path, check_output_dir


def check_out(out: Path, overwrite: bool) -> None:
    """``--out``: a folder path, empty or absent unless ``overwrite``."""
    check_output_dir(out, "--out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"--out {out}: folder exists and is not empty (pass --overwrite to "
                         "replace it)")


@contextmanager
def staged_folder(out: Path, overwrite: bool) -> Iterator[Path]:
    """A fresh folder that replaces ``out`` only once complete (see :func:`atomic_path`)."""
    out = Path(out)
    check_out(out, overwrite)
    with atomic_path(out) as staging:
        staging.mkdir()
        yield staging
