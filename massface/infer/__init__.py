"""massface.infer: the ``massface-infer`` command, batched offline inference.

Public API::

    from massface.infer import run_inference, InferOptions
    from massface.runtime import sources
    ds = sources.lfw_dataset(lfw_dir, pairs_txt)
    result = run_inference("model.onnx", ds, InferOptions(out=Path("work_dirs/run")))

Backends, decoding, datasets and batching are :mod:`massface.runtime`; this package adds
the resumable output folder, the output formats, shards and the command line
(:mod:`massface.infer.cli`).
"""

from massface.infer.runner import InferOptions, InferResult, InferSummary, run_inference

__all__ = ["InferOptions", "InferResult", "InferSummary", "run_inference"]
