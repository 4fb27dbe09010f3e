"""massface-eval has one evaluation path and one set of writers (issue 18, item 3).

Every protocol, ``lfw`` included, is a :data:`PROTOCOLS` entry whose report kind names
one :data:`REPORT_KINDS` entry and one :data:`massface.report.PAGES` builder; the CLI
writes every protocol's Markdown, JSON and HTML through the same writer functions. The
LFW Markdown is pinned against an expectation formatted here from the JSON report.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import massface.evaluate.cli as eval_cli
import massface.report as report_pkg
from massface.evaluate.cli import app
from massface.evaluate.protocols import PROTOCOLS
from massface.evaluate.report import REPORT_KINDS
from massface.formats import embedding_dir
from massface.formats.pairs import Pair, write_path_pairs
from tests.helpers.cli import run_cli

N_PAIRS = 40
DIM = 8


@pytest.fixture
def folder(tmp_path):
    """An embedding folder (with flip rows) of 80 images in 20 identities, and the
    path-pairs file of 40 pairs (same, same, different, different, ...)."""
    rng = np.random.default_rng(7)
    same = np.tile([True, True, False, False], N_PAIRS // 4)
    a = rng.standard_normal((N_PAIRS, DIM))
    b = rng.standard_normal((N_PAIRS, DIM))
    b[same] = a[same] + 0.8 * b[same]
    emb = np.empty((2 * N_PAIRS, DIM), np.float32)
    emb[0::2], emb[1::2] = a, b
    paths = [f"id{i // 4}/{i}.png" for i in range(2 * N_PAIRS)]
    pairs_file = tmp_path / "pairs.txt"
    write_path_pairs(pairs_file, [Pair(paths[2 * i], paths[2 * i + 1], bool(same[i]))
                                  for i in range(N_PAIRS)])
    return embedding_dir.write_embedding_dir(
        tmp_path / "emb", emb, paths, flip=emb + np.float32(0.05), pairs_file=pairs_file,
        meta={"model": "synthetic"})


def test_every_protocol_has_a_report_kind_with_one_page_builder():
    kinds = {PROTOCOLS.get(name).report for name in PROTOCOLS.names()}
    assert PROTOCOLS.get("lfw").report == "pairs"
    assert kinds <= set(REPORT_KINDS.names())
    assert set(REPORT_KINDS.names()) == set(report_pkg.PAGES)


def _spy(monkeypatch, module, name, calls):
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append((name, args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)


@pytest.mark.parametrize("protocol, html", [("lfw", True), ("sphereface", False),
                                            ("all-pairs", True)])
def test_every_protocol_is_written_by_the_same_writers(tmp_path, folder, monkeypatch,
                                                        protocol, html):
    pytest.importorskip("jinja2")
    pytest.importorskip("matplotlib")
    calls: list[tuple[str, str]] = []
    for name in ("write_markdown", "write_json", "print_console"):
        _spy(monkeypatch, eval_cli, name, calls)
    _spy(monkeypatch, report_pkg, "write_eval_report", calls)
    args = [folder, "--protocol", protocol, "--markdown", tmp_path / "r.md",
            "--json", tmp_path / "r.json"]
    if html:
        args += ["--html", tmp_path / "r.html", "--html-worst", "1"]
    result = run_cli(app, args)
    assert result.exit_code == 0, result.output
    kind = PROTOCOLS.get(protocol).report
    expected = [("print_console", kind), ("write_json", tmp_path / "r.json"),
                ("write_markdown", tmp_path / "r.md")]
    assert calls == expected + ([("write_eval_report", kind)] if html else [])
    assert (tmp_path / "r.md").is_file() and (tmp_path / "r.json").is_file()


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|---" + "|---:" * (len(header) - 1) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _expected_lfw_markdown(r: dict) -> str:
    """The LFW eval.md of one run, formatted here from its JSON report."""
    def p(x: float, digits: int = 3) -> str:
        return f"{100 * x:.{digits}f}"

    proto, inp = r["protocol"], r["input"]
    header = ["run", "pairs", "accuracy %", "± std", f"VAL@FAR={proto['far_target']:g} %",
              "± std", "FAR %", "AUC", "EER %",
              *[f"TPR@FAR={t['far_target']:g} %" for t in r["tpr_at_far"]]]
    row = [inp["path"], str(r["n_pairs"]), p(r["accuracy"]), p(r["accuracy_std"]),
           p(r["val"]), p(r["val_std"]), p(r["far"], 4), f"{r['auc']:.6f}", p(r["eer"]),
           *[p(t["tpr"]) if t["status"] == "ok" else t["status"] for t in r["tpr_at_far"]]]
    folds = [[str(f + 1), str(r["fold_sizes"][f]), f"{r['fold_threshold'][f]:.4f}",
              p(r["fold_accuracy"][f]), f"{r['fold_val_threshold'][f]:.6f}",
              p(r["fold_val"][f]), p(r["fold_far"][f], 4)] for f in range(proto["n_folds"])]
    # no inference line (a synthetic folder): the table follows the title directly
    text = "# LFW-protocol verification\n" + _table(header, [row])
    if proto["far_target"] * r["n_diff"] < 1:
        text += (f"\nProtocol: {proto['description']}\n\n{inp['path']}: VAL@FAR="
                 f"{proto['far_target']:g} rests on only {r['n_diff']} different-person "
                 "pairs (fewer than 1/FAR): the FAR target cannot be resolved\n")
    else:
        text += f"\nProtocol: {proto['description']}\n"
    text += f"\n## {inp['path']}: per fold\n\n" + _table(
        ["fold", "pairs", "threshold", "accuracy %", "VAL threshold", "VAL %", "FAR %"], folds)
    text += "\nInputs (sha256):\n\n"
    return text + "".join(f"- `{k}`: `{v}`\n" for k, v in inp["sha256"].items())


def test_lfw_markdown_is_unchanged(tmp_path, folder):
    result = run_cli(app, [folder, "--markdown", tmp_path / "eval.md",
                           "--json", tmp_path / "eval.json"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["n_pairs"] == N_PAIRS
    assert (tmp_path / "eval.md").read_text() == _expected_lfw_markdown(report)
