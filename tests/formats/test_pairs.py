"""Pair lists: LFW pairs.txt and the massface path-pairs format."""

from __future__ import annotations

import pytest

from massface.errors import InputError
from massface.formats.pairs import (
    IMAGE_EXTENSIONS,
    Pair,
    ReferenceIndex,
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


# --- image reference -> row: one rule for massface-infer and massface-eval --------------

KEYS = ["a/x.jpg", "a/y.png", "a/y.jpg", "b/z", "b/w.JPG", "c/v.tar"]
REFS = ["a/x.jpg", "a/x", "a/x.png", "a/y", "a/y.png", "b/z", "b/z.jpg", "b/w", "c/v",
        "c/v.tar", "nope"]


def _slow_row(keys: list[str], ref: str) -> int | str | None:
    """The rule spelled out: an exact key, else the keys that are ``ref`` plus an image
    extension; several of those is ambiguous ("twice")."""
    if ref in keys:
        return keys.index(ref)
    hits = [i for i, k in enumerate(keys)
            if k.startswith(ref) and k[len(ref):].lower() in IMAGE_EXTENSIONS]
    return None if not hits else hits[0] if len(hits) == 1 else "twice"


@pytest.mark.parametrize("ref", REFS)
def test_reference_index_matches_the_rule(ref):
    index = ReferenceIndex(KEYS, "keys.txt")
    want = _slow_row(KEYS, ref)
    if want == "twice":
        with pytest.raises(InputError, match=r"keys.txt: 'a/y' names 2 images.*extension"):
            index.get(ref)
    else:
        assert index.get(ref) == want
        assert (ref in index) == (want is not None)


def test_infer_and_eval_find_the_same_images(tmp_path):
    """The extension rule is one: a pair naming ``x.png`` does not find ``x.jpg`` in
    massface-infer, nor (as it did before) in massface-eval; ``x`` finds it in both."""
    import numpy as np
    from PIL import Image

    from massface.evaluate.cli import app
    from massface.formats.embedding_dir import write_embedding_dir
    from massface.runtime.sources import images_dataset
    from tests.helpers.cli import run_cli

    root = tmp_path / "imgs"
    keys = [f"p{i}/{j}.jpg" for i in range(2) for j in range(2)]
    for key in keys:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / key)
    emb = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    for name, suffix in (("bare", ""), ("other-ext", ".png"), ("exact", ".jpg")):
        pairs = tmp_path / f"{name}.txt"
        write_path_pairs(pairs, [Pair("p0/0" + suffix, "p0/1" + suffix, True),
                                 Pair("p0/0" + suffix, "p1/0" + suffix, False)] * 10)
        folder = write_embedding_dir(tmp_path / f"emb-{name}", emb, keys, pairs_file=pairs)
        result = run_cli(app, [str(folder)])
        try:
            images_dataset(root, pairs)
            infer_found = True
        except InputError as exc:
            infer_found, message = False, str(exc)
        assert infer_found == (suffix != ".png"), name
        assert (result.exit_code == 0) == infer_found, (name, result.output)
        if not infer_found:
            assert "p0/0.png" in message and result.exit_code == 2
