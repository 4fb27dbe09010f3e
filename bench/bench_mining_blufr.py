"""Does triplet fine-tuning after a pretrain help, and with which miner? Measured on BLUFR.

    nice -n 19 .venv/bin/python -m bench.bench_mining_blufr [--study /work/mining-study]
        [--trials 1-3] [--strategies batch_all,batch_random,batch_min_max,batch_hardest]
        [--steps 20] [--lr 0.001] [--table-only]

For each BLUFR trial K and each mining strategy, from the shared MobileFaceNet mapped onto
massface's (``massface-export --tflite ... --to-checkpoint STUDY/sirius``, done once):
fine-tune with ``configs/massface_finetune.yaml`` on trial K's training split only
(``massface-pairs blufr-split``), embed trial K's test split, and score that trial alone
(``massface-eval``'s BLUFR with ``--trials K --trained-on RUN``: a leak is refused). The
baseline is the imported model itself, embedded and scored the same way. Reported per
trial: VR@FAR=0.1%, DIR@FAR=1% rank 1, triplets mined per batch, fraction of them with a
positive loss, wall times; and per strategy the difference to the baseline paired by
trial (mean, sample std, n, t = mean / (std / sqrt n), two-sided p with n - 1 degrees
of freedom), and, when the ``bn_only`` control ran on two or more trials, the same
paired against the control (what the weight updates did beyond BatchNorm's drift).

``bn_only`` (a control, ``--strategies ...,bn_only``) runs the same fine-tune at learning
rate 0: only BatchNorm's moving statistics change. ``batch_min_min`` is not run: it
selects the same triplets as ``batch_min_max`` (pinned by ``tests/train/test_mining.py``).

Resumable: everything lives under ``--study`` (default ``/work/mining-study``, outside
the repository so it outlives a checkout); a row whose ``result.json`` exists is never
redone, a killed fine-tune resumes from its last checkpoint (massface-train resumes), and
rows of other settings (steps, learning rate) live in their own folder, so the table grows
across sessions. Layout::

    STUDY/sirius/                      the imported model (massface-train run folder)
    STUDY/splits/trial-K-{train,test}/ the trial's splits (links into aligned LFW)
    STUDY/baseline/trial-K/            embeddings/, result.json
    STUDY/<settings>/trial-K/<miner>/  run/ (massface-train), embeddings/, result.json
    STUDY/<settings>/table.md, table.json

The machine's load average is recorded beside every wall time.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("batch_all", "batch_random", "batch_min_max", "batch_hardest")
#: A control, not a miner: the same fine-tune at learning rate 0. No weight moves, but
#: training-mode BatchNorm still updates its moving statistics from the split's batches,
#: so this row shows what the statistics alone do to the score.
BN_ONLY = "bn_only"
DEFAULT_STUDY = Path("/work/mining-study")

from massface.io import read_json, write_json, write_text  # noqa: E402
from tests.helpers.shared import lfw_dir, pretrained_tflite, shared_root  # noqa: E402


def blufr_config() -> Path:
    return shared_root() / "data" / "lfw" / "blufr" / "blufr_lfw_config.mat"


def cli(name: str, *args: object) -> None:
    """Run a massface command of this checkout (a child process: TensorFlow's memory goes
    back when it ends; a SIGTERM to the study reaches it and it saves a checkpoint)."""
    exe = Path(sys.executable).parent / name
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_ENABLE_ONEDNN_OPTS="1",
               TF_CPP_MIN_LOG_LEVEL="2", MASSFACE_SHARED=str(shared_root()))
    subprocess.run([str(exe), *map(str, args)], check=True, env=env, cwd=ROOT)


def conditions() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in
                Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")),
               platform.processor())
    return {"load_average": [round(x, 2) for x in os.getloadavg()], "cpu": cpu,
            "cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


# ---------------------------------------------------------------------- the pieces


def imported_model(study: Path) -> Path:
    run = study / "sirius"
    if not (run / "config.yaml").is_file():
        cli("massface-export", "--tflite", pretrained_tflite(), "--out", study / "sirius-export",
            "--to-checkpoint", run, "--no-om", "--precision-pairs", "0")
    return run


def split_tree(study: Path, trial: int, split: str) -> Path:
    from massface.tools.blufr_split import read_split_manifest, write_split_tree

    tree = study / "splits" / f"trial-{trial}-{split}"
    if read_split_manifest(tree) is None:
        write_split_tree(lfw_dir(), blufr_config(), trial, split, tree)
    return tree


def embed(model_run: Path, test_tree: Path, out: Path, batch: int = 128) -> float:
    """Embed every image of ``test_tree`` with the model in inference mode (BN moving
    statistics) into an embedding folder; returns the wall seconds."""
    import tensorflow as tf

    from massface.formats.embedding_dir import write_embedding_dir
    from massface.train.checkpoints import load_backbone
    from massface.train.data import load_images, scan_image_folder

    start = time.perf_counter()
    model, config = load_backbone(model_run)
    data = config.get("data", {})
    mean, std = float(data.get("mean", 127.5)), float(data.get("std", 128.0))
    folder = scan_image_folder(test_tree)

    @tf.function(input_signature=[tf.TensorSpec([None, 112, 112, 3], tf.uint8)])
    def forward(x: tf.Tensor) -> tf.Tensor:
        return model((tf.cast(x, tf.float32) - mean) / std, training=False)

    rows = []
    for i in range(0, len(folder.paths), 1024):  # decode in slices: bounded memory
        images = load_images(folder.root, folder.paths[i:i + 1024], (112, 112), threads=2)
        rows += [forward(images[j:j + batch]).numpy() for j in range(0, len(images), batch)]
    write_embedding_dir(out, np.concatenate(rows), folder.paths,
                        meta={"model": str(model_run), "images": str(test_tree)})
    return time.perf_counter() - start


def score(emb: Path, trial: int, trained_on: Path | None) -> dict[str, float]:
    from massface.evaluate.protocols import ScaleOptions, evaluate_path

    _, res = evaluate_path(emb, "blufr", ScaleOptions(blufr_config=blufr_config(),
                                                      trials=str(trial), trained_on=trained_on))
    return {"vr": float(res.vr_trials[0]), "dir": float(res.dir_trials[0])}


def mining_stats(run: Path) -> dict[str, float]:
    with open(run / "mining.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    triplets = [float(r["triplets"]) for r in rows]
    active = [float(r["active_fraction"]) for r in rows if float(r["triplets"]) > 0]
    return {"steps": len(rows), "triplets_per_batch": float(np.mean(triplets)),
            "triplets_first": triplets[0], "triplets_last": triplets[-1],
            "active_fraction": float(np.mean(active)) if active else 0.0}


def baseline_row(study: Path, model: Path, trial: int) -> dict[str, Any]:
    folder = study / "baseline" / f"trial-{trial}"
    if (folder / "result.json").is_file():
        return read_json(folder / "result.json", "study row")
    before = conditions()
    embed_s = embed(model, split_tree(study, trial, "test"), folder / "embeddings")
    row = {"trial": trial, "strategy": "baseline", **score(folder / "embeddings", trial, None),
           "train_wall_s": 0.0, "embed_wall_s": embed_s, "before": before,
           "after": conditions()}
    write_json(folder / "result.json", row)
    return row


def finetune_row(study: Path, settings: dict[str, Any], model: Path, trial: int,
                 strategy: str) -> dict[str, Any]:
    folder = study / settings["tag"] / f"trial-{trial}" / strategy
    if (folder / "result.json").is_file():
        return read_json(folder / "result.json", "study row")
    train_tree, before = split_tree(study, trial, "train"), conditions()
    mining, lr = ("batch_min_max", 0.0) if strategy == BN_ONLY else (strategy, settings["lr"])
    cli("massface-train", ROOT / "configs" / "massface_finetune.yaml", "--pretrained", model,
        "--work-dir", folder, "--name", "run", "--no-progress",
        "--set", f"data.train_dir={train_tree}", "--set", f"loss.mining={mining}",
        "--set", f"train.max_steps={settings['steps']}",
        "--set", f"optimizer.learning_rate={lr}")
    run = folder / "run"
    summary = read_json(run / "summary.json", "massface-train summary")
    if summary["status"] != "completed":
        raise SystemExit(f"{run}: fine-tune ended {summary['status']}; rerun to resume")
    embed_s = embed(run, split_tree(study, trial, "test"), folder / "embeddings")
    row = {"trial": trial, "strategy": strategy, **settings,
           **score(folder / "embeddings", trial, run), **mining_stats(run),
           "train_wall_s": summary["wall_s"], "images_per_s": summary["images_per_s"],
           "embed_wall_s": embed_s, "before": before, "after": conditions(), "lr": lr}
    write_json(folder / "result.json", row)
    return row


# ---------------------------------------------------------------------- the table


def paired(rows: list[dict], base: dict[int, dict], key: str) -> dict[str, float]:
    """Per-trial differences to the baseline (points): mean, sample std, n, paired t and
    its two-sided p (Student's t, n - 1 degrees of freedom; NaN below n=2)."""
    from scipy.stats import t as student

    d = np.array([r[key] - base[r["trial"]][key] for r in rows if r["trial"] in base]) * 100
    n = len(d)
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    t = float(d.mean() / (sd / math.sqrt(n))) if n > 1 and sd > 0 else math.nan
    p = float(2 * student.sf(abs(t), n - 1)) if not math.isnan(t) else math.nan
    return {"mean": float(d.mean()) if n else math.nan, "std": sd, "n": n, "t": t, "p": p}


def _with_resume(result: Path) -> dict[str, Any]:
    """A row, marked when its fine-tune was interrupted and resumed: massface-train's
    summary then times only the last part (the row's numbers are unaffected: a resumed
    run is bit-identical to an uninterrupted one)."""
    row = read_json(result, "study row")
    summary = result.parent / "run" / "summary.json"
    if summary.is_file():
        row["resumed"] = read_json(summary, "massface-train summary")["start_step"] > 0
    return row


def _train_time(row: dict[str, Any]) -> str:
    return "resumed" if row.get("resumed") else f"{row['train_wall_s']:.0f}"


def _label(strategy: str) -> str:
    return f"{strategy} (control: lr 0)" if strategy == BN_ONLY else strategy


def table(study: Path, settings: dict[str, Any], strategies: list[str]) -> str:
    """Every scored row of these settings (any trial), and the paired summary."""
    base = {r["trial"]: r for r in (read_json(p, "study row") for p in
                                    sorted((study / "baseline").glob("trial-*/result.json")))}
    rows = [_with_resume(p) for p in
            sorted((study / settings["tag"]).glob("trial-*/*/result.json"))]
    rows.sort(key=lambda r: (r["trial"], strategies.index(r["strategy"])
                             if r["strategy"] in strategies else 99))
    lines = [f"Fine-tune: {settings['tag']} (configs/massface_finetune.yaml); "
             "percentages on the trial's own test split", "",
             "| trial | miner | VR@0.1% | Δ VR | DIR@1% r1 | Δ DIR | triplets/batch "
             "(first → last) | active | fine-tune s | embed s | load avg |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for t in sorted(base):
        b = base[t]
        lines.append(f"| {t} | baseline (no fine-tune) | {b['vr'] * 100:.2f} | | "
                     f"{b['dir'] * 100:.2f} | | | | | {b['embed_wall_s']:.0f} | "
                     f"{b['before']['load_average'][0]:.1f} |")
        for r in (r for r in rows if r["trial"] == t):
            lines.append(
                f"| {t} | {_label(r['strategy'])} | {r['vr'] * 100:.2f} | "
                f"{(r['vr'] - b['vr']) * 100:+.2f} | {r['dir'] * 100:.2f} | "
                f"{(r['dir'] - b['dir']) * 100:+.2f} | {r['triplets_per_batch']:.1f} "
                f"({r['triplets_first']:.0f} → {r['triplets_last']:.0f}) | "
                f"{r['active_fraction']:.2f} | {_train_time(r)} | "
                f"{r['embed_wall_s']:.0f} | {r['before']['load_average'][0]:.1f}-"
                f"{r['after']['load_average'][0]:.1f} |")
    summary = {}
    control = {r["trial"]: r for r in rows if r["strategy"] == BN_ONLY}
    for against, ref, suffix in (("the baseline", base, ""),
                                 ("the lr-0 control", control, "_vs_control")):
        if not ref or (suffix and len(ref) < 2):
            continue
        lines += ["", f"Paired by trial against {against} (points; t = mean / (std / √n), "
                  "p two-sided, n - 1 degrees of freedom):", "",
                  "| miner | n | Δ VR mean ± std | t | p | Δ DIR mean ± std | t | p |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for s in strategies:
            mine = [r for r in rows if r["strategy"] == s]
            if not mine or (suffix and s == BN_ONLY):
                continue
            v, d = paired(mine, ref, "vr"), paired(mine, ref, "dir")
            summary.setdefault(s, {}).update({f"vr{suffix}": v, f"dir{suffix}": d})
            lines.append(f"| {_label(s)} | {v['n']} | {v['mean']:+.2f} ± {v['std']:.2f} | "
                         f"{v['t']:.1f} | {v['p']:.3f} | {d['mean']:+.2f} ± {d['std']:.2f} | "
                         f"{d['t']:.1f} | {d['p']:.3f} |")
    text = "\n".join(lines) + "\n"
    write_text(study / settings["tag"] / "table.md", text)
    write_json(study / settings["tag"] / "table.json",
               {"settings": settings, "baseline": base, "rows": rows, "paired": summary})
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--study", type=Path, default=DEFAULT_STUDY)
    ap.add_argument("--trials", default="1-3")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--table-only", action="store_true", help="print the table of the rows "
                    "already scored, run nothing")
    args = ap.parse_args()
    from massface.evaluate.protocols.blufr_config import parse_trials

    trials = parse_trials(args.trials, 10)
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = [s for s in strategies if s not in (*STRATEGIES, "batch_min_min", BN_ONLY)]
    if unknown:
        raise SystemExit(f"--strategies: unknown {unknown}")
    settings = {"steps": args.steps, "lr": args.lr,
                "tag": f"finetune-steps{args.steps}-lr{args.lr:g}"}
    if not args.table_only:
        model = imported_model(args.study)
        for trial in trials:  # trial by trial: each finished trial is a complete block
            baseline_row(args.study, model, trial)
            for s in strategies:
                finetune_row(args.study, settings, model, trial, s)
                print(table(args.study, settings, strategies), flush=True)
    print(table(args.study, settings, strategies))


if __name__ == "__main__":
    main()
