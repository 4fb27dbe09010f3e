"""Photos in: EXIF orientation, grey, CMYK, 16-bit, alpha, unreadable files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from massface.align.images import load_rgb
from massface.errors import InputError


def _gradient() -> np.ndarray:
    h, w = 6, 10
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(w) * 20
    img[..., 1] = (np.arange(h) * 40)[:, None]
    return img


def test_exif_orientation_is_applied(tmp_path):
    img = _gradient()
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    Image.fromarray(img).save(path, quality=100, exif=exif)
    got = load_rgb(path, str(path))
    assert got.shape == (10, 6, 3)
    expected = np.rot90(np.asarray(Image.open(path).convert("RGB")), k=-1)
    np.testing.assert_array_equal(got, expected)


def test_grey_and_cmyk_become_rgb(tmp_path):
    grey = tmp_path / "g.png"
    Image.fromarray(_gradient()[..., 0]).save(grey)
    got = load_rgb(grey, "g")
    assert got.shape == (6, 10, 3)
    np.testing.assert_array_equal(got[..., 0], got[..., 2])
    cmyk = tmp_path / "c.jpg"
    Image.fromarray(_gradient()).convert("CMYK").save(cmyk, quality=100)
    assert load_rgb(cmyk, "c").shape == (6, 10, 3)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    got = load_rgb(path, "deep")
    assert got[0, :, 0].tolist() == [0, 1, 128, 255]


def test_alpha_is_dropped_and_bytes_are_accepted(tmp_path):
    import io

    rgba = np.dstack([_gradient(), np.full((6, 10), 7, np.uint8)])
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, "PNG")
    np.testing.assert_array_equal(load_rgb(buf.getvalue(), "mem"), _gradient())


def test_float_images_and_broken_files_are_refused_with_their_name(tmp_path):
    path = tmp_path / "f.tif"
    Image.fromarray(np.zeros((4, 4), np.float32)).save(path)
    with pytest.raises(InputError, match=r"f\.tif.*mode 'F'"):
        load_rgb(path, str(path))
    broken = tmp_path / "b.jpg"
    broken.write_bytes(b"\xff\xd8 nope")
    with pytest.raises(InputError, match=r"b\.jpg: unreadable"):
        load_rgb(broken, str(broken))
