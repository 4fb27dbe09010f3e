"""Second hostile pass on massface-eval: configs, grids, searches and tiny folders."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.io

from massface.evaluate.cli import app
from massface.formats import embedding_dir
from tests.evaluate.test_blufr import make_world
from tests.helpers.cli import run_cli


def run(*args: object, code: int = 2) -> str:
    result = run_cli(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


def _config_with(tmp_path, world, **changes):
    m = {k: v for k, v in scipy.io.loadmat(str(world["config"])).items()
         if not k.startswith("__")}
    m.update(changes)
    path = tmp_path / "changed.mat"
    scipy.io.savemat(str(path), m)
    return path


@pytest.mark.parametrize(("value", "words"), [(np.nan, "nan"), (2.5, "2.5")])
def test_blufr_labels_that_are_not_integers_are_refused(tmp_path, value, words):
    world = make_world(tmp_path, 20)
    labels = world["labels"].astype(np.float64).reshape(-1, 1)
    labels[3, 0] = value  # used to be cast silently (nan -> a huge id, 2.5 -> 2)
    path = _config_with(tmp_path, world, labels=labels)
    out = run(world["folder"], "--protocol", "blufr", "--blufr-config", path)
    assert "changed.mat" in out and "integer class ids" in out and "entry 4" in out
    assert words in out


def test_blufr_config_that_is_not_a_mat_file_or_has_an_empty_gallery(tmp_path):
    world = make_world(tmp_path, 21)
    empty = tmp_path / "empty.mat"
    empty.write_bytes(b"")  # scipy: MatReadError (was a traceback)
    out = run(world["folder"], "--protocol", "blufr", "--blufr-config", empty)
    assert "empty.mat" in out and "not a readable MATLAB" in out
    gal = scipy.io.loadmat(str(world["config"]))["galIndex"]
    gal[0, 0] = np.zeros((0, 1), np.uint16)
    path = _config_with(tmp_path, world, galIndex=gal)
    out = run(world["folder"], "--protocol", "blufr", "--blufr-config", path)
    assert "galIndex{1} is empty" in out


def test_blufr_gallery_emptied_by_missing_images_is_named(tmp_path):
    world = make_world(tmp_path, 22)
    gal = scipy.io.loadmat(str(world["config"]))["galIndex"][0, 0].ravel() - 1
    gone = {world["names"][i] for i in gal}
    es = embedding_dir.read_embedding_dir(world["folder"])
    keep = [i for i, k in enumerate(es.paths) if k.rsplit("/", 1)[-1] not in gone]
    folder = embedding_dir.write_embedding_dir(tmp_path / "fewer", es.embeddings[keep],
                                               [es.paths[i] for i in keep])
    out = run(folder, "--protocol", "blufr", "--blufr-config", world["config"],
              "--allow-missing")
    assert "trial 1 has an empty gallery" in out


def _pairs_folder(tmp_path, n: int):
    """``n`` identities, two near-identical images each: perfectly separated pairs."""
    rng = np.random.default_rng(0)
    ids = rng.standard_normal((n, 8))
    keys = [f"p{i}/{j}.jpg" for i in range(n) for j in range(2)]
    emb = np.repeat(ids, 2, axis=0) + 0.01 * rng.standard_normal((2 * n, 8))
    lines = [f"p{i}/0.jpg\tp{i}/1.jpg\t1\np{i}/0.jpg\tp{(i + 1) % n}/1.jpg\t0"
             for i in range(n)]
    pairs = ("# massface-pairs v1\n" + "\n".join(lines) + "\n").encode()
    return embedding_dir.write_embedding_dir(tmp_path / "pairs", emb.astype(np.float32), keys,
                                             pairs_bytes=pairs)


def test_a_threshold_grid_too_coarse_to_mean_anything_is_refused(tmp_path):
    folder = _pairs_folder(tmp_path, 10)
    out = run(folder, "--step", "3.99", "--folds", "2")  # scored 2 thresholds: 50.000%
    assert "3.99" in out and "at least 10 thresholds" in out


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                    reason="matplotlib not installed (pip install 'massface[report]')")
def test_html_report_of_a_small_perfectly_separated_folder(tmp_path):
    folder = _pairs_folder(tmp_path, 5)  # every FRR 0: the DET curve's log axis is empty
    html = tmp_path / "r.html"
    run(folder, "--folds", "2", "--html", html, code=0)
    assert html.stat().st_size > 10_000 and "nothing to show on a log axis" in html.read_text()


@pytest.mark.skipif(importlib.util.find_spec("faiss") is None,
                    reason="faiss-cpu not installed (pip install 'massface[faiss]')")
@pytest.mark.parametrize(("option", "value", "words"), [
    ("--ivf-nlist", 0, "must lie in 1..15"), ("--ivf-nlist", 100000, "must lie in 1..15"),
    ("--ivf-nprobe", 0, "at least 1"), ("--ivf-nprobe", -3, "at least 1"),
])
def test_bad_ivf_parameters_are_refused_before_faiss(tmp_path, option, value, words):
    rng = np.random.default_rng(1)
    keys = [f"id{i:02d}/img{j}.jpg" for i in range(30) for j in range(4)]
    emb = rng.standard_normal((len(keys), 8)).astype(np.float32)
    folder = embedding_dir.write_embedding_dir(tmp_path / "emb", emb, keys)
    out = run(folder, "--protocol", "identification", "--search", "faiss-ivf", option, value)
    assert f"{option} {value}" in out and words in out


def test_a_huge_malformed_labels_line_is_quoted_as_a_bounded_excerpt(tmp_path):
    folder = _pairs_folder(tmp_path, 5)
    labels = tmp_path / "labels.txt"
    labels.write_text("Ann 1 " + "x" * 1_000_000 + "\n")  # one line, one megabyte
    out = run(folder, "--labels", labels)
    assert "labels.txt" in out and "1,000,00" in out and len(out) < 2_000


def test_a_mat_file_that_crashes_scipy_is_refused_not_a_segfault(tmp_path):
    """The 55th seeded mutation of this small config makes scipy.io.loadmat segfault (it
    killed the whole test run before the reader was probed in a child process)."""
    from tests.test_fuzz_readers import mutate

    world = make_world(tmp_path, 30, n_ids=12, n_trials=2)
    rng = np.random.default_rng(24)
    original = world["config"].read_bytes()
    for _ in range(55):
        damaged = mutate(original, rng)
    path = tmp_path / "damaged.mat"
    path.write_bytes(damaged)
    out = run(world["folder"], "--protocol", "blufr", "--blufr-config", path)
    assert "damaged.mat" in out
