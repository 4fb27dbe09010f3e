"""`massface-eval compare` of any two runs of the same images: without labels (a gallery
run over a plain image list) image by image, and across an embedding folder and an msame
folder whose names differ by the extension."""

from __future__ import annotations

import json

import numpy as np
import pytest

from massface.errors import InputError
from massface.evaluate.cli import app
from massface.formats.pairs import match_references
from tests.helpers.cli import invoke_ok, run_cli

N_IMAGES = 300


def test_match_references_with_and_without_extension():
    refs = ["a/1", "a/2.jpg", "b/3.jpg", "c/4.png", "d/5"]
    others = ["d/5", "c/4.jpg", "b/3.jpg", "a/2", "a/1.jpg"]
    np.testing.assert_array_equal(match_references(refs, others), [4, 3, 2, -1, 0])
    with pytest.raises(InputError, match="name it with its extension"):
        match_references(["x/1"], ["x/1.jpg", "x/1.png"])


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, lfw_dir):
    """300 real LFW crops in a plain folder tree (no pairs)."""
    root = tmp_path_factory.mktemp("gallery") / "images"
    n = 0
    for person in sorted(p for p in lfw_dir.iterdir() if p.is_dir()):
        for img in sorted(person.iterdir())[:2]:
            (root / person.name).mkdir(parents=True, exist_ok=True)
            (root / person.name / img.name).symlink_to(img)
            n += 1
            if n == N_IMAGES:
                return root
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, gallery, pretrained_onnx):
    """REF (an embedding folder) and three candidates (msame folders): the same
    pipeline, BGR-fed and x/255-fed."""
    out = tmp_path_factory.mktemp("runs")
    m = ("--model", pretrained_onnx, "--images", gallery, "--quiet")
    invoke_ok(*m, "--out", out / "ref")
    invoke_ok(*m, "--out", out / "same", "--format", "msame")
    invoke_ok(*m, "--out", out / "bgr", "--format", "msame", "--color", "BGR")
    invoke_ok(*m, "--out", out / "x255", "--format", "msame", "--mean", "0", "--std", "255")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name,cause", [("same", "none"), ("bgr", "channel_order"),
                                        ("x255", "normalization")])
def test_label_less_runs_name_the_cause(runs, gallery, pretrained_onnx, name, cause, tmp_path):
    report = tmp_path / "r.json"
    r = run_cli(app, ["compare", str(runs / "ref"), str(runs / name), "--model",
                                 str(pretrained_onnx), "--images", str(gallery), "--sample",
                                 "16", "--json", str(report)])
    assert r.exit_code == 0, r.output
    got = json.loads(report.read_text())
    assert got["cause"] == cause, got["verdict"]
    assert got["images"] == N_IMAGES and got["per"] == "image"
    assert got["matched_by"] == "name" and got["accuracy"] is None
    assert "accuracy: not compared" in r.output
    assert len(got["worst"]) == 10 and got["worst"][0]["path"].endswith(".jpg")
    if cause != "none":
        assert got["median_cosine"] < 0.99


def test_rows_out_of_order_are_matched_by_name(runs, tmp_path):
    """The candidate lists the same images in another order (and without extensions)."""
    from massface.formats.embedding_dir import read_embedding_dir, write_embedding_dir

    es = read_embedding_dir(runs / "ref")
    order = np.random.default_rng(0).permutation(len(es.paths))
    bare = [p.rsplit(".", 1)[0] for p in es.paths]
    write_embedding_dir(tmp_path / "shuffled", es.embeddings[order], [bare[i] for i in order])
    report = tmp_path / "r.json"
    r = run_cli(app, ["compare", str(runs / "ref"), str(tmp_path / "shuffled"),
                                 "--json",
                                 str(report)])
    assert r.exit_code == 0, r.output
    got = json.loads(report.read_text())
    assert got["cause"] == "none" and got["min_cosine"] > 1 - 1e-12
    write_embedding_dir(tmp_path / "fewer", es.embeddings[:-1], es.paths[:-1])
    r = run_cli(app, ["compare", str(runs / "ref"), str(tmp_path / "fewer")])
    assert r.exit_code == 2 and "same images" in r.output


def test_embedding_folder_against_msame_folder_with_labels(tmp_path, lfw_dir, lfw_pairs,
                                                           pretrained_onnx):
    """One side names images from the pairs file (no extension), the other from its
    files (.jpg): the same images, compared with their accuracies."""
    lines = lfw_pairs.read_text().splitlines()[1:]
    chosen = [ln for s in range(10) for ln in lines[600 * s:600 * s + 2]
              + lines[600 * s + 300:600 * s + 302]]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(chosen) + "\n")
    m = ("--model", pretrained_onnx, "--lfw", lfw_dir, "--pairs", pairs, "--quiet")
    invoke_ok(*m, "--out", tmp_path / "emb")
    invoke_ok(*m, "--out", tmp_path / "ms", "--format", "msame")
    report = tmp_path / "r.json"
    r = run_cli(app, ["compare", str(tmp_path / "emb"), str(tmp_path / "ms"), "--json",
                                 str(report)])
    assert r.exit_code == 0, r.output
    got = json.loads(report.read_text())
    assert got["cause"] == "none" and got["accuracy"]["difference"] == 0.0
    assert got["matched_by"] == "pair order, names checked"
