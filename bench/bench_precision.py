"""Speed of the precision-preview artifacts against fp32: same images, same run, same machine.

    python -m bench.bench_precision [--images 1024] [--rounds 8] [--batch 32] [--threads 2]
                                    [--calibration 64] [--json out.json]

Model: the shared MobileFaceNet ONNX; its fp16 simulation, its int8 QDQ model (first and
last convolutions in float, calibrated on LFW faces outside pairs.txt) and its AIPP twin
are built here with massface's own functions. Images: the first N distinct LFW images of
pairs.txt, decoded once (uint8 for the twin, normalised float32 for the others).

Each variant runs through massface-infer's ONNX Runtime backend (same session options) on
the same preloaded batches. The machine is shared and its load swings, so the variants
take turns: in each round every variant embeds all N images, in a rotated order; the
figure per variant is the median over rounds of its images/s, and its ratio to fp32 the
median of the per-round ratios. Model time only (no decoding).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.helpers import shared as shared_data


def build_variants(folder: Path, calibration: int) -> dict[str, Path]:
    import onnx

    from massface.export.aipp import AippConfig, twin
    from massface.export.fp16 import simulate_fp16
    from massface.export.int8 import Int8Options, quantize_int8
    from massface.export.tflite_weights import calibration_faces
    from massface.formats.preprocessing import Preprocessing

    src = shared_data.pretrained_onnx()
    fp32 = onnx.load(str(src))
    prep = Preprocessing()
    paths = {"fp32": src, "aipp": folder / "aipp.onnx", "fp16": folder / "fp16sim.onnx",
             "int8": folder / "int8.onnx"}
    onnx.save(twin(fp32, AippConfig.from_preprocessing(prep)), str(paths["aipp"]))
    onnx.save(simulate_fp16(fp32), str(paths["fp16"]))
    faces = calibration_faces(None, calibration, prep)
    onnx.save(quantize_int8(fp32, faces.images, Int8Options())[0], str(paths["int8"]))
    return paths


def load_pixels(n: int) -> np.ndarray:
    from massface.runtime.preprocess import decode_image
    from massface.runtime.sources import lfw_dataset

    ds = lfw_dataset(shared_data.lfw_dir(), shared_data.lfw_pairs())
    return np.stack([decode_image(p, str(p), (112, 112)) for p in ds.items[:n]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    ap.add_argument("--calibration", type=int, default=64, help="int8 calibration faces")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    shared_data.use_shared_root()

    from massface.formats.preprocessing import Preprocessing
    from massface.runtime.backends import BackendOptions
    from massface.runtime.backends.onnx_backend import OnnxBackend

    pixels = load_pixels(args.images)
    floats = Preprocessing(mean=127.5, std=128.0).normalize(pixels)
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_variants(Path(tmp), args.calibration)
        options = BackendOptions(threads=args.threads, device="cpu")
        backends = {k: OnnxBackend(p, options) for k, p in paths.items()}
        names = list(backends)
        rates: dict[str, list[float]] = {k: [] for k in names}
        for b in backends.values():  # warm-up
            b.embed((pixels if b.info.input_dtype == "uint8" else floats)[:args.batch])
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                b = backends[name]
                x = pixels if b.info.input_dtype == "uint8" else floats
                t = time.perf_counter()
                for i in range(0, len(x), args.batch):
                    b.embed(x[i:i + args.batch])
                rates[name].append(len(x) / (time.perf_counter() - t))
    result = {}
    for name in names:
        ratios = [a / f for a, f in zip(rates[name], rates["fp32"], strict=True)]
        result[name] = {"images_per_s": round(float(np.median(rates[name])), 1),
                        "vs_fp32": round(float(np.median(ratios)), 3),
                        "per_round": [round(x, 1) for x in rates[name]]}
    print(f"{args.images} LFW images x {args.rounds} rounds, batch {args.batch}, "
          f"{args.threads} ORT threads (massface-infer's ONNX Runtime backend)")
    print(f"{'variant':8s} {'img/s':>8s} {'x fp32':>8s}")
    for name, r in result.items():
        print(f"{name:8s} {r['images_per_s']:8.1f} {r['vs_fp32']:8.3f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "result": result}, indent=2))


if __name__ == "__main__":
    main()
