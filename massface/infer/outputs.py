"""Write a finished run's results in the format asked for (registry ``WRITERS``).

* ``embeddings`` (default): the embedding folder of :mod:`massface.formats.embedding_dir`
  (``embeddings.npy``, ``index.txt``, ``pairs.txt``, ``meta.json`` last), plus
  ``summary.json`` and, when ``--skip-bad`` dropped images, ``skipped.txt``.
* ``msame``: the layout msame leaves behind, with the fixed run folder ``outputs/`` in
  place of msame's ``<timestamp>/``: ``OUT/outputs/<stem>_output_0.bin`` per pair slot
  (LFW: one file per image *of each pair*, ``0..2N-1``, the order the seed's calAcc
  reads) or per row when there are no pairs, raw float32; ``stem`` is the input bin's own
  stem for ``--input-bins`` (as msame names outputs), else the slot number. Beside the
  run folder: ``actual_issame.txt`` (labels, kept out of the outputs folder as calAcc
  expects), ``summary.json`` and ``massface-infer.json`` (written last). ``massface-eval
  OUT`` reads it as it reads a real msame output folder.

Every file goes through :mod:`massface.io`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface import io
from massface.errors import InputError
from massface.formats import embedding_dir, msame
from massface.formats.pairs import format_path_pairs
from massface.outdir import finished_fingerprint
from massface.registry import Registry
from massface.runtime.sources import Dataset

SKIPPED = "skipped.txt"
SUMMARY = "summary.json"
MSAME_META = msame.WRITER_META
MSAME_RUN_DIR = "outputs"  # stands for msame's <timestamp>/ folder
SHARD_PAIRS = "shard-pairs.txt"  # shards keep the pairs file here, not as pairs.txt


@dataclass
class FinalResult:
    """The embeddings of the good rows of one run (or merged shards), ready to write."""

    dataset: Dataset
    rows: list[int]  # dataset rows the embeddings belong to, ascending
    embeddings: np.ndarray  # [len(rows), D] (may be a read-only memmap)
    flip: np.ndarray | None
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (row, message)
    meta: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    shard: dict[str, Any] | None = None

    @property
    def keys(self) -> list[str]:
        return [self.dataset.keys[r] for r in self.rows]

    def skipped_pairs(self) -> list[int]:
        """0-based indices (pair order, as massface-eval reports them) of the pairs that
        name a skipped image."""
        ds = self.dataset
        if ds.slots is None or not self.skipped:
            return []
        bad = {r for r, _ in self.skipped}
        return [k for k in range(len(ds.slots) // 2)
                if ds.slots[2 * k] in bad or ds.slots[2 * k + 1] in bad]

    def skipped_meta(self) -> dict[str, Any]:
        return {"skipped": [{"row": r, "path": self.dataset.keys[r], "error": m}
                            for r, m in self.skipped],
                "skipped_pairs": self.skipped_pairs()}


def _write_skipped(out: Path, res: FinalResult) -> None:
    path = out / SKIPPED
    if not res.skipped:
        path.unlink(missing_ok=True)
        return
    pairs = res.skipped_pairs()
    lines = [f"# {len(res.skipped)} images skipped (--skip-bad); pairs naming them "
             f"(0-based pair indices): {', '.join(map(str, pairs)) or 'none'}"]
    # one line per image whatever its name holds (tabs, newlines: escaped)
    lines += [f"{io.tsv_field(res.dataset.keys[r])}\t{io.tsv_field(m)}" for r, m in res.skipped]
    io.write_text(path, "\n".join(lines) + "\n")


def _pairs_bytes(res: FinalResult) -> bytes | None:
    """The pairs file's bytes: the one given, or one generated for the dataset's pairs."""
    ds = res.dataset
    if ds.pairs is None:
        return None
    if ds.pairs_file is not None:
        try:
            return ds.pairs_file.read_bytes()
        except OSError as exc:
            raise InputError(f"{ds.pairs_file}: cannot read pairs file: {exc}") from exc
    return format_path_pairs(ds.pairs).encode("utf-8")


def write_embeddings(out: Path, res: FinalResult) -> None:
    """The default embedding folder (``massface-eval OUTDIR`` reads it as is)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / embedding_dir.META).unlink(missing_ok=True)
    pairs = _pairs_bytes(res)
    if res.shard is not None:
        if pairs is not None:
            io.write_bytes(out / SHARD_PAIRS, pairs)
        pairs = None
    _write_skipped(out, res)
    io.write_json(out / SUMMARY, res.summary)
    meta = {**res.meta, **res.skipped_meta()}
    if res.shard is not None:
        meta["shard"] = res.shard
    embedding_dir.write_embedding_dir(out, res.embeddings, res.keys, flip=res.flip,
                                      pairs_bytes=pairs, meta=meta)


def msame_stems(ds: Dataset) -> list[str]:
    """Output stems per slot (per row without pairs): input stems for input bins."""
    slots = ds.slots if ds.slots is not None else list(range(len(ds.keys)))
    if ds.kind == "input-bins":
        return [Path(ds.keys[r]).stem for r in slots]
    return [str(i) for i in range(len(slots))]


def write_msame(out: Path, res: FinalResult) -> None:
    """One raw float32 ``<stem>_output_0.bin`` per slot, as msame writes them."""
    if res.flip is not None:
        raise InputError(f"{out}: --format msame has no place for flip embeddings; use the "
                         "default format with --flip")
    ds = res.dataset
    out.mkdir(parents=True, exist_ok=True)
    (out / MSAME_META).unlink(missing_ok=True)
    position = {r: i for i, r in enumerate(res.rows)}
    slots = ds.slots if ds.slots is not None else list(range(len(ds.keys)))
    run_dir = out / MSAME_RUN_DIR
    run_dir.mkdir(exist_ok=True)
    written = 0
    for stem, row in zip(msame_stems(ds), slots, strict=True):
        if row not in position:
            continue  # skipped image: listed in skipped.txt, no file
        vec = np.ascontiguousarray(res.embeddings[position[row]], dtype=np.float32)
        io.write_bytes(run_dir / msame.msame_output_name(stem), vec.tobytes())
        written += 1
    if ds.pairs is not None:
        io.write_text(out / msame.LABELS_FILE,
                          " ".join("1" if p.issame else "0" for p in ds.pairs) + "\n")
    _write_skipped(out, res)
    io.write_json(out / SUMMARY, res.summary)
    io.write_json(out / MSAME_META, {
        **res.meta, **res.skipped_meta(), "format": "massface-msame-outputs", "version": 1,
        "outputs": MSAME_RUN_DIR, "files": written, "dtype": "float32",
        "dim": int(res.embeddings.shape[1]),
        "layout": "one <stem>_output_0.bin per pair slot (2 per pair, pair order)"
                  if ds.slots is not None else "one <stem>_output_0.bin per image",
        "order": [ds.keys[r] for r in slots]})


@dataclass(frozen=True)
class OutputFormat:
    """How a finished run is written, and the file (written last) that marks it done."""

    write: Callable[[Path, FinalResult], None]
    marker: str


WRITERS: Registry[OutputFormat] = Registry("output format")
WRITERS.register("embeddings", OutputFormat(write_embeddings, embedding_dir.META),
                 description="embedding folder for massface-eval")
WRITERS.register("msame", OutputFormat(write_msame, MSAME_META),
                 description="msame-style <i>_output_0.bin per pair slot")


def completed_fingerprint(out: Path, fmt: str) -> dict[str, Any] | None:
    """The fingerprint of a finished run in ``out`` (None when there is none)."""

    marker = out / WRITERS.get(fmt, "--format").marker
    return finished_fingerprint(marker, "description of the finished run")


# Every file name massface-infer writes in an output folder (besides outputs/ and .partial).
_OUTPUT_NAMES = (embedding_dir.META, MSAME_META, embedding_dir.EMBEDDINGS,
                 embedding_dir.EMBEDDINGS_FLIP, embedding_dir.INDEX, embedding_dir.PAIRS,
                 SKIPPED, SUMMARY, SHARD_PAIRS, msame.LABELS_FILE, "landmarks.json")


def existing_outputs(out: Path) -> list[str]:
    """The names of the result files (or msame outputs) already in ``out``."""
    found = [name for name in _OUTPUT_NAMES if (out / name).exists()]
    if any((out / MSAME_RUN_DIR).glob("*_output_0.bin")):
        found.append(f"{MSAME_RUN_DIR}/")
    return found


def remove_outputs(out: Path) -> None:
    """Delete what massface-infer writes in ``out`` (``--overwrite``); nothing else."""
    for name in _OUTPUT_NAMES:
        (out / name).unlink(missing_ok=True)
    for f in (out / MSAME_RUN_DIR).glob("*_output_0.bin"):
        f.unlink()
    if (out / MSAME_RUN_DIR).is_dir() and not any((out / MSAME_RUN_DIR).iterdir()):
        (out / MSAME_RUN_DIR).rmdir()
    shutil.rmtree(out / ".partial", ignore_errors=True)
