"""All-pairs verification over LFW, and gallery search at 1,000,000 (FAISS).

    python -m bench.bench_allpairs [--embeddings DIR] [--gallery 1000000] [--probes 10000]
                                   [--skip-faiss] [--json out.json]

Part 1, all pairs of the 13,233 LFW images (87.5 million pairs; embeddings as in
``bench.bench_blufr``, default ``work_dirs/lfw-all``): massface's
:func:`~massface.evaluate.protocols.allpairs.evaluate_all_pairs` (two streamed passes over
label-sorted blocks, bounded memory) against a dense baseline measured in the same run
(the whole float32 score matrix, ``np.tril_indices``, a full sort of the impostors).
Target: <= 30 s and <= 4 GB.

Part 2, gallery search: a synthetic gallery of ``--gallery`` identities, one image each,
and ``--probes`` probes, half another image of a gallery identity, half of a new one,
drawn from a Gaussian model of the real LFW embeddings of part 1 (their top 128
principal components: the between-identity and within-identity covariances), so that
the search sees face-like structure; L2-normalised float32, 128-d. Timed through
massface's search backends (``--search`` of the identification protocol): NumPy dense
on a subset of the probes (its time scaled), ``faiss-flat`` (exact) and ``faiss-ivf``
(nlist 1024 cells trained on 65,536 gallery rows, nprobe 8, 32 and 128). Reported: queries/s,
build time, rank-1 agreement with exact search, and the mates found at rank 1. Peak
memory of FAISS is outside tracemalloc; the process's peak RSS is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np

from bench.bench_blufr import ensure_embeddings
from massface.evaluate.protocols.allpairs import TAR_FARS, evaluate_all_pairs
from massface.evaluate.protocols.far import VERIFICATION_FARS
from massface.evaluate.protocols.labelled import FeatureOptions, load_features, set_labels
from massface.evaluate.protocols.search import (
    SearchOptions,
    build_ivf,
    faiss_search,
    import_faiss,
    search,
)

SQRT_EPS = np.sqrt(np.finfo(np.float64).eps)


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5), so parts measure apart."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def rss_mib() -> float:
    """Peak resident size since the last reset (VmHWM), else since the start."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn):
    tracemalloc.start()
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, wall, cpu, peak


def dense_all_pairs(feats: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """TAR at the ROC FAR points from the whole score matrix (the plain way)."""
    s = feats @ feats.T
    i, j = np.tril_indices(labels.size, -1)
    scores, same = s[i, j], labels[i] == labels[j]
    del s, i, j
    gen, imp = scores[same], np.sort(scores[~same])[::-1]
    del scores
    tar = []
    for f in VERIFICATION_FARS:
        k = int(np.floor(f * imp.size + 0.5))
        if k == 0:
            hi = gen[gen > imp[0]]
            thr = (float(imp[0]) + float(hi.min())) / 2 if hi.size else imp[0] + SQRT_EPS
        elif k == imp.size:
            thr = min(float(imp[-1]), float(gen.min())) - SQRT_EPS
        else:
            thr = float(imp[k - 1])
        tar.append(float((gen >= thr).mean()))
    return np.array(tar)


def part_all_pairs(emb_dir: Path) -> tuple[dict, tuple]:
    reset_peak_rss()
    fo = FeatureOptions()
    fs = load_features(ensure_embeddings(emb_dir), fo, "all-pairs")
    labelled = set_labels(fs, None)
    res, wall, cpu, peak = timed(lambda: evaluate_all_pairs(fs, labelled, fo))
    rss = rss_mib()
    print(f"all-pairs, {res.images:,} images, {res.genuine_pairs + res.impostor_pairs:,} "
          f"pairs: massface {wall:.2f} s wall, {cpu:.2f} s CPU, tracemalloc peak "
          f"{peak / 2**20:.0f} MiB, process peak RSS {rss:.0f} MiB")
    print("  " + ", ".join(f"TAR@{f:g} {100 * res.tar_at(f):.3f}%" for f in TAR_FARS))
    order = np.argsort(labelled.labels, kind="stable")
    tar, dwall, dcpu, dpeak = timed(lambda: dense_all_pairs(fs.features[order],
                                                            labelled.labels[order]))
    diff = np.abs(tar - res.tar)
    print(f"  dense baseline: {dwall:.2f} s wall, {dcpu:.2f} s CPU, tracemalloc peak "
          f"{dpeak / 2**20:.0f} MiB; TAR max |diff| {diff.max():.2e} "
          f"({int((diff > 0).sum())} of {diff.size} ROC points differ)")
    figures = {"massface": {"wall_s": wall, "cpu_s": cpu, "tracemalloc_peak_bytes": peak,
                            "peak_rss_mib": rss, "tar_at_far": {f"{f:g}": res.tar_at(f)
                                                                for f in TAR_FARS}},
               "dense": {"wall_s": dwall, "cpu_s": dcpu, "tracemalloc_peak_bytes": dpeak,
                         "tar_max_abs_diff": float(diff.max())}}
    return figures, face_model(fs.features.astype(np.float64), labelled.labels)


def face_model(feats: np.ndarray, labels: np.ndarray, dim: int = 128):
    """A Gaussian model of real embeddings, in their top-``dim`` principal subspace: the
    spread of identity means (between) and of images around them (within)."""
    centred = feats - feats.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    y = centred @ vt[:dim].T
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    means = np.zeros((ids.size, dim))
    np.add.at(means, inverse, y)
    means /= counts[:, None]
    multi = counts[inverse] > 1
    within = np.cov((y - means[inverse])[multi], rowvar=False)
    between = np.cov(means[counts > 1], rowvar=False)
    return np.linalg.cholesky(between + 1e-9 * np.eye(dim)), \
        np.linalg.cholesky(within + 1e-9 * np.eye(dim))


def synthetic(model, n_gallery: int, n_probes: int, seed: int = 0):
    """Gallery: one image of each of ``n_gallery`` identities; probes: half another image
    of a gallery identity, half an image of a new identity. All L2-normalised float32."""
    between, within = model
    dim = between.shape[0]
    rng = np.random.default_rng(seed)

    def draw(n, chol):
        return (rng.standard_normal((n, dim)) @ chol.T).astype(np.float32)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    centres = draw(n_gallery, between)
    gallery = unit(centres + draw(n_gallery, within))
    n_gen = n_probes // 2
    mates = rng.choice(n_gallery, n_gen, replace=False)
    probes = unit(np.vstack([centres[mates] + draw(n_gen, within),
                             draw(n_probes - n_gen, between) + draw(n_probes - n_gen, within)]))
    probe_labels = np.r_[mates, np.arange(n_gallery, n_gallery + n_probes - n_gen)]
    return gallery, np.arange(n_gallery), probes, probe_labels, n_gen


def part_search(model, n_gallery: int, n_probes: int, dense_probes: int) -> dict:
    reset_peak_rss()
    t = time.perf_counter()
    gal, glab, prob, plab, n_gen = synthetic(model, n_gallery, n_probes)
    cos = np.einsum("ij,ij->i", prob[:n_gen], gal[plab[:n_gen]])
    print(f"\nsearch: synthetic gallery {n_gallery:,} x {gal.shape[1]}, {n_probes:,} probes "
          f"({n_gen:,} with a mate, median cosine to it {np.median(cos):.2f}), made in "
          f"{time.perf_counter() - t:.1f} s")
    out: dict = {}
    sub = slice(0, dense_probes)
    (dense, _), dwall, _, _ = timed(lambda: search(gal, glab, prob[sub], plab[sub],
                                                   SearchOptions(backend="dense", k=100)))
    out["dense"] = {"probes": dense_probes, "wall_s": dwall, "qps": dense_probes / dwall}
    print(f"  dense (numpy, exact ranks): {dense_probes:,} probes in {dwall:.1f} s = "
          f"{dense_probes / dwall:.0f} queries/s")
    faiss = import_faiss("bench")
    t = time.perf_counter()
    index = faiss.IndexFlatIP(gal.shape[1])
    index.add(gal)
    build = time.perf_counter() - t
    t = time.perf_counter()
    flat = faiss_search(index, prob, glab, plab, 100)
    fwall = time.perf_counter() - t
    del index
    agree_dense = float((flat.top_index[sub] == dense.top_index).mean())
    mates = float((flat.rank[:n_gen] == 1).mean())
    out["faiss-flat"] = {"build_s": build, "search_s": fwall, "qps": n_probes / fwall,
                         "k": 100, "rank1_agreement_with_dense": agree_dense,
                         "mates_at_rank1": mates, "peak_rss_mib": rss_mib(),
                         "faiss": faiss.__version__}
    print(f"  faiss-flat (exact, top 100): index {build:.1f} s, search {fwall:.1f} s = "
          f"{n_probes / fwall:.0f} queries/s; rank-1 = dense on {agree_dense:.2%} of the "
          f"first {dense_probes:,}; mates at rank 1: {mates:.2%}")
    t = time.perf_counter()
    index = build_ivf(gal, 1024, seed=0)
    build = time.perf_counter() - t
    print(f"  faiss-ivf nlist 1024: trained on 65,536 rows and filled in {build:.1f} s")
    for nprobe in (8, 32, 128):
        index.nprobe = nprobe
        t = time.perf_counter()
        ivf = faiss_search(index, prob, glab, plab, 100)
        wall = time.perf_counter() - t
        agree = float((ivf.top_index == flat.top_index).mean())
        agree_gen = float((ivf.top_index[:n_gen] == flat.top_index[:n_gen]).mean())
        mates_ivf = float((ivf.rank[:n_gen] == 1).mean())
        out[f"faiss-ivf nprobe={nprobe}"] = {
            "build_s": build, "search_s": wall, "qps": n_probes / wall, "nlist": 1024,
            "nprobe": nprobe, "rank1_agreement_with_flat": agree,
            "rank1_agreement_genuine": agree_gen, "mates_at_rank1": mates_ivf,
            "peak_rss_mib": rss_mib()}
        print(f"  faiss-ivf nprobe {nprobe}: search {wall:.1f} s = {n_probes / wall:.0f} "
              f"queries/s; rank-1 = exact on {agree:.2%} of probes ({agree_gen:.2%} of those "
              f"with a mate); mates at rank 1: {mates_ivf:.2%}")
    print(f"  process peak RSS {rss_mib():.0f} MiB")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embeddings", type=Path, default=Path("work_dirs/lfw-all"))
    ap.add_argument("--gallery", type=int, default=1_000_000)
    ap.add_argument("--probes", type=int, default=10_000)
    ap.add_argument("--dense-probes", type=int, default=1_000)
    ap.add_argument("--skip-faiss", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load}")
    figures, model = part_all_pairs(args.embeddings)
    out = {"all_pairs": figures}
    if not args.skip_faiss:
        out["search"] = part_search(model, args.gallery, args.probes, args.dense_probes)
    out["load_average_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
