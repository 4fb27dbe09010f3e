"""A labelled set of embeddings: what the large-scale protocols score.

Read from a massface embedding folder (``massface-infer --images ROOT --out DIR``: one row
per image, keyed by its path under ROOT, e.g. ``Aaron_Eckhart/Aaron_Eckhart_0001.jpg``).
The embeddings are checked (no NaN/Inf or all-zero rows, named by image), normalised and
flip-fused by the same registries as the LFW protocol, brought to unit length (the
protocols' score is the cosine similarity) and kept as float32 rows for the float32
matrix products of the protocols.

Labels: the identity folder of each key (its parent path), or ``--image-labels FILE``
with lines ``<path> <label>`` (path as in the folder's ``index.txt``, with or without its
extension; whitespace-separated, ``#`` comments). BLUFR takes its labels from its config.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError, excerpt
from massface.evaluate.inputs import check_rows
from massface.formats import embedding_dir
from massface.formats.pairs import ReferenceIndex
from massface.io import sha256_file
from massface.scoring.embeddings import FLIPS, NORMALIZATIONS, prepare_embeddings


@dataclass(frozen=True)
class FeatureOptions:
    """How embeddings become features (named in every report)."""

    normalization: str = "l2"
    flip: str = "none"

    def to_dict(self) -> dict[str, Any]:
        return {"normalization": self.normalization, "flip": self.flip,
                "score": "cosine similarity (rows L2-normalised after normalisation and flip "
                         "fusion), float32 matrix products"}

    def describe(self) -> str:
        return (f"{NORMALIZATIONS.description(self.normalization)}, "
                f"{FLIPS.description(self.flip)}, cosine score (float32)")


@dataclass
class FeatureSet:
    """Features of every image of an embedding folder, keyed by path."""

    path: Path
    keys: list[str]
    features: np.ndarray
    files: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    #: The folder's ``meta.json`` (model, preprocessing, dataset root) for ``--html``.
    source_meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": "embeddings", "images": len(self.keys),
                "dim": int(self.features.shape[1]), "sha256": self.files, **self.details}


def load_features(path: Path, opts: FeatureOptions, protocol: str) -> FeatureSet:
    """Read and prepare an embedding folder's rows (float32, e.g. L2-normalised)."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if not embedding_dir.is_embedding_dir(path):
        raise InputError(f"{path}: --protocol {protocol} scores a labelled set of images and "
                         "needs a massface embedding folder (meta.json, embeddings.npy, "
                         "index.txt), e.g. from massface-infer --images ROOT --out DIR")
    es = embedding_dir.read_embedding_dir(path)
    if len(set(es.paths)) != len(es.paths):
        raise InputError(f"{path / embedding_dir.INDEX}: an image is listed twice")
    names = lambda r: f"{r} ({es.paths[r]})"  # noqa: E731
    check_rows(es.embeddings, path / embedding_dir.EMBEDDINGS, names)
    if opts.flip != "none" and es.flip is None:
        raise InputError(f"{path}: --flip {opts.flip} needs {embedding_dir.EMBEDDINGS_FLIP} "
                         "(massface-infer --flip)")
    if es.flip is not None and opts.flip != "none":
        check_rows(es.flip, path / embedding_dir.EMBEDDINGS_FLIP, names)
    try:
        prepared = prepare_embeddings(es.embeddings, es.flip, normalization=opts.normalization,
                                      flip=opts.flip)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
    # the score is a cosine whatever came before (flip concat, --normalization none):
    # unit rows; a no-op, to rounding, after the default L2 normalisation
    prepared /= np.linalg.norm(prepared, axis=1, keepdims=True)
    files = {str(path / name): sha256_file(path / name)
             for name in (embedding_dir.EMBEDDINGS, embedding_dir.EMBEDDINGS_FLIP,
                          embedding_dir.INDEX, embedding_dir.META)
             if (path / name).is_file()}
    return FeatureSet(path, list(es.paths), np.ascontiguousarray(prepared, dtype=np.float32),
                      files, {"model": es.meta.get("model")}, es.meta)


@dataclass
class Labelled:
    """Integer labels of a feature set's rows (``-1``: no label) and their names."""

    labels: np.ndarray
    names: list[str]
    source: str

    @property
    def n_identities(self) -> int:
        return len(self.names)


def _encode(values: list[str]) -> tuple[np.ndarray, list[str]]:
    names, inverse = np.unique(np.array(values, dtype=object).astype(str), return_inverse=True)
    return inverse.astype(np.int64), [str(n) for n in names]


def folder_labels(fs: FeatureSet) -> Labelled:
    """Each image's identity folder (its parent path) as its label."""
    parents = [posixpath.dirname(k) for k in fs.keys]
    flat = [k for k, p in zip(fs.keys, parents, strict=True) if not p]
    if flat:
        raise InputError(f"{fs.path / embedding_dir.INDEX}: {len(flat)} image(s) are not in an "
                         f"identity folder (e.g. {flat[0]}), so they have no label: embed a "
                         "folder-per-identity tree or give --image-labels")
    labels, names = _encode(parents)
    return Labelled(labels, names, "identity folder")


def read_label_file(path: Path) -> dict[str, str]:
    """``<path> <label>`` lines: image reference -> label."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read image labels: {exc}") from exc
    out: dict[str, str] = {}
    for lineno, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        if len(fields) != 2:
            raise InputError(f"{path}:{lineno}: expected '<image path> <label>', got "
                             f"{excerpt(line.strip())}")
        if fields[0] in out and out[fields[0]] != fields[1]:
            raise InputError(f"{path}:{lineno}: {fields[0]} labelled twice, differently")
        out[fields[0]] = fields[1]
    if not out:
        raise InputError(f"{path}: no image labels found")
    return out


def file_labels(fs: FeatureSet, path: Path) -> Labelled:
    """Labels from a ``<path> <label>`` file; every image of the set must have one."""
    given = read_label_file(path)
    rows = ReferenceIndex(fs.keys, fs.path)
    values: list[str | None] = [None] * len(fs.keys)
    unknown = []
    for ref, label in given.items():
        r = rows.get(ref)
        if r is None:
            unknown.append(ref)
        else:
            values[r] = label
    if unknown:
        raise InputError(f"{path}: {len(unknown)} labelled image(s) are not in {fs.path} "
                         f"(e.g. {unknown[0]})")
    missing = [fs.keys[i] for i, v in enumerate(values) if v is None]
    if missing:
        raise InputError(f"{path}: {len(missing)} image(s) of {fs.path} have no label (e.g. "
                         f"{missing[0]})")
    labels, names = _encode([str(v) for v in values])
    return Labelled(labels, names, str(path))


def set_labels(fs: FeatureSet, image_labels: Path | None) -> Labelled:
    """Labels from ``image_labels`` when given, else from the identity folders."""
    return folder_labels(fs) if image_labels is None else file_labels(fs, image_labels)
