"""Pair lists: LFW pairs.txt and the massface path-pairs format."""

from __future__ import annotations

import pytest

from massface.errors import InputError
from massface.formats.pairs import (
    Pair,
    pair_references,
    read_pairs,
    resolve_reference,
    write_path_pairs,
)


def test_reads_lfw_format(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text("1\t2\nAbel\t1\t4\nAl\t2\tBo\t13\n")
    assert read_pairs(f) == [Pair("Abel/Abel_0001", "Abel/Abel_0004", True),
                             Pair("Al/Al_0002", "Bo/Bo_0013", False)]


def test_real_lfw_pairs_file(lfw_pairs, lfw_dir):
    pairs = read_pairs(lfw_pairs)
    assert len(pairs) == 6000
    # 10 sets of 300 same then 300 different
    for s in range(10):
        block = pairs[s * 600:(s + 1) * 600]
        assert [p.issame for p in block] == [True] * 300 + [False] * 300
    refs = pair_references(pairs)
    assert len(refs) == 7701
    assert resolve_reference(lfw_dir, refs[0]).suffix == ".jpg"


def test_bad_line_names_file_and_line(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text("10 300\nAbel 1\n")
    with pytest.raises(InputError, match=r"pairs.txt:2"):
        read_pairs(f)


def test_path_pairs_round_trip(tmp_path):
    pairs = [Pair("s1/1.pgm", "s1/2.pgm", True), Pair("s1/1.pgm", "s2/1.pgm", False)]
    write_path_pairs(tmp_path / "p.txt", pairs)
    assert read_pairs(tmp_path / "p.txt") == pairs


def test_resolve_missing_is_none(tmp_path):
    assert resolve_reference(tmp_path, "nobody/nobody_0001") is None


def test_require_reference_names_who_named_the_missing_image(tmp_path):
    from massface.formats.pairs import require_reference

    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "A_0001.jpg").write_bytes(b"x")
    assert require_reference(tmp_path, "A/A_0001", "pairs.txt") == tmp_path / "A" / "A_0001.jpg"
    with pytest.raises(InputError, match=r"A/A_0002: image named by pairs.txt not found"):
        require_reference(tmp_path, "A/A_0002", "pairs.txt")
