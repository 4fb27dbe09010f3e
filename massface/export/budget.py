"""The accuracy budget: several variants of one model over the same LFW pairs, side by side.

Each variant (fp32, the fp16 simulation, int8, the AIPP twin, ...) is a model that
massface-infer's backends open. The images are decoded once per batch (uint8 RGB, as
``massface-infer`` decodes them) and every variant embeds the same batch in turn: the
AIPP twin takes the pixels, the others the normalised floats. So all variants see
identical inputs, run interleaved on the same machine under the same load, and their
speeds (model time only, batch 32, ONNX Runtime's default threads) compare fairly.

Per variant: LFW verification accuracy (``massface.evaluate.verify``: L2-normalised,
squared L2, 10 folds, step 0.01) and, against the fp32 reference, the per-image cosine
over every evaluated image (minimum, 1st percentile, median).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.formats.pairs import Pair, pair_references, read_pairs, require_reference
from massface.formats.preprocessing import Preprocessing
from massface.runtime.backends import Backend
from massface.scoring import verify
from massface.scoring.distances import cosine_rows
from massface.scoring.folds import contiguous_fold_ids

BATCH_SIZE = 32
N_FOLDS = 10


@dataclass
class EvalSet:
    """The pairs scored and the distinct images they name, in first-use order."""

    pairs_file: Path
    root: Path
    pairs: list[Pair]
    fold_ids: np.ndarray  # original fold of each selected pair
    keys: list[str]
    paths: list[Path]
    slots: np.ndarray  # 2 per pair: rows of its images
    selection: str

    def describe(self) -> dict[str, Any]:
        return {"pairs_file": str(self.pairs_file), "root": str(self.root),
                "pairs": len(self.pairs), "images": len(self.keys),
                "selection": self.selection}


def select_pairs(pairs: list[Pair], count: int | None, n_folds: int = N_FOLDS
                 ) -> tuple[list[Pair], np.ndarray]:
    """``count`` pairs spread over the folds (half same, half different in each, first
    in file order), or all pairs for None; returns them with their original fold ids."""
    folds = contiguous_fold_ids(len(pairs), n_folds)
    if count is None or count >= len(pairs):
        return list(pairs), folds
    per_fold = count // n_folds
    if per_fold < 2:
        raise InputError(f"--precision-pairs {count}: need at least {2 * n_folds} pairs "
                         f"(one same and one different pair in each of {n_folds} folds)")
    want = {True: per_fold // 2, False: per_fold - per_fold // 2}
    taken: dict[tuple[int, bool], int] = {}
    keep = []
    for i, (p, f) in enumerate(zip(pairs, folds, strict=True)):
        key = (int(f), p.issame)
        if taken.get(key, 0) < want[p.issame]:
            taken[key] = taken.get(key, 0) + 1
            keep.append(i)
    return [pairs[i] for i in keep], folds[keep]


def evaluation_set(pairs_file: Path, root: Path, count: int | None) -> EvalSet:
    """Read ``pairs_file`` and resolve the images of the selected pairs under ``root``."""
    all_pairs = read_pairs(pairs_file)
    pairs, fold_ids = select_pairs(all_pairs, count)
    keys = pair_references(pairs)
    paths = [require_reference(root, ref, str(pairs_file)) for ref in keys]
    row = {k: i for i, k in enumerate(keys)}
    slots = np.array([row[r] for p in pairs for r in (p.a, p.b)], dtype=np.int64)
    selection = (f"all {len(pairs)} pairs" if len(pairs) == len(all_pairs) else
                 f"{len(pairs)} of {len(all_pairs)} pairs, the first same and different "
                 f"pairs of each of the {N_FOLDS} folds")
    return EvalSet(pairs_file, root, pairs, fold_ids, keys, paths, slots, selection)


@dataclass
class Variant:
    """One way of running the model: a name, the file it runs, and how to open it."""

    name: str
    artifact: str
    open: Callable[[], Backend]
    details: dict[str, Any]


@dataclass
class VariantRun:
    embeddings: np.ndarray  # one row per distinct image
    model_seconds: float

    @property
    def images_per_s(self) -> float:
        return len(self.embeddings) / self.model_seconds if self.model_seconds else 0.0


def run_variants(variants: list[Variant], evalset: EvalSet, prep: Preprocessing, *,
                 batch_size: int = BATCH_SIZE, progress: bool = True) -> dict[str, VariantRun]:
    """Embed every image of ``evalset`` with every variant, batch by batch, interleaved."""
    from massface.progress import ProgressBar
    from massface.runtime.loader import LoaderOptions, iter_batches
    from massface.runtime.sources import Dataset

    ds = Dataset("lfw", evalset.root, evalset.keys, list(evalset.paths))
    opts = LoaderOptions(prep, 3, skip_bad=False, pixels=True)
    backends = {v.name: v.open() for v in variants}
    outs: dict[str, list[np.ndarray]] = {v.name: [] for v in variants}
    seconds = dict.fromkeys(backends, 0.0)
    try:
        with ProgressBar("accuracy budget", total=len(ds.keys), enabled=progress) as bar:
            for k, batch in enumerate(iter_batches(ds, 0, len(ds.keys), batch_size, opts,
                                                   prefetch=2)):
                floats = prep.normalize(batch.array)
                for name, backend in backends.items():
                    x = batch.array if backend.info.input_dtype == "uint8" else floats
                    if k == 0:
                        backend.embed(x[:1])  # warm-up: first-call allocations untimed
                    start = time.perf_counter()
                    outs[name].append(backend.embed(x))
                    seconds[name] += time.perf_counter() - start
                bar.update(batch.stop)
    finally:
        for backend in backends.values():
            backend.close()
    return {name: VariantRun(np.concatenate(outs[name]), seconds[name]) for name in outs}


def score(evalset: EvalSet, run: VariantRun, reference: VariantRun | None) -> dict[str, Any]:
    """Accuracy of one variant and, with a reference, its per-image cosine to it."""
    result = verify(run.embeddings[evalset.slots], [p.issame for p in evalset.pairs],
                    fold_ids=evalset.fold_ids)
    row: dict[str, Any] = {
        "lfw_accuracy": float(result.accuracy),
        "lfw_accuracy_std": float(result.accuracy_std),
        "images": len(run.embeddings),
        "images_per_s": round(run.images_per_s, 2),
    }
    if reference is not None:
        cos = cosine_rows(reference.embeddings, run.embeddings)
        row.update({
            "min_cosine": float(cos.min()),
            "p1_cosine": float(np.percentile(cos, 1)),
            "median_cosine": float(np.median(cos)),
            "max_abs_diff": float(np.abs(reference.embeddings.astype(np.float64)
                                         - run.embeddings).max()),
            "speed_vs_fp32": round(run.images_per_s / reference.images_per_s, 3)
            if reference.images_per_s else None,
        })
    return row
