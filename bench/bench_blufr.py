"""BLUFR from embeddings: massface's evaluation against a plain implementation.

    python -m bench.bench_blufr [--embeddings DIR] [--baseline-trials 2] [--json out.json]

Embeddings: an embedding folder of all 13,233 aligned LFW images (default
``work_dirs/lfw-all``; made first with ``massface-infer --images`` and the shared
MobileFaceNet when absent, a few minutes). Both sides start from the same L2-normalised
float32 features (loading is not timed).

- massface: :func:`massface.evaluate.protocols.blufr.evaluate_blufr`, all 10 trials:
  float32 matrix products in label-sorted blocks written straight into one reused score
  buffer, thresholds by selection (no full sort), dense gallery search in blocks.
- plain: the direct transcription: per trial the float64 test x test score matrix, its
  strict lower triangle by ``np.tril_indices``, a full descending sort of the impostor
  scores, a stable ``argsort`` of every probe's gallery column. It runs on the first
  ``--baseline-trials`` trials and its time is scaled to 10 (its cost is the same per
  trial); ``--baseline-trials 10`` runs it all.

Reported: wall and CPU seconds, peak memory (``tracemalloc`` peak of Python/NumPy
allocations during the call, and the process's peak resident size from ``getrusage``
after the massface run, before the baseline), the headline figures, and how far the
float32 massface figures are from the float64 plain ones on the trials both ran (every
VR and DIR point). Targets (issue 12): 10 trials in <= 10 s and <= 4 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from massface.evaluate.protocols.blufr import evaluate_blufr
from massface.evaluate.protocols.blufr_config import read_blufr_config
from massface.evaluate.protocols.far import OPEN_SET_FARS, RANKS, VERIFICATION_FARS
from massface.evaluate.protocols.labelled import FeatureOptions, load_features
from tests.helpers import shared as shared_data

SQRT_EPS = np.sqrt(np.finfo(np.float64).eps)


def ensure_embeddings(path: Path) -> Path:
    if (path / "meta.json").is_file():
        return path
    model = shared_data.pretrained_onnx()
    print(f"embedding all LFW images into {path} (massface-infer, a few minutes)", flush=True)
    subprocess.run([str(Path(sys.executable).with_name("massface-infer")), "--model",
                    str(model), "--images", str(shared_data.lfw_dir()), "--out", str(path),
                    "--quiet"], check=True)
    return path


def spec_thresholds(imp_desc: np.ndarray, gen: np.ndarray, fars) -> np.ndarray:
    n = imp_desc.size
    out = []
    for f in fars:
        k = int(np.floor(f * n + 0.5))
        if k == 0:
            hi = gen[gen > imp_desc[0]]
            out.append((imp_desc[0] + hi.min()) / 2 if hi.size else imp_desc[0] + SQRT_EPS)
        elif k == n:
            out.append(min(imp_desc[-1], gen.min()) - SQRT_EPS)
        else:
            out.append(imp_desc[k - 1])
    return np.array(out)


def plain_trial(x: np.ndarray, labels: np.ndarray, test, gal, prob, ranks):
    """One BLUFR trial, written plainly (float64, full sorts)."""
    f, lab = x[test], labels[test]
    s = f @ f.T
    i, j = np.tril_indices(len(test), -1)
    scores, same = s[i, j], lab[i] == lab[j]
    del s, i, j
    gen, imp = scores[same], np.sort(scores[~same])[::-1]
    thr = spec_thresholds(imp, gen, VERIFICATION_FARS)
    vr = np.array([(gen >= t).mean() for t in thr])
    del scores, imp
    sg = x[gal] @ x[prob].T                                  # gallery x probe
    glab, plab = labels[gal], labels[prob]
    genuine = np.isin(plab, glab)
    order = np.argsort(-sg, axis=0, kind="stable")
    match = glab[order] == plab[None, :]
    rank = match.argmax(axis=0) + 1
    mate = sg[order[rank - 1, np.arange(len(prob))], np.arange(len(prob))]
    imp_probe = np.sort(sg.max(axis=0)[~genuine])[::-1]
    othr = spec_thresholds(imp_probe, mate[genuine], OPEN_SET_FARS)
    g_score, g_rank = mate[genuine], rank[genuine]
    dir_ = np.array([[((g_score >= t) & (g_rank <= r)).mean() for t in othr] for r in ranks])
    return vr, dir_


def timed(fn):
    tracemalloc.start()
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, wall, cpu, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embeddings", type=Path, default=Path("work_dirs/lfw-all"))
    ap.add_argument("--config", type=Path,
                    default=shared_data.shared_root() / "data/lfw/blufr/blufr_lfw_config.mat")
    ap.add_argument("--baseline-trials", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    fo = FeatureOptions()
    fs = load_features(ensure_embeddings(args.embeddings), fo, "blufr")
    cfg = read_blufr_config(args.config)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"BLUFR, {len(fs.keys)} images x {fs.features.shape[1]}-d, {cfg.n_trials} trials; "
          f"{os.cpu_count()} CPUs, load average {load}")

    res, wall, cpu, peak = timed(lambda: evaluate_blufr(fs, cfg, fo))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"massface: {wall:.2f} s wall, {cpu:.2f} s CPU, tracemalloc peak "
          f"{peak / 2**20:.0f} MiB, process peak RSS {rss / 2**20:.0f} MiB; "
          f"VR@0.1% {100 * res.vr_report:.2f}, DIR@1% r1 {100 * res.dir_report:.2f} "
          "(mean - std)")

    rows = {n.rsplit(".", 1)[0]: i for i, n in enumerate(k.rsplit("/", 1)[-1] for k in fs.keys)}
    img = np.array([rows[n.rsplit(".", 1)[0]] for n in cfg.image_list])
    x = fs.features.astype(np.float64)[img]
    ranks = res.open_set.ranks
    nb = args.baseline_trials
    plain, pwall, pcpu, ppeak = timed(lambda: [plain_trial(
        x, cfg.labels, cfg.test[t], cfg.gallery[t], cfg.probe[t], ranks) for t in range(nb)])
    scale = cfg.n_trials / nb
    print(f"plain: {pwall:.2f} s wall, {pcpu:.2f} s CPU for {nb} trial(s) -> "
          f"{pwall * scale:.1f} s for {cfg.n_trials}; tracemalloc peak {ppeak / 2**20:.0f} MiB")
    dvr = max(np.abs(res.verification.rate[t] - plain[t][0]).max() for t in range(nb))
    ddir = max(np.abs(res.open_set.rate[t] - plain[t][1]).max() for t in range(nb))
    nvr = sum(int((res.verification.rate[t] != plain[t][0]).sum()) for t in range(nb))
    ndir = sum(int((res.open_set.rate[t] != plain[t][1]).sum()) for t in range(nb))
    print(f"float32 (massface) vs float64 (plain) on {nb} trial(s): VR max |diff| {dvr:.2e} "
          f"({nvr} of {nb * len(VERIFICATION_FARS)} points differ), DIR max |diff| {ddir:.2e} "
          f"({ndir} of {nb * len(OPEN_SET_FARS) * len(ranks)} differ)")
    print(f"speed-up {pwall * scale / wall:.1f}x (wall), {pcpu * scale / cpu:.1f}x (CPU)")
    out = {"massface": {"wall_s": wall, "cpu_s": cpu, "tracemalloc_peak_bytes": peak,
                        "peak_rss_bytes": rss, "vr_report": res.vr_report,
                        "dir_report": res.dir_report, "per_trial_s": [t.seconds for t in
                                                                     res.trials]},
           "plain": {"trials": nb, "wall_s": pwall, "cpu_s": pcpu,
                     "wall_s_10_trials": pwall * scale, "tracemalloc_peak_bytes": ppeak},
           "float32_vs_float64": {"vr_max_abs_diff": dvr, "vr_points_differing": nvr,
                                  "dir_max_abs_diff": ddir, "dir_points_differing": ndir},
           "load_average": os.getloadavg(), "ranks": list(RANKS)}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
