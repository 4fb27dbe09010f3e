"""The pages in a real browser (headless Chromium, see tests.helpers.browser).

Each page must load nothing but itself (``data:`` URIs excepted: that is how its images
are inlined), log no console error, decode every image, draw its charts, print to PDF
and not be blank. The first test shows that the harness catches each of those faults.
Skipped, with the reason, only where Chromium is not installed (``.ci/run`` installs
Debian's ``chromium``).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from massface.evaluate.inputs import LoadOptions, load_input
from massface.evaluate.report import Run
from massface.report import write_compare_report, write_eval_report, write_training_report
from massface.report.pairs import error_counts
from massface.scoring.verification import verify
from tests.helpers.browser import PageCheck, chromium, find_chromium, inspect_page, is_blank
from tests.helpers.report_world import face_image, pairs_world, run_folder

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="Chromium is not installed: apt-get install chromium (.ci/run installs it), or "
           "set MASSFACE_CHROMIUM to a Chromium/Chrome binary")


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def assert_clean(check: PageCheck, n_images: int, n_svgs: int) -> None:
    assert check.foreign_requests() == [], "the page loaded something besides itself"
    assert check.console_errors == [] and check.failed_loads == []
    assert len(check.images) == n_images
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in check.images)
    assert check.svg_count == n_svgs
    assert not is_blank(check.screenshot)


def test_the_harness_sees_requests_errors_broken_images_and_blank_pages(tmp_path, browser):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><p>text</p>'
                   '<img src="https://example.invalid/a.png"><img src="data:image/jpeg;'
                   'base64,AAAA"><img src="other.png">'
                   '<script>console.error("boom")</script></body></html>')
    check = inspect_page(browser, bad)
    assert "https://example.invalid/a.png" in check.foreign_requests()
    assert (tmp_path / "other.png").as_uri() in check.foreign_requests()
    assert any("boom" in e for e in check.console_errors)
    assert [i["naturalWidth"] for i in check.images] == [0, 0, 0]
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    assert is_blank(inspect_page(browser, blank).screenshot)


def test_the_pages_policy_blocks_what_slips_in(tmp_path, browser):
    """Even if a page of ours referred to the network, the browser would refuse and say
    so (a console error), not fetch it quietly."""
    folder = pairs_world(tmp_path, with_images=False)["folder"]
    data = load_input(folder, LoadOptions())
    run = Run(data, verify(data.embeddings, data.issame))
    page = tmp_path / "r.html"
    write_eval_report("pairs", page, [run], worst=0)
    html = page.read_text().replace("</footer>",
                                    '<img src="https://example.invalid/x.png"></footer>')
    page.write_text(html)
    check = inspect_page(browser, page)
    assert any("Content Security Policy" in e for e in check.console_errors)


def test_pairs_page_for_two_inputs(tmp_path, browser):
    runs = []
    for name, noise in (("fp32", 0.9), ("fp16", 1.0)):
        folder = pairs_world(tmp_path, name=name, noise=noise)["folder"]
        data = load_input(folder, LoadOptions())
        runs.append(Run(data, verify(data.embeddings, data.issame)))
    page = tmp_path / "report.html"
    write_eval_report("pairs", page, runs, worst=3)
    cards = sum(min(3, int(c.sum())) for run in runs for c in error_counts(run))
    check = inspect_page(browser, page, pdf=True)
    assert_clean(check, 2 * cards, n_svgs=2 + 2)  # ROC + DET, a histogram per input
    assert check.pdf.startswith(b"%PDF")
    assert "fp32" in check.text and "fp16" in check.text
    with Image.open(io.BytesIO(check.screenshot)) as im:
        assert im.width == 1280 and im.height > 900  # the whole page, not the viewport


def test_training_page(tmp_path, browser):
    run = run_folder(tmp_path / "run", triplet=True)
    write_training_report(run, run / "report.html")
    check = inspect_page(browser, run / "report.html")
    assert_clean(check, 0, n_svgs=4 + 3)  # loss, lr, validation, throughput; 3 mining
    assert "Triplet mining" in check.text


def test_compare_page(tmp_path, browser):
    from tests.report.test_other_pages import compare_report

    root = tmp_path / "images"
    paths = [f"P/P_{k:04d}.jpg" for k in range(4)]
    for k, p in enumerate(paths):
        face_image(root / p, k)
    cosines = 1 - 10.0 ** np.random.default_rng(0).uniform(-9, -2, 300)
    report = compare_report(paths, cosines)
    write_compare_report(tmp_path / "c.html", report, cosines,
                         {"dataset": {"kind": "images", "root": str(root)}})
    check = inspect_page(browser, tmp_path / "c.html")
    assert_clean(check, 4, n_svgs=1)


def test_identification_page_with_probe_faces(tmp_path, browser):
    from massface.evaluate.protocols import ScaleOptions, evaluate_path
    from massface.evaluate.report import ProtocolRun
    from massface.report import write_eval_report
    from massface.report.probes import probe_failures

    folder = pairs_world(tmp_path, n_ids=40, per_id=3, noise=1.2)["folder"]
    run = ProtocolRun(*evaluate_path(folder, "identification", ScaleOptions()))
    alarms, misses = probe_failures(run.result, 4)
    assert alarms and misses
    write_eval_report("protocol", tmp_path / "id.html", [run], worst=4)
    check = inspect_page(browser, tmp_path / "id.html")
    assert_clean(check, 2 * (len(alarms) + len(misses)), n_svgs=2 + 1)  # CMC, DIR; scores
