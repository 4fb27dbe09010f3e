"""Label files in every accepted spelling, and clear messages for the rest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from massface.errors import InputError
from massface.evaluate.cli import app
from massface.evaluate.labels import read_labels
from tests.helpers.cli import run_cli


@pytest.mark.parametrize("text", ["1 0 1 0", "True False true false", "same different SAME "
                                  "Different", "1\nfalse\nsame\n0\n"])
def test_label_words_are_accepted(tmp_path, text):
    path = tmp_path / "labels.txt"
    path.write_text(text)
    labels = read_labels(path)
    assert labels.kind == "actual_issame"
    np.testing.assert_array_equal(labels.issame, [True, False, True, False])


def test_json_label_words(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(["same", "different", True, 0]))
    np.testing.assert_array_equal(read_labels(path).issame, [True, False, True, False])
    path.write_text(json.dumps(["yes", "no"]))
    with pytest.raises(InputError, match="0/1, true/false or same/different"):
        read_labels(path)


def test_a_stray_word_says_what_is_accepted(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("1 0 2 1")  # all integers: a label file with a bad label
    with pytest.raises(InputError, match=r"labels\.txt: 1 label.*not 0/1, true/false or "
                                         r"same/different: #2='2'"):
        read_labels(path)
    path.write_text("1 0 maybe")  # reads as an LFW line 'name i j': both formats named
    with pytest.raises(InputError, match=r"'maybe' is not an integer.*a label file holds only "
                                         "0/1, true/false or same/different"):
        read_labels(path)


def test_headerless_tab_separated_path_pairs_are_recognised(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("a/1.jpg\tb/2.jpg\t1\nc/3.jpg\td/4.jpg\t0\n")
    labels = read_labels(path)
    assert labels.kind == "path-pairs"
    assert [(p.a, p.b, p.issame) for p in labels.pairs] == [
        ("a/1.jpg", "b/2.jpg", True), ("c/3.jpg", "d/4.jpg", False)]


def test_lfw_pairs_with_tabs_are_still_lfw(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("1\t2\nAaron\t1\t2\nAaron\t1\tBob\t3\n")
    labels = read_labels(path)
    assert labels.kind == "lfw-pairs" and labels.pairs[0].a == "Aaron/Aaron_0001"


def test_a_broken_pairs_line_names_both_formats(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("Aaron x 2\n")
    with pytest.raises(InputError, match=r"pairs\.txt:1: image number 'x'.*<path_a><TAB>"):
        read_labels(path)


def test_words_labels_through_the_cli(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "e.npy", rng.standard_normal((40, 8)))
    (tmp_path / "issame.txt").write_text(" ".join(["same", "different"] * 10))
    result = run_cli(app, [str(tmp_path / "e.npy"), "--labels",
                                      str(tmp_path / "issame.txt"), "--folds", "2"])
    assert result.exit_code == 0, result.output
