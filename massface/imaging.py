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
from collections.abc import Callable, Iterator
from typing import Any

from massface.errors import InputError
from massface.registry import Registry

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


# --- fitting an image to a model's input (--fit) ----------------------------------------
#
# How an image whose size differs from the model's input becomes that size is a choice
# that changes the accuracy (a 112x112 ArcFace crop squashed to 112x96 loses about half a
# point against the same face cut to the SphereFace crop), so it is named, recorded in
# meta.json and never changes the aspect ratio unless asked. Learnt from timm's
# ``crop_mode`` (center / squash / border).


def center_box(width: int, height: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the largest centred box of ``size``'s aspect ratio
    (``size`` is (H, W)) inside a ``width`` x ``height`` image.

    The cut side is rounded to the nearest pixel and the margin before it floored, so a
    112x112 crop for a 112x96 model keeps columns 8..103: the SphereFace crop (the ArcFace
    112x112 template is the SphereFace 112x96 one moved 8 px right).
    """
    h, w = size
    if width * h > height * w:  # too wide: cut columns
        cut = (2 * height * w + h) // (2 * h)  # round(height * w / h) in integers
        left = (width - cut) // 2
        return left, 0, left + cut, height
    cut = (2 * width * h + w) // (2 * w)  # too tall (or exact): cut rows
    top = (height - cut) // 2
    return 0, top, width, top + cut


def _fit_center(im: Any, size: tuple[int, int], name: str) -> Any:
    from PIL import Image

    box = center_box(im.size[0], im.size[1], size)
    if box != (0, 0, *im.size):
        im = im.crop(box)
    if im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return im


def _fit_squash(im: Any, size: tuple[int, int], name: str) -> Any:
    from PIL import Image

    return im.resize((size[1], size[0]), Image.Resampling.BILINEAR)


def _fit_error(im: Any, size: tuple[int, int], name: str) -> Any:
    raise InputError(f"{name}: image is {im.size[1]}x{im.size[0]} (HxW) but the model takes "
                     f"{size[0]}x{size[1]} and --fit is error: crop or resize the images "
                     "first, or choose --fit center (keep the aspect ratio) or squash")


#: name -> ``fn(PIL image, (H, W), name) -> PIL image`` of exactly that size; called only
#: for images whose size differs from the model's.
FITS: Registry[Callable[[Any, tuple[int, int], str], Any]] = Registry("fit mode")
FITS.register("center", _fit_center,
              description="cut the centre to the model's aspect ratio, then resize "
                          "(bilinear) if the size still differs")
FITS.register("squash", _fit_squash,
              description="resize (bilinear) to the model's size, aspect ratio lost")
FITS.register("error", _fit_error, description="refuse images of another size")
DEFAULT_FIT = "center"


def fit_image(im: Any, size: tuple[int, int], fit: str, name: str) -> Any:
    """``im`` at ``size`` (H, W) by the fit mode ``fit`` (unchanged when it is that size)."""
    fn = FITS.get(fit, "--fit")
    if im.size == (size[1], size[0]):
        return im
    return fn(im, size, name)
