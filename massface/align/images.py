"""Photos in: decode to 8-bit RGB the way a viewer shows them.

EXIF orientation is applied (landmarks refer to the upright image). Grey, palette, CMYK
and alpha images become RGB (alpha dropped, as the infer decoder does).
16-bit grey (``I;16*``, and ``I`` holding 16-bit values) is scaled to 8 bits (/257)
rather than clipped; float images and other modes are refused with the file named. Very
large images decode whole (the detector works on a downscaled copy; the warp reads the
original); PIL's decompression-bomb limit still applies and is reported as unreadable.
"""

from __future__ import annotations

import os

import numpy as np

from massface.errors import InputError
from massface.imaging import EIGHT_BIT_MODES, convert_8bit, open_upright

_SIXTEEN = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def _to_rgb(im: object, name: str) -> np.ndarray:
    from PIL import Image

    assert isinstance(im, Image.Image)
    mode = im.mode
    if mode in _SIXTEEN:
        arr = np.asarray(im).astype(np.int64)
        if arr.min() < 0 or arr.max() > 65535:
            raise InputError(f"{name}: {mode} image with values outside 0..65535; convert it "
                             "to 8-bit first")
        if mode == "I" and arr.max() <= 255:
            grey = arr.astype(np.uint8)
        else:
            grey = ((arr * 255 + 32767) // 65535).astype(np.uint8)  # round(v / 257)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode not in EIGHT_BIT_MODES:
        raise InputError(f"{name}: pixel mode {mode!r} is not supported (8- or 16-bit "
                         "grey, palette, RGB, RGBA or CMYK images are)")
    return np.asarray(convert_8bit(im, "RGB"), dtype=np.uint8)  # as the infer decoder


def load_rgb(data: bytes | str | os.PathLike[str], name: str) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB of an encoded image (a path or bytes), upright."""
    with open_upright(data, name, failure="unreadable") as im:
        return _to_rgb(im, name)
