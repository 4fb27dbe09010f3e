"""The embedding folder contract between massface-infer and massface-eval."""

from __future__ import annotations

import json

import numpy as np
import pytest

from massface.errors import InputError
from massface.formats import embedding_dir as ed
from massface.formats.pairs import Pair, read_pairs, write_path_pairs


def test_round_trip_with_flip_and_pairs(tmp_path):
    emb = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    pairs_file = tmp_path / "pairs.txt"
    write_path_pairs(pairs_file, [Pair("a/1.jpg", "a/2.jpg", True)])
    out = ed.write_embedding_dir(tmp_path / "out", emb, ["a/1.jpg", "a/2.jpg", "b/1.jpg"],
                                 flip=emb * 2, pairs_file=pairs_file, meta={"model": "m"})
    got = ed.read_embedding_dir(out)
    np.testing.assert_array_equal(got.embeddings, emb)
    np.testing.assert_array_equal(got.flip, emb * 2)
    assert got.paths == ["a/1.jpg", "a/2.jpg", "b/1.jpg"]
    assert got.meta["model"] == "m" and got.meta["dim"] == 4
    assert read_pairs(got.pairs_file) == [Pair("a/1.jpg", "a/2.jpg", True)]
    assert got.row_of()["b/1"] == 2 and got.row_of()["b/1.jpg"] == 2
    assert ed.is_embedding_dir(out)


def test_folder_without_meta_is_incomplete(tmp_path):
    out = ed.write_embedding_dir(tmp_path / "out", np.zeros((1, 2)), ["x.jpg"])
    (out / ed.META).unlink()
    with pytest.raises(InputError, match="did not finish"):
        ed.read_embedding_dir(out)


def test_index_and_rows_must_agree(tmp_path):
    out = ed.write_embedding_dir(tmp_path / "out", np.zeros((2, 2)), ["x.jpg", "y.jpg"])
    (out / ed.INDEX).write_text("x.jpg\n")
    with pytest.raises(InputError, match=r"lists 1 images"):
        ed.read_embedding_dir(out)


def test_wrong_format_name_is_refused(tmp_path):
    out = ed.write_embedding_dir(tmp_path / "out", np.zeros((1, 2)), ["x.jpg"])
    (out / ed.META).write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(InputError, match="is not massface-embeddings"):
        ed.read_embedding_dir(out)
