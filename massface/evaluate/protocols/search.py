"""Gallery search: for every probe, its best gallery score and where its mate ranks.

Backends (a registry, ``--search``):

``dense``
    float32 matrix products over blocks of probes (the ``[probes, gallery]`` score
    matrix is never whole). Exact: the rank of every genuine probe, however deep.
``faiss-flat``
    FAISS ``IndexFlatIP`` (exact inner-product search) returning the top ``k`` per probe;
    ranks beyond ``k`` are not known (they count for no rank <= k).
``faiss-ivf``
    FAISS ``IndexIVFFlat`` (inverted lists, ``nlist`` k-means cells trained on the
    gallery, ``nprobe`` cells searched per probe): approximate, much faster on large
    galleries.
``auto`` (default) picks ``dense`` up to ``dense_max_gallery`` gallery images
(:data:`DENSE_MAX_GALLERY`), ``faiss-flat`` above it (``dense`` when faiss is not
installed); the result names the backend used and why.

Tie rule (SPEC section 5): a probe's rank is its mate's position in the gallery sorted by
descending score, ties in gallery order (a stable sort); its mate is the best-scoring
gallery entry of its own label, the first in gallery order among equals. FAISS's own
order of equal scores is replaced by that rule within the ``k`` it returns.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.registry import Registry

#: ``--search auto`` uses dense search up to this many gallery images, FAISS above.
DENSE_MAX_GALLERY = 200_000
#: A probe whose mate lies beyond the searched ``k`` (FAISS backends).
UNRANKED = np.iinfo(np.int64).max
BLOCK_SCORES = 1 << 24


@dataclass(frozen=True)
class SearchOptions:
    """Which search, and its parameters (recorded in the result)."""

    backend: str = "auto"
    k: int = 100
    dense_max_gallery: int = DENSE_MAX_GALLERY
    nlist: int | None = None
    nprobe: int = 16
    seed: int = 0


@dataclass
class ProbeOutcomes:
    """Per probe: best score and entry; for genuine probes, mate score and rank.

    ``rank`` is 0 for impostor probes (label not in the gallery) and :data:`UNRANKED`
    for genuine probes whose mate was not among the ``k`` returned (``mate_score`` NaN).
    """

    top_score: np.ndarray
    top_index: np.ndarray
    genuine: np.ndarray
    mate_score: np.ndarray
    rank: np.ndarray

    @property
    def known(self) -> np.ndarray:
        """Genuine probes whose rank (and mate score) is known."""
        return self.genuine & (self.rank != UNRANKED)


@dataclass
class SearchInfo:
    """What searched: the backend, why it was chosen, its parameters."""

    backend: str
    reason: str
    exact_ranks: bool
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "reason": self.reason,
                "exact_ranks": self.exact_ranks, **self.params}


Search = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, SearchOptions],
                  tuple[ProbeOutcomes, dict[str, Any]]]
SEARCHES: Registry[Search] = Registry("search")


@SEARCHES.register("dense", description="exact, numpy float32 blocks, every rank")
def dense_search(gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray,
                 probe_labels: np.ndarray, opts: SearchOptions
                 ) -> tuple[ProbeOutcomes, dict[str, Any]]:
    n_gal, n_probe = gallery.shape[0], probes.shape[0]
    out = _empty(n_probe)
    mates = MateIndex(gallery_labels)
    step = max(1, BLOCK_SCORES // max(n_gal, 1))
    for s in range(0, n_probe, step):
        e = min(s + step, n_probe)
        scores = probes[s:e] @ gallery.T                     # [block, gallery]
        best = scores.argmax(axis=1)                           # first of equals
        out.top_index[s:e] = best
        out.top_score[s:e] = scores[np.arange(e - s), best]
        has, mate, mate_score = mates.best(scores, probe_labels[s:e])
        out.genuine[s:e] = has
        out.rank[s:e] = 0
        out.rank[s:e][has] = _ranks(scores[has], mate[has], mate_score[has])
        out.mate_score[s:e] = np.where(has, mate_score, np.nan)
    return out, {"block_probes": step}


class MateIndex:
    """The gallery entries of each label, to find a probe's mate without a full mask."""

    def __init__(self, gallery_labels: np.ndarray) -> None:
        self.order = np.argsort(gallery_labels, kind="stable")  # by label, then gallery order
        self.labels, self.start, self.count = np.unique(
            gallery_labels[self.order], return_index=True, return_counts=True)

    def best(self, scores: np.ndarray, probe_labels: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per probe row: has a mate; the mate (best own-label entry, first in gallery
        order among equals); its score."""
        pos = np.searchsorted(self.labels, probe_labels)
        pos = np.minimum(pos, self.labels.size - 1)
        has = self.labels[pos] == probe_labels
        rows = np.flatnonzero(has)
        counts = self.count[pos[rows]]
        # every (row, own gallery entry) pair, grouped by row, entries in gallery order
        row_of = np.repeat(rows, counts)
        first = np.repeat(self.start[pos[rows]] - np.cumsum(counts) + counts, counts)
        entry = self.order[np.arange(row_of.size) + first]
        value = scores[row_of, entry]
        starts = np.cumsum(counts) - counts
        best = np.maximum.reduceat(value, starts) if rows.size else value
        at_best = value == np.repeat(best, counts)
        mate_of = np.minimum.reduceat(np.where(at_best, entry, np.iinfo(np.int64).max),
                                      starts) if rows.size else entry
        mate = np.zeros(probe_labels.size, np.int64)
        mate_score = np.full(probe_labels.size, -np.inf, np.float32)
        mate[rows], mate_score[rows] = mate_of, best
        return has, mate, mate_score


def _ranks(scores: np.ndarray, mate: np.ndarray, mate_score: np.ndarray) -> np.ndarray:
    """1 + entries scoring above the mate + equal entries before it in gallery order."""
    above = np.count_nonzero(scores > mate_score[:, None], axis=1)
    equal = np.count_nonzero(scores >= mate_score[:, None], axis=1) - above
    rank = 1 + above
    tied = np.flatnonzero(equal > 1)  # rows where another entry ties with the mate
    for i in tied:
        rank[i] += np.count_nonzero(scores[i, : mate[i]] == mate_score[i])
    return rank


def _empty(n: int) -> ProbeOutcomes:
    return ProbeOutcomes(np.empty(n, np.float32), np.empty(n, np.int64), np.empty(n, bool),
                         np.empty(n, np.float32), np.empty(n, np.int64))


def import_faiss(why: str) -> Any:
    """The ``faiss`` module, or an :class:`InputError` saying how to install it."""
    try:
        return importlib.import_module("faiss")
    except ImportError as exc:
        raise InputError(f"{why} needs FAISS, which is not installed: pip install "
                         "'massface[faiss]' (or pip install faiss-cpu)") from exc


def _faiss_outcomes(scores: np.ndarray, index: np.ndarray, gallery_labels: np.ndarray,
                    probe_labels: np.ndarray) -> ProbeOutcomes:
    """Outcomes from top-k lists (``index`` -1 where FAISS found fewer than k)."""
    scores = np.where(index < 0, -np.inf, scores)
    index = np.where(index < 0, np.iinfo(np.int64).max, index).astype(np.int64)
    order = np.lexsort((index, -scores))  # per row: descending score, then gallery order
    scores = np.take_along_axis(scores, order, axis=1)
    index = np.take_along_axis(index, order, axis=1)
    valid = np.isfinite(scores)
    labels = np.where(valid, gallery_labels[np.where(valid, index, 0)], -1)
    own = valid & (labels == probe_labels[:, None])
    found = own.any(axis=1)
    first = own.argmax(axis=1)
    rows = np.arange(scores.shape[0])
    genuine = np.isin(probe_labels, gallery_labels)
    rank = np.where(found, first + 1, np.where(genuine, UNRANKED, 0))
    mate_score = np.where(found, scores[rows, first], np.nan).astype(np.float32)
    return ProbeOutcomes(scores[:, 0].astype(np.float32), index[:, 0], genuine, mate_score,
                         rank)


def faiss_search(index: Any, probes: np.ndarray, gallery_labels: np.ndarray,
                 probe_labels: np.ndarray, k: int) -> ProbeOutcomes:
    """Search a built FAISS index (inner product) for the top ``k`` of every probe."""
    k = min(k, index.ntotal)
    parts = []
    step = max(1, BLOCK_SCORES // 64 // max(k, 1))
    for s in range(0, probes.shape[0], step):
        d, i = index.search(np.ascontiguousarray(probes[s : s + step]), k)
        parts.append(_faiss_outcomes(d, i, gallery_labels, probe_labels[s : s + step]))
    return ProbeOutcomes(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                           ("top_score", "top_index", "genuine", "mate_score", "rank")))


@SEARCHES.register("faiss-flat", description="FAISS IndexFlatIP, exact, top k")
def faiss_flat_search(gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray,
                      probe_labels: np.ndarray, opts: SearchOptions
                      ) -> tuple[ProbeOutcomes, dict[str, Any]]:
    faiss = import_faiss("--search faiss-flat")
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery, dtype=np.float32))
    out = faiss_search(index, probes, gallery_labels, probe_labels, opts.k)
    return out, {"k": min(opts.k, gallery.shape[0]), "faiss": faiss.__version__}


def default_nlist(n_gallery: int) -> int:
    """IVF cells: about 4 sqrt(gallery), at most gallery / 39 (FAISS's training minimum)."""
    return int(max(1, min(4 * round(np.sqrt(n_gallery)), n_gallery // 39)))


def check_ivf(nlist: int, nprobe: int, n_gallery: int) -> None:
    """Refuse IVF parameters FAISS cannot use (it would abort, or search nothing)."""
    if not 1 <= nlist <= n_gallery:
        raise InputError(f"--ivf-nlist {nlist}: must lie in 1..{n_gallery} (the gallery "
                         "size; k-means needs at least one gallery row per cell, 39 for a "
                         f"good one: about {default_nlist(n_gallery)} here)")
    if nprobe < 1:
        raise InputError(f"--ivf-nprobe {nprobe}: must be at least 1 (cells searched per "
                         f"probe, at most --ivf-nlist {nlist}: more searches them all)")


def build_ivf(gallery: np.ndarray, nlist: int, seed: int) -> Any:
    """An ``IndexIVFFlat`` (inner product) trained on at most 64 x nlist gallery rows."""
    faiss = import_faiss("--search faiss-ivf")
    d = gallery.shape[1]
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    n_train = min(gallery.shape[0], 64 * nlist)
    rows = np.sort(np.random.default_rng(seed).choice(gallery.shape[0], n_train, replace=False))
    index.cp.seed = seed
    index.train(np.ascontiguousarray(gallery[rows], dtype=np.float32))
    index.add(np.ascontiguousarray(gallery, dtype=np.float32))
    return index


@SEARCHES.register("faiss-ivf", description="FAISS IndexIVFFlat, approximate, top k")
def faiss_ivf_search(gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray,
                     probe_labels: np.ndarray, opts: SearchOptions
                     ) -> tuple[ProbeOutcomes, dict[str, Any]]:
    nlist = opts.nlist if opts.nlist is not None else default_nlist(gallery.shape[0])
    check_ivf(nlist, opts.nprobe, gallery.shape[0])
    index = build_ivf(gallery, nlist, opts.seed)
    nprobe = min(opts.nprobe, nlist)  # more cells than there are: all of them (recorded)
    index.nprobe = nprobe
    out = faiss_search(index, probes, gallery_labels, probe_labels, opts.k)
    info = {"k": min(opts.k, gallery.shape[0]), "nlist": nlist, "nprobe": nprobe,
            "faiss": import_faiss("--search faiss-ivf").__version__}
    if nprobe != opts.nprobe:
        info["nprobe_asked"] = opts.nprobe
    return out, info


def choose_backend(n_gallery: int, opts: SearchOptions) -> tuple[str, str]:
    """(backend, reason) for ``opts.backend`` (``auto`` decided by the gallery size)."""
    if opts.backend != "auto":
        SEARCHES.get(opts.backend, "--search")
        return opts.backend, "chosen with --search"
    limit = opts.dense_max_gallery
    if n_gallery <= limit:
        return "dense", f"auto: gallery of {n_gallery:,} <= {limit:,} images"
    if importlib.util.find_spec("faiss") is None:
        return "dense", (f"auto: gallery of {n_gallery:,} > {limit:,} images, but faiss is "
                         "not installed (pip install 'massface[faiss]')")
    return "faiss-flat", f"auto: gallery of {n_gallery:,} > {limit:,} images"


def search(gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray,
           probe_labels: np.ndarray, opts: SearchOptions) -> tuple[ProbeOutcomes, SearchInfo]:
    """Search every probe in the gallery with the chosen backend."""
    if opts.k < 1:
        raise InputError(f"--max-rank must be at least 1, got {opts.k}")
    backend, reason = choose_backend(gallery.shape[0], opts)
    out, params = SEARCHES.get(backend)(gallery, gallery_labels, probes, probe_labels, opts)
    return out, SearchInfo(backend, reason, backend == "dense", params)
