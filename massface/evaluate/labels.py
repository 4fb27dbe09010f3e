"""Pair labels for ``massface-eval``: where they come from and how they are read.

Accepted label files (``--labels``), detected by content, not by name:

* ``actual_issame.txt`` (calAcc style): whitespace-separated ``1``/``0`` tokens, usually
  one line. Any file whose tokens are all integers is read this way, so a stray ``2`` is
  reported as a bad label instead of being mistaken for a pairs file.
* ``.json``: a list of 0/1 or true/false, or an object with an ``"issame"`` list.
* ``.npy``: a 1-D bool or 0/1 array (never unpickled).
* a pairs file (LFW ``pairs.txt`` or massface path-pairs): the labels in file order, and
  the image references, which an embedding folder maps to its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from massface.errors import InputError
from massface.evaluate.verification import as_labels
from massface.formats.msame import read_labels_file
from massface.formats.pairs import PATH_PAIRS_HEADER, Pair, read_pairs
from massface.io import read_json


@dataclass
class Labels:
    """Same/different flags, and the pairs when the file names the images."""

    issame: np.ndarray
    path: Path
    kind: str
    pairs: list[Pair] | None = None


def _read_text(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read labels: {exc}") from exc


def _is_integer(token: str) -> bool:
    return token.lstrip("+-").isdigit()


def read_labels(path: str | Path) -> Labels:
    """Read a label file of any accepted kind (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: labels file not found")
    if p.suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{p}: cannot read labels array: {exc}") from exc
        return Labels(as_labels(arr, str(p)), p, "npy")
    if p.suffix == ".json":
        obj = read_json(p, "labels (not valid JSON)")
        if isinstance(obj, dict):
            obj = obj.get("issame")
        if not isinstance(obj, list) or not all(
            isinstance(x, bool) or (isinstance(x, int) and x in (0, 1)) for x in obj
        ):
            raise InputError(f"{p}: expected a JSON list of 0/1 or true/false (or "
                             '{"issame": [...]}) ')
        if not obj:
            raise InputError(f"{p}: no labels in file")
        return Labels(np.array([bool(x) for x in obj]), p, "json")
    text = _read_text(p)
    lines = text.splitlines()
    if lines and lines[0].strip() == PATH_PAIRS_HEADER:
        pairs = read_pairs(p)
        return Labels(np.array([q.issame for q in pairs]), p, "path-pairs", pairs)
    tokens = text.split()
    if tokens and all(_is_integer(t) for t in tokens):
        return Labels(read_labels_file(p), p, "actual_issame")
    pairs = read_pairs(p)
    return Labels(np.array([q.issame for q in pairs]), p, "lfw-pairs", pairs)
