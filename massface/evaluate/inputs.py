"""What ``massface-eval`` can score, each read into pair-ordered embeddings + labels.

Input kinds (a registry: name -> detector and loader), tried in this order by ``auto``:

``embeddings``
    a massface embedding folder (``massface.formats.embedding_dir``): one row per distinct
    image, ``index.txt`` naming them; the pairs file (its own ``pairs.txt`` or ``--labels``)
    names each pair's two images, which are looked up with ``EmbeddingSet.row_of()``.
    Flip embeddings are used when present and a flip mode asks for them.
``npy`` / ``npz``
    arrays already in pair order ``[p0a, p0b, p1a, ...]``; an ``.npz`` may carry
    ``embeddings`` (or its only array), ``embeddings_flip`` and ``issame``.
``outputs``
    a folder of msame (``<i>_output_<k>.bin|txt``) or ais_bench (``<i>_<k>.bin|txt|npy``)
    output files, directly or in its single ``<timestamp>`` subfolder; ``i`` is the image
    index in pair order (calAcc's ``emb_array``). Raw ``.bin`` is float32 or float16.

Labels: an input's own (an embedding folder's ``pairs.txt``, an ``.npz``'s ``issame``,
``actual_issame.txt`` inside an output folder) else ``--labels``; when both exist they must
agree, except that a pairs file given to an embedding folder chooses its pairs.

Every loaded row is checked: NaN/Inf or all-zero rows are refused, naming the rows and
their files. ``allow_missing`` drops pairs whose image has no output/embedding, reports
how many, and keeps the survivors in the fold of their ORIGINAL pair index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.evaluate.labels import Labels, read_labels
from massface.formats import embedding_dir, msame
from massface.io import keys_sha256, load_array, load_arrays, read_json, sha256_file
from massface.progress import ProgressBar
from massface.registry import Registry
from massface.scoring.embeddings import _rows
from massface.scoring.folds import contiguous_fold_ids
from massface.scoring.verification import as_labels

MANY_FILES = 2000  # show a progress bar from this many output files on


@dataclass
class LoadOptions:
    """Settings that change how inputs are read (all recorded in the report)."""

    labels: Path | None = None
    kind: str = "auto"
    dtype: str = "auto"
    dim: int | None = None
    output_index: int = 0
    allow_missing: bool = False
    n_folds: int = 10
    progress: bool = True


@dataclass
class PairInput:
    """One run's pair-ordered embeddings and labels, plus where they came from."""

    name: str
    kind: str
    embeddings: np.ndarray
    issame: np.ndarray
    flip_embeddings: np.ndarray | None = None
    fold_ids: np.ndarray | None = None
    n_pairs_total: int = 0
    dropped_pairs: list[int] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    #: For reports that show the faces (``--html``), not in ``to_dict()``: each scored
    #: pair's two image references (paths under the dataset root, or ``.bin`` indices)
    #: when the input names them, and the producer's description (an embedding folder's
    #: ``meta.json``, massface-infer's ``massface-infer.json``): model, preprocessing,
    #: dataset root.
    pair_refs: list[tuple[str, str]] | None = None
    source_meta: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """The input as given (what protocol reports name it by)."""
        return self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.name,
            "kind": self.kind,
            "pairs_total": self.n_pairs_total,
            "pairs_scored": int(self.issame.size),
            "pairs_dropped": len(self.dropped_pairs),
            "dropped_pair_indices": self.dropped_pairs,
            "dim": int(self.embeddings.shape[1]),
            "flip_embeddings": self.flip_embeddings is not None,
            "sha256": self.files,
            **self.details,
        }



def check_rows(emb: np.ndarray, source: Path, names: Callable[[int], str] | None = None) -> None:
    """Refuse NaN/Inf and all-zero rows, naming rows (and their files when known)."""
    finite = np.isfinite(emb).all(axis=1)
    nonzero = emb.any(axis=1)
    for mask, what in ((~finite, "contain NaN or Inf"), (finite & ~nonzero, "are all zero")):
        if mask.any():
            idx = np.flatnonzero(mask)
            shown = _rows(mask)
            if names is not None:
                shown = ", ".join(names(int(i)) for i in idx[:10])
                shown += f" and {idx.size - 10} more" if idx.size > 10 else ""
            raise InputError(f"{source}: {idx.size} embedding row(s) {what}: rows {shown}")


def _pair_count_check(rows: int, n_labels: int, source: Path, labels: Path | None) -> None:
    if rows % 2:
        raise InputError(f"{source}: odd number of embeddings ({rows}): pairs need 2 rows each")
    if rows != 2 * n_labels:
        where = f" ({labels})" if labels else ""
        raise InputError(f"{source}: {rows} embeddings make {rows // 2} pairs but there are "
                         f"{n_labels} labels{where}: need 2 embedding rows per label")


def _drop(missing_pairs: np.ndarray, n_pairs: int, opts: LoadOptions, source: Path,
          why: list[str]) -> tuple[np.ndarray, np.ndarray | None, list[int]]:
    """Keep-mask, fold ids of the kept pairs (original numbering), dropped indices."""
    keep = ~missing_pairs
    if not missing_pairs.any():
        return keep, None, []
    if not opts.allow_missing:
        shown = "; ".join(why[:10]) + (f"; and {len(why) - 10} more" if len(why) > 10 else "")
        raise InputError(f"{source}: {len(why)} image(s) missing, needed by "
                         f"{int(missing_pairs.sum())} pair(s): {shown} (--allow-missing drops "
                         "those pairs and keeps the others in their original folds)")
    folds = contiguous_fold_ids(n_pairs, opts.n_folds)[keep]
    return keep, folds, [int(i) for i in np.flatnonzero(missing_pairs)]


def _labels_or_default(source: Path, opts: LoadOptions, default: Path | None) -> Labels:
    """The input's own labels (``default``), else ``--labels``; both: they must agree."""
    own = read_labels(default) if default is not None and default.is_file() else None
    given = read_labels(opts.labels) if opts.labels is not None else None
    if own is not None and given is not None:
        _check_agree(own, given)
        return own
    if own is not None or given is not None:
        return own if own is not None else given  # type: ignore[return-value]
    raise InputError(f"{source}: no labels: pass --labels (actual_issame.txt, pairs.txt, a "
                     "JSON list or a .npy array)")


def _check_agree(own: Labels, given: Labels) -> None:
    if own.issame.shape != given.issame.shape or (own.issame != given.issame).any():
        diff = (f"{own.issame.size} vs {given.issame.size} labels"
                if own.issame.shape != given.issame.shape
                else f"first difference at pair {int(np.argmax(own.issame != given.issame))}")
        raise InputError(f"{given.path}: labels disagree with the input's own labels "
                         f"{own.path} ({diff})")


# --- embedding folder -----------------------------------------------------------------


def _is_embedding_dir(path: Path) -> bool:
    return embedding_dir.is_embedding_dir(path)


def load_embedding_dir(path: Path, opts: LoadOptions) -> PairInput:
    es = embedding_dir.read_embedding_dir(path)
    given = read_labels(opts.labels) if opts.labels is not None else None
    if given is not None and given.pairs is not None:
        labels = given  # a pairs file chooses which pairs of the folder's images to score
    else:
        labels = _labels_or_default(path, opts, es.pairs_file)
    if labels.pairs is None:
        raise InputError(f"{path}: an embedding folder holds one row per distinct image; bare "
                         f"labels ({labels.path}) cannot say which rows pair up: give a pairs "
                         "file (LFW pairs.txt or massface path-pairs)")
    rows = es.row_of(path / embedding_dir.INDEX)
    n = len(labels.pairs)
    idx = np.full((n, 2), -1, dtype=np.int64)
    why: list[str] = []
    missing_refs: set[str] = set()
    for i, p in enumerate(labels.pairs):
        for side, ref in enumerate((p.a, p.b)):
            r = rows.get(ref)
            if r is None:
                if ref not in missing_refs:
                    missing_refs.add(ref)
                    why.append(f"{ref} (pair {i})")
            else:
                idx[i, side] = r
    missing = (idx < 0).any(axis=1)
    keep, folds, dropped = _drop(missing, n, opts, path / embedding_dir.INDEX, why)
    order = idx[keep].reshape(-1)
    used = np.unique(order)  # check each image used by a pair once, by its name
    check_rows(es.embeddings[used], path / embedding_dir.EMBEDDINGS,
               lambda r: f"{used[r]} ({es.paths[used[r]]})")
    emb = es.embeddings[order]
    flip = es.flip[order] if es.flip is not None else None
    if es.flip is not None:
        check_rows(es.flip[used], path / embedding_dir.EMBEDDINGS_FLIP,
                   lambda r: f"{used[r]} ({es.paths[used[r]]})")
    files = {str(path / name): sha256_file(path / name)
             for name in (embedding_dir.EMBEDDINGS, embedding_dir.EMBEDDINGS_FLIP,
                          embedding_dir.INDEX, embedding_dir.META)
             if (path / name).is_file()}
    files[str(labels.path)] = sha256_file(labels.path)
    refs = [(es.paths[a], es.paths[b]) for a, b in idx[keep]]
    return PairInput(str(path), "embeddings", emb, labels.issame[keep], flip, folds, n, dropped,
                     files, {"labels": str(labels.path), "labels_kind": labels.kind,
                             "images": len(es.paths), "model": es.meta.get("model"),
                             **inference_settings(es.meta)},
                     refs, es.meta)


def inference_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """The backend and precision massface-infer recorded (absent in older or foreign runs)."""
    return {k: meta[k] for k in ("backend", "precision", "backend_choice") if k in meta}


# --- arrays in pair order -------------------------------------------------------------


def _as_matrix(arr: np.ndarray, path: Path, what: str) -> np.ndarray:
    if arr.ndim != 2 or arr.dtype.kind not in "fiu":
        raise InputError(f"{path}: {what} must be a 2-D numeric array [rows, dim], got "
                         f"shape {arr.shape} dtype {arr.dtype}")
    return arr


def _pair_order_input(path: Path, kind: str, emb: np.ndarray, flip: np.ndarray | None,
                      labels: Labels, extra_files: dict[str, str]) -> PairInput:
    _pair_count_check(emb.shape[0], labels.issame.size, path, labels.path)
    check_rows(emb, path)
    if flip is not None:
        if flip.shape != emb.shape:
            raise InputError(f"{path}: flip embeddings {flip.shape} differ from {emb.shape}")
        check_rows(flip, path)
    files = {str(path): sha256_file(path), **extra_files}
    return PairInput(str(path), kind, emb, labels.issame, flip, None, labels.issame.size, [],
                     files, {"labels": str(labels.path), "labels_kind": labels.kind})


def _label_files(labels: Labels, path: Path) -> dict[str, str]:
    return {} if labels.path == path else {str(labels.path): sha256_file(labels.path)}


def load_npy(path: Path, opts: LoadOptions) -> PairInput:
    emb = _as_matrix(load_array(path, "embeddings array"), path, "embeddings")
    labels = _labels_or_default(path, opts, None)
    return _pair_order_input(path, "npy", emb, None, labels, _label_files(labels, path))


def load_npz(path: Path, opts: LoadOptions) -> PairInput:
    arrays = load_arrays(path, "embeddings archive")
    if "embeddings" in arrays:
        emb = arrays["embeddings"]
    else:
        matrices = [k for k, v in arrays.items() if v.ndim == 2]
        if len(matrices) != 1:
            raise InputError(f"{path}: no 'embeddings' array and {len(matrices)} 2-D arrays "
                             f"({', '.join(matrices)}): name the embeddings 'embeddings'")
        emb = arrays[matrices[0]]
    emb = _as_matrix(emb, path, "embeddings")
    flip = arrays.get("embeddings_flip")
    given = read_labels(opts.labels) if opts.labels is not None else None
    if "issame" in arrays:
        labels = Labels(as_labels(arrays["issame"], f"{path}: issame"), path, "npz")
        if given is not None:
            _check_agree(labels, given)
    elif given is not None:
        labels = given
    else:
        raise InputError(f"{path}: no 'issame' array in it: pass --labels")
    return _pair_order_input(path, "npz", emb, flip, labels, _label_files(labels, path))


# --- msame / ais_bench output folders -------------------------------------------------


def _is_output_folder(path: Path) -> bool:
    try:
        msame.find_output_folder(path)
    except InputError:
        return False
    return True


def _manifest_sha256(paths: list[Path]) -> str:
    """sha256 of ``sha256sum``-style lines (``<sha256>  <name>``) in index order."""
    return keys_sha256([f"{sha256_file(p)}  {p.name}" for p in paths])


def _writer_hints(meta: dict[str, Any], opts: LoadOptions) -> LoadOptions:
    """Take dtype and width from ``massface-infer.json`` when massface wrote the outputs.

    A raw 768-byte file may be 192 float32 or 384 float16 values; msame itself records
    neither, but ``massface-infer --format msame`` does. Explicit options still win.
    """
    if opts.dtype != "auto" or opts.dim is not None or not meta:
        return opts
    return replace(opts, dtype=str(meta.get("dtype", "auto")), dim=meta.get("dim"))


def _writer_meta(path: Path) -> dict[str, Any]:
    """``massface-infer.json`` when massface wrote the outputs (else ``{}``)."""
    meta_path = path / msame.WRITER_META
    if not meta_path.is_file():
        return {}
    meta = read_json(meta_path, "massface-infer output description")
    if not isinstance(meta, dict):
        raise InputError(f"{meta_path}: expected a JSON object")
    return meta


def load_output_folder(path: Path, opts: LoadOptions) -> PairInput:
    meta = _writer_meta(path)
    opts = _writer_hints(meta, opts)
    outputs = msame.scan_output_folder(path, opts.output_index)
    default = next((d / msame.LABELS_FILE for d in (path, outputs.folder)
                    if (d / msame.LABELS_FILE).is_file()), None)
    labels = _labels_or_default(path, opts, default)
    n_pairs = labels.issame.size
    expected = 2 * n_pairs
    extra = outputs.extra(expected)
    if extra:
        shown = ", ".join(outputs.files[i].name for i in extra[:10])
        raise InputError(f"{outputs.folder}: {len(extra)} output file(s) beyond the "
                         f"{expected} images that {n_pairs} labels ({labels.path}) need: "
                         f"{shown}{' ...' if len(extra) > 10 else ''}")
    missing_images = outputs.missing(expected)
    if missing_images and not opts.allow_missing:
        shown = ", ".join(str(i) for i in missing_images[:10])
        raise InputError(f"{outputs.folder}: {len(missing_images)} of {expected} output files "
                         f"missing; first missing indices: {shown} (e.g. "
                         f"{outputs.expected_name(missing_images[0])}); --allow-missing drops "
                         "their pairs and keeps the others in their original folds")
    missing_pairs = np.zeros(n_pairs, dtype=bool)
    missing_pairs[np.array(missing_images, dtype=np.int64) // 2] = True
    why = [outputs.expected_name(i) for i in missing_images]
    keep, folds, dropped = _drop(missing_pairs, n_pairs, opts, outputs.folder, why)
    indices = [i for p in np.flatnonzero(keep) for i in (2 * int(p), 2 * int(p) + 1)]
    emb = _read_with_progress(outputs, indices, opts)
    paths = [outputs.files[i] for i in indices]
    check_rows(emb, outputs.folder, lambda r: f"{indices[r]} ({paths[r].name})")
    files = {str(labels.path): sha256_file(labels.path)}
    details = {
        "labels": str(labels.path),
        "labels_kind": labels.kind,
        "tool": outputs.tool,
        "output_folder": str(outputs.folder),
        "output_files": len(paths),
        "output_format": outputs.ext,
        "output_dtype": _dtype_name(outputs, paths, opts),
        "outputs_manifest_sha256": _manifest_sha256(paths),
    }
    details.update(inference_settings(meta))
    return PairInput(str(path), "outputs", emb, labels.issame[keep], None, folds, n_pairs,
                     dropped, files, details, _slot_refs(meta, labels, indices), meta)


def _slot_refs(meta: dict[str, Any], labels: Labels, indices: list[int]
               ) -> list[tuple[str, str]] | None:
    """Image references of the kept pair slots: massface-infer's ``order``, else the
    pairs file's references; None when neither names the images."""
    order = meta.get("order")
    if isinstance(order, list) and len(order) == 2 * labels.issame.size:
        names = [str(order[i]) for i in indices]
    elif labels.pairs is not None:
        slots = [r for p in labels.pairs for r in (p.a, p.b)]
        names = [slots[i] for i in indices]
    else:
        return None
    return list(zip(names[0::2], names[1::2], strict=True))


def _dtype_name(outputs: msame.OutputFolder, paths: list[Path], opts: LoadOptions) -> str:
    if outputs.ext != "bin":
        return "text" if outputs.ext == "txt" else "npy"
    sizes = {paths[0].stat().st_size: [paths[0]]}
    return str(msame.bin_dtype(sizes, opts.dtype, opts.dim))


def _read_with_progress(outputs: msame.OutputFolder, indices: list[int],
                        opts: LoadOptions) -> np.ndarray:
    enabled = opts.progress and len(indices) >= MANY_FILES
    with ProgressBar("reading outputs", len(indices), enabled=enabled,
                     rate_unit="files/s") as bar:
        return msame.read_outputs(outputs, indices, dtype=opts.dtype, dim=opts.dim,
                                  progress=bar.update)


# --- registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class InputKind:
    detect: Callable[[Path], bool]
    load: Callable[[Path, LoadOptions], PairInput]


#: Tried in this order by ``--kind auto``.
INPUT_KINDS: Registry[InputKind] = Registry("input kind")
INPUT_KINDS.register("embeddings", InputKind(_is_embedding_dir, load_embedding_dir),
                     description="massface embedding folder (meta.json, index.txt)")
INPUT_KINDS.register("npy", InputKind(lambda p: p.is_file() and p.suffix == ".npy", load_npy),
                     description=".npy array in pair order")
INPUT_KINDS.register("npz", InputKind(lambda p: p.is_file() and p.suffix == ".npz", load_npz),
                     description=".npz with embeddings (+ embeddings_flip, issame)")
INPUT_KINDS.register("outputs", InputKind(_is_output_folder, load_output_folder),
                     description="msame / ais_bench output folder")


def load_input(path: str | Path, opts: LoadOptions) -> PairInput:
    """Read one input of kind ``opts.kind`` (``auto``: the first kind that recognises it)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if opts.kind != "auto":
        return INPUT_KINDS.get(opts.kind, "--kind").load(p, opts)
    for name in INPUT_KINDS:
        kind = INPUT_KINDS.get(name)
        if kind.detect(p):
            return kind.load(p, opts)
    if p.is_dir() and (p / embedding_dir.EMBEDDINGS).is_file():
        return load_embedding_dir(p, opts)  # incomplete folder: say why (no meta.json)
    if p.is_dir():
        msame.find_output_folder(p)  # raises with the reason
    raise InputError(f"{p}: not an embedding folder, .npy/.npz array or msame/ais_bench "
                     "output folder")


# --- one row per image, no labels (massface-eval compare of any two runs) --------------


@dataclass
class ImageInput:
    """One run's embeddings, one row per image in the run's order, named when the run
    says (an embedding folder's ``index.txt``, massface-infer's msame ``order``)."""

    name: str
    kind: str
    embeddings: np.ndarray
    names: list[str] | None
    source_meta: dict[str, Any] = field(default_factory=dict)

    def reordered(self, rows: np.ndarray) -> ImageInput:
        names = None if self.names is None else [self.names[int(r)] for r in rows]
        return replace(self, embeddings=self.embeddings[rows], names=names)


def has_pair_labels(path: str | Path, opts: LoadOptions) -> bool:
    """Whether ``path`` can be scored as pairs: ``--labels``, or labels of its own."""
    p = Path(path)
    if opts.labels is not None:
        return True
    if _is_embedding_dir(p):
        return (p / embedding_dir.PAIRS).is_file()
    if p.is_file() and p.suffix == ".npz":
        return "issame" in load_arrays(p, "embeddings archive")
    if _is_output_folder(p):
        folder = msame.find_output_folder(p)
        return any((d / msame.LABELS_FILE).is_file() for d in (p, folder))
    return False


def load_images(path: str | Path, opts: LoadOptions) -> ImageInput:
    """Every row of an input, one per image (no pairs needed)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if _is_embedding_dir(p):
        es = embedding_dir.read_embedding_dir(p)
        check_rows(es.embeddings, p / embedding_dir.EMBEDDINGS, lambda r: es.paths[r])
        return ImageInput(str(p), "embeddings", es.embeddings, list(es.paths), es.meta)
    if p.is_file() and p.suffix in (".npy", ".npz"):
        arrays = {"embeddings": load_array(p, "embeddings array")} if p.suffix == ".npy" \
            else load_arrays(p, "embeddings archive")
        emb = _as_matrix(arrays.get("embeddings", next(iter(arrays.values()))), p,
                         "embeddings")
        check_rows(emb, p)
        return ImageInput(str(p), p.suffix[1:], emb, None)
    if _is_output_folder(p):
        meta = _writer_meta(p)
        opts = _writer_hints(meta, opts)
        outputs = msame.scan_output_folder(p, opts.output_index)
        n = max(outputs.files) + 1
        missing = outputs.missing(n)
        if missing:
            raise InputError(f"{outputs.folder}: {len(missing)} of {n} output files missing "
                             f"(first: {outputs.expected_name(missing[0])})")
        emb = _read_with_progress(outputs, list(range(n)), opts)
        check_rows(emb, outputs.folder, lambda r: outputs.files[r].name)
        order = meta.get("order")
        names = [str(o) for o in order] if isinstance(order, list) and len(order) == n else None
        return ImageInput(str(p), "outputs", emb, names, meta)
    return _unreadable(p)


def _unreadable(p: Path) -> ImageInput:
    if p.is_dir():
        msame.find_output_folder(p)  # raises with the reason
    raise InputError(f"{p}: not an embedding folder, .npy/.npz array or msame/ais_bench "
                     "output folder")
