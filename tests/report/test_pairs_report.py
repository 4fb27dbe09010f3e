"""The LFW-protocol HTML page: failed pairs against a loop reference, the charts as data,
two inputs overlaid, faces from folders and .bin files, and massface-eval --html."""

from __future__ import annotations

import base64
import io
import re
import sys
from html import unescape

import numpy as np
import pytest
from PIL import Image
from sklearn.model_selection import KFold

from massface.evaluate.cli import app
from massface.evaluate.inputs import LoadOptions, load_input
from massface.evaluate.report import Run
from massface.formats import embedding_dir
from massface.formats.insightface_bin import write_insightface_bin
from massface.report import write_eval_report
from massface.report.page import CONTENT_SECURITY_POLICY
from massface.report.pairs import (
    error_counts,
    failed_pairs,
    galleries,
    histogram_chart,
    operating_point,
    roc_chart,
    short_names,
)
from massface.report.plots import render_svg
from massface.report.thumbs import THUMB_SIZE, ImageSource
from massface.scoring.verification import verify
from tests.helpers.cli import run_cli
from tests.helpers.naive_reference import naive_distance, naive_evaluate, naive_prepare
from tests.helpers.report_world import pairs_world


def scored(folder, opts=None, **protocol) -> Run:
    data = load_input(folder, opts or LoadOptions())
    return Run(data, verify(data.embeddings, data.issame, fold_ids=data.fold_ids, **protocol))


def reference_failures(emb, issame, subtract_mean=False, n_folds=10):
    """False accepts / rejects pair by pair, from the naive reference's fold thresholds."""
    ref = naive_evaluate(emb, issame, subtract_mean=subtract_mean, n_folds=n_folds)
    prepared = naive_prepare(emb)
    e1, e2 = prepared[0::2], prepared[1::2]
    fa, fr = [], []
    test_dist = np.zeros(len(issame))
    splits = KFold(n_splits=n_folds, shuffle=False).split(np.arange(len(issame)))
    for f, (train, test) in enumerate(splits):
        mean = np.mean(np.concatenate([e1[train], e2[train]]), 0) if subtract_mean else 0.0
        dist = naive_distance(e1 - mean, e2 - mean, "euclidean")
        thr = ref["fold_threshold"][f]
        for i in test:
            test_dist[i] = dist[i]
            if not issame[i] and dist[i] < thr:
                fa.append((float(dist[i]), int(i), float(thr), f))
            elif issame[i] and not dist[i] < thr:
                fr.append((float(dist[i]), int(i), float(thr), f))
    fa.sort(key=lambda t: (t[0], t[1]))
    fr.sort(key=lambda t: (-t[0], t[1]))
    return fa, fr, ref, test_dist


@pytest.mark.parametrize("subtract_mean", [False, True])
def test_failed_pairs_match_a_pair_by_pair_reference(tmp_path, subtract_mean):
    world = pairs_world(tmp_path)
    run = scored(world["folder"], subtract_mean=subtract_mean)
    fa_ref, fr_ref, ref, dist = reference_failures(run.input.embeddings, run.input.issame,
                                                   subtract_mean)
    assert fa_ref and fr_ref  # the world has both kinds of error
    np.testing.assert_allclose(run.result.pair_distances, dist, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(run.result.pair_folds, np.arange(dist.size) // 20)
    fa, fr = failed_pairs(run)
    for got, want in ((fa, fa_ref), (fr, fr_ref)):
        assert [p.pair for p in got] == [w[1] for w in want]
        np.testing.assert_allclose([p.distance for p in got], [w[0] for w in want],
                                   rtol=0, atol=1e-9)
        assert [p.threshold for p in got] == [w[2] for w in want]
        assert [p.fold for p in got] == [w[3] for w in want]
    # every error the accuracy counts is in a gallery, and nothing else
    n_fa, n_fr = error_counts(run)
    sizes = run.result.fold_sizes
    np.testing.assert_allclose(1 - (n_fa + n_fr) / sizes, ref["fold_accuracy"], atol=1e-12)
    # the refs are the pairs file's images of those pairs
    for p in fa + fr:
        pair = world["pairs"][p.pair]
        assert p.refs == (pair.a, pair.b) and p.same == pair.issame


def test_worst_limits_each_gallery(tmp_path):
    run = scored(pairs_world(tmp_path)["folder"])
    fa, fr = failed_pairs(run, 2)
    all_fa, all_fr = failed_pairs(run)
    assert fa == all_fa[:2] and fr == all_fr[:2]


def test_dropped_pairs_keep_their_pairs_file_numbers(tmp_path):
    world = pairs_world(tmp_path)
    gone = world["pairs"][5].a
    es = embedding_dir.read_embedding_dir(world["folder"])
    keep = [i for i, p in enumerate(es.paths) if p != gone]
    embedding_dir.write_embedding_dir(tmp_path / "partial", es.embeddings[keep],
                                      [es.paths[i] for i in keep],
                                      pairs_file=world["pairs_file"], meta=es.meta)
    run = scored(tmp_path / "partial", LoadOptions(allow_missing=True))
    dropped = set(run.input.dropped_pairs)
    assert 5 in dropped
    fa, fr = failed_pairs(run)
    for p in fa + fr:
        assert p.pair not in dropped
        assert p.refs == (world["pairs"][p.pair].a, world["pairs"][p.pair].b)


def test_operating_point_is_the_mean_of_the_folds_test_rates(tmp_path):
    run = scored(pairs_world(tmp_path)["folder"])
    far, tar = operating_point(run)
    fa, fr = error_counts(run)
    same = run.input.issame
    folds = np.arange(same.size) // (same.size // 10)
    neg = np.bincount(folds[~same], minlength=10)
    pos = np.bincount(folds[same], minlength=10)
    assert far == pytest.approx(np.mean(fa / neg), abs=1e-12)
    assert tar == pytest.approx(np.mean(1 - fr / pos), abs=1e-12)


def test_roc_and_histogram_charts_carry_the_results_data(tmp_path):
    run = scored(pairs_world(tmp_path)["folder"])
    roc = roc_chart([run])
    keep = (run.result.fpr > 0) & (run.result.tpr > 0)
    np.testing.assert_array_equal(roc.series[0].x, run.result.fpr[keep])
    np.testing.assert_array_equal(roc.series[0].y, run.result.tpr[keep])
    hist = histogram_chart(run, 0, "x")
    (_, genuine, _), (_, impostor, _) = hist.groups
    assert genuine.size == run.result.n_same and impostor.size == run.result.n_diff
    assert sorted({line.x for line in hist.lines}) == sorted(set(run.result.fold_threshold))


def test_two_inputs_are_overlaid_with_two_legend_entries(tmp_path):
    a = scored(pairs_world(tmp_path / "a", name="fp32")["folder"])
    b = scored(pairs_world(tmp_path / "b", name="fp16", noise=1.1)["folder"])
    size = write_eval_report("pairs", tmp_path / "two.html", [a, b])
    html = (tmp_path / "two.html").read_text()
    assert size == len(html.encode())
    for chart in ("roc", "det"):
        svg = re.search(rf'<svg[^>]*>(?:(?!</svg>).)*id="{chart}-series-0".*?</svg>', html,
                        re.S).group(0)
        assert f'id="{chart}-series-1"' in svg and f'id="{chart}-series-2"' not in svg
        assert "fp32: " in svg and "fp16: " in svg  # both legend entries
    assert html.count('id="hist-0-group-0"') == 1 and html.count('id="hist-1-group-0"') == 1


def test_page_is_self_contained_and_faces_are_small_jpegs(tmp_path):
    run = scored(pairs_world(tmp_path)["folder"])
    write_eval_report("pairs", tmp_path / "r.html", [run], worst=3)
    html = (tmp_path / "r.html").read_text()
    assert CONTENT_SECURITY_POLICY in unescape(html)
    assert "<script" not in html and "<link" not in html
    srcs = re.findall(r'<img src="([^"]+)"', html)
    n_fa, n_fr = (min(3, int(c.sum())) for c in error_counts(run))
    assert len(srcs) == 2 * (n_fa + n_fr)
    for src in srcs:
        assert src.startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.format == "JPEG" and max(im.size) <= THUMB_SIZE
    # no url(...) or href other than the page's own anchors
    assert not re.search(r"url\((?!#)", html)
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', html))


def test_missing_images_degrade_to_paths(tmp_path):
    world = pairs_world(tmp_path)
    run = scored(world["folder"])
    p = failed_pairs(run, 1)[0][0]
    (world["root"] / p.refs[0]).unlink()
    faces = galleries(run, 1)[0].cards[0].faces
    assert faces[0].path == p.refs[0] and faces[0].src is None
    assert faces[1].src is not None
    # a dataset root that is not on this machine: every face is a path, and the page says so
    run.input.source_meta = {**run.input.source_meta, "dataset": {"kind": "images",
                                                                  "root": "/no/such/root"}}
    shown = galleries(run, 2)
    assert all(f.src is None for g in shown for c in g.cards for f in c.faces)
    assert "/no/such/root" in shown[0].caption


def test_inputs_without_image_names_show_pair_numbers(tmp_path):
    world = pairs_world(tmp_path, with_images=False)
    data = load_input(world["folder"], LoadOptions())
    np.savez(tmp_path / "pairs.npz", embeddings=data.embeddings, issame=data.issame)
    run = scored(tmp_path / "pairs.npz")
    gallery = galleries(run, 1)[0]
    assert gallery.cards[0].faces[0].src is None
    assert gallery.cards[0].faces[0].path.startswith("pair ")
    assert "does not name its images" in gallery.caption


def test_insightface_bin_images_come_from_the_bin(tmp_path):
    blobs = []
    for k in range(4):
        face_path = tmp_path / f"f{k}.jpg"
        from tests.helpers.report_world import face_image

        face_image(face_path, k)
        blobs.append(face_path.read_bytes())
    write_insightface_bin(tmp_path / "set.bin", blobs, [True, False])
    source = ImageSource.from_meta({"dataset": {"kind": "insightface",
                                                "root": str(tmp_path / "set.bin")}})
    assert source.problem is None
    for ref in ("0", "3"):
        assert source.thumbnail(ref).startswith("data:image/jpeg;base64,")
    assert source.thumbnail("4") is None and source.thumbnail("x") is None
    broken = tmp_path / "broken.bin"
    broken.write_bytes(b"not a pickle")
    source = ImageSource.from_meta({"dataset": {"kind": "insightface", "root": str(broken)}})
    assert source.thumbnail("0") is None and "broken.bin" in source.problem


def test_preprocessed_input_bins_have_no_faces(tmp_path):
    source = ImageSource.from_meta({"dataset": {"kind": "input-bins", "root": str(tmp_path)}})
    assert source.thumbnail("0") is None and "not images" in source.problem


def test_short_names_lengthen_only_where_they_clash():
    assert short_names(["a/x/emb", "b/y/emb2"]) == ["emb", "emb2"]
    assert short_names(["a/x/emb", "b/y/emb"]) == ["x/emb", "y/emb"]


def invoke(*args):
    return run_cli(app, [str(a) for a in args])


def test_cli_writes_the_page_for_several_inputs(tmp_path):
    a = pairs_world(tmp_path / "a", name="run_a")["folder"]
    b = pairs_world(tmp_path / "b", name="run_b", seed=3)["folder"]
    r = invoke(a, b, "--html", tmp_path / "out" / "report.html", "--html-worst", "2")
    assert r.exit_code == 0, r.output
    html = (tmp_path / "out" / "report.html").read_text()
    assert "HTML report:" in r.output
    assert html.count('class="card"') == 2 * 2 * 2  # two inputs, 2 FA + 2 FR each
    assert 'id="roc-series-1"' in html


def test_cli_refuses_bad_html_options_before_scoring(tmp_path):
    folder = pairs_world(tmp_path, with_images=False)["folder"]
    (tmp_path / "adir").mkdir()
    r = invoke(folder, "--html", tmp_path / "adir")
    assert r.exit_code == 2 and "--html" in r.output and "is a folder" in r.output
    r = invoke(folder, "--html", tmp_path / "r.html", "--html-worst", "-1")
    assert r.exit_code == 2 and "--html-worst" in r.output


def test_cli_says_how_to_install_a_missing_report_package(tmp_path, monkeypatch):
    folder = pairs_world(tmp_path, with_images=False)["folder"]
    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 -> ImportError
    r = invoke(folder, "--html", tmp_path / "r.html")
    assert r.exit_code == 2
    assert "pip install 'massface[report]'" in r.output and "jinja2" in r.output
    assert not (tmp_path / "r.html").exists()


def test_page_ids_are_unique_and_charts_deterministic(tmp_path):
    a = scored(pairs_world(tmp_path / "a", name="a", with_images=False)["folder"])
    b = scored(pairs_world(tmp_path / "b", name="b", with_images=False, seed=2)["folder"])
    write_eval_report("pairs", tmp_path / "r.html", [a, b], worst=0)
    ids = re.findall(r'\sid="([^"]+)"', (tmp_path / "r.html").read_text())
    assert len(ids) == len(set(ids)) and len(ids) > 10
    chart = roc_chart([a, b])
    assert render_svg(chart) == render_svg(chart)


def test_thumbnails_are_upright_like_the_models_input(tmp_path):
    """A photo stored sideways with EXIF orientation 6 is shown upright, as massface-infer
    decodes it (one decoder), not as stored."""
    stored = np.zeros((10, 30, 3), np.uint8)  # 30 wide, 10 tall as stored
    stored[:, :5] = 255  # a white band on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    path = tmp_path / "sideways.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    uri = ImageSource.from_meta({"dataset": {"kind": "images", "root": str(tmp_path)}}
                                ).thumbnail("sideways.jpg")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
        shown = np.asarray(im.convert("RGB"))
    upright = np.rot90(stored, k=-1)  # the viewer's picture: 10 wide, 30 tall
    assert shown.shape == upright.shape
    assert np.abs(shown.astype(int) - upright).mean() < 8  # JPEG twice, same picture
