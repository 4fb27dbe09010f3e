"""A BLUFR trial's training (or test) split as a folder-per-identity tree.

BLUFR (SPEC section 5) gives each of its 10 trials a training split of 1,500 people that
is disjoint from the trial's 4,249 test people; a method may learn only from it. This
writes that split as ``OUT/<identity>/<image>`` symbolic links to the aligned LFW images,
which ``massface-train`` reads like any dataset (``data.train_dir: OUT``), plus
``OUT/.blufr-split.json`` (config, its sha256, trial, split, counts) so the tree says
where it came from. The model is then scored on the same trial's test split only:
``massface-eval EMB --protocol blufr --trials K --trained-on RUN``.

    massface-pairs blufr-split ../shared/data/lfw/lfw-112x112 --trial 1 --out splits/t1-train
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from massface.cli import command
from massface.errors import InputError
from massface.formats.pairs import require_reference
from massface.io import atomic_path, check_output_dir, read_json, write_json

MANIFEST = ".blufr-split.json"
SPLITS = ("train", "test")


@dataclass
class SplitTree:
    """What :func:`write_split_tree` wrote."""

    path: Path
    trial: int
    split: str
    identities: int
    images: int
    identities_with_two: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "trial": self.trial, "split": self.split,
                "identities": self.identities, "images": self.images,
                "identities_with_2_or_more_images": self.identities_with_two}


def write_split_tree(lfw_root: str | os.PathLike[str], config: str | os.PathLike[str],
                     trial: int, split: str, out: str | os.PathLike[str]) -> SplitTree:
    """Write trial ``trial``'s (1-based) ``split`` of the BLUFR ``config`` as links into
    ``lfw_root``, published atomically at ``out``. Every image must exist under
    ``lfw_root`` (else :class:`InputError` naming it)."""
    from massface.evaluate.protocols.blufr_config import read_blufr_config, split_images

    if split not in SPLITS:
        raise InputError(f"--split {split!r}: choose train or test")
    cfg = read_blufr_config(Path(config))
    if not 1 <= trial <= cfg.n_trials:
        raise InputError(f"--trial {trial}: {cfg.path} has trials 1 to {cfg.n_trials}")
    root = Path(lfw_root).resolve()
    if not root.is_dir():
        raise InputError(f"{lfw_root}: aligned LFW folder not found")
    out = Path(out)
    _check_replaceable(out)
    refs = split_images(cfg, trial, split)
    sources = [require_reference(root, ref, f"{cfg.path} (trial {trial} {split})")
               for ref in refs]
    counts: dict[str, int] = {}
    for ref in refs:
        counts[ref.split("/", 1)[0]] = counts.get(ref.split("/", 1)[0], 0) + 1
    tree = SplitTree(out, trial, split, len(counts), len(refs),
                     sum(c >= 2 for c in counts.values()))
    with atomic_path(out) as tmp:
        for ref, src in zip(refs, sources, strict=True):
            link = tmp / ref
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(src, link)
        record = {k: v for k, v in tree.to_dict().items() if k != "path"}
        write_json(tmp / MANIFEST, {"blufr_config": str(cfg.path), "sha256": cfg.sha256,
                                    "lfw_root": str(root), **record})
    return tree


def _check_replaceable(out: Path) -> None:
    """A folder may be replaced only when it is empty or an earlier split tree."""
    check_output_dir(out, "--out")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise InputError(f"--out {out}: a non-empty folder that is not a BLUFR split tree "
                         f"(no {MANIFEST}); choose another folder")


def read_split_manifest(tree: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of a split tree, or None when ``tree`` is not one."""
    path = Path(tree) / MANIFEST
    return read_json(path, "BLUFR split manifest") if path.is_file() else None


@command("massface-pairs blufr-split")
def blufr_split(
    lfw_root: Annotated[Path, typer.Argument(help="Aligned LFW: <name>/<name>_NNNN.jpg.")],
    trial: Annotated[int, typer.Option(help="BLUFR trial, 1-10.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write (identity folders of "
                                      "links; replaced if it is an earlier split tree).")],
    split: Annotated[str, typer.Option(help="train (what a method may learn from) or test "
                                       "(what it is scored on).")] = "train",
    blufr_config: Annotated[Path | None, typer.Option(
        help="The BLUFR config .mat (default: data/lfw/blufr/blufr_lfw_config.mat under "
             "$MASSFACE_SHARED, else under ../shared).", show_default=False)] = None,
) -> None:
    """Write BLUFR trial TRIAL's training (or test) split of LFW_ROOT as a
    folder-per-identity tree of links for massface-train."""
    from rich.console import Console

    from massface.evaluate.protocols import default_blufr_config

    tree = write_split_tree(lfw_root, blufr_config or default_blufr_config(), trial, split,
                            out)
    Console().print(f"{out}: BLUFR trial {trial} {split} split, {tree.identities} identities "
                    f"({tree.identities_with_two} with 2 or more images), {tree.images} "
                    "images (links)", highlight=False)
