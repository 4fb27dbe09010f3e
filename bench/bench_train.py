"""Training throughput at MassFace's P=41 x K=5 with in-graph mining vs without it.

    .venv/bin/python -m bench.bench_train [--steps 6] [--strategy batch_min_max]

Both runs are the same compiled training step (MobileFaceNet D=1024 forward + backward,
triplet loss, weight decay, ADAGRAD update) on the same real batch of 205 aligned LFW
images (41 people x 5); the baseline replaces mining by a fixed triplet list (the
triplets the miner picked on the first batch, as a constant mask). Steps alternate
between the two so that load from other processes hits both alike; the script prints the
median step time of each, images/s, and the cost of mining as a share of the step, plus
the mining op alone timed in isolation.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from massface.train import config as config_mod  # noqa: E402
from tests.helpers.shared import lfw_dir  # noqa: E402


def lfw_identities(P: int, K: int) -> list[str]:
    root = lfw_dir()
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    picked = [n for n in names if len(list((root / n).iterdir())) >= K]
    return picked[:P]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6, help="timed steps per variant")
    ap.add_argument("--strategy", default="batch_min_max")
    ap.add_argument("--P", type=int, default=41)
    ap.add_argument("--K", type=int, default=5)
    ap.add_argument("--embedding-size", type=int, default=1024)
    args = ap.parse_args()

    import tensorflow as tf

    from massface.train.losses import Triplet
    from massface.train.mining import select_triplets, triplet_mask, triplet_statistics
    from massface.train.trainer import Trainer

    ids = lfw_identities(args.P, args.K)
    overrides = [f"data.train_dir={lfw_dir()}", "data.identities=[" + ",".join(ids) + "]",
                 f"data.P={args.P}", f"data.K={args.K}", "loss.kind=triplet",
                 f"loss.mining={args.strategy}", "optimizer.kind=adagrad",
                 "optimizer.learning_rate=0.001", f"model.embedding_size={args.embedding_size}",
                 "train.progress=false", "work_dir=/tmp/massface-bench", "name=bench"]
    cfg = config_mod.load_config(None, overrides)
    mined = Trainer(cfg)
    images, labels = next(mined._dataset(0))
    emb = tf.math.l2_normalize(mined.model(images, training=False), axis=1)
    fixed = select_triplets(emb.numpy(), labels.numpy(), args.strategy, seed=0)
    if len(fixed) == 0:  # an untrained net may leave nothing valid: fall back to hardest
        fixed = select_triplets(emb.numpy(), labels.numpy(), "batch_hardest")
    B = len(labels)
    mask = np.zeros((B, B, B), bool)
    mask[fixed[:, 0], fixed[:, 1], fixed[:, 2]] = True
    plain = Trainer(cfg, objective=Triplet(alpha=0.25, strategy=args.strategy, fixed_mask=mask))

    times: dict[str, list[float]] = {"mining": [], "fixed": []}
    for tr in (mined, plain):  # trace + warm up
        tr.train_step(images, labels, 0.001, 0)
    for i in range(args.steps):
        for name, tr in (("mining", mined), ("fixed", plain)):
            t = time.perf_counter()
            tr.train_step(images, labels, 0.001, i + 1)  # returns floats: waits for the step
            times[name].append(time.perf_counter() - t)

    @tf.function
    def mine_only(e, y, step):
        m = triplet_mask(e, y, args.strategy, 0.25, tf.stack([tf.constant(0, tf.int64), step]))
        return triplet_statistics(tf.zeros([B, B]), m, 0.25)["triplets"]

    mine_only(emb, labels, tf.constant(0, tf.int64))
    t = time.perf_counter()
    reps = 20
    for i in range(reps):
        float(mine_only(emb, labels, tf.constant(i, tf.int64)))
    mine_s = (time.perf_counter() - t) / reps

    med = {k: float(np.median(v)) for k, v in times.items()}
    report = {
        "batch": B, "strategy": args.strategy, "embedding_size": args.embedding_size,
        "fixed_triplets": len(fixed), "steps_each": args.steps,
        "step_s_median": med,
        "images_per_s": {k: B / v for k, v in med.items()},
        "mining_share_of_step": (med["mining"] - med["fixed"]) / med["mining"],
        "mining_op_alone_s": mine_s,
        "mining_op_share_of_step": mine_s / med["mining"],
        "loadavg": os.getloadavg(),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
