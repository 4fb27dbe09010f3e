"""The one preprocessing record shared by export (export.json) and inference."""

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
                           "layout": "NCHW"}


@pytest.mark.parametrize("fields, word", [
    ({"size": 112}, "size"), ({"size": [112]}, "size"), ({"mean": "x"}, "mean"),
    ({"color": "YUV"}, "color"), ({"layout": "HWC"}, "layout"), ({"std": 0}, "std"),
    ({"size": [0, 112]}, "positive"),
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
