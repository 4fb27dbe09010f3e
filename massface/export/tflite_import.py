"""Bring a published TFLite face model into the pipeline: TFLite -> ONNX, dynamic batch.

The reference for parity is the TFLite interpreter itself, run on the model as shipped.
Such models often have a fixed batch (the shared MobileFaceNet: ``[2, 112, 112, 3]``,
with batch 2 baked into a ``Reshape``), so the interpreter is run at its native batch
(the last chunk padded by repeating its final image, the padding discarded) and the ONNX
model, made dynamic, at two other batch sizes.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from massface.errors import InputError

#: Loads the model, allocates its tensors and runs it once on zeros: everything the
#: export does with the interpreter, so a file that passes cannot crash this process.
_PROBE = """
import sys, warnings
warnings.simplefilter("ignore")
import numpy as np, tensorflow as tf
it = tf.lite.Interpreter(model_path=sys.argv[1])
it.allocate_tensors()
for d in it.get_input_details():
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
it.invoke()
"""

#: Every TFLite flatbuffer carries this file identifier at bytes 4..8.
TFLITE_IDENTIFIER = b"TFL3"


def check_tflite_file(path: str | os.PathLike[str]) -> Path:
    """Refuse a missing, foreign, truncated or damaged ``.tflite`` before this process's
    interpreter touches it (it segfaults on a truncated file)."""
    from massface.native import probe_in_child

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: TFLite model not found")
    with open(p, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
        raise InputError(f"{p}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
    probe_in_child(_PROBE, p, "TFLite model")
    return p


class TFLiteRunner:
    """A single-input, single-output float32 TFLite model on the TFLite interpreter."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import tensorflow as tf

        self.path = check_tflite_file(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
                self.interpreter = tf.lite.Interpreter(model_path=str(self.path))
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise InputError(f"{self.path}: not a loadable TFLite model: {exc}") from exc
        ins = self.interpreter.get_input_details()
        outs = self.interpreter.get_output_details()
        if len(ins) != 1 or len(outs) != 1:
            raise InputError(f"{self.path}: expected one input and one output, got "
                             f"{[d['name'] for d in ins]} -> {[d['name'] for d in outs]}")
        self.input, self.output = ins[0], outs[0]
        if self.input["dtype"] != np.float32 or self.output["dtype"] != np.float32:
            raise InputError(f"{self.path}: only float32 models are supported (quantised "
                             f"input/output found: {self.input['dtype']}, "
                             f"{self.output['dtype']})")
        self.batch = int(self.input["shape"][0])
        self.image_shape = tuple(int(d) for d in self.input["shape"][1:])
        self.output_dim = int(self.output["shape"][-1])

    def describe(self) -> dict:
        return {
            "input": {"name": self.input["name"], "shape": self.input["shape"].tolist()},
            "output": {"name": self.output["name"], "shape": self.output["shape"].tolist()},
        }

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if tuple(images.shape[1:]) != self.image_shape:
            raise InputError(f"{self.path}: expects images {list(self.image_shape)}, got "
                             f"{list(images.shape[1:])}")
        out = []
        for start in range(0, len(images), self.batch):
            chunk = images[start:start + self.batch]
            n = len(chunk)
            if n < self.batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - n, axis=0)])
            self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(chunk))
            self.interpreter.invoke()
            out.append(self.interpreter.get_tensor(self.output["index"])[:n].copy())
        return np.concatenate(out).astype(np.float32)
