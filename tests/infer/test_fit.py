"""Fitting an image to a model's input (``--fit``): never a silent aspect-ratio change.

A 112x96 NCHW model (the SphereFace crop) fed the shared 112x112 ArcFace crops must see,
bit for bit, the crops cut by hand to columns 8..103; ``squash`` only when asked.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from massface.errors import InputError
from massface.formats.embedding_dir import read_embedding_dir
from massface.imaging import FITS, center_box, fit_image
from massface.runtime.loader import LoaderOptions, load_rows
from massface.runtime.preprocess import Preprocessing, decode_image
from massface.runtime.sources import SourceArgs, open_source
from tests.helpers.cli import invoke_ok
from tests.helpers.models import make_linear_onnx


def _slow_center_box(width: int, height: int, h: int, w: int) -> tuple[int, int, int, int]:
    """The centred box of aspect w:h in exact fractions: the whole of the side that is
    short for the ratio, the other side rounded half up, margins floored."""
    if Fraction(width, height) > Fraction(w, h):
        cw, ch = math.floor(Fraction(height * w, h) + Fraction(1, 2)), height
    else:
        cw, ch = width, math.floor(Fraction(width * h, w) + Fraction(1, 2))
    left, top = math.floor((width - cw) / 2), math.floor((height - ch) / 2)
    return left, top, left + cw, top + ch


@pytest.mark.parametrize("image,model", [((112, 112), (112, 96)), ((112, 92), (112, 112)),
                                         ((250, 250), (112, 96)), ((96, 112), (112, 96)),
                                         ((37, 53), (7, 5)), ((53, 37), (5, 7))])
def test_center_box_against_a_search(image, model):
    width, height = image
    assert center_box(width, height, model) == _slow_center_box(width, height, *model)


def test_arcface_crop_to_sphereface_columns():
    assert center_box(112, 112, (112, 96)) == (8, 0, 104, 112)


def test_fit_modes_on_pixels():
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    im = Image.fromarray(px)
    cut = np.asarray(fit_image(im, (112, 96), "center", "x"))
    np.testing.assert_array_equal(cut, px[:, 8:104])  # a cut, no resampling
    squash = np.asarray(fit_image(im, (112, 96), "squash", "x"))
    np.testing.assert_array_equal(squash, np.asarray(im.resize((96, 112), Image.BILINEAR)))
    with pytest.raises(InputError, match="--fit is error"):
        fit_image(im, (112, 96), "error", "x.jpg")
    assert fit_image(im, (112, 112), "error", "x") is im  # same size: untouched
    with pytest.raises(InputError, match="unknown fit mode"):
        fit_image(im, (112, 96), "border", "x")
    assert list(FITS) == ["center", "squash", "error"]


def _images(lfw_dir, tmp_path, n=6):
    """``n`` real LFW crops (symlinked) and the same cut by hand to 112x96 (lossless PNG)."""
    people = sorted(p for p in lfw_dir.iterdir() if p.is_dir())[:n]
    src, hand = tmp_path / "src", tmp_path / "hand"
    for person in people:
        img = sorted(person.iterdir())[0]
        (src / person.name).mkdir(parents=True)
        (src / person.name / img.name).symlink_to(img)
        (hand / person.name).mkdir(parents=True)
        px = np.asarray(Image.open(img).convert("RGB"))
        Image.fromarray(px[:, 8:104]).save(hand / person.name / (img.stem + ".png"))
    return src, hand


def test_112x96_nchw_model_sees_the_hand_crop(tmp_path, lfw_dir):
    model = tmp_path / "m112x96.onnx"
    make_linear_onnx(model, layout="NCHW", size=(112, 96), dim=32)
    src, hand = _images(lfw_dir, tmp_path)

    # the inputs: bit-identical to the hand crop, normalised the MobileFaceNet way
    prep = Preprocessing(size=(112, 96))
    ds = open_source({"images": src}, SourceArgs(None, None, None, False))
    ds_hand = open_source({"images": hand}, SourceArgs(None, None, None, False))
    got = load_rows(ds, 0, len(ds.keys), LoaderOptions(prep)).array
    want = load_rows(ds_hand, 0, len(ds_hand.keys), LoaderOptions(prep)).array
    assert got.shape == (6, 112, 96, 3)
    np.testing.assert_array_equal(got, want)
    px = np.asarray(Image.open(ds.items[0]).convert("RGB"))[:, 8:104]
    np.testing.assert_array_equal(got[0], (px.astype(np.float32) - 127.5) / 128)

    # the embeddings: massface-infer with no option == the hand crop
    invoke_ok("--model", model, "--images", src, "--out", tmp_path / "auto", "--quiet")
    invoke_ok("--model", model, "--images", hand, "--out", tmp_path / "byhand", "--quiet")
    auto, byhand = read_embedding_dir(tmp_path / "auto"), read_embedding_dir(tmp_path / "byhand")
    np.testing.assert_array_equal(auto.embeddings, byhand.embeddings)
    meta = json.loads((tmp_path / "auto" / "meta.json").read_text())
    assert meta["fit"]["mode"] == "center" and meta["fit"]["from"] == "default"
    assert meta["fit"]["size"] == [112, 96]
    assert meta["preprocessing"]["layout"] == "NCHW"  # what the model was fed
    assert meta["preprocessing"]["sources"]["layout"] == "model"
    assert meta["model"]["layout"] == "NCHW"
    assert meta["fit"]["images_fitted"] == 6 and meta["fit"]["fitted_from"] == {"112x112": 6}
    hand_meta = json.loads((tmp_path / "byhand" / "meta.json").read_text())
    assert hand_meta["fit"]["images_fitted"] == 0 and hand_meta["fit"]["fitted_from"] == {}

    # squash only when asked, and recorded
    invoke_ok("--model", model, "--images", src, "--out", tmp_path / "sq", "--quiet",
              "--fit", "squash")
    sq = read_embedding_dir(tmp_path / "sq")
    assert not np.array_equal(sq.embeddings, auto.embeddings)
    meta = json.loads((tmp_path / "sq" / "meta.json").read_text())
    assert (meta["fit"]["mode"], meta["fit"]["from"]) == ("squash", "option")
    one = decode_image(ds.items[0], "x", (112, 96), fit="squash")
    np.testing.assert_array_equal(one, np.asarray(
        Image.open(ds.items[0]).convert("RGB").resize((96, 112), Image.BILINEAR)))


def test_export_json_carries_the_fit(tmp_path, lfw_dir):
    from massface.infer.cli import app
    from tests.helpers.cli import run_cli

    model = tmp_path / "m.onnx"
    make_linear_onnx(model, layout="NCHW", size=(112, 96), dim=8)
    (tmp_path / "export.json").write_text(json.dumps({
        "format": "massface-export", "version": 1,
        "preprocessing": {"size": [112, 96], "fit": "error"}}))
    src, _ = _images(lfw_dir, tmp_path, n=2)
    r = run_cli(app, ["--model", str(model), "--images", str(src), "--out",
                                 str(tmp_path / "o"), "--quiet"])
    assert r.exit_code == 2 and "--fit is error" in r.output, r.output
    invoke_ok("--model", model, "--images", src, "--out", tmp_path / "o2", "--quiet",
              "--fit", "center")
    meta = json.loads((tmp_path / "o2" / "meta.json").read_text())
    assert (meta["fit"]["mode"], meta["fit"]["from"]) == ("center", "option")
    r = run_cli(app, ["--model", str(model), "--images", str(src), "--out",
                                 str(tmp_path / "o3"), "--fit", "border"])
    assert r.exit_code == 2 and "unknown fit mode 'border'" in r.output, r.output


def test_shards_add_up_their_fitted_images(tmp_path, lfw_dir):
    model = tmp_path / "m.onnx"
    make_linear_onnx(model, layout="NCHW", size=(112, 96), dim=8)
    src, _ = _images(lfw_dir, tmp_path, n=5)
    for k in range(2):
        invoke_ok("--model", model, "--images", src, "--out", tmp_path / f"s{k}", "--quiet",
                  "--shard", f"{k}/2", "--batch-size", "1", "--chunk-batches", "1")
    parts = [json.loads((tmp_path / f"s{k}" / "meta.json").read_text())["fit"]
             for k in range(2)]
    assert [p["images_fitted"] for p in parts] == [2, 3]
    invoke_ok("merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "all")
    merged = json.loads((tmp_path / "all" / "meta.json").read_text())["fit"]
    assert merged["images_fitted"] == 5 and merged["fitted_from"] == {"112x112": 5}
    assert merged["mode"] == "center"
