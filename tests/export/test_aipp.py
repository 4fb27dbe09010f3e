"""AIPP: the static config from the preprocessing, its CPU twin, the NCHW ONNX for ATC."""

from __future__ import annotations

import re

import numpy as np
import pytest

from massface.errors import InputError
from massface.export.aipp import AippConfig, nchw_input, twin
from massface.export.atc import AtcSpec
from massface.formats.preprocessing import Preprocessing
from tests.helpers.models import make_linear_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _fields(text: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*(\w+)\s*:\s*(\S+)\s*$", text, flags=re.MULTILINE))


def _run(model, feed):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": feed})[0]


def test_config_splits_the_mean_and_inverts_the_std():
    cfg = AippConfig.from_preprocessing(Preprocessing(mean=127.5, std=128.0))
    f = _fields(cfg.render())
    assert f["aipp_mode"] == "static" and f["input_format"] == "RGB888_U8"
    assert (f["src_image_size_w"], f["src_image_size_h"]) == ("112", "112")
    assert f["csc_switch"] == "false" and f["rbuv_swap_switch"] == "false"
    for k in range(3):  # mean_chn must be an integer: 127 + 0.5
        assert int(f[f"mean_chn_{k}"]) + float(f[f"min_chn_{k}"]) == 127.5
        assert float(f[f"var_reci_chn_{k}"]) == 1 / 128
    assert cfg.input_contract()["dtype"] == "uint8"
    assert cfg.input_contract()["color"] == "RGB"


def test_bgr_model_swaps_on_chip_and_odd_sizes_are_kept():
    cfg = AippConfig.from_preprocessing(Preprocessing(color="BGR", mean=104.0, std=1.0,
                                                          size=(96, 80)))
    f = _fields(cfg.render())
    assert f["rbuv_swap_switch"] == "true"
    assert (f["src_image_size_w"], f["src_image_size_h"]) == ("80", "96")
    assert f["mean_chn_0"] == "104" and float(f["min_chn_0"]) == 0.0


def test_mean_outside_the_pixel_range_is_refused():
    with pytest.raises(InputError, match="mean_chn"):
        AippConfig.from_preprocessing(Preprocessing(mean=-1.0))


@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_twin_on_pixels_equals_the_model_on_normalised_floats(tmp_path, color):
    weight = make_linear_onnx(tmp_path / "lin.onnx", size=(16, 16), dim=8)
    model = onnx.load(str(tmp_path / "lin.onnx"))
    prep = Preprocessing(color=color, mean=127.5, std=128.0, size=(16, 16))
    tw = twin(model, AippConfig.from_preprocessing(prep))
    assert tw.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    pixels = np.random.default_rng(3).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    # obviously-correct reference: float64, the preprocessing written out by hand
    x = pixels.astype(np.float64)
    if color == "BGR":
        x = x[..., ::-1]
    want = ((x - 127.5) / 128.0).reshape(5, -1) @ weight.astype(np.float64)
    np.testing.assert_allclose(_run(tw, pixels), want, atol=1e-4)


def test_twin_of_the_shared_model_matches_the_float_path(pretrained_onnx, faces):
    from massface.export.preview import _pixels

    model = onnx.load(str(pretrained_onnx))
    prep = Preprocessing()
    tw = twin(model, AippConfig.from_preprocessing(prep))
    pixels = _pixels(faces, prep)
    np.testing.assert_array_equal(((pixels.astype(np.float32) - 127.5) / 128), faces.images)
    got, want = _run(tw, pixels), _run(model, faces.images)
    assert np.abs(got - want).max() <= 1e-4


@pytest.mark.parametrize("mean, std", [(0.0, 255.0), (127.5, 127.5), (104.0, 58.0)])
def test_twin_rounds_the_aipp_output_to_float16_like_the_chip(tmp_path, mean, std):
    """AIPP hands the model float16: for any mean/std but the default the twin must
    round like the chip (a float32 twin would be off by up to half a float16 step)."""
    weight = make_linear_onnx(tmp_path / "lin.onnx", size=(16, 16), dim=8)
    model = onnx.load(str(tmp_path / "lin.onnx"))
    cfg = AippConfig.from_preprocessing(Preprocessing(mean=mean, std=std, size=(16, 16)))
    pixels = np.random.default_rng(4).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    # reference written out by hand: AIPP's arithmetic, its float16 result, float64 model
    x = (pixels.astype(np.float32) - np.float32(cfg.mean_chn[0]) - np.float32(cfg.min_chn[0]))
    chip = (x * np.float32(cfg.var_reci_chn[0])).astype(np.float16).astype(np.float64)
    w64 = weight.astype(np.float64)
    want = chip.reshape(6, -1) @ w64
    got = _run(twin(model, cfg), pixels)
    np.testing.assert_allclose(got, want, atol=2e-6)
    np.testing.assert_array_equal(cfg.apply(pixels), chip.astype(np.float32))
    unrounded = ((pixels.astype(np.float64) - mean) / std).reshape(6, -1) @ w64
    assert np.abs(unrounded - want).max() > 1e-5  # the rounding is visible here


def test_default_preprocessing_is_exact_in_float16():
    """(x - 127.5) / 128 of every pixel value is a float16: the rounding changes nothing."""
    cfg = AippConfig.from_preprocessing(Preprocessing())
    px = np.arange(256, dtype=np.uint8).reshape(1, 1, 256, 1).repeat(3, axis=3)
    np.testing.assert_array_equal(cfg.apply(px), (px.astype(np.float64) - 127.5) / 128)


def test_nchw_input_is_the_same_model_behind_a_transpose(pretrained_onnx, faces):
    model = onnx.load(str(pretrained_onnx))
    nchw = nchw_input(model)
    dims = [d.dim_value or d.dim_param for d in nchw.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, 112, 112]
    x = faces.images[:4]
    np.testing.assert_array_equal(_run(nchw, np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
                                  _run(model, x))


def test_atc_gets_the_aipp_config_and_an_nchw_onnx():
    spec = AtcSpec(model="model.nchw.onnx", output="model", layout="NCHW",
                   insert_op_conf="aipp.cfg")
    argv = spec.argv()
    assert "--insert_op_conf=aipp.cfg" in argv
    assert "--input_format=NCHW" in argv and "--input_shape=input:-1,3,112,112" in argv
    pb = AtcSpec(model="model.pb", output="model", insert_op_conf="aipp.cfg").argv()
    assert "--input_format=NHWC" in pb and "--insert_op_conf=aipp.cfg" in pb
    # ATC refuses AIPP on an ND input: say so before handing it a command that fails
    with pytest.raises(InputError, match="NCHW or NHWC"):
        AtcSpec(model="model.onnx", output="model", insert_op_conf="aipp.cfg").argv()
