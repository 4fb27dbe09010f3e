"""Pair labels for ``massface-eval``: where they come from and how they are read.

Accepted label files (``--labels``), detected by content, not by name:

* ``actual_issame.txt`` (calAcc style): whitespace-separated ``1``/``0`` tokens, usually
  one line (``true``/``false`` and ``same``/``different`` are accepted too). Any file
  whose tokens are all integers or such words is read this way, so a stray ``2`` is
  reported as a bad label instead of being mistaken for a pairs file.
* ``.json``: a list of 0/1, true/false or "same"/"different", or ``{"issame": [...]}``.
* ``.npy``: a 1-D bool or 0/1 array (never unpickled).
* a pairs file (LFW ``pairs.txt`` or massface path-pairs, with or without its header):
  the labels in file order, and the image references, which an embedding folder maps to
  its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from massface.errors import InputError
from massface.formats.msame import LABEL_WORDS, LABELS_ACCEPTED, read_labels_file
from massface.formats.pairs import Pair, pairs_format, read_pairs
from massface.io import load_array, read_json
from massface.scoring.verification import as_labels


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


def _is_label_token(token: str) -> bool:
    """Integers (a stray 2 is then reported as a bad label) and the label words."""
    return token.lstrip("+-").isdigit() or token.lower() in LABEL_WORDS


def _json_labels(obj: object, p: Path) -> np.ndarray:
    def flag(x: object) -> bool | None:
        if isinstance(x, bool) or (isinstance(x, int) and x in (0, 1)):
            return bool(x)
        return LABEL_WORDS.get(x.lower()) if isinstance(x, str) else None

    flags = [flag(x) for x in obj] if isinstance(obj, list) else [None]
    if None in flags:
        raise InputError(f"{p}: expected a JSON list of labels ({LABELS_ACCEPTED}), or "
                         '{"issame": [...]}')
    if not flags:
        raise InputError(f"{p}: no labels in file")
    return np.array(flags, dtype=bool)


def read_labels(path: str | Path) -> Labels:
    """Read a label file of any accepted kind (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: labels file not found")
    if p.suffix == ".npy":
        arr = load_array(p, "labels array")
        return Labels(as_labels(arr, str(p)), p, "npy")
    if p.suffix == ".json":
        obj = read_json(p, "labels (not valid JSON)")
        if isinstance(obj, dict):
            obj = obj.get("issame")
        return Labels(_json_labels(obj, p), p, "json")
    text = _read_text(p)
    kind = pairs_format(text)
    tokens = text.split()
    if kind == "lfw-pairs" and tokens and all(_is_label_token(t) for t in tokens):
        return Labels(read_labels_file(p), p, "actual_issame")
    pairs = read_pairs(p)
    return Labels(np.array([q.issame for q in pairs]), p, kind, pairs)
