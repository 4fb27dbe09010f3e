"""Completed chunks of an interrupted run, kept in ``OUTDIR/.partial/``.

Every ``chunk_rows`` rows (a whole number of batches) the embeddings are saved as
``chunk_NNNNN.npy`` (and ``chunk_NNNNN.flip.npy``), then ``chunk_NNNNN.json`` (the rows
it covers and any skipped ones) marks the chunk complete; each file is written atomically.
``run.json`` holds the run's fingerprint (model hash, input list hash, preprocessing,
batch and chunk sizes, shard): a rerun with the same fingerprint continues after the last
complete chunk and gives the same result as an uninterrupted run; a rerun with another
fingerprint is refused unless ``--overwrite`` (:mod:`massface.outdir` decides which).
Final files are assembled only at the end.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface import io
from massface.io import read_json

PARTIAL = ".partial"


@dataclass
class Chunk:
    """One completed chunk: rows ``start..stop``, embeddings of its good rows."""

    index: int
    start: int
    stop: int
    good: list[int]
    bad: list[tuple[int, str]]
    fitted: dict[str, int] = field(default_factory=dict)  # by decoded size (--fit)


def add_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """The sum of count dictionaries (chunks' or shards' ``fitted``), keys sorted."""
    total: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + int(v)
    return dict(sorted(total.items()))


class PartialStore:
    """The ``.partial`` folder of one output folder."""

    def __init__(self, outdir: Path, fingerprint: dict[str, Any]) -> None:
        self.dir = outdir / PARTIAL
        self.fingerprint = fingerprint

    def complete_chunks(self) -> list[Chunk]:
        """The complete chunks of a resumed run (in order, contiguous); later ones, cut
        short by the interruption, are deleted."""
        chunks: list[Chunk] = []
        index = 0
        while True:
            info_path = self.dir / f"chunk_{index:05d}.json"
            if not info_path.is_file():
                break
            info = read_json(info_path, "chunk record (--overwrite starts again)")
            if not (self.dir / f"chunk_{index:05d}.npy").is_file():
                break
            chunks.append(Chunk(index, info["start"], info["stop"], info["good"],
                                [tuple(b) for b in info["bad"]], info.get("fitted", {})))
            index += 1
        for stale in self.dir.glob("chunk_*"):
            if int(stale.name[6:11]) >= index:
                stale.unlink()
        return chunks

    def save(self, chunk: Chunk, embeddings: np.ndarray, flip: np.ndarray | None) -> None:
        """Write one chunk; its ``.json`` goes last and marks it complete."""
        stem = self.dir / f"chunk_{chunk.index:05d}"
        io.save_npy(stem.with_suffix(".npy"), embeddings.astype(np.float32, copy=False))
        if flip is not None:
            io.save_npy(stem.with_name(stem.name + ".flip.npy"), flip.astype(np.float32))
        io.write_json(stem.with_suffix(".json"), {
            "start": chunk.start, "stop": chunk.stop, "good": chunk.good,
            "bad": [list(b) for b in chunk.bad], "fitted": chunk.fitted})

    def load(self, chunk: Chunk, flip: bool) -> tuple[np.ndarray, np.ndarray | None]:
        stem = self.dir / f"chunk_{chunk.index:05d}"
        emb = np.load(stem.with_suffix(".npy"), allow_pickle=False)
        f = np.load(stem.with_name(stem.name + ".flip.npy"), allow_pickle=False) if flip else None
        return emb, f

    def iter_arrays(self, chunks: list[Chunk], flip: bool
                    ) -> Iterator[tuple[Chunk, np.ndarray, np.ndarray | None]]:
        for c in chunks:
            emb, f = self.load(c, flip)
            yield c, emb, f

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
