"""The embedding folder: what ``massface-infer`` writes and ``massface-eval`` reads.

Layout (version 1)::

    OUTDIR/
      embeddings.npy        float32 [N, D]; row i embeds the image on line i of index.txt
      embeddings_flip.npy   optional, float32 [N, D]: the same images flipped left-right
      index.txt             N lines: each row's image path, relative to the dataset root,
                            POSIX separators
      pairs.txt             optional: the pairs file the run was given (LFW or path-pairs
                            format, see massface.formats.pairs), so that
                            ``massface-eval OUTDIR`` needs no other argument
      meta.json             {"format": "massface-embeddings", "version": 1, ...}: model,
                            preprocessing, dataset root, counts

``meta.json`` is written last, so a folder without it is incomplete. Every file is
written atomically (temporary name, then rename).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface import io
from massface.errors import InputError
from massface.formats.pairs import ReferenceIndex
from massface.io import load_array, read_json

FORMAT_NAME = "massface-embeddings"
FORMAT_VERSION = 1
EMBEDDINGS = "embeddings.npy"
EMBEDDINGS_FLIP = "embeddings_flip.npy"
INDEX = "index.txt"
PAIRS = "pairs.txt"
META = "meta.json"


@dataclass
class EmbeddingSet:
    """Embeddings of distinct images, keyed by their dataset-relative paths."""

    embeddings: np.ndarray
    paths: list[str]
    flip: np.ndarray | None = None
    pairs_file: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def row_of(self, where: str | os.PathLike[str] = "embeddings") -> ReferenceIndex:
        """Image reference -> row (:class:`~massface.formats.pairs.ReferenceIndex`)."""
        return ReferenceIndex(self.paths, where)


def is_embedding_dir(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding a massface ``meta.json``."""
    p = Path(path)
    return p.is_dir() and (p / META).is_file() and (p / EMBEDDINGS).is_file()


def write_embedding_dir(
    outdir: str | os.PathLike[str],
    embeddings: np.ndarray,
    paths: list[str],
    *,
    flip: np.ndarray | None = None,
    pairs_file: str | os.PathLike[str] | None = None,
    pairs_bytes: bytes | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write an embedding folder; ``meta.json`` goes last so partial folders are visible.

    The pairs file is copied from ``pairs_file``, or written from ``pairs_bytes``.
    """
    out = Path(outdir)
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(paths):
        raise InputError(f"{out}: {emb.shape[0]} embedding rows for {len(paths)} image paths")
    if flip is not None and np.shape(flip) != emb.shape:
        raise InputError(f"{out}: flip embeddings {np.shape(flip)} do not match {emb.shape}")
    out.mkdir(parents=True, exist_ok=True)
    (out / META).unlink(missing_ok=True)
    io.save_npy(out / EMBEDDINGS, emb)
    if flip is not None:
        io.save_npy(out / EMBEDDINGS_FLIP, np.asarray(flip, dtype=np.float32))
    else:
        (out / EMBEDDINGS_FLIP).unlink(missing_ok=True)
    io.write_text(out / INDEX, "".join(f"{p}\n" for p in paths))
    if pairs_file is not None:
        io.write_bytes(out / PAIRS, Path(pairs_file).read_bytes())
    elif pairs_bytes is not None:
        io.write_bytes(out / PAIRS, pairs_bytes)
    info = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "images": len(paths),
            "dim": int(emb.shape[1]), "flip": flip is not None}
    info.update(meta or {})
    io.write_json(out / META, info)
    return out


def _numeric(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{path}: embeddings must be numbers, got dtype {arr.dtype}")
    return arr


def read_embedding_dir(path: str | os.PathLike[str]) -> EmbeddingSet:
    """Read an embedding folder, checking that its parts agree."""
    d = Path(path)
    meta_path = d / META
    if not meta_path.is_file():
        raise InputError(f"{d}: no {META}: not a massface embedding folder, or the run that "
                         "wrote it did not finish")
    meta = read_json(meta_path, "embedding folder description")
    if not isinstance(meta, dict):
        raise InputError(f"{meta_path}: expected a JSON object")
    if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
        raise InputError(f"{meta_path}: format {meta.get('format')!r} version "
                         f"{meta.get('version')!r} is not {FORMAT_NAME} v{FORMAT_VERSION}")
    emb = _numeric(load_array(d / EMBEDDINGS, "embeddings"), d / EMBEDDINGS)
    try:
        paths = (d / INDEX).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{d / INDEX}: unreadable: {exc}") from exc
    if emb.ndim != 2 or emb.shape[0] != len(paths):
        raise InputError(f"{d}: {EMBEDDINGS} has shape {emb.shape} but {INDEX} lists "
                         f"{len(paths)} images")
    flip = None
    if (d / EMBEDDINGS_FLIP).is_file():
        flip = _numeric(load_array(d / EMBEDDINGS_FLIP, "flip embeddings"), d / EMBEDDINGS_FLIP)
        if flip.shape != emb.shape:
            raise InputError(f"{d / EMBEDDINGS_FLIP}: shape {flip.shape} differs from "
                             f"{EMBEDDINGS} {emb.shape}")
    pairs_file = d / PAIRS if (d / PAIRS).is_file() else None
    return EmbeddingSet(emb.astype(np.float32, copy=False), paths, flip, pairs_file, meta)
