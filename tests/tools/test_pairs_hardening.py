"""massface-pairs on data that cannot fill a fold: the message says why and what to do."""

from __future__ import annotations

import numpy as np
from PIL import Image

from massface.tools.pairs_generate import app
from tests.helpers.cli import run_cli


def _tree(root, sizes: list[int]):
    for i, n in enumerate(sizes):
        (root / f"id{i}").mkdir(parents=True)
        for j in range(n):
            Image.fromarray(np.full((4, 4, 3), 10 * i + j, np.uint8)).save(
                root / f"id{i}" / f"{j}.png")
    return root


def _refused(*args: object) -> str:
    r = run_cli(app, [str(a) for a in args])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    text = " ".join(r.output.split())
    assert "at most 0" not in text and "asked for 0" not in text, text
    return text


def test_too_many_folds_names_the_most_that_fit(tmp_path):
    root = _tree(tmp_path / "five", [2, 2, 2, 2, 2])  # 5 same-person pairs in all
    text = _refused(root, "--out", tmp_path / "p.txt", "--folds", 1000)
    assert "5 same-person" in text and "1000 folds" in text and "--folds 5 or fewer" in text
    assert not (tmp_path / "p.txt").exists()


def test_single_image_identities_say_there_is_no_same_pair(tmp_path):
    root = _tree(tmp_path / "singles", [1, 1, 1, 1])
    text = _refused(root, "--out", tmp_path / "p.txt")
    assert "no identity has two images" in text
