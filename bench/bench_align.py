"""Detection + alignment on real data: speed, LFW set 1 end to end, deepface's photos.

    python -m bench.bench_align speed  [--limit 807] [--segments 6] [--workers 2] [--batch 8]
    python -m bench.bench_align lfw-set1 [--work DIR]
    python -m bench.bench_align photos   [--work DIR]
    python -m bench.bench_align all --json out.json

``speed``: the raw-set1 images (250x250 deep-funneled LFW originals), decoded once
beforehand, each detected (MTCNN) and aligned (ArcFace 112x112) on ``--workers`` threads
with one engine thread per net call. Three paths are timed in the same run, in rotating
segments (the machine is shared and its load swings): ``per-image`` (the path before
batching: one image per call of each net, ONNX Runtime, one image per task), ``batched
onnxruntime`` (groups of ``--batch`` images: P-net once per scale over the group, R-net
and O-net once over all the group's candidates) and ``batched <auto>`` (the same on the
engine ``auto`` picks: OpenVINO on x86 where installed), the last being what
massface-align runs by default. Reported: images/s of each and the within-segment ratios
to ``per-image``, and the process CPU time per image (all threads), which a loaded
machine inflates less than wall time: ``2 / cpu_s_per_image`` is what two cores to itself
would give.

``lfw-set1``: LFW View 2 set 1 (pairs.txt lines 2-601: 300 same then 300 different) in
an interleaved order -- same pair i, then different pair i, for i = 1..300 -- so that the
10 contiguous folds of 60 each hold 30 of each class. The shared model embeds (a) the
pre-aligned ``lfw-112x112`` crops and (b) the ``raw-set1`` originals with
``--align arcface``; both are scored with the same file. Also reported: the detected
landmarks against ``landmarks-mtcnn.json`` (mean distance over the five points) and
``massface-align --landmarks landmarks-mtcnn.json`` against the shared crops (mean
absolute pixel difference).

``photos``: ``massface-align`` over deepface's test photos (every image aligned or skipped
with its reason), then the 300 labelled pairs of ``master.csv`` embedded and scored: AUC
and the accuracy at the LFW threshold (the mean of the 10 fold thresholds of the full
LFW protocol on the pre-aligned crops, squared L2 of L2-normalised embeddings).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tests.helpers import shared as shared_data

MODEL = shared_data.pretrained_onnx()
LFW = shared_data.shared_root() / "data" / "lfw"
PHOTOS = shared_data.shared_root() / "data" / "photos"


def _raw_images(limit: int) -> list[np.ndarray]:
    from massface.align.images import load_rgb

    files = sorted((LFW / "raw-set1").rglob("*.jpg"))[:limit]
    return [load_rgb(f, str(f)) for f in files]


def speed(limit: int, segments: int, workers: int, batch: int) -> dict:
    """Per-image vs batched detection + alignment, rotating segments."""
    from massface.align import TEMPLATES, AlignSettings, DetectorOptions, FaceAligner
    from massface.align.nets import resolve_engine

    images = _raw_images(limit)
    auto = resolve_engine("auto")[0]

    def aligner(engine: str) -> FaceAligner:
        return FaceAligner(AlignSettings(TEMPLATES.get("arcface"), detector=DetectorOptions(
            engine=engine, streams=workers)))

    def one(a: FaceAligner, ims: list[np.ndarray]) -> int:
        for image in ims:
            a.crop(image, a.find(image, "", "").points[0])
        return len(ims)

    def group(a: FaceAligner, ims: list[np.ndarray]) -> int:
        for image, found in zip(ims, a.find_many(ims, [""] * len(ims), [""] * len(ims)),
                                strict=True):
            a.crop(image, found.points[0])
        return len(ims)

    kinds = {"per-image": (aligner("onnxruntime"), one, 1),
             "batched onnxruntime": (aligner("onnxruntime"), group, batch)}
    if auto != "onnxruntime":
        kinds[f"batched {auto}"] = (aligner(auto), group, batch)
    for a, fn, _ in kinds.values():
        fn(a, images[:2])  # load the nets
    bounds = np.linspace(0, len(images), segments + 1).astype(int)
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}  # process CPU s per image
    loads: list[float] = []
    names = list(kinds)
    with ThreadPoolExecutor(workers) as pool:
        for i in range(segments):
            part = images[bounds[i]:bounds[i + 1]]
            for kind in names[i % len(names):] + names[:i % len(names)]:
                a, fn, step = kinds[kind]
                tasks = [part[j:j + step] for j in range(0, len(part), step)]
                t, c = time.perf_counter(), time.process_time()
                list(pool.map(lambda ims, a=a, fn=fn: fn(a, ims), tasks))
                rates[kind].append(len(part) / (time.perf_counter() - t))
                cpu[kind].append((time.process_time() - c) / len(part))
            loads.append(round(os.getloadavg()[0], 1))
            print(f"segment {i} (load {loads[-1]}): " + ", ".join(
                f"{k} {v[-1]:.1f}" for k, v in rates.items()) + " img/s", flush=True)
    ratios = {k: round(float(np.median([x / y for x, y in zip(v, rates["per-image"],
                                                                strict=True)])), 3)
              for k, v in rates.items() if k != "per-image"}
    cpu_ratios = {k: round(float(np.median([y / x for x, y in zip(v, cpu["per-image"],
                                                                    strict=True)])), 3)
                  for k, v in cpu.items() if k != "per-image"}
    return {"images": len(images), "workers": workers, "batch": batch, "segments": segments,
            "auto_engine": auto, "load_average_per_segment": loads,
            "img_per_s_median": {k: round(float(np.median(v)), 1) for k, v in rates.items()},
            "img_per_s_segments": {k: [round(x, 1) for x in v] for k, v in rates.items()},
            # what 2 busy cores would give: 2 / (CPU seconds per image); load-independent-ish
            "img_per_s_on_2_cpus_from_cpu_time": {
                k: round(2.0 / float(np.median(v)), 1) for k, v in cpu.items()},
            "cpu_ms_per_image_median": {k: round(1000 * float(np.median(v)), 1)
                                        for k, v in cpu.items()},
            "wall_over_per_image_median": ratios,
            "cpu_per_image_over_per_image_median": cpu_ratios}


def _interleaved_set1(path: Path) -> None:
    lines = (LFW / "pairs.txt").read_text().splitlines()[1:601]
    same, diff = lines[:300], lines[300:]
    path.write_text("\n".join(x for pair in zip(same, diff, strict=True) for x in pair) + "\n")


def _infer(root: Path, pairs: Path, out: Path, align: str | None, kind: str = "lfw") -> dict:
    from massface.infer import InferOptions, run_inference
    from massface.runtime.sources import images_dataset, lfw_dataset

    ds = lfw_dataset(root, pairs) if kind == "lfw" else images_dataset(root, pairs)
    step = None
    if align:
        from massface.align.infer_step import AlignStep

        step = AlignStep(align, workers=2)
    opts = InferOptions(out=out, workers=2, progress=False, overwrite=True, align=step)
    res = run_inference(MODEL, ds, opts)
    return res.summary.to_dict()


def _score(folder: Path) -> dict:
    """``massface-eval``'s protocol on an embedding folder (10 contiguous folds)."""
    from massface.evaluate.inputs import LoadOptions, load_input
    from massface.scoring.verification import verify

    pin = load_input(folder, LoadOptions(progress=False))
    r = verify(pin.embeddings, pin.issame)
    return {"pairs": int(r.n_pairs), "accuracy": round(float(r.accuracy), 5),
            "accuracy_std": round(float(r.accuracy_std), 5), "auc": round(float(r.auc), 6),
            "threshold_mean": round(float(np.mean(r.fold_threshold)), 4)}


def lfw_set1(work: Path) -> dict:
    pairs = work / "set1-interleaved.txt"
    _interleaved_set1(pairs)
    out: dict = {}
    for name, root, align in (("pre-aligned", LFW / "lfw-112x112", None),
                              ("raw --align arcface", LFW / "raw-set1", "arcface")):
        folder = work / name.split()[0]
        out[name] = {"infer": _infer(root, pairs, folder, align), "eval": _score(folder)}
    ref = json.loads((LFW / "landmarks-mtcnn.json").read_text())
    got = json.loads((work / "raw" / "landmarks.json").read_text())
    d = np.array([np.linalg.norm(np.array(got[k]["lm"]) - np.array(ref[k]["lm"]), axis=1).mean()
                  for k in got])
    out["landmarks_vs_shared_px"] = {"images": len(got), "mean": round(float(d.mean()), 3),
                                     "median": round(float(np.median(d)), 3),
                                     "p95": round(float(np.percentile(d, 95)), 3),
                                     "max": round(float(d.max()), 3)}
    out["crops_from_shared_landmarks"] = _crops_vs_shared(work / "from-landmarks")
    return out


def _crops_vs_shared(dst: Path) -> dict:
    """``massface-align raw-set1 --landmarks landmarks-mtcnn.json`` vs the shared crops."""
    from PIL import Image

    from massface.align import TEMPLATES, AlignSettings
    from massface.align.run import AlignJob, run_align

    run_align(AlignJob(LFW / "raw-set1", dst, AlignSettings(TEMPLATES.get("arcface")),
                       landmarks=LFW / "landmarks-mtcnn.json", progress=False, overwrite=True))
    diffs, same = [], 0
    for f in sorted((LFW / "raw-set1").rglob("*.jpg")):
        key = f.relative_to(LFW / "raw-set1")
        a = np.asarray(Image.open(dst / key), dtype=np.int16)
        b = np.asarray(Image.open(LFW / "lfw-112x112" / key), dtype=np.int16)
        diffs.append(float(np.abs(a - b).mean()))
        same += bool((a == b).all())
    return {"images": len(diffs), "mean_abs_diff": round(float(np.mean(diffs)), 6),
            "max_image_mean_abs_diff": round(float(np.max(diffs)), 6),
            "bit_identical_images": same}


def _auc(dist: np.ndarray, same: np.ndarray) -> float:
    """P(distance of a same pair < that of a different pair), ties counting 1/2."""
    pos, neg = dist[same], dist[~same]
    less = (pos[:, None] < neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(less / (pos.size * neg.size))


def photos(work: Path) -> dict:
    """massface-align over the photos, then master.csv's pairs at the LFW threshold."""
    import csv

    from massface.align import TEMPLATES, AlignSettings
    from massface.align.run import AlignJob, run_align
    from massface.formats.embedding_dir import EMBEDDINGS, INDEX
    from massface.scoring.embeddings import normalize_l2

    full = work / "lfw-full"
    _infer(LFW / "lfw-112x112", LFW / "pairs.txt", full, None)
    threshold = _score(full)["threshold_mean"]
    dst = work / "photos-aligned"
    s = run_align(AlignJob(PHOTOS, dst, AlignSettings(TEMPLATES.get("arcface")),
                           progress=False, overwrite=True))
    skipped = (dst / "skipped.txt").read_text().splitlines()[1:]
    bad = {line.split("\t")[0] for line in skipped}
    with open(PHOTOS / "master.csv", newline="") as fh:
        rows = [(r["file_x"], r["file_y"], r["Decision"] == "Yes") for r in csv.DictReader(fh)]
    kept = [r for r in rows if r[0] not in bad and r[1] not in bad]
    pairs = work / "photos-pairs.txt"
    pairs.write_text("# massface-pairs v1\n" + "".join(
        f"{a}\t{b}\t{int(y)}\n" for a, b, y in kept))
    emb_dir = work / "photos-emb"
    _infer(dst, pairs, emb_dir, None, kind="images")
    emb = normalize_l2(np.load(emb_dir / EMBEDDINGS))
    row = {k: i for i, k in enumerate((emb_dir / INDEX).read_text().splitlines())}
    a = emb[[row[x] for x, _, _ in kept]]
    b = emb[[row[y] for _, y, _ in kept]]
    dist = ((a - b) ** 2).sum(axis=1)
    same = np.array([y for _, _, y in kept])
    return {"align": s.to_dict(), "skipped": skipped, "pairs": len(rows),
            "pairs_scored": len(kept), "same": int(same.sum()),
            "auc": round(_auc(dist, same), 5), "lfw_threshold": threshold,
            "accuracy_at_lfw_threshold": round(float(((dist < threshold) == same).mean()), 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="all",
                    choices=["speed", "lfw-set1", "photos", "all"],
                    help="what to measure (default: all)")
    ap.add_argument("--limit", type=int, default=807)
    ap.add_argument("--segments", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8, help="images per detection group")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.mode in ("speed", "all"):
            result["speed"] = speed(args.limit, args.segments, args.workers, args.batch)
            print(json.dumps(result["speed"], indent=2), flush=True)
        if args.mode in ("lfw-set1", "all"):
            result["lfw_set1"] = lfw_set1(work)
        if args.mode in ("photos", "all"):
            result["photos"] = photos(work)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
