"""massface-infer's local engine vs ``--engine ray`` with 1 and 2 replicas, on the same images.

    python -m bench.bench_ray [--limit 2000] [--rounds 2] [--threads 2] [--backend onnxruntime]
                              [--batch 32] [--json out.json]

Images: the first ``--limit`` distinct LFW images named by the shared pairs.txt, written as
one ``--list`` file that every run reads; model: the shared MobileFaceNet ONNX. Each
round runs the three command lines, as a user would, each in its own process (the order
rotates from round to round, because the machine is shared and its load drifts):

* ``local``: ``massface-infer --threads T`` (one model, one decode thread);
* ``ray x1``: ``--engine ray --workers 1 --threads T`` (one replica of T CPUs);
* ``ray x2``: ``--engine ray --workers 2 --threads T/2`` (two replicas).

Per run: the pipeline rate (``summary.json``'s ``images_per_s``: images over the time from
the first model ready to the last chunk saved, i.e. excluding start-up), the end-to-end
rate (images over the process's wall time, Python start and Ray's included) and, for Ray,
its start-up (``engine.startup_s``: ``ray.init`` plus the first replica's model load).
Every Ray run's embeddings are compared with the local run's of the same round
(bit-identical expected). Ratios are taken within a round (x local), medians reported,
with the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_infer import cpu_description
from massface.formats.embedding_dir import read_embedding_dir
from massface.runtime.sources import lfw_dataset
from tests.helpers import shared as shared_data

REPO = Path(__file__).resolve().parents[1]


def configs(threads: int) -> dict[str, list[str]]:
    half = str(max(1, threads // 2))
    return {"local": ["--threads", str(threads)],
            "ray x1": ["--engine", "ray", "--workers", "1", "--threads", str(threads)],
            "ray x2": ["--engine", "ray", "--workers", "2", "--threads", half]}


def run_one(base: list[str], extra: list[str], out: Path) -> dict:
    """One massface-infer process; its summary and wall time."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "massface.infer.cli", *base, "--out", str(out),
                           *extra], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"massface-infer {' '.join(extra)} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    engine = summary.get("engine", {})
    return {"images": summary["images"], "pipeline_img_s": summary["images_per_s"],
            "end_to_end_img_s": round(summary["images"] / wall, 2),
            "process_wall_s": round(wall, 2), "startup_s": engine.get("startup_s"),
            "ray_init_s": engine.get("init_s"),
            "first_chunk_after_ready_s": engine.get("first_chunk_after_ready_s"),
            "replica_busy_s": engine.get("replica_busy_s")}


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    try:
        import ray.data  # noqa: F401
    except ImportError:
        print("bench_ray skipped: --engine ray needs the 'ray' extra (pip install "
              "'massface[ray]')")
        return

    lfw, pairs, model = (shared_data.lfw_dir(), shared_data.lfw_pairs(),
                         shared_data.pretrained_onnx())
    keys = lfw_dataset(lfw, pairs).keys[:args.limit]
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    (work / "list.txt").write_text("\n".join(keys) + "\n")
    base = ["--model", str(model), "--list", str(work / "list.txt"), "--root", str(lfw),
            "--batch-size", str(args.batch), "--backend", args.backend, "--quiet",
            "--overwrite"]
    names = list(configs(args.threads))
    rows: list[dict] = []
    print(f"{len(keys)} images, {args.rounds} rounds, load before {load()}", flush=True)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        res = {}
        for name in order:
            res[name] = run_one(base, configs(args.threads)[name], work / name.replace(" ", ""))
            res[name]["load_after"] = load()
            print(f"round {r} {name:7s} {res[name]}", flush=True)
        ref = read_embedding_dir(work / "local")
        for name in names[1:]:
            got = read_embedding_dir(work / name.replace(" ", ""))
            res[name]["bit_identical"] = bool(got.paths == ref.paths and np.array_equal(
                got.embeddings, ref.embeddings))
            for rate in ("pipeline_img_s", "end_to_end_img_s"):
                res[name][f"{rate}_x_local"] = round(res[name][rate] / res["local"][rate], 3)
        rows.append(res)

    report = {"images": len(keys), "rounds": rows, "cpu": cpu_description(),
              "cpus": os.cpu_count(), "load_after": load(), "backend": args.backend,
              "threads": args.threads, "batch": args.batch, "medians": {}}
    for name in names:
        med = {k: statistics.median(r[name][k] for r in rows)
               for k in ("pipeline_img_s", "end_to_end_img_s", "process_wall_s")}
        if name != "local":
            med.update({k: statistics.median(r[name][k] for r in rows)
                        for k in ("pipeline_img_s_x_local", "end_to_end_img_s_x_local",
                                  "startup_s", "ray_init_s")})
            med["bit_identical"] = all(r[name]["bit_identical"] for r in rows)
        report["medians"][name] = med
    print(json.dumps(report["medians"], indent=2))
    print(f"load after {load()}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
