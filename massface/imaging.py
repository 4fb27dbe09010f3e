"""Decode an image file the one way every stage does: whole, upright, errors named.

:func:`open_upright` is shared by inference (:func:`massface.runtime.preprocess.
decode_image`) and alignment (:func:`massface.align.images.load_rgb`); each then converts
the pixels to what it needs. EXIF orientation is applied, so a phone photo stored
sideways with an orientation tag reaches the model the way a viewer shows it; an image
without the tag (every pre-aligned dataset) is left exactly as decoded.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
from collections.abc import Iterator
from typing import Any

from massface.errors import InputError

#: PIL modes that convert to 8-bit RGB (or grey) without losing meaning.
EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK",
                             "YCbCr", "La"})
_ALPHA_MODES = ("RGBA", "LA", "PA", "La")


def convert_8bit(im: Any, target: str) -> Any:
    """An image of one of :data:`EIGHT_BIT_MODES` in ``target`` mode ("RGB" or "L"); alpha
    (and a palette's transparency) is dropped, the colours kept as stored."""
    if im.mode in _ALPHA_MODES or (im.mode == "P" and "transparency" in im.info):
        return im.convert("RGBA").convert(target)
    return im if im.mode == target else im.convert(target)


def require_regular_file(path: str | os.PathLike[str], name: str, failure: str) -> None:
    """Refuse what is not a regular file before opening it: opening a FIFO blocks until
    someone writes to it (a hang), a device never ends."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InputError(f"{name}: {failure}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a folder"
                if stat.S_ISDIR(st.st_mode) else "not a regular file")
        raise InputError(f"{name}: {failure}: {kind}, not an image file")


@contextlib.contextmanager
def open_upright(data: bytes | str | os.PathLike[str], name: str, *,
                 failure: str = "cannot decode image") -> Iterator[Any]:
    """The decoded ``PIL.Image`` of ``data`` (a path or encoded bytes), EXIF orientation
    applied, for the ``with`` block.

    A file PIL cannot read (truncated, not an image, a decompression bomb, broken EXIF) is
    an :class:`InputError` ``"<name>: <failure>: <reason>"``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    src = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    if not isinstance(src, io.BytesIO):
        require_regular_file(src, name, failure)
    failures = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
                struct.error, Image.DecompressionBombError)
    try:
        im = Image.open(src)
    except failures as exc:
        raise InputError(f"{name}: {failure}: {exc}") from exc
    with im:
        try:
            im.load()
            ImageOps.exif_transpose(im, in_place=True)  # no tag: untouched, no copy
        except failures as exc:
            raise InputError(f"{name}: {failure}: {exc}") from exc
        yield im
