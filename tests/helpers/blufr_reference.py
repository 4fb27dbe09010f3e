"""A deliberately naive BLUFR (SPEC section 5), and small synthetic BLUFR worlds for tests.

The reference loops over pairs and probes in plain Python, sorts with ``sorted`` (a stable
sort, as the SPEC's tie rule says) and indexes the descending impostor list 1-based as
the SPEC writes it. It shares nothing with ``massface.evaluate.protocols``.

The synthetic embeddings are *dyadic*: integer vectors of squared norm 256, so that after
L2 normalisation every entry is k/16 and every cosine score is an integer / 256, exact in
float32 and float64 and in any summation order. The vectors are drawn from a small set so
that many scores tie (the cases the tie rules are about).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import scipy.io

SQRT_EPS = math.sqrt(np.finfo(np.float64).eps)


def decades(first, last):
    return [j * 10.0**e for e in range(first, last + 1) for j in range(1, 10)]


VER_FARS = [0.0, *decades(-8, -1), 1.0]
OSI_FARS = [0.0, *decades(-4, -1), 1.0]
RANKS = [*range(1, 11), *range(20, 101, 10)]


# --- synthetic data -------------------------------------------------------------------


def _four_squares(r, rng):
    """Four integers whose squares sum to r (Lagrange), found by search."""
    found = [(a, b, c) for a in range(17) for b in range(a, 17) for c in range(b, 17)
             if a * a + b * b + c * c <= r and math.isqrt(r - a * a - b * b - c * c) ** 2
             == r - a * a - b * b - c * c]
    a, b, c = found[rng.integers(len(found))]
    return [a, b, c, math.isqrt(r - a * a - b * b - c * c)]


def dyadic_vectors(n, dim, rng, distinct=None):
    """``n`` integer vectors of squared norm 256 (so v / 16 is exactly unit), drawn from
    ``distinct`` different ones (default n) to make repeated scores."""
    assert dim >= 4
    pool = []
    for _ in range(distinct or n):
        while True:
            head = rng.integers(-4, 5, size=dim - 4)
            rest = 256 - int((head**2).sum())
            if rest >= 0:
                break
        tail = np.array(_four_squares(rest, rng)) * rng.choice([-1, 1], size=4)
        v = np.concatenate([head, tail])
        pool.append(v[rng.permutation(dim)])
    pool = np.array(pool, dtype=np.float64)
    return pool[rng.integers(len(pool), size=n)] if distinct else pool


def lfw_like_names(sizes):
    """Image names ``Person_007_0003.jpg`` and labels 1.. for identities of these sizes."""
    names, labels = [], []
    for i, size in enumerate(sizes):
        for j in range(size):
            names.append(f"Person_{i:03d}_{j + 1:04d}.jpg")
            labels.append(i + 1)
    return names, np.array(labels)


def random_trials(labels, n_trials, rng, gallery_ids=0.5):
    """BLUFR-shaped trials: identity-disjoint train/test; gallery = one or two images of
    some test identities; probes = the rest of the test set. 0-based indices."""
    ids = np.unique(labels)
    trials = []
    for _ in range(n_trials):
        train_ids = rng.choice(ids, size=len(ids) // 4, replace=False)
        train = np.flatnonzero(np.isin(labels, train_ids))
        test = np.flatnonzero(~np.isin(labels, train_ids))
        test_ids = np.unique(labels[test])
        enrolled = rng.choice(test_ids, size=max(1, int(gallery_ids * len(test_ids))),
                              replace=False)
        gallery = []
        for i in enrolled:
            members = np.flatnonzero(labels == i)
            gallery += list(rng.choice(members, size=min(len(members), rng.integers(1, 3)),
                                       replace=False))
        gallery = np.array(rng.permutation(gallery))
        probe = np.setdiff1d(test, gallery)
        trials.append((train, rng.permutation(test), gallery, rng.permutation(probe)))
    return trials


def write_config(path: Path, names, labels, trials):
    """A BLUFR-style MATLAB v5 .mat: cell arrays of 1-based uint16 index columns."""
    def cell(arrays):
        out = np.empty((len(arrays), 1), dtype=object)
        for i, a in enumerate(arrays):
            out[i, 0] = (np.asarray(a) + 1).astype(np.uint16).reshape(-1, 1)
        return out

    image_list = np.empty((len(names), 1), dtype=object)
    for i, n in enumerate(names):
        image_list[i, 0] = n
    scipy.io.savemat(str(path), {
        "imageList": image_list,
        "labels": np.asarray(labels, dtype=np.uint16).reshape(-1, 1),
        "trainIndex": cell([t[0] for t in trials]), "testIndex": cell([t[1] for t in trials]),
        "galIndex": cell([t[2] for t in trials]), "probIndex": cell([t[3] for t in trials]),
        "devTrainIndex": np.arange(1, 4, dtype=np.uint16).reshape(-1, 1),
        "devTestIndex": np.arange(4, 8, dtype=np.uint16).reshape(-1, 1),
    })
    return path


# --- the naive protocol ---------------------------------------------------------------


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def dot(a, b):
    return float(sum(float(x) * float(y) for x, y in zip(a, b, strict=True)))


def spec_round(x):
    return math.floor(x + 0.5)


def spec_thresholds(imp, gen, fars):
    """(threshold, reported FAR) per FAR point, literally as SPEC section 5 says."""
    imp = sorted(imp, reverse=True)  # imp[1] is imp[0] here
    n = len(imp)
    out = []
    for f in fars:
        k = spec_round(f * n)
        if k == 0:
            higher = [g for g in gen if g > imp[0]]
            thr = (imp[0] + min(higher)) / 2 if higher else imp[0] + SQRT_EPS
        elif k == n:
            thr = min(imp[n - 1], min(gen)) - SQRT_EPS
        else:
            thr = imp[k - 1]
        out.append((thr, k / n))
    return out


def naive_verification(feats, labels, test):
    gen, imp = [], []
    for a in range(len(test)):
        for b in range(a):
            s = dot(feats[test[a]], feats[test[b]])
            (gen if labels[test[a]] == labels[test[b]] else imp).append(s)
    rows = []
    for thr, far in spec_thresholds(imp, gen, VER_FARS):
        rows.append((sum(1 for g in gen if g >= thr) / len(gen), far, thr))
    return rows, len(gen), len(imp)


def naive_search(feats, labels, gallery, probes):
    """Per probe: ('genuine', score, rank) or ('impostor', best score)."""
    gal_labels = {labels[g] for g in gallery}
    out = []
    for p in probes:
        col = [dot(feats[g], feats[p]) for g in gallery]
        if labels[p] in gal_labels:
            order = sorted(range(len(gallery)), key=lambda i: -col[i])  # stable
            pos = next(j for j, i in enumerate(order) if labels[gallery[i]] == labels[p])
            out.append(("genuine", col[order[pos]], pos + 1))
        else:
            out.append(("impostor", max(col)))
    return out


def naive_open_set(outcomes, fars, ranks):
    gen = [(o[1], o[2]) for o in outcomes if o[0] == "genuine"]
    imp = [o[1] for o in outcomes if o[0] == "impostor"]
    table = []
    thresholds = spec_thresholds(imp, [g for g, _ in gen], fars)
    for r in ranks:
        table.append([sum(1 for s, rank in gen if s >= thr and rank <= r) / len(gen)
                      for thr, _ in thresholds])
    return table, thresholds, len(gen), len(imp)


def naive_blufr(feats, labels, trials, ranks=None):
    """Per-trial VR / FAR / threshold lists, DIR tables, and the headline figures."""
    ranks = ranks or [r for r in RANKS if r <= min(len(t[2]) for t in trials)]
    vr, ver_far, ver_thr, dirs, osi_far, osi_thr = [], [], [], [], [], []
    for _, test, gallery, probe in trials:
        rows, _, _ = naive_verification(feats, labels, test)
        vr.append([r[0] for r in rows])
        ver_far.append([r[1] for r in rows])
        ver_thr.append([r[2] for r in rows])
        table, thr, _, _ = naive_open_set(naive_search(feats, labels, gallery, probe),
                                          OSI_FARS, ranks)
        dirs.append(table)
        osi_far.append([t[1] for t in thr])
        osi_thr.append([t[0] for t in thr])
    i_vr, i_dir = VER_FARS.index(1e-3), OSI_FARS.index(1e-2)
    vr_trials = [v[i_vr] for v in vr]
    dir_trials = [d[ranks.index(1)][i_dir] for d in dirs]
    return {"vr": vr, "ver_far": ver_far, "ver_thr": ver_thr, "dir": dirs, "osi_far": osi_far,
            "osi_thr": osi_thr, "ranks": ranks, "vr_trials": vr_trials,
            "dir_trials": dir_trials,
            "vr_report": statistics.mean(vr_trials) - statistics.stdev(vr_trials),
            "dir_report": statistics.mean(dir_trials) - statistics.stdev(dir_trials)}


def naive_all_pairs(feats, labels, fars):
    """(TAR, reported FAR, threshold) per FAR point over every unordered pair."""
    rows, _, _ = _pairs_rates(feats, labels, fars)
    return rows


def _pairs_rates(feats, labels, fars):
    gen, imp = [], []
    for a in range(len(feats)):
        for b in range(a):
            (gen if labels[a] == labels[b] else imp).append(dot(feats[a], feats[b]))
    rows = [(sum(1 for g in gen if g >= thr) / len(gen), far, thr)
            for thr, far in spec_thresholds(imp, gen, fars)]
    return rows, len(gen), len(imp)
