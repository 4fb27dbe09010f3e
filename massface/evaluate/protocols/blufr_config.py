"""The BLUFR config: the trials of the benchmark (a MATLAB v5 ``.mat``), and matching its
images to an embedding folder.

Variables (SPEC section 5): ``imageList`` (file names, no folder), ``labels``,
``trainIndex``, ``testIndex``, ``galIndex``, ``probIndex`` (one cell per trial, 1-based
indices into ``imageList``), ``devTrainIndex``, ``devTestIndex``. Read with
``scipy.io.loadmat``; the structure is checked, and a bad file is an :class:`InputError`
naming it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.evaluate.protocols.base import ints
from massface.evaluate.protocols.labelled import FeatureSet
from massface.formats.pairs import strip_extension
from massface.io import sha256_file

DEFAULT_CONFIG = Path("data") / "lfw" / "blufr" / "blufr_lfw_config.mat"
SETS = ("trainIndex", "testIndex", "galIndex", "probIndex")


@dataclass
class BlufrConfig:
    """The trials of a BLUFR config (indices 0-based into ``image_list``)."""

    path: Path
    sha256: str
    image_list: list[str]
    labels: np.ndarray
    train: list[np.ndarray]
    test: list[np.ndarray]
    gallery: list[np.ndarray]
    probe: list[np.ndarray]
    dev_train: np.ndarray | None = None
    dev_test: np.ndarray | None = None
    #: 1-based numbers of the trials held (all of the file's unless :func:`select_trials`)
    numbers: list[int] = field(default_factory=list)
    #: whether a subset of the file's trials was selected (then only their test images
    #: must have embeddings)
    selected: bool = False

    def __post_init__(self) -> None:
        if not self.numbers:
            self.numbers = list(range(1, len(self.test) + 1))

    @property
    def n_trials(self) -> int:
        return len(self.test)

    def needed_images(self) -> np.ndarray:
        """Indices of the images the held trials score: every image of the file, or the
        test images (gallery and probe partition them) of the selected trials."""
        if not self.selected:
            return np.arange(len(self.image_list))
        return np.unique(np.concatenate(self.test))


def _strings(cell: np.ndarray, path: Path) -> list[str]:
    out = []
    for item in np.asarray(cell, dtype=object).ravel():
        value = np.asarray(item).ravel()
        if value.size != 1 or value.dtype.kind not in "US":
            raise InputError(f"{path}: imageList must be a cell array of file names")
        out.append(str(value[0]))
    return out


def _indices(value: Any, n: int, path: Path, what: str) -> np.ndarray:
    idx = np.asarray(value).ravel()
    if idx.dtype.kind not in "iuf" or (idx.dtype.kind == "f" and (idx != np.round(idx)).any()):
        raise InputError(f"{path}: {what} holds non-integer indices")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 1 or idx.max() > n):
        raise InputError(f"{path}: {what} has indices outside 1..{n} (imageList is 1-based)")
    if np.unique(idx).size != idx.size:
        raise InputError(f"{path}: {what} lists an image twice")
    return idx - 1


def _trials(m: dict[str, Any], name: str, n: int, path: Path) -> list[np.ndarray]:
    cell = np.asarray(m[name], dtype=object).ravel()
    return [_indices(c, n, path, f"{name}{{{t + 1}}}") for t, c in enumerate(cell)]


# Only a crash counts in the child: every Python error is reported by the reading below.
_PROBE = ("import sys\ntry:\n    import scipy.io\n    scipy.io.loadmat(sys.argv[1])\n"
          "except Exception:\n    pass\n")


def read_blufr_config(path: Path) -> BlufrConfig:
    """Read a BLUFR ``.mat`` config (MATLAB v5, scipy.io.loadmat), checking its structure."""
    import scipy.io

    from massface.native import probe_in_child

    if Path(path).is_file():  # scipy's MAT reader segfaults on some damaged files
        probe_in_child(_PROBE, path, "MATLAB .mat file (BLUFR config)")
    try:
        m = scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise InputError(f"{path}: no such BLUFR config (--blufr-config)") from None
    except NotImplementedError as exc:
        raise InputError(f"{path}: a MATLAB v7.3 (HDF5) file; save it with -v7: {exc}") from exc
    except (OSError, ValueError, TypeError, scipy.io.matlab.MatReadError) as exc:
        raise InputError(f"{path}: not a readable MATLAB .mat file: {exc}") from exc
    missing = [k for k in ("imageList", "labels", *SETS) if k not in m]
    if missing:
        raise InputError(f"{path}: not a BLUFR config: no {', '.join(missing)}")
    names = _strings(m["imageList"], path)
    labels = np.asarray(m["labels"]).ravel()
    if labels.size != len(names) or labels.dtype.kind not in "iuf":
        raise InputError(f"{path}: labels has {labels.size} entries for {len(names)} images")
    if labels.dtype.kind == "f":  # MATLAB saves doubles: cast only what is an integer
        bad = np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))
        if bad.size:
            raise InputError(f"{path}: labels must be integer class ids; entry {bad[0] + 1} "
                             f"({names[bad[0]]}) is {labels[bad[0]]!r} ({bad.size} such "
                             "entries)")
    n = len(names)
    sets = [_trials(m, name, n, path) for name in SETS]
    counts = {len(s) for s in sets}
    if len(counts) != 1 or not sets[1]:
        raise InputError(f"{path}: {', '.join(SETS)} give different numbers of trials "
                         f"({', '.join(str(len(s)) for s in sets)})")
    for name in SETS[1:]:  # the training sets are not used here
        empty = [t + 1 for t, idx in enumerate(sets[SETS.index(name)]) if idx.size == 0]
        if empty:
            raise InputError(f"{path}: {name}{{{empty[0]}}} is empty (trial {empty[0]} has no "
                             "images there): every trial needs test, gallery and probe images")
    dev = [_indices(m[k], n, path, k) if k in m else None
           for k in ("devTrainIndex", "devTestIndex")]
    return BlufrConfig(path, sha256_file(path), names, labels.astype(np.int64), *sets, *dev)


def match_images(fs: FeatureSet, cfg: BlufrConfig, allow_missing: bool
                 ) -> tuple[np.ndarray, list[str], int]:
    """Row of each config image (-1 when missing), the missing names, unused rows."""
    by_name: dict[str, int] = {}
    twice: set[str] = set()
    for row, key in enumerate(fs.keys):
        name = strip_extension(key.rsplit("/", 1)[-1])
        if name in by_name:
            twice.add(name)
        by_name[name] = row
    rows = np.array([by_name.get(strip_extension(n), -1) for n in cfg.image_list], np.int64)
    needed = cfg.needed_images()
    ambiguous = sorted(cfg.image_list[i] for i in needed
                       if strip_extension(cfg.image_list[i]) in twice)
    if ambiguous:
        raise InputError(f"{fs.path}: {len(ambiguous)} config image name(s) match several "
                         f"embedded images (e.g. {ambiguous[0]}): BLUFR matches by file name")
    missing = [cfg.image_list[i] for i in needed[rows[needed] < 0]]
    if missing and not allow_missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more"
                                           if len(missing) > 10 else "")
        which = (f"{len(needed)} test images of trial(s) {format_trials(cfg.numbers)}"
                 if cfg.selected else f"{len(cfg.image_list)} images")
        raise InputError(f"{fs.path}: {len(missing)} of the {which} of "
                         f"{cfg.path} have no embedding: {shown} (embed the whole dataset "
                         "with massface-infer --images, or --allow-missing to leave them out "
                         "of every trial)")
    unused = len(fs.keys) - int(np.unique(rows[rows >= 0]).size)
    return rows, missing, unused


def trial_summary(cfg: BlufrConfig) -> dict[str, Any]:
    """Per-trial set sizes of a config (for checking it against its documentation)."""
    return {"images": len(cfg.image_list), "classes": int(np.unique(cfg.labels).size),
            "trials": cfg.n_trials, "test": ints([t.size for t in cfg.test]),
            "train": ints([t.size for t in cfg.train]),
            "gallery": ints([g.size for g in cfg.gallery]),
            "probe": ints([p.size for p in cfg.probe])}


# ------------------------------------------------------------------ trials and splits


def parse_trials(text: str, n_trials: int, option: str = "--trials") -> list[int]:
    """``"1-3,7"`` -> ``[1, 2, 3, 7]`` (1-based trial numbers, each within 1..n_trials)."""
    out: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise InputError(f"{option} {text!r}: expected trial numbers such as 1, 1-3 "
                             "or 1,4,7")
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 1 <= first <= last <= n_trials:
            raise InputError(f"{option} {text!r}: trials run from 1 to {n_trials}")
        out += [t for t in range(first, last + 1) if t not in out]
    return out


def format_trials(numbers: Sequence[int]) -> str:
    return ",".join(str(t) for t in numbers)


def select_trials(cfg: BlufrConfig, numbers: Sequence[int]) -> BlufrConfig:
    """The config restricted to the trials ``numbers`` (1-based, as BLUFR numbers them)."""
    idx = [t - 1 for t in numbers]
    return replace(cfg, train=[cfg.train[t] for t in idx], test=[cfg.test[t] for t in idx],
                   gallery=[cfg.gallery[t] for t in idx], probe=[cfg.probe[t] for t in idx],
                   numbers=list(numbers), selected=True)


_NUMBERED = re.compile(r"^(?P<name>.+)_\d+$")


def identity_of(image_name: str) -> str:
    """The LFW identity (folder) of a config image name: ``Aaron_Eckhart_0001.jpg`` ->
    ``Aaron_Eckhart``. :class:`InputError` for a name not ending in ``_<number>``."""
    m = _NUMBERED.match(strip_extension(image_name))
    if not m:
        raise InputError(f"{image_name!r}: not an LFW-style image name <name>_<number>.<ext>,"
                         " so its identity folder is unknown")
    return m.group("name")


def split_images(cfg: BlufrConfig, number: int, split: str) -> list[str]:
    """``<identity>/<image name>`` of trial ``number``'s ``train`` or ``test`` split, in the
    config's order."""
    sets = {"train": cfg.train, "test": cfg.test}
    if split not in sets:
        raise InputError(f"split {split!r}: choose train or test")
    t = cfg.numbers.index(number)
    return [f"{identity_of(cfg.image_list[i])}/{cfg.image_list[i]}" for i in sets[split][t]]


def split_identities(cfg: BlufrConfig, number: int, split: str) -> set[str]:
    """The identity folders of trial ``number``'s ``train`` or ``test`` split."""
    return {ref.split("/", 1)[0] for ref in split_images(cfg, number, split)}
