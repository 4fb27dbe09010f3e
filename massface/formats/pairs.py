"""Verification pair lists: LFW ``pairs.txt`` and massface's path-pairs format.

Two formats are read, both giving pairs in file order (file order decides the folds):

* LFW View 2 (``pairs.txt``): an optional header ``<sets> <pairs-per-class>``, then
  ``name i j`` (same person) or ``name1 i name2 j`` (different). The image is
  ``<name>/<name>_%04d`` with the extension found on disk (``.jpg`` or ``.png``).
* Path pairs (written by :func:`write_path_pairs`, for datasets whose files are not
  named the LFW way): a first line ``# massface-pairs v1``, then
  ``<path_a>\\t<path_b>\\t<1|0>`` with paths relative to the dataset root. A file
  written by hand without the header is recognised by its first line (three
  tab-separated fields, the second not an image number).

A pair refers to images by *reference*: the relative path, without extension for LFW.
:func:`resolve_reference` finds the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError, excerpt

PATH_PAIRS_HEADER = "# massface-pairs v1"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


def natural_key(name: str) -> list[Any]:
    """Sort key for file names: numbers by value (``s2`` before ``s10``, ``2.pgm`` before
    ``10.pgm``), text as is (``AJ_Lamas`` before ``Aaron_Eckhart``, as a plain sort)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class Pair:
    """One verification pair: two image references and whether they show one person."""

    a: str
    b: str
    issame: bool


def _lfw_ref(name: str, number: str, path: Path, lineno: int) -> str:
    try:
        idx = int(number)
    except ValueError:
        raise InputError(f"{path}:{lineno}: image number {excerpt(number)} is not an integer (LFW "
                         "pairs.txt lines are 'name i j' or 'name1 i name2 j'; for pairs of "
                         f"paths write '<path_a><TAB><path_b><TAB><1|0>' lines, optionally "
                         f"under a first line '{PATH_PAIRS_HEADER}'; a label file holds only "
                         "0/1, true/false or same/different)") from None
    return f"{name}/{name}_{idx:04d}"


def _looks_like_path_pairs(lines: list[str]) -> bool:
    """A headerless path-pairs file: its first line is ``a<TAB>b<TAB>0|1`` with ``b`` not
    an LFW image number (LFW's ``name<TAB>i<TAB>j`` has integers there)."""
    first = next((ln for ln in lines if ln.strip() and not ln.startswith("#")), "")
    fields = first.rstrip("\n").split("\t")
    return len(fields) == 3 and fields[2].strip() in ("0", "1") and \
        not fields[1].strip().isdigit()


def read_pairs(path: str | os.PathLike[str]) -> list[Pair]:
    """Read an LFW ``pairs.txt`` or a massface path-pairs file, in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read pairs file: {exc}") from exc
    lines = text.splitlines()
    if lines and lines[0].strip() == PATH_PAIRS_HEADER:
        return _read_path_pairs(path, lines[1:], first_lineno=2)
    if _looks_like_path_pairs(lines):
        return _read_path_pairs(path, lines, first_lineno=1)
    return _read_lfw_pairs(path, lines)


def pairs_format(text: str) -> str:
    """``"path-pairs"`` or ``"lfw-pairs"``: how :func:`read_pairs` reads ``text``."""
    lines = text.splitlines()
    header = bool(lines) and lines[0].strip() == PATH_PAIRS_HEADER
    return "path-pairs" if header or _looks_like_path_pairs(lines) else "lfw-pairs"


def _read_lfw_pairs(path: Path, lines: list[str]) -> list[Pair]:
    pairs: list[Pair] = []
    for lineno, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if lineno == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
            continue  # header: number of sets, pairs per class
        if len(fields) == 3:
            name, i, j = fields
            pairs.append(
                Pair(_lfw_ref(name, i, path, lineno), _lfw_ref(name, j, path, lineno), True)
            )
        elif len(fields) == 4:
            n1, i, n2, j = fields
            pairs.append(Pair(_lfw_ref(n1, i, path, lineno), _lfw_ref(n2, j, path, lineno), False))
        else:
            raise InputError(
                f"{path}:{lineno}: expected 'name i j' or 'name1 i name2 j', got "
                f"{excerpt(line.strip())}"
            )
    if not pairs:
        raise InputError(f"{path}: no pairs found")
    return pairs


def _read_path_pairs(path: Path, lines: list[str], first_lineno: int) -> list[Pair]:
    pairs: list[Pair] = []
    for lineno, line in enumerate(lines, start=first_lineno):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) != 3 or fields[2] not in ("0", "1"):
            raise InputError(f"{path}:{lineno}: expected '<path_a>\\t<path_b>\\t<1|0>'")
        pairs.append(Pair(fields[0], fields[1], fields[2] == "1"))
    if not pairs:
        raise InputError(f"{path}: no pairs found")
    return pairs


def format_path_pairs(pairs: list[Pair], where: str | os.PathLike[str] = "pairs") -> str:
    """The text of a massface path-pairs file holding ``pairs``."""
    for p in pairs:
        for ref in (p.a, p.b):
            if "\t" in ref or "\n" in ref:
                raise InputError(f"{where}: image path {excerpt(ref)} contains a tab or newline")
    body = "".join(f"{p.a}\t{p.b}\t{int(p.issame)}\n" for p in pairs)
    return PATH_PAIRS_HEADER + "\n" + body


def write_path_pairs(path: str | os.PathLike[str], pairs: list[Pair]) -> None:
    """Write pairs in the massface path-pairs format (atomically)."""
    from massface.io import write_text

    write_text(path, format_path_pairs(pairs, path))


_LFW_NAME = re.compile(r"^(?P<name>[^/\s]+)/(?P=name)_(?P<num>\d+)(\.[A-Za-z0-9]+)?$")


def lfw_name(ref: str) -> tuple[str, int] | None:
    """``(name, number)`` when ``ref`` is named the LFW way (``<name>/<name>_NNNN.ext``)."""
    m = _LFW_NAME.match(ref)
    return (m.group("name"), int(m.group("num"))) if m else None


def write_lfw_pairs(path: str | os.PathLike[str], pairs: list[Pair], n_sets: int,
                    per_class: int) -> None:
    """Write pairs as an LFW View-2 ``pairs.txt`` (header ``<sets> <pairs per class>``).

    Only for datasets whose files are named ``<name>/<name>_NNNN.<ext>``; anything else
    is refused (write it with :func:`write_path_pairs` instead).
    """
    from massface.io import write_text

    lines = [f"{n_sets}\t{per_class}"]
    for p in pairs:
        a, b = lfw_name(p.a), lfw_name(p.b)
        for ref, parsed in ((p.a, a), (p.b, b)):
            if parsed is None:
                raise InputError(f"{path}: image {excerpt(ref)} is not named "
                                 "<name>/<name>_NNNN.<ext>, so it cannot be written in LFW "
                                 "format (use path-pairs)")
        if p.issame and a[0] == b[0]:
            lines.append(f"{a[0]}\t{a[1]}\t{b[1]}")
        elif not p.issame and a[0] != b[0]:
            lines.append(f"{a[0]}\t{a[1]}\t{b[0]}\t{b[1]}")
        else:
            raise InputError(f"{path}: pair {p.a} / {p.b} marked issame={p.issame} contradicts "
                             "the names, which LFW format derives the label from")
    write_text(path, "\n".join(lines) + "\n")


def strip_extension(ref: str) -> str:
    """A reference without a known image extension (how LFW pairs name images)."""
    root, ext = os.path.splitext(ref)
    return root if ext.lower() in IMAGE_EXTENSIONS else ref


class ReferenceIndex:
    """Image reference -> row of ``keys`` (dataset-relative paths): the one rule, the same
    as on disk (:func:`resolve_reference`). A reference names a key exactly, or a key
    without its image extension (``a/b`` names ``a/b.jpg``, as LFW pairs do); the
    reference's own extension is never dropped (``a/b.png`` does not name ``a/b.jpg``).
    A bare reference that two keys answer (``a/b.jpg`` and ``a/b.png``) is refused."""

    def __init__(self, keys: Sequence[str], where: str | os.PathLike[str] = "images") -> None:
        self.where = str(where)
        self._exact: dict[str, int] = {}
        self._bare: dict[str, int] = {}
        self._twice: dict[str, list[str]] = {}
        for i, key in enumerate(keys):
            self._exact[key] = i
            bare = strip_extension(key)
            if bare == key:
                continue
            if bare in self._bare:
                self._twice.setdefault(bare, [keys[self._bare[bare]]]).append(key)
            else:
                self._bare[bare] = i

    def get(self, ref: str, default: int | None = None) -> int | None:
        """The row ``ref`` names, else ``default``."""
        if ref in self._exact:
            return self._exact[ref]
        if ref in self._twice:
            raise InputError(f"{self.where}: {ref!r} names {len(self._twice[ref])} images "
                             f"({', '.join(self._twice[ref][:3])}): name it with its extension")
        return self._bare.get(ref, default)

    def __getitem__(self, ref: str) -> int:
        row = self.get(ref)
        if row is None:
            raise KeyError(ref)
        return row

    def __contains__(self, ref: object) -> bool:
        return isinstance(ref, str) and self.get(ref) is not None


def match_references(refs: Sequence[str], others: Sequence[str],
                     where: str | os.PathLike[str] = "images") -> np.ndarray:
    """For each name of ``refs``, the row of ``others`` naming the same image, -1 where
    none does: the one rule for two runs' names. Equal names match, and so do names that
    differ only by an image extension on one side (``a/b`` and ``a/b.jpg``: an embedding
    folder keeps the extension, a run fed LFW pairs may not); two different extensions
    never match, and a bare name two images answer is refused (:class:`ReferenceIndex`).
    A name listed several times in ``others`` (pair slots) answers with its first row."""
    first: dict[str, int] = {}
    for i, name in enumerate(others):
        first.setdefault(name, i)
    distinct = list(first)
    index = ReferenceIndex(distinct, where)
    out = np.full(len(refs), -1, dtype=np.int64)
    for k, ref in enumerate(refs):
        row = index.get(ref)  # exact, or ref bare and the other with an extension
        if row is None:
            row = index.get(strip_extension(ref))  # ref with an extension, the other bare
            if row is not None and distinct[row] != strip_extension(ref):
                row = None  # a/b.png does not name a/b.jpg
        if row is not None:
            out[k] = first[distinct[row]]
    return out


def resolve_reference(root: str | os.PathLike[str], ref: str) -> Path | None:
    """The file under ``root`` that ``ref`` names (exact path, else with an image extension)."""
    base = Path(root) / ref
    if base.is_file():
        return base
    for ext in IMAGE_EXTENSIONS:
        candidate = base.with_name(base.name + ext)
        if candidate.is_file():
            return candidate
    return None


def require_reference(root: str | os.PathLike[str], ref: str, named_by: str) -> Path:
    """:func:`resolve_reference`, or an :class:`InputError` saying who named the image."""
    path = resolve_reference(root, ref)
    if path is None:
        raise InputError(f"{Path(root) / ref}: image named by {named_by} not found (with or "
                         f"without an extension among {', '.join(IMAGE_EXTENSIONS)})")
    return path


def pair_references(pairs: list[Pair]) -> list[str]:
    """Distinct image references in first-use order (each image embedded once)."""
    seen: dict[str, None] = {}
    for p in pairs:
        seen.setdefault(p.a)
        seen.setdefault(p.b)
    return list(seen)


PAIRS_FILE_NAME = "pairs.txt"


def find_pairs_file(image_root: str | os.PathLike[str], option: str = "--pairs") -> Path:
    """The ``pairs.txt`` inside ``image_root``, else beside it (LFW's layout:
    ``lfw/pairs.txt`` next to ``lfw/lfw-112x112/``); :class:`InputError` naming both
    places when neither exists."""
    root = Path(image_root)
    candidates = [root / PAIRS_FILE_NAME, root.parent / PAIRS_FILE_NAME]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"{root}: no {PAIRS_FILE_NAME} inside or beside it (looked for "
                     f"{candidates[0]} and {candidates[1]}); name one with {option}")
