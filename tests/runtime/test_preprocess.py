"""Preprocessing: decoding, colour, resizing, normalisation, export.json precedence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from massface.errors import InputError
from massface.runtime.preprocess import (
    Preprocessing,
    choose_preprocessing,
    decode_image,
    flip_batch,
)


def test_decode_grey_palette_alpha_and_resize(tmp_path):
    grey = tmp_path / "g.png"
    Image.fromarray(np.full((8, 6), 77, np.uint8)).save(grey)
    arr = decode_image(grey, str(grey), (8, 6))
    assert arr.shape == (8, 6, 3) and (arr == 77).all()
    rgba = tmp_path / "a.png"
    Image.fromarray(np.full((8, 6, 4), 200, np.uint8)).save(rgba)
    assert decode_image(rgba.read_bytes(), "a.png", (8, 6)).shape == (8, 6, 3)
    assert decode_image(grey, "g", (16, 12)).shape == (16, 12, 3)
    assert decode_image(grey, "g", (8, 6), channels=1).shape == (8, 6, 1)
    with pytest.raises(InputError, match="--fit is error"):
        decode_image(grey, "g.png", (16, 12), fit="error")


def test_flip_mirrors_width():
    x = np.arange(2 * 3 * 4 * 3, dtype=np.float32).reshape(2, 3, 4, 3)
    np.testing.assert_array_equal(flip_batch(x)[:, :, 0], x[:, :, 3])


def test_export_json_then_options(tmp_path):
    model = tmp_path / "m.onnx"
    assert choose_preprocessing(model, {}, (112, 112)).sources["size"] == "model"
    (tmp_path / "export.json").write_text(json.dumps({
        "format": "massface-export", "version": 1,
        "preprocessing": {"color": "BGR", "mean": 0.0, "std": 255.0, "size": [112, 112]}}))
    choice = choose_preprocessing(model, {"std": 1.0, "color": None}, (112, 112))
    p = choice.preprocessing
    assert (p.color, p.mean, p.std) == ("BGR", 0.0, 1.0)
    assert choice.sources == {"color": "export.json", "mean": "export.json", "std": "option",
                              "size": "export.json", "layout": "default",
                              "fit": "default"}
    with pytest.raises(InputError, match="model input is 112x112"):
        choose_preprocessing(model, {"size": [96, 96]}, (112, 112))
    (tmp_path / "export.json").write_text("{not json")
    with pytest.raises(InputError, match=r"export\.json"):
        choose_preprocessing(model, {}, None)
    assert Preprocessing.from_dict(Preprocessing().to_dict()) == Preprocessing()


def test_exif_orientation_is_applied_by_massface_infer(tmp_path):
    """A JPEG stored sideways with EXIF orientation 6 or 8 embeds like the upright image:
    the upright reference is the stored pixels rotated by hand, saved without EXIF."""
    from massface.formats.embedding_dir import read_embedding_dir
    from massface.infer.cli import app
    from tests.helpers.cli import run_cli
    from tests.helpers.models import make_linear_onnx

    model = tmp_path / "m.onnx"
    make_linear_onnx(model, size=(8, 8), dim=6)
    rng = np.random.default_rng(0)
    ds = tmp_path / "ds"
    for tag, turns in ((6, -1), (8, 1)):  # 6: rotate 90 deg clockwise to view; 8: counter
        (ds / f"o{tag}").mkdir(parents=True)
        stored = ds / f"o{tag}" / "exif.jpg"
        exif = Image.Exif()
        exif[0x0112] = tag
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
            stored, exif=exif.tobytes(), quality=95)
        with Image.open(stored) as im:  # PIL's plain decode ignores the tag
            raw = np.asarray(im.convert("RGB"))
        Image.fromarray(np.ascontiguousarray(np.rot90(raw, turns))).save(
            ds / f"o{tag}" / "upright.png")
    out = tmp_path / "out"
    r = run_cli(app, ["--model", str(model), "--images", str(ds), "--out", str(out),
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    es = read_embedding_dir(out)
    emb = dict(zip(es.paths, es.embeddings, strict=True))
    for tag in (6, 8):
        np.testing.assert_allclose(emb[f"o{tag}/exif.jpg"], emb[f"o{tag}/upright.png"],
                                   atol=1e-6)
