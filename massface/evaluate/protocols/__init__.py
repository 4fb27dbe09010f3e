"""The evaluation protocols of ``massface-eval --protocol NAME`` (a registry).

``lfw`` (default)
    LFW 10-fold verification of pairs (SPEC section 1, :mod:`massface.scoring.verification`).
``blufr``
    BLUFR on LFW (SPEC section 5, :mod:`.blufr`): 10 trials of large-scale verification
    and open-set identification from an embedding folder of all LFW images.
``identification``
    1:N search on any labelled embedding set (:mod:`.identification`): CMC and DIR.
``all-pairs``
    every pair of a labelled embedding set (:mod:`.allpairs`): exact TAR at FAR, ROC.
``sphereface``
    the SphereFace/CosFace LFW evaluation of pairs (:mod:`massface.scoring.sphereface`):
    image and mirror features concatenated, training folds' mean subtracted, cosine,
    thresholds -1..1 by 1e-4, the mean of the best thresholds.

``blufr``, ``identification`` and ``all-pairs`` score a *labelled set* of embeddings
(:mod:`.labelled`) rather than pairs. Each protocol returns a result dataclass with
``to_dict()``, ``headline()``, ``tables()`` and ``notes()`` (:mod:`.base`), which
:mod:`massface.evaluate.report` renders.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from massface.errors import InputError
from massface.evaluate.inputs import PairInput
from massface.evaluate.protocols.allpairs import evaluate_all_pairs
from massface.evaluate.protocols.base import ProtocolResult
from massface.evaluate.protocols.blufr import evaluate_blufr
from massface.evaluate.protocols.blufr_config import (
    DEFAULT_CONFIG,
    BlufrConfig,
    format_trials,
    parse_trials,
    read_blufr_config,
    select_trials,
    split_identities,
)
from massface.evaluate.protocols.identification import SplitOptions, evaluate_identification
from massface.evaluate.protocols.labelled import (
    FeatureOptions,
    FeatureSet,
    load_features,
    set_labels,
)
from massface.evaluate.protocols.search import SearchOptions
from massface.evaluate.protocols.sphereface import evaluate_sphereface
from massface.progress import ProgressBar
from massface.registry import Registry
from massface.scoring.result import VerificationResult
from massface.scoring.verification import verify
from massface.shared_data import ENV_VAR


@dataclass(frozen=True)
class ScaleOptions:
    """Everything the labelled-set protocols take from the command line."""

    features: FeatureOptions = field(default_factory=FeatureOptions)
    image_labels: Path | None = None
    blufr_config: Path | None = None
    allow_missing: bool = False
    split: SplitOptions = field(default_factory=SplitOptions)
    search: SearchOptions = field(default_factory=SearchOptions)
    progress: bool = False
    trials: str | None = None            # blufr: "1-3,7" (default: every trial)
    trained_on: Path | None = None       # blufr: refuse trials whose test people it trained on


Evaluate = Callable[[FeatureSet, ScaleOptions], ProtocolResult]


@dataclass(frozen=True)
class PairOptions:
    """What the LFW pair protocol takes from the command line (``verify``'s options)."""

    flip: str = "none"
    normalization: str = "l2"
    distance: str = "euclidean"
    subtract_mean: bool = False
    n_folds: int = 10
    threshold_step: float = 0.01
    far_target: float = 1e-3
    folds_by: str = "position"


ScorePairs = Callable[[PairInput, PairOptions], Any]


@dataclass(frozen=True)
class ProtocolEntry:
    """A protocol: how it scores one labelled feature set (``evaluate``) or one input of
    pairs (``pairs``), which command-line options apply to it beyond the feature options,
    and how its runs are reported: ``"pairs"`` (the LFW report: per-fold table, ROC,
    failed pairs) or ``"protocol"`` (a result's headline, tables and notes)."""

    evaluate: Evaluate | None
    options: frozenset[str] = frozenset()
    pairs: ScorePairs | None = None
    report: str = "protocol"


def default_blufr_config() -> Path:
    """``$MASSFACE_SHARED/data/lfw/blufr/...``, else ``../shared/data/lfw/blufr/...``
    relative to the working folder (the layout issue 12 names: the shared data beside a
    checkout); never a path derived from where the package is installed."""
    root = os.environ.get(ENV_VAR)
    return (Path(root) if root else Path("..") / "shared") / DEFAULT_CONFIG


def _blufr(fs: FeatureSet, opts: ScaleOptions) -> ProtocolResult:
    path = opts.blufr_config or default_blufr_config()
    if not path.is_file():
        raise InputError(f"{path}: no BLUFR config there: pass --blufr-config FILE (or set "
                         f"{ENV_VAR} to the shared data folder)")
    cfg = read_blufr_config(path)
    if opts.trials is not None:
        cfg = select_trials(cfg, parse_trials(opts.trials, cfg.n_trials))
    if opts.trained_on is not None:
        check_trained_on(cfg, opts.trained_on)
    with ProgressBar("BLUFR trials", cfg.n_trials, enabled=opts.progress,
                     rate_unit="trials/s") as bar:
        return evaluate_blufr(fs, cfg, opts.features, opts.allow_missing, bar.update)


def check_trained_on(cfg: BlufrConfig, trained_on: Path) -> None:
    """:class:`InputError` when a held trial's test people include a training identity of
    ``trained_on`` (a massface-train run folder or a training tree), naming the trials
    that are clean so that ``--trials`` can pick them."""
    from massface.leakage import check_disjoint, describe_overlap, run_identities

    training, where = run_identities(trained_on)
    leaking = {n: training & split_identities(cfg, n, "test") for n in cfg.numbers}
    bad = [n for n in cfg.numbers if leaking[n]]
    if not bad:
        return
    clean = [n for n in cfg.numbers if not leaking[n]]
    hint = (f"score only the trials it did not train on: --trials {format_trials(clean)}"
            if clean else "no held trial is free of its training people")
    first = bad[0]
    check_disjoint(training, leaking[first], training_what=f"{where} (--trained-on)",
                   scored_what=f"BLUFR trial {first}'s test split" + (
                       f" (and trials {format_trials(bad[1:])}: "
                       f"{describe_overlap(set().union(*(leaking[n] for n in bad[1:])))})"
                       if len(bad) > 1 else ""),
                   fix=hint)


def _identification(fs: FeatureSet, opts: ScaleOptions) -> ProtocolResult:
    return evaluate_identification(fs, set_labels(fs, opts.image_labels), opts.features,
                                   opts.split, opts.search)


def _all_pairs(fs: FeatureSet, opts: ScaleOptions) -> ProtocolResult:
    return evaluate_all_pairs(fs, set_labels(fs, opts.image_labels), opts.features)


def _lfw(data: PairInput, opts: PairOptions) -> VerificationResult:
    # --folds-by label folds the pairs scored (with --allow-missing: the survivors)
    kept_folds = data.fold_ids if opts.folds_by != "label" else None
    return verify(data.embeddings, data.issame, flip_embeddings=data.flip_embeddings,
                  fold_ids=kept_folds, **asdict(opts))


def _sphereface(data: PairInput, opts: PairOptions) -> ProtocolResult:
    return evaluate_sphereface(data)  # it fixes every option itself


#: Options of the LFW pair protocol only.
PAIR_OPTIONS = frozenset({"labels", "kind", "dtype", "dim", "output_index", "distance",
                          "subtract_mean", "folds", "folds_by", "step", "far", "roc"})

PROTOCOLS: Registry[ProtocolEntry] = Registry("protocol")
PROTOCOLS.register("lfw", ProtocolEntry(None, PAIR_OPTIONS | {"allow_missing"}, pairs=_lfw,
                                        report="pairs"),
                   description="LFW 10-fold pairs, the default")
PROTOCOLS.register("sphereface", ProtocolEntry(
    None, frozenset({"labels", "kind", "dtype", "dim", "output_index", "allow_missing"}),
    pairs=_sphereface),
    description="SphereFace/CosFace LFW: image + mirror features concatenated, training "
                "folds' mean subtracted, cosine, thresholds -1..1 by 1e-4 (needs --flip "
                "embeddings)")
PROTOCOLS.register("blufr", ProtocolEntry(_blufr, frozenset(
    {"blufr_config", "allow_missing", "trials", "trained_on"})),
                   description="BLUFR on LFW: 10 trials, VR@FAR and open-set DIR")
PROTOCOLS.register("identification", ProtocolEntry(_identification, frozenset(
    {"image_labels", "gallery", "probe", "seed", "gallery_identities", "gallery_images",
     "search", "max_rank", "dense_max_gallery", "ivf_nlist", "ivf_nprobe"})),
    description="1:N search on a labelled set: CMC, DIR@FAR")
PROTOCOLS.register("all-pairs", ProtocolEntry(_all_pairs, frozenset({"image_labels"})),
                   description="every pair of a labelled set: TAR@FAR, ROC")


def check_options(name: str, given: dict[str, bool]) -> ProtocolEntry:
    """The protocol ``name``; :class:`InputError` for a given option it does not take."""
    entry = PROTOCOLS.get(name, "--protocol")
    stray = [opt for opt, on in given.items() if on and opt not in entry.options]
    if stray:
        flags = ", ".join("--" + opt.replace("_", "-") for opt in stray)
        raise InputError(f"{flags}: not an option of --protocol {name}")
    return entry


def evaluate_path(path: Path, name: str, opts: ScaleOptions) -> tuple[FeatureSet, ProtocolResult]:
    """Load the embedding folder at ``path`` and score it with protocol ``name``."""
    entry = PROTOCOLS.get(name, "--protocol")
    if entry.evaluate is None:
        raise ValueError(f"protocol {name} scores pairs, not a labelled set")
    fs = load_features(path, opts.features, name)
    try:
        return fs, entry.evaluate(fs, opts)
    except InputError as exc:
        if str(path) in str(exc):
            raise
        raise InputError(f"{path}: {exc}") from exc


__all__ = ["PROTOCOLS", "PairOptions", "ProtocolEntry", "ScaleOptions", "SearchOptions",
           "SplitOptions", "check_options", "default_blufr_config", "evaluate_path"]
