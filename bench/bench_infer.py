"""massface-infer end to end vs a bare ONNX Runtime loop, same model, batch and threads.

    python bench/bench_infer.py [--limit N] [--batch 32] [--threads 2] [--workers 1 2]
                                [--repeats 2] [--json out.json]

Images: the distinct LFW images named by the shared pairs.txt (7,701), model: the shared
MobileFaceNet ONNX. The bare loop runs ``session.run`` over batches preloaded as float32
arrays (no decoding, no writing: an upper bound); the end-to-end figure is
``run_inference`` from the image files to a finished embedding folder (listing, decoding
on the thread pool, inference, resumable chunks, final files). Both are measured in the
same process, alternating, and the best of ``--repeats`` of each is kept, so the ratio is
robust to other load on the machine. Target: end to end >= 0.9x the bare loop.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from massface.infer import InferOptions, run_inference
from massface.infer.backends.onnx_backend import OnnxBackend
from massface.infer.sources import lfw_dataset
from massface.tools import shared_data


def bare_loop(model: Path, batches: list[np.ndarray], threads: int | None) -> float:
    """``session.run`` over preloaded batches, with the session massface-infer would build."""
    backend = OnnxBackend(model, threads=threads, device="cpu")
    sess = backend.session
    sess.run(None, {"input": batches[0][:1]})
    n = sum(len(b) for b in batches)
    t = time.perf_counter()
    for b in batches:
        sess.run(["embeddings"], {"input": b})
    return n / (time.perf_counter() - t)


def end_to_end(model: Path, ds, batch: int, threads: int | None, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        opts = InferOptions(out=Path(tmp) / "run", batch_size=batch, threads=threads,
                            workers=workers, device="cpu", progress=False)
        t = time.perf_counter()
        run_inference(model, ds, opts)
        return len(ds.keys) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads (both)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="decode threads to try for end to end")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    model = shared_data.pretrained_onnx()
    ds = lfw_dataset(shared_data.lfw_dir(), shared_data.lfw_pairs())
    if args.limit:
        ds.keys, ds.items = ds.keys[:args.limit], ds.items[:args.limit]
        ds.pairs = ds.slots = None
    from massface.infer.loader import LoaderOptions, load_rows
    from massface.infer.preprocess import Preprocessing

    t = time.perf_counter()
    loaded = load_rows(ds, 0, len(ds.keys), LoaderOptions(Preprocessing()))
    batches = [np.ascontiguousarray(loaded.array[i:i + args.batch])
               for i in range(0, len(ds.keys), args.batch)]
    del loaded
    print(f"{len(ds.keys)} images preloaded in {time.perf_counter() - t:.1f} s; batch "
          f"{args.batch}, ORT intra-op threads {args.threads}", flush=True)

    bare: list[float] = []
    e2e: dict[int, list[float]] = {w: [] for w in args.workers}
    for r in range(args.repeats):
        bare.append(bare_loop(model, batches, args.threads))
        print(f"[{r}] bare ONNX Runtime loop: {bare[-1]:.1f} img/s", flush=True)
        for w in args.workers:
            e2e[w].append(end_to_end(model, ds, args.batch, args.threads, w))
            print(f"[{r}] massface-infer end to end (workers {w}): {e2e[w][-1]:.1f} img/s",
                  flush=True)
    best_bare = max(bare)
    result = {"images": len(ds.keys), "batch": args.batch, "threads": args.threads,
              "bare_images_per_s": round(best_bare, 1), "end_to_end": {}}
    print(f"\nbest bare loop: {best_bare:.1f} img/s")
    for w, vals in e2e.items():
        ratio = max(vals) / best_bare
        result["end_to_end"][f"workers={w}"] = {"images_per_s": round(max(vals), 1),
                                                "ratio_to_bare": round(ratio, 3)}
        print(f"end to end, workers {w}: {max(vals):.1f} img/s = {ratio:.3f}x bare "
              f"({'meets' if ratio >= 0.9 else 'BELOW'} the 0.9x target)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
