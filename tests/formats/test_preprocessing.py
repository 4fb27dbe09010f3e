"""The one preprocessing record shared by export (export.json) and inference."""

import numpy as np
import pytest

from massface.errors import InputError
from massface.formats.preprocessing import Preprocessing
from massface.runtime.preprocess import choose_preprocessing


def test_round_trip_and_case():
    p = Preprocessing.from_dict({"color": "bgr", "mean": 1, "std": "2", "size": [96, 80],
                                 "layout": "nchw", "sources": {"color": "option"}})
    assert p == Preprocessing(color="BGR", mean=1.0, std=2.0, size=(96, 80), layout="NCHW")
    assert Preprocessing.from_dict(p.to_dict()) == p
    assert p.to_dict() == {"color": "BGR", "mean": 1.0, "std": 2.0, "size": [96, 80],
                           "layout": "NCHW", "fit": "center"}
    assert Preprocessing.from_dict({"fit": "Squash"}).fit == "squash"


@pytest.mark.parametrize("fields, word", [
    ({"size": 112}, "size"), ({"size": [112]}, "size"), ({"mean": "x"}, "mean"),
    ({"color": "YUV"}, "color"), ({"layout": "HWC"}, "layout"), ({"std": 0}, "std"),
    ({"size": [0, 112]}, "positive"), ({"fit": "border"}, "fit"),
])
def test_bad_fields_are_input_errors(fields, word):
    with pytest.raises(InputError, match=word):
        Preprocessing.from_dict(fields)


def test_export_and_infer_read_one_record(tmp_path):
    """What export writes beside a model is what inference uses, field for field."""
    from massface.io import write_json

    prep = Preprocessing(color="BGR", mean=104.0, std=1.0)
    (tmp_path / "m.onnx").write_bytes(b"")
    write_json(tmp_path / "export.json", {"format": "massface-export",
                                          "preprocessing": prep.to_dict()})
    chosen = choose_preprocessing(tmp_path / "m.onnx", {})
    assert chosen.preprocessing == prep
    assert set(chosen.sources.values()) == {"export.json"}


def test_normalisation_against_a_pixel_loop():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    for prep in (Preprocessing(), Preprocessing(color="BGR", mean=127.0, std=64.0)):
        got = prep.normalize(pixels)
        assert got.dtype == np.float32
        for n, y, x, c in np.ndindex(pixels.shape):
            src = 2 - c if prep.color == "BGR" else c
            want = np.float32((float(pixels[n, y, x, src]) - prep.mean) / prep.std)
            assert got[n, y, x, c] == want
    out = np.empty(pixels.shape, np.float32)
    assert Preprocessing().normalize(pixels, out) is out


def test_training_tensors_are_normalised_like_inference_arrays():
    """Training normalises TensorFlow tensors with the same record (one function)."""
    tf = pytest.importorskip("tensorflow")
    pixels = np.random.default_rng(1).integers(0, 256, (2, 5, 4, 3)).astype(np.float32)
    prep = Preprocessing(mean=127.5, std=128.0)
    got = prep.normalize(tf.constant(pixels)).numpy()
    np.testing.assert_array_equal(got, prep.normalize(pixels))
