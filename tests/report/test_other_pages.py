"""The pages of the labelled-set protocols, of a training run folder and of a device
comparison: what they plot is the result's data, and the commands write them."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from massface.evaluate.cli import app as eval_app
from massface.evaluate.protocols import PROTOCOLS, ScaleOptions, evaluate_path
from massface.evaluate.report import ProtocolRun
from massface.report import write_compare_report, write_eval_report
from massface.report.compare import GAP_FLOOR, compare_page, cosine_gap_chart
from massface.report.labelled import CURVES, labelled_page
from massface.report.training import read_run, training_page
from massface.train import callbacks as train_logs
from massface.train import cli as train_cli
from tests.helpers.cli import run_cli
from tests.helpers.report_world import (
    METRIC_HEADER,
    MINING_HEADER,
    face_image,
    pairs_world,
    run_folder,
)


def test_every_labelled_protocol_has_curves():
    labelled = {n for n in PROTOCOLS.names() if PROTOCOLS.get(n).evaluate is not None}
    assert set(CURVES.names()) == labelled and "blufr" in labelled


@pytest.mark.parametrize("protocol", ["identification", "all-pairs"])
def test_labelled_protocol_pages_overlay_inputs(tmp_path, protocol):
    a = pairs_world(tmp_path / "a", name="model_a", with_images=False)["folder"]
    b = pairs_world(tmp_path / "b", name="model_b", with_images=False, noise=1.3)["folder"]
    runs = [ProtocolRun(*evaluate_path(p, protocol, ScaleOptions())) for p in (a, b)]
    page = labelled_page(runs)
    curves = next(s for s in page.sections if s.title == "Curves")
    assert curves.blocks
    for fig in curves.blocks:
        assert "model_a" in fig.svg and "model_b" in fig.svg
    size = write_eval_report("protocol", tmp_path / "p.html", runs)
    html = (tmp_path / "p.html").read_text()
    assert size == len(html.encode())
    for run in runs:  # every table of the result is on the page
        for table in run.result.tables():
            assert table.title in html


def test_identification_curves_are_the_results_cmc_and_dir(tmp_path):
    folder = pairs_world(tmp_path, with_images=False)["folder"]
    run = ProtocolRun(*evaluate_path(folder, "identification", ScaleOptions()))
    cmc, *rest = CURVES.get("identification")([run], ["x"])
    np.testing.assert_array_equal(cmc.series[0].y, run.result.cmc)
    np.testing.assert_array_equal(cmc.series[0].x, np.arange(1, run.result.cmc.size + 1))
    o = run.result.open_set
    if o is not None:
        keep = np.asarray(o.thresholds.far_points) > 0
        np.testing.assert_array_equal(rest[0].series[0].y, o.dir[o.ranks.index(1)][keep])


def test_blufr_page_from_the_cli(tmp_path):
    from massface.formats import embedding_dir
    from tests.helpers.blufr_reference import (
        dyadic_vectors,
        lfw_like_names,
        random_trials,
        write_config,
    )

    rng = np.random.default_rng(0)
    names, labels = lfw_like_names(rng.integers(1, 7, size=40))
    config = write_config(tmp_path / "c.mat", names, labels,
                          random_trials(labels, 3, rng))
    keys = [f"{n.rsplit('_', 1)[0]}/{n}" for n in names]
    folder = embedding_dir.write_embedding_dir(tmp_path / "emb",
                                               dyadic_vectors(len(names), 8, rng), keys)
    r = run_cli(eval_app, [str(folder), "--protocol", "blufr", "--blufr-config",
                                      str(config), "--html", str(tmp_path / "b.html")])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "b.html").read_text()
    assert html.count("<svg") == 3 and "per trial" in html


def test_run_folder_formats_are_the_trainers():
    """The test run folders use massface-train's own columns."""
    assert METRIC_HEADER == train_logs.METRIC_FIELDS
    assert MINING_HEADER == train_logs.MINING_FIELDS


def test_training_page_plots_the_logged_columns(tmp_path):
    logs = read_run(run_folder(tmp_path / "run"))
    page = training_page(logs)
    svgs = [b.svg for s in page.sections for b in s.blocks if b.kind == "figure"]
    joined = "\n".join(svgs)
    for label in ("total loss", "cross-entropy", "Training accuracy", "Learning rate",
                  "mirror-averaged", "Throughput"):
        assert label in joined
    assert "triplet loss" not in joined and "Triplet mining" not in [s.title for s in
                                                                     page.sections]
    np.testing.assert_array_equal(logs.metrics["step"], np.arange(10, 61, 10))
    assert np.isnan(logs.metrics["triplets"]).all()  # empty cells are NaN, not drawn


def test_triplet_run_page_has_the_mining_statistics(tmp_path):
    logs = read_run(run_folder(tmp_path / "run", triplet=True))
    page = training_page(logs)
    mining = next(s for s in page.sections if s.title == "Triplet mining")
    assert len(mining.blocks) == 3
    assert len(logs.mining) == 60  # every step
    assert "mean d(anchor, negative)" in mining.blocks[2].svg


def test_train_report_command(tmp_path, monkeypatch, capsys):
    run = run_folder(tmp_path / "run", triplet=True)
    monkeypatch.setattr("sys.argv", ["massface-train", "report", str(run)])
    with pytest.raises(SystemExit) as done:
        train_cli.main()
    assert done.value.code == 0
    assert "HTML report:" in capsys.readouterr().out
    html = (run / "report.html").read_text()
    assert "loss:\n  kind: triplet" in html and "Triplet mining" in html


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "metrics.csv").unlink(), "no metrics.csv"),
    (lambda run: (run / "metrics.csv").write_text("a,b\n1,2\n"), "no 'step' column"),
    (lambda run: (run / "metrics.csv").write_text("step,loss\n1,abc\n"), "'abc'"),
    (lambda run: (run / "validation.jsonl").write_text("{oops\n"), "validation.jsonl:1"),
])
def test_train_report_bad_run_folders_exit_2(tmp_path, monkeypatch, capsys, damage,
                                             message):
    run = run_folder(tmp_path / "run")
    damage(run)
    monkeypatch.setattr("sys.argv", ["massface-train", "report", str(run)])
    with pytest.raises(SystemExit) as done:
        train_cli.main()
    assert done.value.code == 2
    assert message in capsys.readouterr().err
    assert not (run / "report.html").exists()


def compare_report(worst_paths: list[str], cosines: np.ndarray) -> dict:
    """A report dict shaped as ``massface.evaluate.diagnose.compare`` returns it."""
    order = np.argsort(cosines, kind="stable")[:len(worst_paths)]
    return {"reference": "cpu_run", "candidate": "npu_out", "images": int(cosines.size),
            "per": "image", "min_cosine": float(cosines.min()),
            "p1_cosine": float(np.percentile(cosines, 1)),
            "median_cosine": float(np.median(cosines)),
            "worst": [{"path": worst_paths[i], "cosine": float(cosines[k])}
                      for i, k in enumerate(order)],
            "accuracy": {"reference": 0.99, "reference_std": 0.005, "candidate": 0.97,
                         "candidate_std": 0.006, "difference": -0.02,
                         "fold_differences": [-0.02] * 10, "standard_error": 0.001,
                         "beyond_fold_noise": True, "rule": "|mean| > 2 SE"},
            "thresholds": {"none_min_cosine": 1 - 1e-7, "reproduce_median_cosine": 0.999},
            "cause": "preprocessing", "verdict": "mean/std reproduces the candidate",
            "evidence": [{"hypothesis": "mean-std", "cause": "preprocessing",
                          "tried": True, "median_cosine": 0.9999999, "min_cosine": 0.99999,
                          "reproduces": True},
                         {"hypothesis": "fp16", "cause": "precision", "tried": False,
                          "reason": "no fp16"}]}


def test_compare_page_histogram_and_worst_faces(tmp_path):
    root = tmp_path / "images"
    paths = [f"P/P_{k:04d}.jpg" for k in range(3)]
    for k, p in enumerate(paths):
        face_image(root / p, k)
    rng = np.random.default_rng(0)
    cosines = np.concatenate([1 - 10.0 ** rng.uniform(-9, -3, 500), [1.0]])
    report = compare_report([*paths, "P/missing.jpg"], cosines)
    chart = cosine_gap_chart(cosines, report["thresholds"])
    values = chart.groups[0][1]
    np.testing.assert_allclose(values, np.log10(np.maximum(1 - cosines, GAP_FLOOR)))
    assert [round(line.x, 6) for line in chart.lines] == [-7.0, -3.0]
    meta = {"dataset": {"kind": "images", "root": str(root)}}
    page = compare_page(report, cosines, meta)
    gallery = next(b for s in page.sections for b in s.blocks if b.kind == "gallery")
    assert [f.src is not None for c in gallery.cards for f in c.faces] == [True] * 3 + [False]
    size = write_compare_report(tmp_path / "c.html", report, cosines, meta)
    html = (tmp_path / "c.html").read_text()
    assert size == len(html.encode()) and "Cause: preprocessing" in html
    assert "not tried" in html
    assert len(re.findall(r'<img src="data:image/jpeg', html)) == 3
    json.dumps(report)  # the page takes the report as the JSON has it


def test_identification_failures_match_a_probe_by_probe_reference(tmp_path):
    from massface.evaluate.protocols.labelled import FeatureOptions, load_features
    from massface.report.probes import open_set_threshold, probe_failures

    # 50 of 100 identities enrolled: 150 impostor probes, so FAR 1% allows 2 false alarms
    folder = pairs_world(tmp_path, n_ids=100, per_id=3, noise=1.2, with_images=False)["folder"]
    _, result = evaluate_path(folder, "identification", ScaleOptions())
    fs = load_features(folder, FeatureOptions(), "identification")
    feats = fs.features.astype(np.float64)
    row = {k: i for i, k in enumerate(fs.keys)}
    gallery = [row[k] for k in result.gallery_keys]
    ident = [k.split("/")[0] for k in fs.keys]
    thr = open_set_threshold(result)
    alarms, misses = [], []
    for key in result.probe_keys:
        scores = [float(feats[row[key]] @ feats[g]) for g in gallery]
        top = max(range(len(gallery)), key=lambda j: (scores[j], -j))
        own = [j for j in range(len(gallery)) if ident[gallery[j]] == ident[row[key]]]
        if not own:
            if scores[top] >= thr:
                alarms.append((-scores[top], key, result.gallery_keys[top]))
        elif ident[gallery[top]] != ident[row[key]]:
            mate = max(scores[j] for j in own)
            misses.append((-(scores[top] - mate), key, result.gallery_keys[top]))
    assert alarms and misses
    got_alarms, got_misses = probe_failures(result)
    # as many false alarms as the FAR point allows: k = round(0.01 x impostor probes)
    k = result.open_set.thresholds.k[list(result.open_set.thresholds.far_points).index(0.01)]
    assert len(got_alarms) == k == 2
    assert [(f.probe, f.match) for f in got_alarms] == [(k, m) for _, k, m in sorted(
        alarms, key=lambda a: a[0])]
    assert sorted((f.probe, f.match) for f in got_misses) == sorted((k, m) for _, k, m in
                                                                    misses)
    margins = [f.top_score - f.mate_score for f in got_misses]
    assert margins == sorted(margins, reverse=True)
    np.testing.assert_allclose(sorted(-m for m in margins), sorted(m for m, _, _ in misses),
                               atol=1e-5)
