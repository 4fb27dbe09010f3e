"""Turn an encoded image into the float array a face model expects.

The default is what MobileFaceNet (and the seed's ``2bin`` step) use: RGB,
``(x - 127.5) / 128``, 112x112, NHWC. ``export.json`` beside a model carries its own
:class:`Preprocessing`; explicit command-line options override it.

Decoding is PIL's, which releases the GIL, so a thread pool decodes in parallel with
inference; EXIF orientation is applied (the same decode as massface-align's). Images
are converted to 8-bit RGB (grey replicated to three channels, palette and alpha images
flattened); modes that do not convert faithfully (16-bit, float) are
refused rather than silently clipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.formats.preprocessing import Preprocessing
from massface.imaging import (
    DEFAULT_FIT,
    EIGHT_BIT_MODES,
    FITS,
    convert_8bit,
    fit_image,
    open_upright,
)
from massface.io import read_json


@dataclass
class PreprocessingChoice:
    """The preprocessing a run uses and where each field came from (for meta.json)."""

    preprocessing: Preprocessing
    sources: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.preprocessing.to_dict(), "sources": dict(self.sources)}

    def fit_record(self) -> dict[str, Any]:
        """meta.json's ``fit``: the mode, where it came from and what it does."""
        fit = self.preprocessing.fit
        return {"mode": fit, "from": self.sources.get("fit", "default"),
                "size": list(self.preprocessing.size), "does": FITS.description(fit)}


def read_export_json(model: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``export.json`` beside ``model``, or None when there is none."""
    path = Path(model).parent / "export.json"
    if not path.is_file():
        return None
    data = read_json(path, "export description")
    if not isinstance(data, dict) or data.get("format") != "massface-export":
        raise InputError(f"{path}: not a massface-export description (format "
                         f"{data.get('format') if isinstance(data, dict) else None!r})")
    return data


def choose_preprocessing(
    model: str | os.PathLike[str],
    overrides: dict[str, Any],
    model_size: tuple[int, int] | None = None,
    model_layout: str | None = None,
) -> PreprocessingChoice:
    """Combine defaults, ``export.json`` and explicit options (in rising priority).

    ``model_size`` is the (H, W) the model's input fixes; it wins over the default size
    (and an explicit size that disagrees with it is refused, since it cannot feed).
    ``model_layout`` is the layout the backend feeds the model (it transposes NHWC
    batches for an NCHW model), so the record says what the model was fed.
    """
    values: dict[str, Any] = Preprocessing().to_dict()
    sources = dict.fromkeys(values, "default")
    export = read_export_json(model)
    if export is not None and isinstance(export.get("preprocessing"), dict):
        for k, v in export["preprocessing"].items():
            if k in values:
                values[k] = v
                sources[k] = "export.json"
    if model_size is not None and sources["size"] == "default":
        values["size"] = list(model_size)
        sources["size"] = "model"
    if model_layout is not None:
        values["layout"] = model_layout
        sources["layout"] = "model"
    for k, v in overrides.items():
        if v is not None:
            values[k] = v
            sources[k] = "option"
    prep = Preprocessing.from_dict(values)
    if model_size is not None and tuple(prep.size) != tuple(model_size):
        raise InputError(f"{model}: model input is {model_size[0]}x{model_size[1]} but the "
                         f"preprocessing size is {prep.size[0]}x{prep.size[1]} "
                         f"(from {sources['size']})")
    return PreprocessingChoice(prep, sources)


def decode_image(
    data: bytes | os.PathLike[str] | str, name: str, size: tuple[int, int], *,
    fit: str = DEFAULT_FIT, channels: int = 3, fitted: dict[str, int] | None = None,
) -> np.ndarray:
    """Decode to uint8 ``[H, W, channels]`` RGB (or grey), upright (EXIF orientation,
    :func:`massface.imaging.open_upright`), brought to ``size`` (H, W) by the fit mode
    ``fit`` (:data:`massface.imaging.FITS`) when it is another size.

    ``name`` is used in error messages (the file, or ``archive#index``). ``fitted``, when
    given, counts the images that were fitted, by their decoded size (``"HxW"``).
    """
    with open_upright(data, name) as im:
        mode = im.mode
        if mode not in EIGHT_BIT_MODES:
            raise InputError(f"{name}: pixel mode {mode!r} cannot feed a model expecting "
                             "8-bit RGB or grey images")
        im = convert_8bit(im, "RGB" if channels == 3 else "L")
        decoded = f"{im.size[1]}x{im.size[0]}" if im.size != (int(size[1]), int(size[0])) \
            else None
        im = fit_image(im, (int(size[0]), int(size[1])), fit, name)
        if fitted is not None and decoded is not None:
            fitted[decoded] = fitted.get(decoded, 0) + 1
        arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def flip_batch(batch: np.ndarray) -> np.ndarray:
    """Mirror NHWC images left-right (the flip pass)."""
    return np.ascontiguousarray(batch[:, :, ::-1, :])
