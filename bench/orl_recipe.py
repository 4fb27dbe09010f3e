"""ORL recipe: train MobileFaceNet from scratch on people s1-s30, verify on unseen s31-s40.

    .venv/bin/python -m bench.orl_recipe                      # the recipe (CosFace)
    .venv/bin/python -m bench.orl_recipe --config configs/orl_softmax.yaml
    .venv/bin/python -m bench.orl_recipe --sequence           # + MassFace triplet stages
    .venv/bin/python -m bench.orl_recipe --strategies 60      # + five miners, 60 steps each

One run measures, on the same generated 10-fold pairs file over s31-s40 (seeded): raw
pixels, PCA (eigenfaces) and Fisherfaces fitted on s1-s30 (scikit-learn), the untrained
network, and the trained network (plain and mirror-averaged embeddings), all scored by
``massface.evaluate.verify`` (L2-normalised, squared L2, threshold step 0.01). The wall
time of training and the machine's load (``os.getloadavg``) are printed beside it,
because other processes share this CPU.
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
from tests.helpers.shared import orl_dir  # noqa: E402

TRAIN_IDS = [f"s{i}" for i in range(1, 31)]
TEST_IDS = [f"s{i}" for i in range(31, 41)]


def make_pairs(out: Path, seed: int) -> Path:
    from massface.formats.pairs import write_path_pairs
    from massface.tools.pairs_generate import generate_pairs

    pairs = generate_pairs(orl_dir(), n_folds=10, seed=seed, identities=TEST_IDS)
    write_path_pairs(out, pairs)
    return out


def classical_baselines(pairs_path: Path) -> dict[str, float]:
    """Raw pixels, PCA and Fisherfaces (PCA -> LDA) fitted on s1-s30, scored on the pairs.

    PCA and Fisherfaces are reported for several PCA sizes and the best is kept as
    "pca" / "fisherfaces": that picks the baselines' setting on the test pairs, which
    favours the baselines (the network gets no such choice).
    """
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from massface.scoring import verify
    from massface.train.data import load_images, scan_image_folder
    from massface.train.validation import PairsValidation

    train = scan_image_folder(orl_dir(), TRAIN_IDS)
    x_train = load_images(train.root, train.paths, (112, 92))[..., 0].reshape(
        len(train), -1).astype(np.float64) / 255.0
    val = PairsValidation.load(pairs_path, orl_dir(), (112, 92))
    x_val = val.images[..., 0].reshape(len(val.images), -1).astype(np.float64) / 255.0
    out = {"raw_pixels": verify(x_val[val.rows], val.issame).accuracy}
    c = train.num_classes
    for k in (30, 50, 100, 150, len(train) - c):
        pca = PCA(n_components=k, random_state=0).fit(x_train)
        out[f"pca_{k}"] = verify(pca.transform(x_val)[val.rows], val.issame).accuracy
        lda = LinearDiscriminantAnalysis(n_components=min(c - 1, k)).fit(
            pca.transform(x_train), train.labels)
        out[f"fisherfaces_pca{k}"] = verify(lda.transform(pca.transform(x_val))[val.rows],
                                            val.issame).accuracy
    out["pca"] = max(v for k, v in out.items() if k.startswith("pca_"))
    out["fisherfaces"] = max(v for k, v in out.items() if k.startswith("fisherfaces_"))
    return out


def train_run(config: str, overrides: list[str]) -> tuple[dict, float]:
    from rich.console import Console

    from massface.train.trainer import Trainer

    cfg = config_mod.load_config(config, overrides)
    t0 = time.perf_counter()
    result = Trainer(cfg, console=Console(stderr=True)).run()
    return result.to_dict(), time.perf_counter() - t0


def score(run_dir: Path, pairs_path: Path) -> dict[str, float]:
    from massface.train.checkpoints import load_backbone
    from massface.train.validation import PairsValidation

    model, _ = load_backbone(run_dir)
    return PairsValidation.load(pairs_path, orl_dir()).evaluate(model, flip=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--config", default=str(ROOT / "configs" / "orl_cosface.yaml"))
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--work-dir", default=str(ROOT / "work_dirs" / "orl_recipe"))
    ap.add_argument("--pairs-seed", type=int, default=0)
    ap.add_argument("--sequence", action="store_true",
                    help="then MassFace's triplet stages from the trained backbone")
    ap.add_argument("--strategies", type=int, default=0, metavar="STEPS",
                    help="then each mining strategy for STEPS steps from the same start")
    ap.add_argument("--skip-train", action="store_true", help="score an existing run")
    args = ap.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"load_before": os.getloadavg()}
    pairs_path = make_pairs(work / "pairs_s31-s40.txt", args.pairs_seed)
    report["baselines"] = classical_baselines(pairs_path)
    print("baselines:", json.dumps(report["baselines"]), flush=True)

    from massface.train.mobilefacenet import MobileFaceNet
    from massface.train.validation import PairsValidation

    cfg = config_mod.load_config(args.config, args.overrides)
    untrained = MobileFaceNet(int(cfg.model.embedding_size), seed=int(cfg.seed))
    report["untrained"] = PairsValidation.load(pairs_path, orl_dir()).evaluate(untrained)
    print("untrained:", json.dumps(report["untrained"]), flush=True)

    overrides = [f"work_dir={work}", f"validation.pairs={pairs_path}", *args.overrides]
    run_dir = work / cfg.name
    if not args.skip_train:
        result, wall = train_run(args.config, overrides)
        report["train"] = {"wall_s": wall, "steps": result["final_step"],
                           "images_per_s": result["images_per_s"], "status": result["status"]}
    report["trained"] = score(run_dir, pairs_path)
    report["load_after"] = os.getloadavg()
    print("trained:", json.dumps(report["trained"]), flush=True)

    if args.sequence:
        seq = {}
        for kind in ("triplet", "triplet_cosface"):
            name = f"{cfg.name}_then_{kind}"
            _, wall = train_run(args.config, [
                *overrides, f"name={name}", f"loss.kind={kind}", "loss.mining=batch_min_max",
                "data.P=15", "data.K=5", "data.min_images=2", "optimizer.kind=adagrad",
                "optimizer.learning_rate=0.001", "schedule.kind=constant",
                "train.epochs=40", f"train.pretrained={run_dir}", "validation.pairs=null"])
            seq[kind] = {"wall_s": wall, **score(work / name, pairs_path)}
            print(f"{kind}:", json.dumps(seq[kind]), flush=True)
        report["sequence"] = seq
    if args.strategies:
        strat = {}
        for strategy in ("batch_all", "batch_random", "batch_min_min", "batch_min_max",
                         "batch_hardest"):
            name = f"{cfg.name}_{strategy}"
            res, wall = train_run(args.config, [
                *overrides, f"name={name}", "loss.kind=triplet", f"loss.mining={strategy}",
                "data.P=15", "data.K=5", "data.min_images=2", "optimizer.kind=adagrad",
                "optimizer.learning_rate=0.001", "schedule.kind=constant",
                f"train.max_steps={args.strategies}", f"train.pretrained={run_dir}",
                "validation.pairs=null"])
            import csv

            with open(work / name / "metrics.csv") as f:
                rows = list(csv.DictReader(f))
            mined = float(np.mean([float(r["triplets"]) for r in rows]))
            active = float(np.mean([float(r["active_fraction"]) for r in rows]))
            strat[strategy] = {"wall_s": wall, "mean_triplets": mined,
                               "mean_active_fraction": active,
                               "final_loss": res["last_loss"], **score(work / name, pairs_path)}
            print(f"{strategy}:", json.dumps(strat[strategy]), flush=True)
        report["strategies"] = strat
    out = work / "report.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {out}")


if __name__ == "__main__":
    main()
