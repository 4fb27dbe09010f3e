"""Put a published MobileFaceNet TFLite model's weights into massface.train's MobileFaceNet.

Why this works: the shipped model (MobileFaceNet_TF, 192-d) has exactly SPEC section 3's
layout, the one ``massface.train.mobilefacenet.MobileFaceNet`` builds: 52 convolutions
(35 plain, 17 depthwise) in the same order and shapes, PReLU after the same 33 of them.
What differs is the form: TFLite stores each convolution with its BatchNorm *folded in*
(kernel ``w * gamma / sigma`` plus a bias) and PReLU as ``relu(x) + a * (x - |x|)`` with
``a = alpha / 2``. massface keeps bias-free convolutions followed by BatchNorm.

The mapping: kernel = the folded kernel (OHWI -> HWIO; depthwise [1,H,W,C] -> [H,W,C,1]),
``alpha = 2a``, and for each BatchNorm the statistics of the folded convolution's output
``x`` on real faces (mean ``m``, variance ``v``): ``moving_mean = m``, ``moving_variance =
v - eps``, ``gamma = sqrt(v)``, ``beta = bias + m``. In inference BatchNorm then computes
``sqrt(v) (x - m) / sqrt(v) + bias + m = x + bias``, exactly the TFLite layer, whatever
faces were used; in training mode (batch statistics close to ``m``, ``v``) it starts
close to it too, which is what a fine-tuning run needs. The original, unfolded gamma/beta
cannot be recovered from a folded model; these are an equivalent parametrisation.

The statistics come from LFW images that are *not* in ``pairs.txt`` (so the evaluation
pairs stay unseen) unless other images are given. The mapped model is checked against
the TFLite interpreter on the parity faces before anything is written.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from massface import shared_data
from massface.errors import InputError
from massface.export.faces import FaceBatch, images_under, load_face
from massface.formats.pairs import pair_references, read_pairs
from massface.formats.preprocessing import Preprocessing

_CONV = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise"}


@dataclass
class TFLiteLayer:
    """One convolution of the TFLite graph, in massface's layouts."""

    name: str  # the TFLite output tensor (names the layer)
    kind: str  # conv | depthwise
    kernel: np.ndarray  # HWIO, or [H, W, C, 1] for depthwise
    bias: np.ndarray
    alpha: np.ndarray | None  # PReLU slope, None for a linear layer
    output_index: int


def _interpreter(path: Path):
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = tf.lite.Interpreter(
            model_path=str(path), experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=(
                tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    it.allocate_tensors()
    return it


def read_layers(path: str | os.PathLike[str]) -> tuple[Any, list[TFLiteLayer]]:
    """(interpreter, convolutions in execution order with their PReLU slopes)."""
    from massface.export.tflite_import import check_tflite_file

    path = check_tflite_file(path)
    try:
        it = _interpreter(path)
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a loadable TFLite model: {exc}") from exc
    ops = it._get_ops_details()  # the interpreter's only view of the op graph
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    produced = {o: op for op in ops for o in op["outputs"]}
    consumers: dict[int, list[dict]] = defaultdict(list)
    for op in ops:
        for i in op["inputs"]:
            consumers[i].append(op)

    def const(i: int) -> np.ndarray:
        if i in produced or i < 0:
            raise InputError(f"{path}: tensor {names.get(i)} is not a constant")
        return np.array(it.get_tensor(i))

    def slope(t: int) -> np.ndarray | None:
        """``a`` of ``relu(t) + a * (t - |t|)`` (so alpha = 2a), if t is followed by it."""
        by_type = {op["op_name"]: op for op in consumers[t]}
        sub = by_type.get("SUB")
        if sub is None or "RELU" not in by_type or "ABS" not in by_type:
            return None
        if list(sub["inputs"]) != [t, by_type["ABS"]["outputs"][0]]:
            return None
        for mul in consumers[sub["outputs"][0]]:
            if mul["op_name"] == "MUL":
                other = [i for i in mul["inputs"] if i != sub["outputs"][0]]
                if len(other) == 1 and other[0] not in produced:
                    return 2.0 * const(other[0]).astype(np.float64)
        return None

    layers = []
    for op in ops:
        kind = _CONV.get(op["op_name"])
        if kind is None:
            continue
        w = const(op["inputs"][1]).astype(np.float32)
        b = const(op["inputs"][2]).astype(np.float32)
        if kind == "conv":
            kernel = np.transpose(w, (1, 2, 3, 0))  # OHWI -> HWIO
        else:
            kernel = w[0].reshape(w.shape[1], w.shape[2], w.shape[3], 1)  # [1,H,W,C]
        out = op["outputs"][0]
        a = slope(out)
        layers.append(TFLiteLayer(name=names[out], kind=kind, kernel=kernel, bias=b,
                                  alpha=None if a is None else a.astype(np.float32),
                                  output_index=out))
    return it, layers


def massface_layers(model: Any) -> list[Any]:
    """massface MobileFaceNet's ConvBN layers in forward order."""
    order = [model.conv1, model.dwconv1, model.conv2]
    for block in model.blocks:
        order += [block.expand, block.depthwise, block.project]
    return [*order, model.conv3, model.gdconv, model.linear, model.embedding]


def calibration_faces(source: str | os.PathLike[str] | None, count: int,
                      prep: Preprocessing) -> FaceBatch:
    """Faces for the BN statistics: LFW images outside pairs.txt, or a given folder."""
    if source is not None:
        root = Path(source)
        if not root.is_dir():
            raise InputError(f"--calibration-images {root}: not a folder")
        paths = images_under(root)[:count]
        label = f"first {len(paths)} images (sorted) under {root}"
    else:
        why = ("calibration images (default: shared LFW images outside pairs.txt; or "
               "--calibration-images DIR of aligned faces)")
        root, pairs = shared_data.lfw_dir(why), shared_data.lfw_pairs(why)
        if not root.is_dir() or not pairs.is_file():
            raise InputError(f"calibration images: LFW not found at {root}; pass "
                             "--calibration-images with a folder of aligned faces")
        used = set(pair_references(read_pairs(pairs)))
        paths = [p for p in images_under(root)
                 if p.relative_to(root).with_suffix("").as_posix() not in used][:count]
        label = f"first {len(paths)} LFW images (sorted) not in {pairs.name}"
    if not paths:
        raise InputError(f"calibration images: none found under {root}")
    images = np.stack([load_face(p, prep) for p in paths])
    return FaceBatch(images=images, refs=[p.relative_to(root).as_posix() for p in paths],
                     root=str(root), source=label, preprocessing=prep.to_dict())


def layer_statistics(it: Any, layers: list[TFLiteLayer], images: np.ndarray
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-channel mean and variance of each folded convolution's output minus its bias
    (float64 sums over every image and position), from the interpreter's tensors."""
    inp = it.get_input_details()[0]
    batch = int(inp["shape"][0])
    sums = [np.zeros(len(layer.bias)) for layer in layers]
    squares = [np.zeros(len(layer.bias)) for layer in layers]
    count = [0] * len(layers)
    for start in range(0, len(images) - batch + 1, batch):  # whole native batches only
        it.set_tensor(inp["index"], np.ascontiguousarray(images[start:start + batch]))
        it.invoke()
        for k, layer in enumerate(layers):
            x = it.get_tensor(layer.output_index).astype(np.float64) - layer.bias
            x = x.reshape(-1, x.shape[-1])
            sums[k] += x.sum(0)
            squares[k] += (x * x).sum(0)
            count[k] += x.shape[0]
    if not count[0]:
        raise InputError(f"calibration needs at least {batch} images")
    out = []
    for s, q, n in zip(sums, squares, count, strict=True):
        mean = s / n
        out.append((mean, np.maximum(q / n - mean * mean, 0.0)))
    return out


@dataclass
class MappingReport:
    layers: int
    prelu_layers: int
    embedding_size: int
    calibration: dict
    parity: dict

    def to_dict(self) -> dict:
        return asdict(self)


def map_weights(path: str | os.PathLike[str], *, calibration: FaceBatch,
                check: FaceBatch, min_cosine: float) -> tuple[Any, MappingReport]:
    """massface MobileFaceNet carrying the TFLite model's weights, checked on ``check``."""
    import tensorflow as tf

    from massface.export.parity import compare, require
    from massface.export.tflite_import import TFLiteRunner
    from massface.train.mobilefacenet import BN_EPSILON, MobileFaceNet

    it, layers = read_layers(path)
    dim = len(layers[-1].bias) if layers else 0
    model = MobileFaceNet(embedding_size=dim)
    targets = massface_layers(model)
    if len(layers) != len(targets):
        raise InputError(f"{path}: {len(layers)} convolutions; massface's MobileFaceNet has "
                         f"{len(targets)}: the weights do not map")
    for k, (src, dst) in enumerate(zip(layers, targets, strict=True)):
        problems = []
        if tuple(src.kernel.shape) != tuple(dst.kernel.shape):
            problems.append(f"kernel {list(src.kernel.shape)} vs {list(dst.kernel.shape)}")
        if (src.kind == "depthwise") != dst.depthwise:
            problems.append(f"{src.kind} vs {'depthwise' if dst.depthwise else 'conv'}")
        if (src.alpha is None) != (dst.prelu is None):
            problems.append("PReLU " + ("missing" if src.alpha is None else "unexpected"))
        if problems:
            raise InputError(f"{path}: layer {k} ({src.name}) does not map onto massface's "
                             f"{dst.name}: {'; '.join(problems)}")
    stats = layer_statistics(it, layers, calibration.images)
    eps = BN_EPSILON
    for src, dst, (mean, var) in zip(layers, targets, stats, strict=True):
        v = np.maximum(var, eps)
        dst.kernel.assign(src.kernel)
        dst.bn.gamma.assign(np.sqrt(v).astype(np.float32))
        dst.bn.beta.assign((src.bias + mean).astype(np.float32))
        dst.bn.moving_mean.assign(mean.astype(np.float32))
        dst.bn.moving_variance.assign((v - eps).astype(np.float32))
        if src.alpha is not None:
            dst.prelu.alpha.assign(src.alpha)
    ref = TFLiteRunner(path)(check.images)
    got = model(tf.constant(check.images), training=False).numpy()
    parity = compare("massface MobileFaceNet (mapped weights)", "TFLite interpreter", ref,
                     got, bound=min_cosine)
    require([parity])
    report = MappingReport(
        layers=len(layers), prelu_layers=sum(x.alpha is not None for x in layers),
        embedding_size=dim, calibration=calibration.to_dict() | {"images": None},
        parity=parity.to_dict())
    return model, report


def write_run(model: Any, run_dir: str | os.PathLike[str], *, prep: Preprocessing,
              source: dict, report: MappingReport, overwrite: bool = False) -> str:
    """Write ``model`` as a massface-train run folder (for ``--pretrained``); atomic."""
    import tensorflow as tf
    import yaml

    from massface.export.staging import staged_folder
    from massface.io import write_json, write_text

    run_dir = Path(run_dir)
    with staged_folder(run_dir, overwrite) as staging:
        config = {
            "name": run_dir.name,
            "model": {"embedding_size": int(model.embedding_size)},
            "data": {"image_size": list(prep.size), "mean": prep.mean, "std": prep.std,
                     "color": prep.color},
        }
        write_text(staging / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        ckpt = tf.train.Checkpoint(backbone=model, step=tf.Variable(0, dtype=tf.int64))
        prefix = tf.train.CheckpointManager(ckpt, str(staging / "checkpoints"),
                                            max_to_keep=1).save(checkpoint_number=0)
        write_json(staging / "imported_from.json", {"source": source, **report.to_dict()})
    return str(run_dir / "checkpoints" / Path(prefix).name)
