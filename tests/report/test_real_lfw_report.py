"""The report of the shared model on real LFW pairs, opened in headless Chromium.

A tenth of LFW ``pairs.txt`` (the first 30 same and 30 different pairs of each of its 10
sets: 600 pairs, about 1,100 images) is embedded with the shared MobileFaceNet and scored
with ``massface-eval --html``; the page must show every failed pair with both real faces
(decoded), load nothing but itself, and stay small.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from massface.evaluate.cli import app as eval_app
from massface.evaluate.inputs import LoadOptions, load_input
from massface.evaluate.report import Run
from massface.report.pairs import error_counts
from massface.scoring.verification import verify
from tests.helpers.browser import chromium, find_chromium, inspect_page, is_blank
from tests.helpers.cli import invoke_ok, run_cli

pytestmark = pytest.mark.slow
PER_SET = 30


def tenth_of_lfw_pairs(pairs: Path, out: Path) -> Path:
    lines = pairs.read_text().splitlines()
    n_sets, n = (int(x) for x in lines[0].split())
    kept = [f"{n_sets}\t{PER_SET}"]
    for s in range(n_sets):
        block = lines[1 + 2 * n * s : 1 + 2 * n * (s + 1)]
        kept += block[:PER_SET] + block[n : n + PER_SET]
    out.write_text("\n".join(kept) + "\n")
    return out


@pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed (apt-get "
                    "install chromium; .ci/run installs it)")
def test_lfw_report_shows_the_failed_pairs_faces(tmp_path, pretrained_onnx, lfw_dir,
                                                 lfw_pairs):
    pairs = tenth_of_lfw_pairs(lfw_pairs, tmp_path / "pairs.txt")
    emb = tmp_path / "emb"
    invoke_ok("--model", pretrained_onnx, "--lfw", lfw_dir, "--pairs", pairs, "--out", emb,
              "--quiet")
    page = tmp_path / "report.html"
    r = run_cli(eval_app, [str(emb), "--html", str(page), "--html-worst", "12"])
    assert r.exit_code == 0, r.output
    data = load_input(emb, LoadOptions())
    run = Run(data, verify(data.embeddings, data.issame))
    fa, fr = (int(c.sum()) for c in error_counts(run))
    assert fa + fr == round((1 - run.result.accuracy) * 600)
    assert fa + fr > 0  # there is something to show
    with chromium() as browser:
        check = inspect_page(browser, page)
    assert check.foreign_requests() == [] and check.console_errors == []
    assert len(check.images) == 2 * (min(fa, 12) + min(fr, 12))
    assert all(i["naturalWidth"] > 0 for i in check.images)
    assert check.svg_count == 3 and not is_blank(check.screenshot)
    assert page.stat().st_size < 1_000_000
