"""Small model builders: a linear ONNX "face model" and a real-looking training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_linear_onnx(path: Path, *, layout: str = "NHWC", batch: int | None = None,
                     size: tuple[int, int] = (112, 112), channels: int = 3, dim: int = 16,
                     seed: int = 0, input_shape: list | None = None,
                     input_dtype: str = "float32") -> np.ndarray:
    """Write ``embeddings = flatten(input) @ W`` as ONNX; returns W (for a numpy reference).

    ``input_dtype="uint8"``: the input is raw pixels, cast to float first (as an AIPP twin)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = size
    shape = input_shape or ([batch or "N", h, w, channels] if layout == "NHWC"
                            else [batch or "N", channels, h, w])
    flat = int(np.prod([d for d in shape[1:] if isinstance(d, int)]))
    weight = np.random.default_rng(seed).standard_normal((flat, dim)).astype(np.float32) / 50
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "W"], ["embeddings"])]
    elem = TensorProto.FLOAT
    if input_dtype == "uint8":
        elem = TensorProto.UINT8
        nodes = [helper.make_node("Cast", ["input"], ["pixels"], to=TensorProto.FLOAT),
                 helper.make_node("Flatten", ["pixels"], ["flat"], axis=1), nodes[1]]
    graph = helper.make_graph(
        nodes, "linear",
        [helper.make_tensor_value_info("input", elem, shape)],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, [shape[0], dim])],
        [numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return weight


def make_training_run(run_dir: Path, faces, *, embedding_size: int = 128, seed: int = 0) -> Path:
    """A massface-train-style run folder whose BatchNorm statistics are real.

    Random-init MobileFaceNet, non-trivial gamma/beta, then one training-mode pass over
    real faces with momentum 0 so every BatchNorm's moving mean/variance are the real
    activation statistics (so folding BN into the convolutions is really exercised).
    Saved as ``tf.train.Checkpoint(backbone=model, step=...)`` by a CheckpointManager
    under ``checkpoints/``, with ``config.yaml`` beside it, as ``load_backbone`` expects.
    """
    import numpy as np
    import tensorflow as tf
    import yaml

    from massface.train.mobilefacenet import BatchNorm, MobileFaceNet

    model = MobileFaceNet(embedding_size=embedding_size, seed=seed)
    rng = np.random.default_rng(seed)
    bns = [m for m in model.submodules if isinstance(m, BatchNorm)]
    for bn in bns:
        bn.gamma.assign(rng.uniform(0.6, 1.4, bn.gamma.shape).astype(np.float32))
        bn.beta.assign(rng.normal(0.0, 0.1, bn.beta.shape).astype(np.float32))
        bn.momentum = 0.0
    model(tf.constant(faces), training=True)
    for bn in bns:
        bn.momentum = 0.995
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump({"model": {"embedding_size": embedding_size},
                        "data": {"image_size": [112, 112], "mean": 127.5, "std": 128.0,
                                 "color": "RGB"}}))
    ckpt = tf.train.Checkpoint(backbone=model, step=tf.Variable(1, dtype=tf.int64))
    tf.train.CheckpointManager(ckpt, str(run_dir / "checkpoints"), max_to_keep=1).save()
    return run_dir


def make_conv_onnx(path: Path, *, layout: str = "NCHW", batch: int | None = None,
                   size: tuple[int, int] | None = (16, 16), dim: int = 8, seed: int = 0) -> None:
    """A small real network as ONNX: 3x3 convolution, ReLU, global average pool, MatMul.

    ``layout`` NHWC adds a Transpose in front (as tf2onnx exports do); ``size=None`` leaves
    height and width symbolic, ``batch=None`` the batch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    h, w = size if size is not None else ("H", "W")
    n = batch or "N"
    shape = [n, 3, h, w] if layout == "NCHW" else [n, h, w, 3]
    kernel = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) / 3
    bias = rng.standard_normal(8).astype(np.float32) / 10
    weight = rng.standard_normal((8, dim)).astype(np.float32)
    first = "input"
    nodes = []
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]))
        first = "nchw"
    nodes += [helper.make_node("Conv", [first, "K", "B"], ["conv"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["conv"], ["relu"]),
              helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
              helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
              helper.make_node("MatMul", ["flat", "W"], ["embeddings"])]
    graph = helper.make_graph(
        nodes, "conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, [n, dim])],
        [numpy_helper.from_array(kernel, "K"), numpy_helper.from_array(bias, "B"),
         numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
