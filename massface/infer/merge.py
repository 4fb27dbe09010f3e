"""Assemble ``--shard K/N`` embedding folders into the folder one unsharded run writes.

The shards must come from the same model, input list and settings (their fingerprints
agree except for the shard), and their slices must cover the list exactly, each once.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from massface.errors import InputError
from massface.formats import embedding_dir
from massface.formats.pairs import read_pairs
from massface.infer.outputs import (
    SHARD_PAIRS,
    SUMMARY,
    WRITERS,
    FinalResult,
    existing_outputs,
    remove_outputs,
)
from massface.infer.resume import add_counts
from massface.io import check_output_dir, read_json
from massface.lock import folder_lock
from massface.runtime.sources import Dataset, slots_for


def merge_shards(shard_dirs: list[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                 output_format: str = "embeddings", overwrite: bool = False) -> Path:
    """Merge shard folders (any order) into ``out``; returns ``out``.

    ``out`` may not be one of the shards: writing there would replace an input. A
    finished result already in ``out`` is replaced only with ``overwrite``, as
    massface-infer does.
    """
    writer = WRITERS.get(output_format, "--format")
    check_output_dir(out, "--out")
    if not shard_dirs:
        raise InputError("merge: no shard folders given")
    _refuse_shard_as_out(shard_dirs, Path(out))
    with folder_lock(out, "massface-infer merge"):
        found = existing_outputs(Path(out))
        if found and not overwrite:
            raise InputError(f"--out {out}: already holds a result ({', '.join(found[:3])}); "
                             "rerun with --overwrite to replace it, or choose another --out")
        result = _merged(shard_dirs, output_format)
        if found:
            remove_outputs(Path(out))
        writer.write(Path(out), result)
    return Path(out)


def _refuse_shard_as_out(shard_dirs: list[str | os.PathLike[str]], out: Path) -> None:
    """``--out`` that is a shard folder (by any path: links resolved) would overwrite an
    input. (A folder around the shards, or inside one, shares no file name with them.)"""
    target = out.resolve()
    for d in shard_dirs:
        if Path(d).resolve() == target:
            raise InputError(f"--out {out}: is the shard folder {d} being merged; writing "
                             "there would replace an input. Choose another --out")


def _merged(shard_dirs: list[str | os.PathLike[str]], output_format: str) -> FinalResult:
    """The shards' rows, checked to form one run, as one result."""
    sets = []
    for d in shard_dirs:
        es = embedding_dir.read_embedding_dir(d)
        shard = es.meta.get("shard")
        if not isinstance(shard, dict):
            raise InputError(f"{d}: not a shard (its meta.json has no 'shard'); merge takes "
                             "the folders written with --shard K/N")
        sets.append((Path(d), es, shard))
    first_dir, first, s0 = sets[0]
    fp0 = {k: v for k, v in first.meta.get("fingerprint", {}).items() if k != "shard"}
    for d, es, shard in sets[1:]:
        fp = {k: v for k, v in es.meta.get("fingerprint", {}).items() if k != "shard"}
        diff = sorted(k for k in set(fp) | set(fp0) if fp.get(k) != fp0.get(k))
        if diff:
            raise InputError(f"{d}: not from the same run as {first_dir} (differs in: "
                             f"{', '.join(diff)})")
        if shard["count"] != s0["count"] or shard["total"] != s0["total"]:
            raise InputError(f"{d}: shard {shard['index']}/{shard['count']} of {shard['total']} "
                             f"images does not match {first_dir}: {s0['index']}/{s0['count']} "
                             f"of {s0['total']}")
    sets.sort(key=lambda t: t[2]["start"])
    indices = [s["index"] for _, _, s in sets]
    if sorted(indices) != list(range(s0["count"])):
        missing = sorted(set(range(s0["count"])) - set(indices))
        dup = sorted({i for i in indices if indices.count(i) > 1})
        raise InputError(f"merge: shards {indices} do not cover 0..{s0['count'] - 1} exactly "
                         f"(missing {missing}, repeated {dup})")
    pos = 0
    for d, _, s in sets:
        if s["start"] != pos:
            raise InputError(f"{d}: starts at row {s['start']}, expected {pos}")
        pos = s["stop"]
    if pos != s0["total"]:
        raise InputError(f"merge: shards end at row {pos} of {s0['total']}")

    keys: list[str] = []
    rows: list[int] = []
    skipped: list[tuple[int, str]] = []
    for _, es, s in sets:
        keys.extend(_slice_keys(es, s))
        skipped_here = {x["row"]: x["error"] for x in es.meta.get("skipped", [])}
        rows.extend(r for r in range(s["start"], s["stop"]) if r not in skipped_here)
        skipped.extend(skipped_here.items())
    emb = np.concatenate([es.embeddings for _, es, _ in sets])
    flips = [es.flip for _, es, _ in sets]
    flip = None if any(f is None for f in flips) else np.concatenate(flips)  # type: ignore[arg-type]
    meta0 = first.meta
    ds_info = meta0.get("dataset", {})
    ds = Dataset(ds_info.get("kind", "merged"), Path(ds_info.get("root", ".")), keys,
                 [Path(k) for k in keys], tensors=ds_info.get("kind") == "input-bins")
    pairs_path = first_dir / SHARD_PAIRS
    if pairs_path.is_file():
        ds.pairs = read_pairs(pairs_path)
        ds.pairs_file = pairs_path
        ds.slots = slots_for(ds.pairs, keys, pairs_path)
    summaries = [read_json(d / SUMMARY, "shard summary") for d, _, _ in sets]
    result = FinalResult(ds, rows, emb, flip, sorted(skipped),
                         meta={k: v for k, v in meta0.items()
                               if k in ("model", "preprocessing", "dataset", "fit",
                                        "batch_size", "backend", "precision")},
                         summary={"merged_shards": [str(d) for d, _, _ in sets],
                                  "shard_summaries": summaries})
    fp = dict(meta0.get("fingerprint", {}))
    fp["shard"] = None
    fp["format"] = output_format
    result.meta["fingerprint"] = fp
    result.meta["merged_from"] = [str(d) for d, _, _ in sets]
    fits = [es.meta.get("fit") for _, es, _ in sets]
    if all(isinstance(f, dict) and "fitted_from" in f for f in fits):  # counts of all shards
        fitted = add_counts(f["fitted_from"] for f in fits)  # type: ignore[index]
        result.meta["fit"] = {**fits[0],  # type: ignore[dict-item]
                              "images_fitted": sum(fitted.values()), "fitted_from": fitted}
    elif isinstance(fits[0], dict):  # shards of an older massface: no counts to add up
        result.meta["fit"] = {k: v for k, v in fits[0].items()
                              if k not in ("images_fitted", "fitted_from")}
    return result


def _slice_keys(es: embedding_dir.EmbeddingSet, shard: dict) -> list[str]:
    """All keys of the shard's slice (skipped ones included) from meta + index."""
    n = shard["stop"] - shard["start"]
    skipped = {x["row"]: x["path"] for x in es.meta.get("skipped", [])}
    it = iter(es.paths)
    keys = []
    for r in range(shard["start"], shard["start"] + n):
        keys.append(skipped[r] if r in skipped else next(it))
    return keys



