"""Second hostile pass on massface-align: bad geometry, changed photos, odd trees."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from massface.align import run as align_run
from massface.align.cli import app
from massface.align.templates import ARCFACE_POINTS
from tests.helpers.cli import run_cli

GOOD = [list(p) for p in ARCFACE_POINTS]  # the arcface points: an identity warp at 112x112


def invoke(*args: object, code: int = 0):
    result = run_cli(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def _photos(root: Path, n: int = 3, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    keys = []
    for i in range(n):
        key = f"p{i % 2}/img{i}.png"
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(1, 255, (112, 112, 3), dtype=np.uint8)).save(root / key)
        keys.append(key)
    return keys


def _landmarks(path: Path, points: dict[str, list]) -> Path:
    path.write_text(json.dumps({k: {"lm": v} for k, v in points.items()}))
    return path


def _skipped(out: Path) -> dict[str, str]:
    lines = (out / "skipped.txt").read_text().splitlines()[1:]
    return dict(line.split("\t") for line in lines)


def test_landmarks_outside_the_image_or_coincident_are_skipped_not_aligned(tmp_path):
    src = tmp_path / "src"
    keys = _photos(src)
    far = [[x + 5000, y + 5000] for x, y in GOOD]  # a black crop that would look aligned
    same = [[50.0, 50.0]] * 5  # degenerate: used to be a ValueError traceback
    given = _landmarks(tmp_path / "lm.json", {keys[0]: GOOD, keys[1]: far, keys[2]: same})
    out = tmp_path / "out"
    result = invoke(src, "--out", out, "--landmarks", given, "--quiet", "--format", "png")
    assert "1 aligned" in result.output and "2 skipped" in result.output
    skipped = _skipped(out)
    assert "outside the 112x112 image" in skipped[keys[1]]
    assert "coincide" in skipped[keys[2]]
    assert skipped[keys[1]].startswith("bad landmarks")
    assert (out / keys[0]).is_file()
    assert not (out / keys[1]).exists() and not (out / keys[2]).exists()
    assert json.loads((out / "align.json").read_text())["summary"]["skipped"] == {
        "bad landmarks": 2}


@pytest.mark.parametrize(("template", "words"), [
    ({"size": [112, 112], "points": [[56, 56]] * 5}, "coincide"),
    ({"size": [100000, 100000], "points": GOOD}, "8..4096"),
])
def test_degenerate_or_huge_templates_are_refused(tmp_path, template, words):
    src = tmp_path / "src"
    _photos(src, 1)
    t = tmp_path / "t.json"
    t.write_text(json.dumps(template))
    out = invoke(src, "--out", tmp_path / "o", "--template", t, code=2).output
    assert str(t.name) in out and words in " ".join(out.split())


def test_deeply_nested_landmarks_file_is_an_input_error(tmp_path):
    src = tmp_path / "src"
    _photos(src, 1)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    out = invoke(src, "--out", tmp_path / "o", "--landmarks", deep, code=2).output
    assert "deep.json" in out and "nested too deeply" in out


def test_a_photo_changed_after_the_kill_is_aligned_again(tmp_path, monkeypatch):
    src = tmp_path / "src"
    keys = _photos(src)
    given = _landmarks(tmp_path / "lm.json", dict.fromkeys(keys, GOOD))
    out = tmp_path / "out"
    real = align_run._finish

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # every image journaled, the run not finished

    monkeypatch.setattr(align_run, "_finish", killed)
    invoke(src, "--out", out, "--landmarks", given, "--quiet", "--format", "png", code=130)
    monkeypatch.setattr(align_run, "_finish", real)
    new = np.full((112, 112, 3), 7, np.uint8)
    Image.fromarray(new).save(src / keys[1])  # edited between the kill and the rerun
    result = invoke(src, "--out", out, "--landmarks", given, "--quiet", "--format", "png")
    assert "resumed after 2 images" in result.output and "1 changed" in result.output
    assert (np.asarray(Image.open(out / keys[1])) == 7).all()
    for k in (keys[0], keys[2]):
        assert (np.asarray(Image.open(out / k)) == np.asarray(Image.open(src / k))).all()


def test_out_equal_to_src_is_named(tmp_path):
    src = tmp_path / "src"
    _photos(src, 1)
    out = invoke(src, "--out", src, code=2).output
    assert "is the source folder" in out and "another --out" in out


def test_summary_lists_what_was_ignored_and_skipped_lines_stay_one_line(tmp_path):
    src = tmp_path / "src"
    keys = _photos(src, 1)
    Image.new("RGB", (4, 4)).save(src / "anim.gif")
    os.symlink(src / "gone.png", src / "dangling.png")
    os.mkfifo(src / "fifo.png")
    odd = "bad\tname\nx.png"
    (src / odd).write_bytes(b"not an image")
    given = _landmarks(tmp_path / "lm.json", {keys[0]: GOOD})
    out = tmp_path / "out"
    result = invoke(src, "--out", out, "--landmarks", given, "--quiet")
    text = " ".join(result.output.split())
    assert all(w in text for w in ("ignored: ", "1 not an image", "1 dangling link",
                                   "1 not a regular file")), text
    lines = (out / "skipped.txt").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("bad\\tname\\nx.png\tunreadable")


def test_workers_zero_is_a_usage_error(tmp_path):
    src = tmp_path / "src"
    _photos(src, 1)
    assert "--workers 0" in invoke(src, "--out", tmp_path / "o", "--workers", 0, code=2).output
