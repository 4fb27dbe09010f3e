"""1:N identification on any labelled embedding set: closed-set CMC and open-set DIR.

The gallery and the probes come from ``--gallery`` / ``--probe`` lists (lines ``<path>``
or ``<path> <label>``, paths as in the folder's ``index.txt``, extension optional; with
only one list the other side is every other image), or from a seeded split of the set:
of the identities with more than ``gallery_images`` images, a fraction
``gallery_identities`` is enrolled with ``gallery_images`` random images each; every other
image is a probe, so the probes of identities not enrolled are the impostors of the
open-set test. Every probe is searched in the gallery (:mod:`.search`; dense up to
:data:`~.search.DENSE_MAX_GALLERY` gallery images, FAISS above), then CMC (ranks 1..
``max_rank``) and DIR at the BLUFR FAR points and ranks (:mod:`.openset`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.evaluate.protocols.base import ReportTable, Timing, floats, pct
from massface.evaluate.protocols.far import OPEN_SET_FARS, RANKS, far_index
from massface.evaluate.protocols.labelled import (
    FeatureOptions,
    FeatureSet,
    Labelled,
)
from massface.evaluate.protocols.openset import OpenSet, cmc, open_set, usable_ranks
from massface.evaluate.protocols.search import ProbeOutcomes, SearchInfo, SearchOptions, search
from massface.formats.pairs import ReferenceIndex
from massface.io import sha256_file

HEADLINE_RANKS = (1, 5, 10)
DIR_FAR = 1e-2


@dataclass(frozen=True)
class SplitOptions:
    """Where the gallery and probes come from: lists, or a seeded split."""

    gallery: Path | None = None
    probe: Path | None = None
    seed: int = 0
    gallery_identities: float = 0.5
    gallery_images: int = 1


@dataclass
class Split:
    """Gallery and probe rows of a feature set, with their labels."""

    gallery: np.ndarray
    probe: np.ndarray
    gallery_labels: np.ndarray
    probe_labels: np.ndarray
    description: dict[str, Any]


def read_list(path: Path, fs: FeatureSet) -> tuple[np.ndarray, list[str] | None]:
    """Rows named by a list file, and their labels when every line gives one."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read image list: {exc}") from exc
    rows_of = ReferenceIndex(fs.keys, fs.path)
    rows, labels, unknown = [], [], []
    for lineno, line in enumerate(lines, start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) > 2:
            raise InputError(f"{path}:{lineno}: expected '<path>' or '<path> <label>'")
        r = rows_of.get(fields[0])
        if r is None:
            unknown.append(fields[0])
            continue
        rows.append(r)
        labels.append(fields[1] if len(fields) == 2 else None)
    if unknown:
        raise InputError(f"{path}: {len(unknown)} listed image(s) are not in {fs.path} (e.g. "
                         f"{unknown[0]})")
    if not rows:
        raise InputError(f"{path}: no images listed")
    if len(set(rows)) != len(rows):
        raise InputError(f"{path}: an image is listed twice")
    given = [x for x in labels if x is not None]
    if given and len(given) != len(labels):
        raise InputError(f"{path}: give a label on every line or on none")
    return np.array(rows, dtype=np.int64), (given or None)


def _list_labels(given: list[str] | None, rows: np.ndarray, labelled: Labelled) -> np.ndarray:
    return (np.array(given, dtype=object) if given is not None
            else np.array([labelled.names[i] for i in labelled.labels[rows]], dtype=object))


def split_from_lists(fs: FeatureSet, labelled: Labelled, opts: SplitOptions) -> Split:
    """Gallery/probe from list files (one list: the other side is every other image)."""
    sides: dict[str, tuple[np.ndarray, list[str] | None]] = {}
    for name, path in (("gallery", opts.gallery), ("probe", opts.probe)):
        if path is not None:
            sides[name] = read_list(path, fs)
    for name, other in (("gallery", "probe"), ("probe", "gallery")):
        if name not in sides:
            rest = np.setdiff1d(np.arange(len(fs.keys)), sides[other][0])
            sides[name] = (rest, None)
    g_rows, g_given = sides["gallery"]
    p_rows, p_given = sides["probe"]
    both = np.intersect1d(g_rows, p_rows)
    if both.size:
        raise InputError(f"{opts.gallery or opts.probe}: {both.size} image(s) are both gallery "
                         f"and probe (e.g. {fs.keys[both[0]]})")
    g_lab, p_lab = _list_labels(g_given, g_rows, labelled), _list_labels(p_given, p_rows,
                                                                           labelled)
    _, codes = np.unique(np.r_[g_lab, p_lab].astype(str), return_inverse=True)
    desc: dict[str, Any] = {"kind": "lists"}
    for name, path in (("gallery", opts.gallery), ("probe", opts.probe)):
        desc[name] = None if path is None else {"path": str(path), "sha256": sha256_file(path)}
    return Split(g_rows, p_rows, codes[: g_rows.size], codes[g_rows.size:], desc)


def seeded_split(labelled: Labelled, opts: SplitOptions) -> Split:
    """Enrol a seeded fraction of the identities with enough images; the rest are probes."""
    if not 0 < opts.gallery_identities <= 1 or opts.gallery_images < 1:
        raise InputError("--gallery-identities must lie in (0, 1] and --gallery-images be >= 1")
    rng = np.random.default_rng(opts.seed)
    labels = labelled.labels
    counts = np.bincount(labels, minlength=labelled.n_identities)
    eligible = np.flatnonzero(counts > opts.gallery_images)
    if eligible.size == 0:
        raise InputError(f"no identity has more than {opts.gallery_images} image(s): nothing "
                         "to enrol and still probe (lower --gallery-images)")
    n_enrol = max(1, round(opts.gallery_identities * eligible.size))
    enrolled = np.sort(rng.choice(eligible, n_enrol, replace=False))
    gallery = []
    for ident in enrolled:
        members = np.flatnonzero(labels == ident)
        gallery.append(rng.choice(members, opts.gallery_images, replace=False))
    g_rows = np.sort(np.concatenate(gallery))
    p_rows = np.setdiff1d(np.arange(labels.size), g_rows)
    desc = {"kind": "seeded split", "seed": opts.seed,
            "gallery_identities": opts.gallery_identities,
            "gallery_images": opts.gallery_images,
            "eligible_identities": int(eligible.size), "enrolled_identities": int(n_enrol)}
    return Split(g_rows, p_rows, labels[g_rows], labels[p_rows], desc)


@dataclass(frozen=True)
class IdentificationProtocol:
    """Every setting that changes the identification numbers."""

    split: dict[str, Any]
    features: FeatureOptions
    labels: str
    max_rank: int
    search: SearchInfo

    def describe(self) -> str:
        how = ("gallery/probe lists" if self.split["kind"] == "lists" else
               f"seeded split (seed {self.split['seed']}, {self.split['gallery_identities']:g} "
               f"of eligible identities x {self.split['gallery_images']} image(s))")
        return (f"1:N identification, {how}, labels from {self.labels}, "
                f"{self.features.describe()}, search {self.search.backend}, CMC to rank "
                f"{self.max_rank}, DIR at FAR 0 and 1e-4..1 (BLUFR rule)")

    def to_dict(self) -> dict[str, Any]:
        return {"name": "identification", "split": self.split, "labels": self.labels,
                **self.features.to_dict(), "max_rank": self.max_rank,
                "search": self.search.to_dict(), "open_set_far_points": list(OPEN_SET_FARS),
                "ranks": list(RANKS), "ties": "stable sort of the gallery",
                "description": self.describe()}


@dataclass
class IdentificationResult:
    """CMC and DIR of one gallery/probe split."""

    protocol: IdentificationProtocol
    gallery: int
    gallery_identities: int
    probes: int
    genuine_probes: int
    impostor_probes: int
    unranked_probes: int
    cmc: np.ndarray
    open_set: OpenSet | None
    timing: Timing = field(default_factory=Timing)
    protocol_name: str = "identification"
    #: For the HTML report (not in ``to_dict()``): each probe's search outcome, and the
    #: image keys of the probes and of the gallery (which ``outcomes.top_index`` indexes).
    outcomes: ProbeOutcomes | None = None
    probe_keys: list[str] = field(default_factory=list)
    gallery_keys: list[str] = field(default_factory=list)

    def rank_rate(self, r: int) -> float | None:
        return float(self.cmc[r - 1]) if r <= self.cmc.size else None

    @property
    def dir_at_1pct(self) -> float | None:
        if self.open_set is None or 1 not in self.open_set.ranks:
            return None
        return float(self.open_set.dir[self.open_set.ranks.index(1),
                                       far_index(OPEN_SET_FARS, DIR_FAR)])

    def describe(self) -> str:
        return self.protocol.describe()

    def headline(self) -> list[tuple[str, str]]:
        return [("gallery (identities)", f"{self.gallery:,} ({self.gallery_identities:,})"),
                ("probes (genuine / impostor)",
                 f"{self.probes:,} ({self.genuine_probes:,} / {self.impostor_probes:,})"),
                *[(f"rank-{r} %", pct(self.rank_rate(r))) for r in HEADLINE_RANKS],
                (f"DIR@FAR={DIR_FAR:g} rank 1 %", pct(self.dir_at_1pct)),
                ("search", self.protocol.search.backend)]

    def tables(self) -> list[ReportTable]:
        shown = [r for r in (1, 2, 3, 4, 5, 10, 20, 50, 100) if r <= self.cmc.size]
        out = [ReportTable("closed-set CMC", ["rank", "identification rate %"],
                           [[str(r), pct(self.cmc[r - 1])] for r in shown])]
        o = self.open_set
        if o is not None:
            cols = [r for r in (1, 5, 10) if r in o.ranks]
            rows = [[f"{f:g}", f"{o.thresholds.far[i]:.3g}", f"{o.thresholds.threshold[i]:.4f}",
                     *[pct(o.dir[o.ranks.index(r), i]) for r in cols]]
                    for i, f in enumerate(o.thresholds.far_points) if _decade(f)]
            out.append(ReportTable("open-set DIR by FAR",
                                   ["FAR", "actual FAR", "threshold",
                                    *[f"DIR r{r} %" for r in cols]], rows))
        return out

    def notes(self) -> list[str]:
        out = [f"search: {self.protocol.search.backend} ({self.protocol.search.reason})"]
        if self.unranked_probes:
            out.append(f"{self.unranked_probes} genuine probe(s) had their mate beyond the "
                       f"top {self.protocol.max_rank} returned: they count as not identified")
        if self.open_set is None:
            out.append("no impostor probe (every probe's identity is enrolled): open-set DIR "
                       "is not defined")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol.to_dict(), "gallery": self.gallery,
                "gallery_identities": self.gallery_identities, "probes": self.probes,
                "genuine_probes": self.genuine_probes, "impostor_probes": self.impostor_probes,
                "unranked_probes": self.unranked_probes,
                **{f"rank{r}": self.rank_rate(r) for r in HEADLINE_RANKS},
                "dir_far_1e-2_rank1": self.dir_at_1pct,
                "cmc": {"ranks": list(range(1, self.cmc.size + 1)), "rate": floats(self.cmc)},
                "open_set": None if self.open_set is None else self.open_set.to_dict(),
                "seconds": self.timing.to_dict()}


def _decade(far: float) -> bool:
    return far in (0.0, 1.0) or abs(np.log10(far) - round(np.log10(far))) < 1e-9


def evaluate_identification(fs: FeatureSet, labelled: Labelled, features: FeatureOptions,
                            split_opts: SplitOptions, search_opts: SearchOptions
                            ) -> IdentificationResult:
    """Search the probes in the gallery and compute CMC and DIR."""
    start = time.perf_counter()
    split = (split_from_lists(fs, labelled, split_opts)
             if split_opts.gallery is not None or split_opts.probe is not None
             else seeded_split(labelled, split_opts))
    if split.gallery.size == 0 or split.probe.size == 0:
        raise InputError(f"{fs.path}: the gallery or the probe set is empty")
    outcomes, info = search(fs.features[split.gallery], split.gallery_labels,
                            fs.features[split.probe], split.probe_labels, search_opts)
    n_gal = int(split.gallery.size)
    max_rank = min(search_opts.k, n_gal)
    ranks = usable_ranks(RANKS, n_gal, None if info.exact_ranks else max_rank)
    searched = time.perf_counter()
    protocol = IdentificationProtocol(split.description, features, labelled.source, max_rank,
                                      info)
    result = IdentificationResult(
        protocol, n_gal, int(np.unique(split.gallery_labels).size), int(split.probe.size),
        int(outcomes.genuine.sum()), int((~outcomes.genuine).sum()),
        int((outcomes.genuine & ~outcomes.known).sum()), cmc(outcomes, max_rank),
        open_set(outcomes, OPEN_SET_FARS, ranks))
    result.timing = Timing({"search": searched - start, "total": time.perf_counter() - start})
    result.outcomes = outcomes
    result.probe_keys = [fs.keys[i] for i in split.probe]
    result.gallery_keys = [fs.keys[i] for i in split.gallery]
    return result
