"""Identity leakage: training data and the data a model is scored on must not share people.

A verification or identification figure measured on people the model was trained on says
nothing about unseen faces, and nothing in the numbers shows it. So ``massface-train``
refuses validation pairs that name a training identity, and ``massface-eval --protocol
blufr --trained-on RUN`` refuses BLUFR trials whose test people the run trained on (a
model trained on trial 1's training split shares people with the test splits of the
other nine trials). Identities are compared by name: the identity folder of an image
(``Aaron_Eckhart/Aaron_Eckhart_0001.jpg`` -> ``Aaron_Eckhart``).

A run's training identities are every identity folder its config names
(``data.identities``, else every folder of ``data.train_dir``), including those that
``data.min_images`` later leaves out: a superset, so the check errs on the side of
refusing. No TensorFlow here (massface-eval uses it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

from massface.errors import InputError

#: How many overlapping names a message shows.
SHOWN = 8


def identity_of_reference(ref: str) -> str | None:
    """The identity folder of an image reference (``name/file``), None for a bare file."""
    parts = Path(ref).parts
    return parts[0] if len(parts) > 1 else None


def reference_identities(refs: Iterable[str]) -> set[str]:
    """The identity folders of image references (bare file names have none)."""
    return {i for i in (identity_of_reference(r) for r in refs) if i is not None}


def folder_identities(root: str | os.PathLike[str]) -> set[str]:
    """The identity folders of a folder-per-identity dataset (hidden folders left out)."""
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"{base}: training dataset folder does not exist")
    return {p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")}


def run_identities(path: str | os.PathLike[str]) -> tuple[set[str], str]:
    """(training identities, where they came from) of a massface-train run folder (its
    ``config.yaml``: ``data.identities`` or the folders of ``data.train_dir``) or of a
    folder-per-identity training tree."""
    p = Path(path)
    config = p / "config.yaml"
    if not config.is_file():
        if not p.is_dir():
            raise InputError(f"{p}: neither a massface-train run folder nor a training "
                             "dataset folder")
        return folder_identities(p), str(p)
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{config}: cannot read the run's config ({exc})") from exc
    section = data.get("data") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise InputError(f"{config}: no data section (not a massface-train config)")
    if section.get("identities"):
        return {str(i) for i in section["identities"]}, f"{config} (data.identities)"
    if not section.get("train_dir"):
        raise InputError(f"{config}: data.train_dir is not set, so the run's training "
                         "identities are unknown")
    root = Path(section["train_dir"])
    return folder_identities(root), str(root)


def describe_overlap(shared: set[str]) -> str:
    names = sorted(shared)
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    noun = "identity" if len(names) == 1 else "identities"
    return f"{len(names)} {noun} ({', '.join(names[:SHOWN])}{more})"


def check_disjoint(training: set[str], scored: set[str], *, training_what: str,
                   scored_what: str, fix: str, allow: bool = False,
                   warn: Callable[[str], None] | None = None) -> set[str]:
    """The identities both sets hold; :class:`InputError` naming them when there are any,
    unless ``allow`` (then ``warn`` gets the same message and the overlap is returned)."""
    shared = training & scored
    if not shared:
        return shared
    msg = (f"{scored_what} shares {describe_overlap(shared)} with the training data "
           f"{training_what}: scores on people the model trained on are not a measure of "
           f"unseen faces")
    if not allow:
        raise InputError(f"{msg} ({fix})")
    if warn is not None:
        warn(msg)
    return shared
