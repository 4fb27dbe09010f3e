"""ONNX inference and evaluation never load TensorFlow, OpenVINO or Ascend's ``acl``.

They are heavy or absent on inference machines: TensorFlow is for ``.pb`` models only,
OpenVINO for its backend only (``--backend openvino``, ``.xml`` models, and ``auto`` on an
x86 CPU where it is installed: so the run here names ONNX Runtime), ``acl`` for ``.om``
models only. Checked in a fresh interpreter, after a real run.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from PIL import Image

from tests.helpers.models import make_linear_onnx

SCRIPT = """
import sys
from massface.infer.cli import main as infer
from massface.evaluate.cli import main as evaluate
for cmd, argv in ((infer, {infer_args!r}), (evaluate, {eval_args!r})):
    sys.argv = ["massface", *argv]
    try:
        cmd()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
heavy = sorted(m for m in ("tensorflow", "acl", "tf2onnx", "openvino") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


def test_onnx_inference_and_eval_load_no_tensorflow_openvino_or_acl(tmp_path):
    model = tmp_path / "m.onnx"
    make_linear_onnx(model, size=(8, 8), dim=4)
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    for person in range(4):
        (root / f"p{person}").mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
                root / f"p{person}" / f"{i}.png")
    out = tmp_path / "out"
    infer_args = ["--model", str(model), "--images", str(root), "--out", str(out), "--quiet",
                  "--backend", "onnxruntime"]
    emb = tmp_path / "pairs.npy"
    np.save(emb, rng.standard_normal((40, 4)).astype(np.float32))
    labels = tmp_path / "labels.json"
    labels.write_text("[" + ",".join(["1", "0"] * 10) + "]")
    eval_args = [str(emb), "--labels", str(labels), "--json", str(tmp_path / "e.json")]
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(infer_args=infer_args,
                                                               eval_args=eval_args)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "embeddings.npy").is_file() and (tmp_path / "e.json").is_file()
    assert "HEAVY=\n" in proc.stdout, proc.stdout
