"""Generate LFW-style verification pairs for any folder-per-identity dataset.

``generate_pairs(root)`` reads ``root/<identity>/<image>`` (e.g. ORL's ``s1..s40/*.pgm``)
and returns pairs in 10 contiguous folds (the order ``massface-eval`` splits them in),
each fold holding the same number of same-person pairs followed by as many
different-person pairs, like LFW View 2. Seeded: the same seed gives the same file.

How identities are spread over folds (``split``):

``identity``
    LFW's rule: every identity belongs to exactly one fold, so no person is seen in both
    the training folds and the test fold. Needs at least two identities per fold.
``pair``
    identities are shared between folds, but no pair (and no image pair) repeats. For
    small sets such as ORL's ten held-out people s31-s40, which cannot fill 10 folds with
    two people each.
``auto`` (default)
    ``identity`` when every fold can get two identities and one of them has two images,
    else ``pair``. The choice is returned by :func:`generate_pair_set` and printed.

Pairs per fold: ``pairs_per_fold`` (even), or by default as many as every fold can
supply, at most LFW's 300 same + 300 different. Write them with
``massface.formats.pairs.write_path_pairs`` (paths relative to ``root``, with extensions).

``massface-pairs blufr-split LFW --trial K --out DIR`` writes a BLUFR trial's training
split as a tree instead (:mod:`massface.tools.blufr_split`).

CLI: ``massface-pairs ROOT --out pairs.txt [--seed 0]
[--folds 10] [--per-fold N] [--identities s31,s32,...] [--split auto|identity|pair]
[--format auto|lfw|path]``: LFW's own ``pairs.txt`` format when every image is named
``<name>/<name>_NNNN.<ext>`` (as in LFW), else massface's path-pairs format (ORL's
``s1/1.pgm`` cannot be written as ``name i j``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from massface.cli import MAIN, MainAndSubcommands, command, exit_help
from massface.errors import InputError
from massface.formats.pairs import (
    IMAGE_EXTENSIONS,
    Pair,
    lfw_name,
    natural_key,
    write_lfw_pairs,
    write_path_pairs,
)
from massface.io import check_output_file
from massface.registry import Registry
from massface.tools.blufr_split import blufr_split

LFW_PAIRS_PER_CLASS = 300
SPLITS: Registry[str] = Registry("split")
SPLITS.register("auto", "auto", description="identity when every fold can have two people, "
                "else pair")
SPLITS.register("identity", "identity", description="LFW's rule: each person in one fold")
SPLITS.register("pair", "pair", description="people shared between folds, pairs distinct")
#: --format: how the pairs file is written.
PAIR_FORMATS: Registry[str] = Registry("pairs format")
PAIR_FORMATS.register("auto", "auto", description="lfw when every image is named the LFW way, "
                      "else path")
PAIR_FORMATS.register("lfw", "lfw", description="LFW pairs.txt: needs files named "
                      "<name>/<name>_NNNN.ext")
PAIR_FORMATS.register("path", "path", description="massface path-pairs, any file names")



def list_identities(root: str | os.PathLike[str],
                    identities: Sequence[str] | None = None) -> dict[str, list[str]]:
    """``{identity: [relative image paths]}`` in natural order (only identities with images)."""
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"{base}: dataset folder not found")
    found: dict[str, list[str]] = {}
    for d in sorted((p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")),
                    key=lambda p: natural_key(p.name)):
        images = sorted((f.name for f in d.iterdir()
                         if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS),
                        key=natural_key)
        if images:
            found[d.name] = [f"{d.name}/{name}" for name in images]
    if identities is not None:
        missing = [i for i in identities if i not in found]
        if missing:
            raise InputError(f"{base}: identities not found (or without images): "
                             f"{', '.join(missing[:10])}")
        if len(set(identities)) != len(identities):
            raise InputError(f"{base}: identities listed twice in {list(identities)}")
        found = {i: found[i] for i in identities}
    if len(found) < 2:
        raise InputError(f"{base}: need at least 2 identities with images, found {len(found)}")
    return found


@dataclass
class PairSet:
    """Generated pairs and how they were made (for the CLI's summary)."""

    pairs: list[Pair]
    split: str
    n_folds: int
    pairs_per_fold: int
    identities: int
    images: int


class _Pool:
    """Images of some identities, and distinct same/different pairs drawn from them.

    Same-person pairs are drawn round-robin over the identities (in a seeded random order,
    each identity's pairs shuffled), so one prolific person cannot dominate the way a draw
    uniform over image pairs would let George W. Bush dominate LFW. Different-person pairs
    pick two distinct identities uniformly, then one image of each (distinct pairs only);
    when more than a quarter of all possible different pairs are wanted (small data such
    as ORL), they are drawn uniformly from the full list instead.
    """

    def __init__(self, people: list[list[str]]):
        self.people = people
        sizes = np.array([len(imgs) for imgs in people], dtype=np.int64)
        self.n_same = int((sizes * (sizes - 1) // 2).sum())
        n = int(sizes.sum())
        self.n_diff = n * (n - 1) // 2 - self.n_same

    def draw(self, rng: np.random.Generator, m_same: int, m_diff: int) -> list[Pair]:
        same = self._same(rng, m_same)
        diff = self._diff_enumerated(rng, m_diff) if 4 * m_diff > self.n_diff \
            else self._diff_sampled(rng, m_diff)
        return ([Pair(a, b, True) for a, b in same] + [Pair(a, b, False) for a, b in diff])

    def _same(self, rng: np.random.Generator, m: int) -> list[tuple[str, str]]:
        queues = []
        for who in rng.permutation(len(self.people)):
            imgs = self.people[who]
            if len(imgs) < 2:
                continue
            i, j = np.triu_indices(len(imgs), k=1)
            order = rng.permutation(i.size)
            queues.append([(imgs[i[k]], imgs[j[k]]) for k in order])
        out: list[tuple[str, str]] = []
        depth = 0
        while len(out) < m:
            for q in queues:
                if depth < len(q):
                    out.append(q[depth])
                    if len(out) == m:
                        break
            depth += 1
        return out

    def _diff_enumerated(self, rng: np.random.Generator, m: int) -> list[tuple[str, str]]:
        paths = [p for imgs in self.people for p in imgs]
        owner = np.repeat(np.arange(len(self.people)), [len(x) for x in self.people])
        i, j = np.triu_indices(len(paths), k=1)
        cand = np.flatnonzero(owner[i] != owner[j])
        pick = cand[rng.permutation(cand.size)[:m]]
        return [(paths[i[k]], paths[j[k]]) for k in pick]

    def _diff_sampled(self, rng: np.random.Generator, m: int) -> list[tuple[str, str]]:
        seen: set[tuple[str, str]] = set()
        out: list[tuple[str, str]] = []
        n = len(self.people)
        while len(out) < m:
            a, b = rng.choice(n, 2, replace=False)
            pa = self.people[a][rng.integers(len(self.people[a]))]
            pb = self.people[b][rng.integers(len(self.people[b]))]
            key = (pa, pb) if pa < pb else (pb, pa)
            if key not in seen:
                seen.add(key)
                out.append((pa, pb))
        return out


def _identity_groups(people: dict[str, list[str]], n_folds: int,
                     rng: np.random.Generator) -> list[list[str]]:
    """Identities dealt to folds so that every fold can supply about as many pairs.

    In a seeded random order, people with two or more images are dealt largest first in a
    snake order (0..k-1, k-1..0, ...), so each fold gets as many of them and a similar mix
    of sizes; people with one image (different-pair material only) are dealt round-robin.
    """
    names = list(people)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    multi = sorted((n for n in shuffled if len(people[n]) >= 2), key=lambda n: -len(people[n]))
    single = [n for n in shuffled if len(people[n]) < 2]
    groups: list[list[str]] = [[] for _ in range(n_folds)]
    for i, name in enumerate(multi):
        turn, pos = divmod(i, n_folds)
        groups[pos if turn % 2 == 0 else n_folds - 1 - pos].append(name)
    for i, name in enumerate(single):
        groups[(len(multi) + i) % n_folds].append(name)
    return groups


def _too_few(root: str | os.PathLike[str], people: dict[str, list[str]], n_folds: int) -> str:
    """Why not even one same and one different pair fits in each fold, and the fix."""
    pool = _Pool(list(people.values()))
    multi = sum(len(v) >= 2 for v in people.values())
    images = sum(len(v) for v in people.values())
    head = (f"{root}: {len(people)} identities ({multi} with two or more images, {images} "
            f"images in all)")
    if pool.n_same == 0:
        return (f"{head}: no identity has two images, so there is no same-person pair; add "
                "a second image to some identities")
    if pool.n_diff == 0:
        return f"{head}: one identity gives no different-person pair; add another identity"
    most = min(pool.n_same, pool.n_diff)
    return (f"{head} give {pool.n_same} same-person and {pool.n_diff} different-person pairs "
            f"in all: not one of each for every one of {n_folds} folds; use --folds "
            f"{most} or fewer")


def generate_pair_set(
    root: str | os.PathLike[str],
    n_folds: int = 10,
    pairs_per_fold: int | None = None,
    seed: int = 0,
    identities: Sequence[str] | None = None,
    split: str = "auto",
) -> PairSet:
    """Pairs for ``root`` with the split that was used (see the module docstring)."""
    SPLITS.get(split, "--split")
    if n_folds < 1:
        raise InputError(f"need at least 1 fold, got {n_folds}")
    if pairs_per_fold is not None and (pairs_per_fold < 2 or pairs_per_fold % 2):
        raise InputError(f"pairs per fold must be an even number >= 2, got {pairs_per_fold}")
    people = list_identities(root, identities)
    names = list(people)
    rng = np.random.default_rng(seed)

    groups = _identity_groups(people, n_folds, rng)
    can_split_identities = all(
        len(g) >= 2 and any(len(people[n]) >= 2 for n in g) for g in groups)
    if split == "identity" and not can_split_identities:
        raise InputError(f"{root}: {len(names)} identities cannot give each of {n_folds} folds "
                         "two people, one with two images: use split 'pair' (or fewer folds)")
    chosen = "identity" if split == "identity" or (split == "auto" and can_split_identities) \
        else "pair"

    if chosen == "identity":
        pools = [_Pool([people[n] for n in g]) for g in groups]
        capacity = min(min(p.n_same, p.n_diff) for p in pools)
    else:
        pool = _Pool([people[n] for n in names])
        capacity = min(pool.n_same, pool.n_diff) // n_folds
    half = min(capacity, LFW_PAIRS_PER_CLASS) if pairs_per_fold is None else pairs_per_fold // 2
    if capacity < 1:
        raise InputError(_too_few(root, people, n_folds))
    if half > capacity:
        raise InputError(f"{root}: the data can supply at most {capacity} same and {capacity} "
                         f"different pairs per fold with split '{chosen}'; asked for {half}")

    pairs: list[Pair] = []
    if chosen == "identity":
        for p in pools:
            pairs += p.draw(rng, half, half)
    else:
        drawn = pool.draw(rng, half * n_folds, half * n_folds)
        same, diff = drawn[: half * n_folds], drawn[half * n_folds:]
        for f in range(n_folds):
            pairs += same[f * half:(f + 1) * half] + diff[f * half:(f + 1) * half]
    images = sum(len(people[n]) for n in names)
    return PairSet(pairs, chosen, n_folds, 2 * half, len(names), images)


def generate_pairs(
    root: str | os.PathLike[str],
    n_folds: int = 10,
    pairs_per_fold: int | None = None,
    seed: int = 0,
    identities: Sequence[str] | None = None,
    split: str = "auto",
) -> list[Pair]:
    """LFW-style pairs for a folder-per-identity dataset: ``n_folds`` contiguous folds,
    each ``pairs_per_fold / 2`` same-person pairs then as many different-person pairs,
    paths relative to ``root``; seeded."""
    return generate_pair_set(root, n_folds, pairs_per_fold, seed, identities, split).pairs


app = typer.Typer(cls=MainAndSubcommands, add_completion=False, rich_markup_mode=None)


@app.command(MAIN, hidden=True, epilog=exit_help(InputError))
@command("massface-pairs")
def pairs_command(
    root: Annotated[Path, typer.Argument(help="Dataset root: a folder per identity.")],
    out: Annotated[Path, typer.Option("--out", help="Pairs file to write.")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    folds: Annotated[int, typer.Option(help="Number of folds.")] = 10,
    per_fold: Annotated[int | None, typer.Option(
        "--per-fold", help="Pairs per fold (even; half same).")] = None,
    identities: Annotated[str | None, typer.Option(
        help="Comma-separated identity folders to use, e.g. s31,s32,...,s40.")] = None,
    split: Annotated[str, typer.Option(help=f"{SPLITS.choices()}.")] = "auto",
    fmt: Annotated[str, typer.Option("--format", help=f"{PAIR_FORMATS.choices()}.")] = "auto",
) -> None:
    """Write LFW-style verification pairs for ROOT."""
    from rich.console import Console

    check_output_file(out, "--out")
    ids = [s.strip() for s in identities.split(",") if s.strip()] if identities else None
    PAIR_FORMATS.get(fmt, "--format")
    result = generate_pair_set(root, folds, per_fold, seed, ids, split)
    if fmt == "auto":
        named = all(lfw_name(r) for p in result.pairs for r in (p.a, p.b))
        fmt = "lfw" if named else "path"
    if fmt == "lfw":
        write_lfw_pairs(out, result.pairs, result.n_folds, result.pairs_per_fold // 2)
    else:
        write_path_pairs(out, result.pairs)
    Console().print(
        f"{out}: {len(result.pairs)} pairs = {result.n_folds} folds x "
        f"{result.pairs_per_fold // 2} same + {result.pairs_per_fold // 2} different; "
        f"{result.identities} identities, {result.images} images; split "
        f"'{result.split}', seed {seed}; {fmt} format", highlight=False)


# ``massface-pairs blufr-split ...``: a BLUFR trial's split as a training tree.
app.command("blufr-split", epilog=exit_help(InputError))(blufr_split)


def main() -> None:
    """Console entry point: ``massface-pairs ROOT`` and ``massface-pairs blufr-split ...``."""
    app(prog_name="massface-pairs")


if __name__ == "__main__":
    main()
