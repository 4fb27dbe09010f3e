"""Benchmark ``massface.evaluate.verify`` against the naive loop-based reference.

Prints wall times for 6,000 pairs (LFW's size) and 1,000,000 pairs, every metric
(accuracy, ROC/AUC/EER, VAL@FAR and TPR@FAR at 4 FARs), and the ratio to the naive
reference (``tests/evaluate/naive_reference.py``, facenet's structure: a Python loop over
every threshold, ``np.less`` over the pairs) measured in the same run on the same
machine. The naive reference runs fully on the 6,000 pairs; on 1,000,000 pairs it would
take many minutes, so it runs on a 50,000-pair subset and its time is extrapolated
linearly (its cost is thresholds x pairs) -- the output says so.

Run from the repository root: ``python -m bench.bench_evaluate`` (about a minute, ~4 GB).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from massface.scoring import verify  # noqa: E402
from tests.helpers.naive_reference import naive_evaluate  # noqa: E402

DIM = 128
SUBSET = 50_000


def make_pairs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """LFW-like pairs (blocks of 300 same then 300 different), about 99.7% separable."""
    rng = np.random.default_rng(seed)
    same = np.tile(np.r_[np.ones(300, bool), np.zeros(300, bool)], n // 600 + 1)[:n]
    emb = rng.standard_normal((2 * n, DIM), dtype=np.float32)
    a, b = emb[0::2], emb[1::2]
    b[same] = a[same] + np.float32(2.0) * b[same]
    return emb, same


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"verify() vs naive loop reference; embeddings {DIM}-d float32, every metric; "
          f"{os.cpu_count()} CPUs, load average {load}")
    rows = []

    emb, same = make_pairs(6000)
    t_fast, res = timed(lambda: verify(emb, same), repeat=7)
    t_naive, ref = timed(lambda: naive_evaluate(emb, same, counting="numpy"), repeat=1)
    assert res.accuracy == ref["accuracy"] and list(res.fold_threshold) == list(
        ref["fold_threshold"]), "results differ from the naive reference"
    rows.append(("6,000 pairs", t_fast, t_naive, "measured in full"))
    t_sm, _ = timed(lambda: verify(emb, same, subtract_mean=True, distance="cosine"), repeat=5)
    print(f"  6,000 pairs, subtract-mean + cosine: {t_sm * 1000:.1f} ms")

    emb, same = make_pairs(1_000_000, seed=1)
    t_fast, res = timed(lambda: verify(emb, same), repeat=1)
    sub = slice(0, 2 * SUBSET)
    t_sub, _ = timed(lambda: naive_evaluate(emb[sub], same[:SUBSET], counting="numpy"), repeat=1)
    t_naive = t_sub * (1_000_000 / SUBSET)
    rows.append(("1,000,000 pairs", t_fast, t_naive,
                 f"naive run on {SUBSET:,} pairs ({t_sub:.1f} s), x{1_000_000 // SUBSET} "
                 "extrapolated"))
    print(f"  1,000,000 pairs: accuracy {res.accuracy:.5f}, VAL {res.val:.5f}")

    print()
    print("| pairs | verify() | naive reference | speed-up | naive measured |")
    print("|---|---:|---:|---:|---|")
    for name, fast, naive, how in rows:
        print(f"| {name} | {fast:.3f} s | {naive:.1f} s | {naive / fast:.0f}x | {how} |")


if __name__ == "__main__":
    main()
