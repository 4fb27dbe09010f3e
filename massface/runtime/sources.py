"""The input kinds ``massface-infer`` reads, each turned into one :class:`Dataset`.

A dataset is an ordered list of distinct items to embed (row ``i`` of the output embeds
item ``i``) with a key for each (its path relative to the dataset root, written to
``index.txt``), plus, when the input defines verification pairs, the pairs and the *slot*
layout: ``slots[2k]``, ``slots[2k+1]`` are the rows of pair ``k``'s two images. msame-style
outputs are written per slot (the order calAcc reads), embeddings once per row.

Kinds (a registry keyed by the option that selects them):

* ``lfw``: ``--lfw DIR --pairs pairs.txt``: only the images the pairs name, each once,
  in first-use order;
* ``images``: ``--images DIR``: every image under a folder-per-identity tree, in natural
  order (``s2`` before ``s10``); ``--pairs`` may name pairs among them;
* ``list``: ``--list FILE``: one image path per line (relative to ``--root``, default the
  list's folder);
* ``insightface``: ``--bin FILE``: an insightface ``.bin`` (encoded images in pair order);
* ``input-bins``: ``--input-bins DIR``: preprocessed float32 ``<i>.bin`` tensors, the
  seed's ``2bin`` output, ``0.bin .. (n-1).bin`` without gaps (checked against the count
  ``inputs.json`` records); labels from ``actual_issame.txt`` beside the folder (or
  ``--labels``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from massface.errors import InputError, excerpt
from massface.formats import msame
from massface.formats.pairs import (
    IMAGE_EXTENSIONS,
    Pair,
    ReferenceIndex,
    natural_key,
    pair_references,
    read_pairs,
    require_reference,
    resolve_reference,
)
from massface.registry import Registry

INPUTS_SUBDIR = "inputs"  # prepare-bins --out DIR writes DIR/inputs/<i>.bin
INPUTS_META = "inputs.json"  # ... and DIR/inputs.json, what the bins hold
PARTIAL_MARKER = ".prepare-bins.json"  # ... and, while it runs, its settings (hidden)


@dataclass
class Dataset:
    """What to embed, in row order, and how rows map to verification pairs."""

    kind: str
    root: Path
    keys: list[str]
    items: list[Path | bytes]  # a file to decode/read, or encoded image bytes
    tensors: bool = False  # items are input .bin tensors (see tensor_dtype)
    tensor_dtype: str | None = None  # their dtype, from inputs.json (None: not recorded)
    pairs: list[Pair] | None = None
    pairs_file: Path | None = None  # copied beside the embeddings (None: generate one)
    slots: list[int] | None = None  # 2 per pair: the rows of its images

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def issame(self) -> list[bool] | None:
        return None if self.pairs is None else [p.issame for p in self.pairs]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "root": str(self.root), "images": len(self.keys),
                "pairs": None if self.pairs is None else len(self.pairs),
                "pairs_file": None if self.pairs_file is None else str(self.pairs_file)}



def slots_for(pairs: list[Pair], keys: list[str], where: Path) -> list[int]:
    """Rows of each pair's two images (``2 * len(pairs)``), matching keys with or without
    their extension; a pair naming an image that is not embedded is an error."""
    rows = ReferenceIndex(keys, where)
    slots: list[int] = []
    for n, p in enumerate(pairs):
        for ref in (p.a, p.b):
            row = rows.get(ref)
            if row is None:
                raise InputError(f"{where}: pair {n + 1} names {excerpt(ref)}, which is not "
                                 "among the images to embed")
            slots.append(row)
    return slots


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def lfw_dataset(root: Path, pairs_path: Path, *, keep_missing: bool = False) -> Dataset:
    """The images an LFW-style pairs file names, each once, in first-use order.

    A named image with no file is an error, unless ``keep_missing`` (``--skip-bad``): then
    it stays in the list under its reference and fails to decode like any bad image.
    """
    root = _require_dir(root, "--lfw")
    pairs = read_pairs(pairs_path)
    keys, items = [], []
    for ref in pair_references(pairs):
        path = resolve_reference(root, ref) if keep_missing else \
            require_reference(root, ref, str(pairs_path))
        if path is None:
            keys.append(ref)
            items.append(root / ref)
            continue
        keys.append(_rel(path, root))
        items.append(path)
    slots = slots_for(pairs, keys, pairs_path)
    return Dataset("lfw", root, keys, items, pairs=pairs, pairs_file=pairs_path, slots=slots)


def _require_dir(root: Path, option: str) -> Path:
    if not root.is_dir():
        raise InputError(f"{root}: {option} folder not found")
    return root


def images_dataset(root: Path, pairs_path: Path | None = None) -> Dataset:
    """Every image under ``root`` (folder per identity), in natural path order."""
    root = _require_dir(root, "--images")
    files = [p for p in root.rglob("*")
             if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    if not files:
        raise InputError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    files.sort(key=lambda p: natural_key(_rel(p, root)))
    keys = [_rel(p, root) for p in files]
    return _with_pairs(Dataset("images", root, keys, list(files)), pairs_path)


def _with_pairs(ds: Dataset, pairs_path: Path | None) -> Dataset:
    if pairs_path is not None:
        ds.pairs = read_pairs(pairs_path)
        ds.pairs_file = pairs_path
        ds.slots = slots_for(ds.pairs, ds.keys, pairs_path)
    return ds


def list_dataset(list_path: Path, root: Path | None = None,
                 pairs_path: Path | None = None) -> Dataset:
    """Images named one per line in ``list_path`` (blank lines and ``#`` comments skipped)."""
    try:
        lines = list_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{list_path}: cannot read image list: {exc}") from exc
    base = root if root is not None else list_path.parent
    keys, items, seen = [], [], set()
    for lineno, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry in seen:
            raise InputError(f"{list_path}:{lineno}: {excerpt(entry)} is listed twice")
        seen.add(entry)
        keys.append(entry)
        items.append(Path(entry) if os.path.isabs(entry) else base / entry)
    if not keys:
        raise InputError(f"{list_path}: the image list is empty")
    return _with_pairs(Dataset("list", base, keys, items), pairs_path)


def insightface_dataset(bin_path: Path) -> Dataset:
    """An insightface ``.bin``: every encoded image (pair order) is one row."""
    from massface.formats.insightface_bin import read_insightface_bin

    data = read_insightface_bin(bin_path)
    keys = [str(i) for i in range(len(data.images))]
    pairs = [Pair(keys[2 * k], keys[2 * k + 1], same) for k, same in enumerate(data.issame)]
    return Dataset("insightface", bin_path, keys, list(data.images), pairs=pairs,
                   pairs_file=None, slots=list(range(len(keys))))



def _recorded_info(meta: Path) -> dict[str, Any] | None:
    """What prepare-bins recorded in ``inputs.json`` (dtype, file count), if written."""
    if not meta.is_file():
        return None
    from massface.io import read_json

    info = read_json(meta, "input bins description")
    info = info if isinstance(info, dict) else {}
    dtype, files, order = info.get("dtype"), info.get("files"), info.get("order")
    if dtype not in ("float32", "uint8"):
        raise InputError(f"{meta}: dtype {dtype!r}: expected float32 or uint8")
    if type(files) is not int or files < 1 or (order is not None and (
            not isinstance(order, list) or len(order) != files)):
        raise InputError(f"{meta}: 'files' ({files!r}) and 'order' do not describe the "
                         "input bins; write them again with prepare-bins --overwrite")
    return {"dtype": dtype, "files": files}


def _numbered_bins(files: list[Path], folder: Path) -> list[Path]:
    """``0.bin .. (n-1).bin`` in numeric order. msame pairs input ``2k`` with ``2k+1`` by
    number, so a gap or a foreign name would shift every later pair: refused."""
    by_number: dict[int, Path] = {}
    for p in files:
        stem = p.name[:-len(".bin")]
        if not (stem.isascii() and stem.isdigit()):
            raise InputError(f"{p}: input bins are named <i>.bin (0.bin, 1.bin, ...), as "
                             "prepare-bins writes them; rename or remove this file")
        if int(stem) in by_number:
            raise InputError(f"{p}: same number as {by_number[int(stem)].name}; keep one")
        by_number[int(stem)] = p
    missing = [i for i in range(len(files)) if i not in by_number]
    if missing:
        last = max(by_number)
        raise InputError(f"{folder}: {len(files)} input bins numbered up to {last}.bin, "
                         f"but {missing[0]}.bin is missing ({len(missing)} gap(s)); every "
                         "later pair would shift. Restore the numbering 0..n-1 (or write "
                         "the bins again with prepare-bins)")
    return [by_number[i] for i in range(len(files))]


def input_bins_dataset(folder: Path, labels: Path | None = None) -> Dataset:
    """Preprocessed ``<i>.bin`` tensors (msame inputs), in numeric order of the stems."""
    folder = _require_dir(folder, "--input-bins")
    if (folder / INPUTS_SUBDIR).is_dir():
        label_dir, folder = folder, folder / INPUTS_SUBDIR
    else:
        label_dir = folder.parent
    files = [p for p in folder.iterdir()
             if p.is_file() and p.suffix == ".bin" and not p.name.startswith(".")]
    if not files:
        raise InputError(f"{folder}: no .bin input files")
    if (label_dir / PARTIAL_MARKER).is_file():
        raise InputError(f"{label_dir}: an unfinished prepare-bins run (interrupted); rerun "
                         "that command to finish it first")
    files = _numbered_bins(files, folder)
    keys = [p.name for p in files]
    info = _recorded_info(label_dir / INPUTS_META)
    if info is not None and info["files"] != len(files):
        raise InputError(f"{label_dir / INPUTS_META}: records {info['files']} input bins, "
                         f"{folder} holds {len(files)}; the folder was changed after "
                         "prepare-bins: write it again (prepare-bins --overwrite)")
    ds = Dataset("input-bins", folder, keys, list(files), tensors=True,
                 tensor_dtype=None if info is None else info["dtype"])
    label_path = labels if labels is not None else label_dir / msame.LABELS_FILE
    if label_path.is_file():
        flags = [bool(f) for f in msame.read_labels_file(label_path)]
        if len(files) != 2 * len(flags):
            raise InputError(f"{label_path}: {len(flags)} labels for {len(files)} input bins "
                             "(need one label per two inputs)")
        ds.pairs = [Pair(keys[2 * k], keys[2 * k + 1], f) for k, f in enumerate(flags)]
        ds.slots = list(range(len(keys)))
    elif labels is not None:
        raise InputError(f"{labels}: labels file not found")
    return ds


@dataclass
class SourceArgs:
    """The options that qualify a source (each kind says which ones apply to it)."""

    pairs: Path | None = None
    root: Path | None = None
    labels: Path | None = None
    skip_bad: bool = False


def _only(kind: str, args: SourceArgs, allowed: tuple[str, ...]) -> None:
    extra = [f"--{name}" for name in ("pairs", "root", "labels")
             if getattr(args, name) is not None and name not in allowed]
    if extra:
        raise InputError(f"{' and '.join(extra)} do(es) not apply to --{kind}")


def _lfw(value: Path, args: SourceArgs) -> Dataset:
    _only("lfw", args, ("pairs",))
    if args.pairs is None:
        raise InputError(f"{value}: --lfw needs --pairs (use --images to embed every image)")
    return lfw_dataset(value, args.pairs, keep_missing=args.skip_bad)


def _images(value: Path, args: SourceArgs) -> Dataset:
    _only("images", args, ("pairs",))
    return images_dataset(value, args.pairs)


def _list(value: Path, args: SourceArgs) -> Dataset:
    _only("list", args, ("pairs", "root"))
    return list_dataset(value, args.root, args.pairs)


def _bin(value: Path, args: SourceArgs) -> Dataset:
    _only("bin", args, ())
    return insightface_dataset(value)


def _input_bins(value: Path, args: SourceArgs) -> Dataset:
    _only("input-bins", args, ("labels",))
    return input_bins_dataset(value, args.labels)


#: The input kinds, keyed by the option that selects them (``--lfw DIR`` ...).
SOURCES: Registry[Callable[[Path, SourceArgs], Dataset]] = Registry("input kind")
SOURCES.register("lfw", _lfw, description="LFW-style image root, with --pairs")
SOURCES.register("images", _images, description="folder-per-identity dataset")
SOURCES.register("list", _list, description="file of image paths, one per line")
SOURCES.register("bin", _bin, description="insightface .bin (lfw.bin ...)")
SOURCES.register("input-bins", _input_bins,
                 description="folder of preprocessed <i>.bin inputs (labels: --labels)")


def open_source(given: dict[str, Path | None], args: SourceArgs) -> Dataset:
    """The dataset of the one source option given (``{"lfw": DIR, "images": None, ...}``)."""
    chosen = [kind for kind in SOURCES if given.get(kind) is not None]
    if len(chosen) != 1:
        got = ", ".join(f"--{k}" for k in chosen) or "none"
        raise InputError("give exactly one input: --lfw DIR --pairs FILE, --images DIR, --list "
                         f"FILE, --bin FILE or --input-bins DIR (got {got})")
    kind = chosen[0]
    return SOURCES.get(kind)(Path(given[kind]), args)  # type: ignore[arg-type]
