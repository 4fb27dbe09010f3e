"""Small, fast worlds for the HTML report tests: real image files, an embedding folder
that names them (``meta.json`` with the dataset root), a pairs file, and training logs in
the run-folder formats of ``massface-train``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from massface.formats import embedding_dir
from massface.formats.pairs import Pair, write_path_pairs

MODEL_META = {"path": "/models/net.onnx", "sha256": "ab" * 32, "backend": "onnxruntime"}
PREPROCESSING = {"color": "RGB", "mean": 127.5, "std": 128.0, "size": [112, 112],
                 "layout": "NHWC"}


def face_image(path: Path, seed: int, size: tuple[int, int] = (112, 112)) -> None:
    """A cartoon face whose colours depend on ``seed`` (decodable, not one colour)."""
    rng = np.random.default_rng(seed)
    colour = tuple(int(c) for c in rng.integers(60, 230, 3))
    im = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 60, 3)))
    draw = ImageDraw.Draw(im)
    w, h = size
    draw.ellipse((w * 0.2, h * 0.1, w * 0.8, h * 0.9), fill=colour)
    for x in (0.38, 0.62):
        draw.ellipse((w * x - 5, h * 0.4 - 4, w * x + 5, h * 0.4 + 4), fill=(20, 20, 20))
    draw.line((w * 0.4, h * 0.7, w * 0.6, h * 0.7), fill=(120, 20, 20), width=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, quality=90)


def pairs_world(tmp_path: Path, *, seed: int = 0, n_ids: int = 12, per_id: int = 4,
                n_folds: int = 10, per_fold: int = 10, noise: float = 0.9, dim: int = 16,
                with_images: bool = True, name: str = "emb") -> dict:
    """Images under ``tmp_path/images``, an embedding folder, a path-pairs file.

    Embeddings are an identity centre plus noise (some pairs fail at any threshold);
    pairs come in ``n_folds`` contiguous blocks of ``per_fold`` same then ``per_fold``
    different pairs, so every fold has both kinds.
    """
    rng = np.random.default_rng(seed)
    root = tmp_path / "images"
    paths = [f"Person_{i:02d}/Person_{i:02d}_{j + 1:04d}.jpg" for i in range(n_ids)
             for j in range(per_id)]
    ident = np.repeat(np.arange(n_ids), per_id)
    if with_images:
        for k, p in enumerate(paths):
            if not (root / p).is_file():
                face_image(root / p, 1000 * int(ident[k]) + k)
    centres = rng.standard_normal((n_ids, dim))
    emb = centres[ident] + noise * rng.standard_normal((len(paths), dim))
    pairs = []
    for _ in range(n_folds):
        for _ in range(per_fold):
            i = int(rng.integers(n_ids))
            a, b = rng.choice(per_id, 2, replace=False)
            pairs.append(Pair(paths[i * per_id + a], paths[i * per_id + b], True))
        for _ in range(per_fold):
            i, j = rng.choice(n_ids, 2, replace=False)
            pairs.append(Pair(paths[i * per_id + int(rng.integers(per_id))],
                              paths[j * per_id + int(rng.integers(per_id))], False))
    pairs_file = tmp_path / f"{name}-pairs.txt"
    write_path_pairs(pairs_file, pairs)
    meta = {"model": MODEL_META, "preprocessing": PREPROCESSING,
            "dataset": {"kind": "images", "root": str(root), "images": len(paths)}}
    folder = embedding_dir.write_embedding_dir(tmp_path / name, emb.astype(np.float32), paths,
                                               pairs_file=pairs_file, meta=meta)
    return {"folder": folder, "root": root, "paths": paths, "embeddings": emb,
            "pairs": pairs, "pairs_file": pairs_file}


METRIC_HEADER = ("step", "epoch", "lr", "loss", "objective", "weight_decay", "ce",
                 "train_acc", "triplets", "active_fraction", "d_ap", "d_an", "triplet_loss",
                 "loss_scale", "images_per_s", "elapsed_s")
MINING_HEADER = ("step", "triplets", "active_fraction", "d_ap", "d_an", "triplet_loss")


def run_folder(path: Path, *, steps: int = 60, log_every: int = 10, triplet: bool = False,
               validation_every: int = 20, header: tuple[str, ...] = METRIC_HEADER,
               mining_header: tuple[str, ...] = MINING_HEADER) -> Path:
    """A run folder in massface-train's formats (metrics.csv, mining.csv,
    validation.jsonl, config.yaml, summary.json) with made-up but plausible values."""
    path.mkdir(parents=True, exist_ok=True)
    rows = []
    for step in range(log_every, steps + 1, log_every):
        row = {"step": step, "epoch": step / 20, "lr": 0.01 * (1 - step / (steps + 1)),
               "loss": 5.0 / step ** 0.5 + 0.2, "objective": 4.5 / step ** 0.5,
               "weight_decay": 0.2, "loss_scale": 1.0, "images_per_s": 50 + step % 7,
               "elapsed_s": step * 0.5}
        if triplet:
            row.update(triplets=30 - step // 10, active_fraction=0.5 - step / 400,
                       d_ap=0.8, d_an=1.2 + step / 100, triplet_loss=0.3)
        else:
            row.update(ce=4.5 / step ** 0.5, train_acc=min(1.0, step / steps))
        rows.append(row)
    lines = [",".join(header)] + [",".join(str(r.get(k, "")) for k in header) for r in rows]
    (path / "metrics.csv").write_text("\n".join(lines) + "\n")
    if triplet:
        mining = [",".join(mining_header)]
        for step in range(1, steps + 1):
            mining.append(f"{step},{30 - step // 10},{0.5 - step / 400},0.8,"
                          f"{1.2 + step / 100},0.3")
        (path / "mining.csv").write_text("\n".join(mining) + "\n")
    records = [{"step": s, "accuracy": 0.8 + s / 1000, "accuracy_std": 0.03, "val": 0.5,
                "auc": 0.9, "eer": 0.1, "flip_accuracy": 0.81 + s / 1000,
                "flip_accuracy_std": 0.02} for s in range(validation_every, steps + 1,
                                                          validation_every)]
    (path / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (path / "config.yaml").write_text("name: test\nloss:\n  kind: "
                                      f"{'triplet' if triplet else 'cosface'}\n")
    (path / "summary.json").write_text(json.dumps(
        {"run_dir": str(path), "start_step": 0, "final_step": steps, "status": "completed",
         "last_checkpoint": str(path / "checkpoints" / f"ckpt-{steps}"),
         "images_per_s": 51.2, "wall_s": 30.0, "first_loss": 1.8, "last_loss": 0.85,
         "validation": records[-1] if records else {}, "warnings": []}))
    return path
