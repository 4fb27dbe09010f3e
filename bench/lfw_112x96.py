"""A 112x96 model on the shared 112x112 LFW crops: --fit center vs a hand crop vs squash.

    .venv/bin/python -m bench.lfw_112x96 [--work /tmp/lfw112x96] [--limit N]

No pretrained 112x96 model is available offline, so this builds an honest one from the
shared MobileFaceNet: an NCHW ``[N, 3, 112, 96]`` input, padded back to 112x112 with the
value of a black pixel (``(0 - 127.5) / 128``, 8 columns each side) and transposed to
the shared graph's NHWC input. Fed the SphereFace crop (columns 8..103 of the ArcFace
crop) it sees the face where it was trained to, with black side borders; fed a squashed
image it sees the whole face narrowed by 96/112. Three runs of ``massface-infer`` over
the 7,701 pair images, each scored by ``massface-eval``'s default protocol:

* no option (``--fit center``, the default),
* the same crops cut by hand to columns 8..103 (saved as PNG: lossless),
* ``--fit squash`` (what massface-infer did before ``--fit`` existed).

The first two must agree bit for bit; the load average is printed beside the times.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from tests.helpers.shared import lfw_dir, lfw_pairs, pretrained_onnx

BLACK = (0.0 - 127.5) / 128.0


def build_112x96(src: Path, dst: Path) -> None:
    """The shared NHWC 112x112 graph behind an NCHW 112x96 input (padded with black)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    old = graph.input[0]
    new_name = "input_nchw"
    pads = numpy_helper.from_array(np.array([0, 0, 0, 8, 0, 0, 0, 8], np.int64), "fit_pads")
    value = numpy_helper.from_array(np.array(BLACK, np.float32), "fit_black")
    nodes = [helper.make_node("Pad", [new_name, "fit_pads", "fit_black"], ["fit_padded"],
                              mode="constant"),
             helper.make_node("Transpose", ["fit_padded"], [old.name], perm=[0, 2, 3, 1])]
    graph.initializer.extend([pads, value])
    for i, node in enumerate(nodes):
        graph.node.insert(i, node)
    graph.input.remove(old)
    graph.input.insert(0, helper.make_tensor_value_info(new_name, TensorProto.FLOAT,
                                                        ["N", 3, 112, 96]))
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def hand_crops(root: Path, pairs: Path, out: Path) -> Path:
    """Every pair image cut to columns 8..103, as PNG under ``out`` (same tree)."""
    from PIL import Image

    from massface.formats.pairs import read_pairs, require_reference

    refs = sorted({r for p in read_pairs(pairs) for r in (p.a, p.b)})
    for ref in refs:
        path = require_reference(root, ref, "pairs")
        dst = out / Path(path.relative_to(root)).with_suffix(".png")
        if dst.is_file():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        px = np.asarray(Image.open(path).convert("RGB"))
        Image.fromarray(px[:, 8:104]).save(dst)
    return out


def embed(model: Path, root: Path, pairs: Path, out: Path, *extra: str) -> float:
    from typer.testing import CliRunner

    from massface.infer.cli import app

    t = time.perf_counter()
    r = CliRunner().invoke(app, ["--model", str(model), "--lfw", str(root), "--pairs",
                                 str(pairs), "--out", str(out), "--quiet", "--overwrite", *extra])
    if r.exit_code != 0:
        raise SystemExit(r.output)
    return time.perf_counter() - t


def score(out: Path):
    from massface.evaluate.inputs import LoadOptions, load_input
    from massface.scoring.verification import verify

    data = load_input(out, LoadOptions(progress=False))
    return data, verify(data.embeddings, data.issame)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/lfw112x96"))
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    model = work / "m112x96.onnx"
    build_112x96(pretrained_onnx(), model)
    crops = hand_crops(lfw_dir(), lfw_pairs(), work / "hand")
    runs = {"no option (--fit center)": (lfw_dir(), lfw_pairs(), ()),
            "hand crop, columns 8..103": (crops, lfw_pairs(), ()),
            "--fit squash": (lfw_dir(), lfw_pairs(), ("--fit", "squash"))}
    results = {}
    for i, (name, (root, pairs, extra)) in enumerate(runs.items()):
        load = os.getloadavg()[0]
        wall = embed(model, root, pairs, work / f"run{i}", *extra)
        data, r = score(work / f"run{i}")
        results[name] = data
        print(f"{name:28s} {100 * r.accuracy:.3f}% ± {100 * r.accuracy_std:.3f}  "
              f"AUC {r.auc:.6f}  ({wall:.0f} s, load {load:.1f})", flush=True)
    a, b = (results[k].embeddings for k in list(runs)[:2])
    print("center vs hand crop embeddings bit-identical:", bool(np.array_equal(a, b)))


if __name__ == "__main__":
    main()
