"""ONNX Runtime vs OpenVINO (fp32, bf16), bare engine and massface-infer end to end.

    python -m bench.bench_infer [--limit N] [--segments 10] [--batch 32] [--threads 2]
                                [--workers 1] [--streams 1] [--json out.json]

Images: the distinct LFW images named by the shared pairs.txt (7,701), model: the shared
MobileFaceNet ONNX. Measured on each slice of images, in one run:

* bare ONNX Runtime: ``session.run`` (the session massface-infer builds) over batches
  preloaded as float32 arrays: no decoding, no writing, the engine's rate;
* bare OpenVINO fp32 / bf16: the model compiled as massface-infer compiles it (static
  batch, ``--streams``, ``--threads``), ``streams + 1`` asynchronous infer requests kept
  in flight over the same preloaded batches, outputs copied out;
* massface-infer end to end with each: ``run_inference`` from the image files to a
  finished embedding folder (model load, listing, decoding on the thread pool, inference,
  resumable chunks, final files);
* decoding alone: the slice's JPEGs decoded and normalised on one thread.

bf16 runs only where the CPU has native bf16 (OpenVINO lists BF16 in its capabilities:
AVX512-BF16 or AMX); elsewhere its rows say so. The machine is shared and its load swings
throughput within a minute, so the order of the measurements rotates from slice to slice
and every ratio is taken within a slice (OpenVINO / ONNX Runtime, end to end / bare); the
medians over slices are reported. CPU time per image (process CPU seconds, all threads)
is reported too. Targets: OpenVINO end to end >= 1.2x (fp32) and >= 2.5x (bf16) the ONNX
Runtime end-to-end rate; ONNX Runtime end to end >= 0.9x its bare rate.
"""

import argparse
import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from massface.errors import InputError
from massface.infer import InferOptions, run_inference
from massface.runtime.backends import open_backend
from massface.runtime.sources import lfw_dataset
from tests.helpers import shared as shared_data

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16",
             "amx_fp16")


def cpu_description() -> dict:
    """Model name and the vector/matrix flags that decide OpenVINO's precisions."""
    name, flags = "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name == "?":
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    caps: list[str] = []
    try:
        import openvino as ov

        caps = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except ImportError:
        pass
    return {"model": name, "flags": {f: f in flags for f in CPU_FLAGS},
            "openvino_capabilities": caps}


def timed(fn: Callable[[], int]) -> tuple[float, float]:
    """(images/s, images per CPU-second) of ``fn``, which returns the images it handled."""
    t, c = time.perf_counter(), time.process_time()
    n = fn()
    return n / (time.perf_counter() - t), n / max(time.process_time() - c, 1e-9)


def bare_ort(model: Path, batches: list[np.ndarray], args) -> Callable[[], int]:
    backend = open_backend(model, backend="onnxruntime", threads=args.threads, device="cpu")
    sess = backend.session
    sess.run(None, {"input": batches[0][:1]})

    def loop() -> int:
        for b in batches:
            sess.run(["embeddings"], {"input": b})
        return sum(len(b) for b in batches)

    return loop


def bare_openvino(model: Path, batches: list[np.ndarray], args, precision: str
                  ) -> Callable[[], int]:
    """The engine's own asynchronous requests over preloaded, full batches."""
    backend = open_backend(model, backend="openvino", threads=args.threads,
                           precision=precision, streams=args.streams, batch_size=args.batch)
    compiled = backend.compiled
    requests = [compiled.create_infer_request() for _ in range(backend.in_flight)]
    full = [b for b in batches if len(b) == args.batch]
    requests[0].infer({0: full[0]})

    def loop() -> int:
        busy = [False] * len(requests)
        for k, b in enumerate(full):
            i = k % len(requests)
            if busy[i]:
                requests[i].wait()
                requests[i].get_output_tensor(0).data.copy()
            requests[i].start_async({0: b}, share_inputs=True)
            busy[i] = True
        for i, r in enumerate(requests):
            if busy[i]:
                r.wait()
                r.get_output_tensor(0).data.copy()
        return sum(len(b) for b in full)

    return loop


def end_to_end(model: Path, ds, args, backend: str, precision: str, seen: dict
               ) -> Callable[[], int]:
    """The whole run_inference; ``seen`` gets the rate massface-infer itself reports (its
    embedding loop: first batch handed in to last result, without the model load)."""
    def run() -> int:
        with tempfile.TemporaryDirectory() as tmp:
            opts = InferOptions(out=Path(tmp) / "run", batch_size=args.batch,
                                threads=args.threads, workers=args.workers, device="cpu",
                                backend=backend, precision=precision, progress=False,
                                streams=args.streams if backend == "openvino" else None)
            summary = run_inference(model, ds, opts).summary
        seen.update(loop=summary.images_per_s, load_s=summary.model_load_s)
        return len(ds.keys)

    return run


def decode_only(ds, prep, batch: int) -> Callable[[], int]:
    """Decoding and normalising alone, one thread, batch by batch as the loader does (one
    array of the whole slice would add page faults the pipeline never pays)."""
    from massface.runtime.loader import LoaderOptions, load_rows

    opts, n = LoaderOptions(prep), len(ds.keys)
    return lambda: sum(len(load_rows(ds, s, min(n, s + batch), opts).array)
                       for s in range(0, n, batch))


ENGINES = (("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"))


def label(engine: tuple[str, str]) -> str:
    return engine[0] if engine[0] == "onnxruntime" else f"{engine[0]} {engine[1]}"


def available(model: Path, engine: tuple[str, str]) -> str | None:
    """None when the engine runs here, else why not."""
    try:
        open_backend(model, backend=engine[0], precision=engine[1], threads=1).close()
    except InputError as exc:
        return str(exc)
    return None


def measure_slice(i: int, model: Path, ds, arr: np.ndarray, args,
                  engines: list[tuple[str, str]]) -> dict:
    from massface.runtime.preprocess import Preprocessing

    batches = [np.ascontiguousarray(arr[j:j + args.batch]) for j in range(0, len(arr),
                                                                          args.batch)]
    decode = decode_only(ds, Preprocessing(), args.batch)
    jobs: list[tuple[str, Callable[[], int]]] = [("decode", decode)]
    seen: dict[str, dict] = {}
    for e in engines:
        bare = (bare_ort(model, batches, args) if e[0] == "onnxruntime" else
                bare_openvino(model, batches, args, e[1]))
        seen[label(e)] = {}
        jobs += [(f"bare {label(e)}", bare),
                 (f"e2e {label(e)}", end_to_end(model, ds, args, *e, seen[label(e)]))]
    jobs = jobs[i % len(jobs):] + jobs[:i % len(jobs)]  # rotate the order per slice
    got = {name: timed(fn) for name, fn in jobs}
    for name, d in seen.items():  # massface-infer's own rate; CPU time is not split out
        got[f"loop {name}"] = (d["loop"], float("nan"))
        got[f"load {name}"] = (d["load_s"], float("nan"))
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    ap.add_argument("--segments", type=int, default=10, help="slices")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="engine threads (all engines)")
    ap.add_argument("--workers", type=int, default=1, help="decode threads (end to end)")
    ap.add_argument("--streams", type=int, default=None, help="OpenVINO streams (default: "
                                                                "massface-infer's)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from massface.runtime.loader import LoaderOptions, load_rows
    from massface.runtime.preprocess import Preprocessing

    model = shared_data.pretrained_onnx()
    full = lfw_dataset(shared_data.lfw_dir(), shared_data.lfw_pairs())
    n = args.limit or len(full.keys)
    cpu = cpu_description()
    print(f"CPU: {cpu['model']}; flags: "
          f"{', '.join(f for f, on in cpu['flags'].items() if on) or 'none of interest'}; "
          f"OpenVINO capabilities: {', '.join(cpu['openvino_capabilities']) or '-'}")
    skipped = {label(e): why for e in ENGINES if (why := available(model, e))}
    engines = [e for e in ENGINES if label(e) not in skipped]
    for name, why in skipped.items():
        print(f"{name}: not measured: {why}")
    bounds = np.linspace(0, n, args.segments + 1).astype(int)
    print(f"{n} LFW images in {args.segments} slices; batch {args.batch}, engine threads "
          f"{args.threads}, decode workers {args.workers}", flush=True)
    rows = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        ds = replace(full, keys=full.keys[a:b], items=full.items[a:b], pairs=None,
                     pairs_file=None, slots=None)
        arr = load_rows(ds, 0, len(ds.keys), LoaderOptions(Preprocessing())).array
        got = measure_slice(i, model, ds, arr, args, engines)
        rows.append({"images": int(b - a), "load_average": list(os.getloadavg()),
                     **{k: {"images_per_s": round(v[0], 3),
                            "images_per_cpu_s": None if v[1] != v[1] else round(v[1], 1)}
                        for k, v in got.items()}})
        print(f"slice {i} (load {os.getloadavg()[0]:.1f}): " + ", ".join(
            f"{k} {v[0]:.1f}" for k, v in got.items() if not k.startswith("load")) + " img/s",
            flush=True)
    report = summarise(rows, engines)
    if args.json:
        args.json.write_text(json.dumps({
            "images": n, "batch": args.batch, "threads": args.threads, "workers": args.workers,
            "streams": args.streams, "cpu": cpu, "not_measured": skipped, "slices": rows,
            **report}, indent=2) + "\n")


def _median_ratio(rows: list[dict], num: str, den: str) -> float:
    return float(np.median([r[num]["images_per_s"] / r[den]["images_per_s"] for r in rows]))


def summarise(rows: list[dict], engines: list[tuple[str, str]]) -> dict:
    """Median rates, and within-slice ratios to ONNX Runtime and end to end / bare."""
    def med(key: str, field: str = "images_per_s") -> float:
        return float(np.median([r[key][field] for r in rows]))

    out: dict = {"decode_1_thread_images_per_s": round(med("decode"), 1), "engines": {}}
    decode_cpu = 1000 / med("decode", "images_per_cpu_s")
    out["decode_cpu_ms_per_image"] = round(decode_cpu, 3)
    print(f"\nmedians over slices (decode alone, 1 thread: {med('decode'):.1f} img/s, "
          f"{decode_cpu:.2f} CPU-ms/img)")
    print(f"{'engine':18s} {'bare img/s':>10s} {'x ORT':>6s} {'e2e img/s':>10s} {'x ORT':>6s} "
          f"{'e2e/bare':>8s} {'CPU-ms/img bare':>15s} {'e2e':>6s}")
    for e in engines:
        name = label(e)
        d = {"bare_images_per_s": round(med(f"bare {name}"), 1),
             "e2e_images_per_s": round(med(f"e2e {name}"), 1),
             "bare_vs_ort": round(_median_ratio(rows, f"bare {name}", "bare onnxruntime"), 3),
             "e2e_vs_ort": round(_median_ratio(rows, f"e2e {name}", "e2e onnxruntime"), 3),
             "e2e_vs_bare": round(_median_ratio(rows, f"e2e {name}", f"bare {name}"), 3),
             "infer_reported_images_per_s": round(med(f"loop {name}"), 1),
             "infer_reported_vs_bare": round(_median_ratio(rows, f"loop {name}",
                                                           f"bare {name}"), 3),
             "model_load_s": round(med(f"load {name}"), 3),
             "bare_cpu_ms_per_image": round(1000 / med(f"bare {name}", "images_per_cpu_s"), 2),
             "e2e_cpu_ms_per_image": round(1000 / med(f"e2e {name}", "images_per_cpu_s"), 2)}
        out["engines"][name] = d
        print(f"{name:18s} {d['bare_images_per_s']:10.1f} {d['bare_vs_ort']:6.2f} "
              f"{d['e2e_images_per_s']:10.1f} {d['e2e_vs_ort']:6.2f} {d['e2e_vs_bare']:8.3f} "
              f"{d['bare_cpu_ms_per_image']:15.2f} {d['e2e_cpu_ms_per_image']:6.2f}")
    print("massface-infer's own rate (its embedding loop, as it prints; the run above adds "
          "the model load):")
    for name, d in out["engines"].items():
        print(f"  {name:18s} {d['infer_reported_images_per_s']:8.1f} img/s = "
              f"{d['infer_reported_vs_bare']:.3f} x bare (model load {d['model_load_s']:.2f} s)")
    targets = {"openvino fp32": 1.2, "openvino bf16": 2.5}
    for name, target in targets.items():
        if name in out["engines"]:
            got = out["engines"][name]["e2e_vs_ort"]
            print(f"{name} end to end / ONNX Runtime end to end = {got:.2f} "
                  f"({'meets' if got >= target else 'BELOW'} the {target}x target)")
    return out


if __name__ == "__main__":
    main()
