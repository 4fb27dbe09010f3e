"""The parity batch: real faces, preprocessed as export.json says."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from massface.errors import InputError
from massface.export.faces import load_face_batch
from massface.formats.preprocessing import Preprocessing


def test_default_batch_is_the_first_lfw_pair_images(lfw_dir, lfw_pairs):
    batch = load_face_batch(count=4)
    assert batch.images.shape == (4, 112, 112, 3) and batch.images.dtype == np.float32
    first = lfw_pairs.read_text().splitlines()[1].split()  # "name i j"
    assert batch.refs[0] == f"{first[0]}/{first[0]}_{int(first[1]):04d}"
    raw = np.asarray(Image.open(lfw_dir / f"{batch.refs[0]}.jpg").convert("RGB"), np.float32)
    np.testing.assert_array_equal(batch.images[0], (raw - 127.5) / 128.0)


def test_folder_of_images_sorted_resized_and_bgr(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("b/2.png", "a/1.png", "c/.hidden.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (60, 50, 3), dtype=np.uint8)).save(tmp_path / name)
    prep = Preprocessing(color="BGR", mean=0.0, std=1.0)
    batch = load_face_batch(tmp_path, count=10, preprocessing=prep)
    assert batch.refs == ["a/1.png", "b/2.png"]
    assert batch.images.shape == (2, 112, 112, 3)
    # the preprocessing's fit (center): the 50x50 centre of the 60x50 image, resized
    rgb = np.asarray(Image.open(tmp_path / "a/1.png").crop((0, 5, 50, 55))
                     .resize((112, 112), Image.BILINEAR), np.float32)
    np.testing.assert_array_equal(batch.images[0], rgb[..., ::-1])


def test_bad_sources(tmp_path):
    with pytest.raises(InputError, match="no images found"):
        load_face_batch(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        load_face_batch(tmp_path / "missing")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="cannot decode image"):
        load_face_batch(tmp_path)


def test_preprocessing_round_trip():
    p = Preprocessing(color="BGR", mean=1.0, std=2.0, size=(96, 80))
    assert Preprocessing.from_dict(p.to_dict()) == p
