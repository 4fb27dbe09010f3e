"""massface-infer end to end vs a bare ONNX Runtime loop, same model, batch and threads.

    python -m bench.bench_infer [--limit N] [--segments 10] [--batch 32] [--threads 2]
                                [--workers 1] [--json out.json]

Images: the distinct LFW images named by the shared pairs.txt (7,701), model: the shared
MobileFaceNet ONNX. The bare loop runs ``session.run`` (a session built exactly as
massface-infer builds it) over batches preloaded as float32 arrays: no decoding, no
writing, an upper bound. The end-to-end figure is ``run_inference`` from the image files
to a finished embedding folder (model load, listing, decoding on the thread pool,
inference, resumable chunks, final files).

The machine is shared, and its load swings throughput by 2x within a minute, so the two
are measured on the same slices of images, back to back, in ABBA order (segment i even:
bare then end to end; odd: the reverse), and the ratio of each neighbouring pair is
taken: the median of those ratios is the figure reported. CPU time per image (process CPU
seconds, all threads) is reported too; its ratio shows what decoding and writing cost.
Target: end to end >= 0.9x the bare loop.
"""

import argparse
import itertools
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from massface.infer import InferOptions, run_inference
from massface.infer.backends.onnx_backend import OnnxBackend
from massface.infer.sources import lfw_dataset
from tests.helpers import shared as shared_data


def bare_loop(model: Path, batches: list[np.ndarray], threads: int | None
              ) -> tuple[float, float]:
    """``session.run`` over preloaded batches, with the session massface-infer would build.

    Returns (images/s, images per CPU-second)."""
    backend = OnnxBackend(model, threads=threads, device="cpu")
    sess = backend.session
    sess.run(None, {"input": batches[0][:1]})
    n = sum(len(b) for b in batches)
    t, c = time.perf_counter(), time.process_time()
    for b in batches:
        sess.run(["embeddings"], {"input": b})
    return n / (time.perf_counter() - t), n / (time.process_time() - c)


def end_to_end(model: Path, ds, batch: int, threads: int | None, workers: int
               ) -> tuple[float, float]:
    """``run_inference`` from image files to a finished embedding folder."""
    with tempfile.TemporaryDirectory() as tmp:
        opts = InferOptions(out=Path(tmp) / "run", batch_size=batch, threads=threads,
                            workers=workers, device="cpu", progress=False)
        t, c = time.perf_counter(), time.process_time()
        run_inference(model, ds, opts)
        n = len(ds.keys)
        return n / (time.perf_counter() - t), n / (time.process_time() - c)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    ap.add_argument("--segments", type=int, default=10, help="ABBA slices")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads (both)")
    ap.add_argument("--workers", type=int, default=1, help="decode threads (end to end)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from massface.infer.loader import LoaderOptions, load_rows
    from massface.infer.preprocess import Preprocessing

    model = shared_data.pretrained_onnx()
    full = lfw_dataset(shared_data.lfw_dir(), shared_data.lfw_pairs())
    n = args.limit or len(full.keys)
    bounds = np.linspace(0, n, args.segments + 1).astype(int)
    print(f"{n} LFW images in {args.segments} slices; batch {args.batch}, ORT intra-op "
          f"threads {args.threads}, decode workers {args.workers}", flush=True)
    rows = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        ds = replace(full, keys=full.keys[a:b], items=full.items[a:b], pairs=None,
                     pairs_file=None, slots=None)
        arr = load_rows(ds, 0, len(ds.keys), LoaderOptions(Preprocessing())).array
        batches = [np.ascontiguousarray(arr[j:j + args.batch])
                   for j in range(0, len(arr), args.batch)]
        order = ("bare", "e2e") if i % 2 == 0 else ("e2e", "bare")
        got = {}
        for what in order:
            got[what] = (bare_loop(model, batches, args.threads) if what == "bare" else
                         end_to_end(model, ds, args.batch, args.threads, args.workers))
        ratio, cpu_ratio = got["e2e"][0] / got["bare"][0], got["e2e"][1] / got["bare"][1]
        rows.append({"images": int(b - a), "bare_images_per_s": round(got["bare"][0], 1),
                     "e2e_images_per_s": round(got["e2e"][0], 1), "ratio": round(ratio, 3),
                     "cpu_ratio": round(cpu_ratio, 3)})
        print(f"slice {i}: bare {got['bare'][0]:6.1f} img/s, end to end {got['e2e'][0]:6.1f} "
              f"img/s, ratio {ratio:.3f} (CPU-time ratio {cpu_ratio:.3f})", flush=True)
    med = float(np.median([r["ratio"] for r in rows]))
    cpu_med = float(np.median([r["cpu_ratio"] for r in rows]))
    bare_med = float(np.median([r["bare_images_per_s"] for r in rows]))
    e2e_med = float(np.median([r["e2e_images_per_s"] for r in rows]))
    print(f"\nmedian: bare {bare_med:.1f} img/s, end to end {e2e_med:.1f} img/s; end to end / "
          f"bare = {med:.3f} ({'meets' if med >= 0.9 else 'BELOW'} the 0.9x target); "
          f"CPU-time ratio {cpu_med:.3f}")
    if args.json:
        args.json.write_text(json.dumps({
            "images": n, "batch": args.batch, "threads": args.threads,
            "workers": args.workers, "slices": rows, "ratio_median": round(med, 3),
            "cpu_ratio_median": round(cpu_med, 3), "bare_median": bare_med,
            "e2e_median": e2e_med}, indent=2) + "\n")


if __name__ == "__main__":
    main()
