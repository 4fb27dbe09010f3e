"""massface.infer: batched offline inference on ONNX Runtime, TensorFlow .pb and Ascend .om.

Public API::

    from massface.infer import open_backend, run_inference, InferOptions, sources
    ds = sources.lfw_dataset(lfw_dir, pairs_txt)
    result = run_inference("model.onnx", ds, InferOptions(out=Path("work_dirs/run")))

The command line is ``massface-infer`` (:mod:`massface.infer.cli`).
"""

from massface.infer.backends import BACKENDS, Backend, ModelInfo, open_backend
from massface.infer.preprocess import Preprocessing
from massface.infer.runner import InferOptions, InferResult, InferSummary, run_inference

__all__ = ["BACKENDS", "Backend", "InferOptions", "InferResult", "InferSummary", "ModelInfo",
           "Preprocessing", "open_backend", "run_inference"]
