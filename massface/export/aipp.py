"""Ascend AIPP: the model's preprocessing moved onto the chip, and its CPU twin.

With ``--insert_op_conf`` ATC puts an AIPP stage in front of the first layer, so the
``.om`` takes uint8 images and normalises them on the chip; the host no longer converts
pixels to float32 (a quarter of the bytes to copy, no normalisation pass). This module
writes the *static* AIPP configuration from the preprocessing the model was trained with
and builds what cannot be run here on the CPU instead: the **twin**, the same ONNX with
the same arithmetic folded in front of a uint8 input.

What AIPP computes per output channel (``../shared/docs/ascend.md``)::

    out = (pixel - mean_chn - min_chn) * var_reci_chn

after an optional R/B swap (``rbuv_swap_switch``; the hardware swaps before normalising),
and the result reaches the model as **float16**: AIPP's output on the chip is fp16
(CANN AIPP reference; the ``insert_op.proto`` schema in Ascend/parser has no output-type
field, the AI Core's AIPP writes fp16). The twin and :meth:`AippConfig.apply` round to
float16 like the chip. For the default ``(x - 127.5) / 128`` the values are odd
multiples of 1/256 in [-1, 1], exact in float16, so the rounding changes nothing; for
another mean/std (e.g. ``x / 255``) it moves each input by up to half a float16 step
(2^-12 relative), and the export measures what that costs (``aipp.twin.fp16_input``).
``mean_chn`` must be an integer, so a mean of 127.5 is written as ``mean_chn 127`` plus
``min_chn 0.5``; ``var_reci_chn`` is ``1/std``. ``csc_switch`` (colour-space conversion)
is only for YUV input; the host feeds RGB888_U8, so it is off.

The input contract (recorded in ``export.json``): the host feeds ``N x H x W x 3`` uint8
**RGB** pixels, NHWC, at the model's size; AIPP input is always NHWC whatever layout
the model declares. A model trained on BGR gets ``rbuv_swap_switch: true`` so that the
host still feeds RGB.

ATC accepts ``--insert_op_conf`` only with ``--input_format`` NCHW or NHWC; for ONNX only
NCHW. massface's ONNX input is NHWC, so the ONNX handed to ATC with AIPP is the same
graph behind a Transpose, with an NCHW input (:func:`nchw_input`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from massface.errors import InputError
from massface.formats.preprocessing import Preprocessing

if TYPE_CHECKING:
    import onnx

CONFIG_NAME = "aipp.cfg"
#: The colour order the host feeds to an AIPP model (what every RGB decoder gives).
HOST_COLOR = "RGB"


@dataclass(frozen=True)
class AippConfig:
    """A static AIPP stage for RGB888_U8 input of ``width`` x ``height``."""

    width: int
    height: int
    swap_rb: bool  # rbuv_swap_switch: the model takes BGR, the host feeds RGB
    mean_chn: tuple[int, int, int]
    min_chn: tuple[float, float, float]
    var_reci_chn: tuple[float, float, float]

    @classmethod
    def from_preprocessing(cls, prep: Preprocessing) -> AippConfig:
        """The AIPP stage that computes ``(x - mean) / std`` in the model's colour order."""
        if prep.color not in ("RGB", "BGR"):
            raise InputError(f"AIPP: colour order {prep.color!r} is not RGB or BGR")
        if prep.layout != "NHWC":
            raise InputError(f"AIPP: preprocessing layout {prep.layout} is not NHWC")
        if not 0.0 <= prep.mean <= 255.0:
            raise InputError(f"AIPP: mean {prep.mean} is outside the pixel range 0..255; "
                             "mean_chn is an unsigned integer")
        if prep.std <= 0:
            raise InputError(f"AIPP: std {prep.std} must be positive")
        whole = math.floor(prep.mean)
        frac = float(prep.mean) - whole
        h, w = (int(v) for v in prep.size)
        return cls(width=w, height=h, swap_rb=prep.color == "BGR", mean_chn=(whole,) * 3,
                   min_chn=(frac,) * 3, var_reci_chn=(1.0 / float(prep.std),) * 3)

    def render(self) -> str:
        """The ``insert_op_conf`` file (protobuf text format)."""
        lines = [
            "# Static AIPP written by massface-export: uint8 RGB in, normalised out.",
            "# Per channel: out = (pixel - mean_chn - min_chn) * var_reci_chn",
            "aipp_op {",
            "    aipp_mode: static",
            "    input_format: RGB888_U8",
            "    related_input_rank: 0",
            f"    src_image_size_w: {self.width}",
            f"    src_image_size_h: {self.height}",
            "    crop: false",
            "    csc_switch: false",
            f"    rbuv_swap_switch: {'true' if self.swap_rb else 'false'}",
        ]
        for k in range(3):
            lines.append(f"    mean_chn_{k}: {self.mean_chn[k]}")
        for k in range(3):
            lines.append(f"    min_chn_{k}: {self.min_chn[k]!r}")
        for k in range(3):
            lines.append(f"    var_reci_chn_{k}: {self.var_reci_chn[k]!r}")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """What the chip computes: uint8 NHWC RGB -> model input, rounded to float16 as
        AIPP writes it (returned as float32 holding float16 values)."""
        x = pixels.astype(np.float32)
        if self.swap_rb:
            x = x[..., ::-1]
        x = x - np.asarray(self.mean_chn, np.float32)
        x = x - np.asarray(self.min_chn, np.float32)
        x = x * np.asarray(self.var_reci_chn, np.float32)
        return x.astype(np.float16).astype(np.float32)

    def input_contract(self) -> dict:
        """What the host must feed the AIPP model (``export.json``)."""
        return {"dtype": "uint8", "layout": "NHWC", "color": HOST_COLOR,
                "shape": [-1, self.height, self.width, 3],
                "normalized_by": "AIPP on the chip (the host feeds raw pixels)"}

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("mean_chn", "min_chn", "var_reci_chn"):
            d[k] = list(d[k])
        return d


def _prepend(model: onnx.ModelProto, new_input: onnx.ValueInfoProto,
             nodes: list[onnx.NodeProto], feeds: str,
             initializers: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """A copy of ``model`` whose single input is ``new_input``; ``nodes`` (with their
    constants ``initializers``) turn it into the tensor ``feeds``, which replaces the old
    input everywhere."""
    import onnx
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {i.name for i in graph.initializer}
    old = next(i for i in graph.input if i.name not in inits)
    for node in graph.node:
        node.input[:] = [feeds if x == old.name else x for x in node.input]
    graph.input.remove(old)
    graph.input.insert(0, new_input)
    for n in reversed(nodes):
        graph.node.insert(0, n)
    for name, value in (initializers or {}).items():
        graph.initializer.append(numpy_helper.from_array(value, name))
    del graph.value_info[:]
    onnx.checker.check_model(out)
    return out


def _batch_dim(model: onnx.ModelProto) -> str | int:
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    d = inp.type.tensor_type.shape.dim[0]
    return d.dim_param if d.HasField("dim_param") else int(d.dim_value)


def twin(model: onnx.ModelProto, config: AippConfig, *, input_name: str = "input"
         ) -> onnx.ModelProto:
    """The float model behind the AIPP arithmetic: uint8 NHWC RGB in, same embeddings out.

    Nodes: Cast to float, the R/B swap (when the model takes BGR), ``- mean_chn``,
    ``- min_chn``, ``* var_reci_chn``, in AIPP's order, then a Cast to float16 and back:
    AIPP hands the model float16.
    """
    from onnx import TensorProto, helper

    prefix = "aipp_twin/"
    new_input = helper.make_tensor_value_info(
        input_name, TensorProto.UINT8, [_batch_dim(model), config.height, config.width, 3])
    consts = {
        prefix + "mean": np.asarray(config.mean_chn, np.float32),
        prefix + "min": np.asarray(config.min_chn, np.float32),
        prefix + "var_reci": np.asarray(config.var_reci_chn, np.float32),
    }
    nodes = [helper.make_node("Cast", [input_name], [prefix + "float"], to=TensorProto.FLOAT,
                              name=prefix + "cast")]
    x = prefix + "float"
    if config.swap_rb:
        consts[prefix + "swap"] = np.asarray([2, 1, 0], np.int64)
        nodes.append(helper.make_node("Gather", [x, prefix + "swap"], [prefix + "swapped"],
                                      axis=3, name=prefix + "rbuv_swap"))
        x = prefix + "swapped"
    for step, op in (("mean", "Sub"), ("min", "Sub"), ("var_reci", "Mul")):
        nodes.append(helper.make_node(op, [x, prefix + step], [prefix + step + "_out"],
                                      name=prefix + step))
        x = prefix + step + "_out"
    nodes += [helper.make_node("Cast", [x], [prefix + "fp16"], to=TensorProto.FLOAT16,
                               name=prefix + "to_fp16"),
              helper.make_node("Cast", [prefix + "fp16"], [prefix + "out"],
                               to=TensorProto.FLOAT, name=prefix + "from_fp16")]
    x = prefix + "out"
    inner = _rename_input(model, prefix + "model_input")
    return _prepend(inner, new_input, nodes, x, consts)


def _rename_input(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """A copy whose input is called ``name`` (so the new outer input may take the old)."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name for i in out.graph.initializer}
    inp = next(i for i in out.graph.input if i.name not in inits)
    for node in out.graph.node:
        node.input[:] = [name if x == inp.name else x for x in node.input]
    inp.name = name
    return out


def nchw_input(model: onnx.ModelProto, *, input_name: str = "input") -> onnx.ModelProto:
    """The same NHWC model behind a Transpose, taking ``[N, C, H, W]`` (for ATC + AIPP)."""
    from onnx import TensorProto, helper

    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    dims = inp.type.tensor_type.shape.dim
    h, w, c = (int(d.dim_value) for d in dims[1:])
    new_input = helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                              [_batch_dim(model), c, h, w])
    feeds = "nchw_input/to_nhwc"
    node = helper.make_node("Transpose", [input_name], [feeds], perm=[0, 2, 3, 1],
                            name="nchw_input/transpose")
    return _prepend(_rename_input(model, "nchw_input/model_input"), new_input, [node], feeds)
