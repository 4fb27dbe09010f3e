"""The preprocessing record: how raw pixels become a face model's input.

One type for every stage: ``massface-export`` writes it to ``export.json`` (and checks
parity and precision on faces prepared with it), ``massface-infer`` reads it back
beside the model, and the AIPP config is derived from it. Colour names and layouts are
case-insensitive on the way in and upper-case on the way out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.imaging import DEFAULT_FIT, FITS

COLORS = ("RGB", "BGR")
LAYOUTS = ("NHWC", "NCHW")
#: How massface-train brings images to the input size: it squashes (ORL's 92x112 faces
#: stretched to 112x112, as the recipe always did); an export of a run records it.
TRAIN_FIT = "squash"


@dataclass
class Preprocessing:
    """``x_out = (x - mean) / std`` on ``color`` pixels of ``size`` (H, W) in ``layout``.

    ``fit`` says how an image of another size is brought to ``size`` (a
    :data:`massface.imaging.FITS` name: ``center`` keeps the aspect ratio, ``squash``
    does not, ``error`` refuses). ``layout`` is the layout the model is fed: in
    ``meta.json`` it is the model's own (the backend transposes NHWC batches for an NCHW
    model).
    """

    color: str = "RGB"
    mean: float = 127.5
    std: float = 128.0
    size: tuple[int, int] = (112, 112)  # (height, width)
    layout: str = "NHWC"
    fit: str = DEFAULT_FIT

    def __post_init__(self) -> None:
        self.color = str(self.color).upper()
        self.layout = str(self.layout).upper()
        try:
            height, width = (int(v) for v in self.size)
            self.mean, self.std = float(self.mean), float(self.std)
        except (TypeError, ValueError):
            raise InputError(f"preprocessing: size {self.size!r} must be [height, width] and "
                             f"mean {self.mean!r} / std {self.std!r} numbers") from None
        self.size = (height, width)
        if self.color not in COLORS:
            raise InputError(f"preprocessing: color {self.color!r} is not one of {COLORS}")
        if self.layout not in LAYOUTS:
            raise InputError(f"preprocessing: layout {self.layout!r} is not one of {LAYOUTS}")
        self.fit = str(self.fit).lower()
        FITS.get(self.fit, "preprocessing: fit")
        if self.std == 0:
            raise InputError("preprocessing: std must not be 0")
        if min(self.size) <= 0:
            raise InputError(f"preprocessing: size {self.size} must be positive")

    def normalize(self, pixels: Any, out: np.ndarray | None = None) -> Any:
        """RGB pixels ``[..., C]`` -> float32 ``(x - mean) / std`` in this record's colour
        order: the one normalisation (inference, export parity, compare's hypotheses,
        training). A NumPy array is computed in float32 (into ``out`` when given); another
        array type (training's TensorFlow tensors, already float32) by its own operators."""
        if self.color == "BGR" and pixels.shape[-1] == 3:
            pixels = pixels[..., ::-1]
        if isinstance(pixels, np.ndarray):
            result = np.subtract(pixels, np.float32(self.mean), out=out, dtype=np.float32)
            result /= np.float32(self.std)
            return result
        return (pixels - self.mean) / self.std

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        """The record's known fields (others, such as ``sources``, are ignored)."""
        known = {k: d[k] for k in ("color", "mean", "std", "size", "layout", "fit") if k in d}
        return cls(**known)
