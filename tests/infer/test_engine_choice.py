"""Choosing ``--engine``: what is refused before any model loads or Ray starts (no Ray
needed for these)."""

from __future__ import annotations

import sys

from massface.infer.cli import app
from tests.helpers.cli import run_cli


def _invoke(*args: object):
    return run_cli(app, [str(a) for a in args])


def test_missing_ray_names_the_extra(tmp_path, monkeypatch, pretrained_onnx, lfw_dir,
                                     subset_pairs):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    r = _invoke("--model", pretrained_onnx, "--lfw", lfw_dir, "--pairs", subset_pairs,
                "--out", tmp_path / "o", "--engine", "ray")
    assert r.exit_code == 2, r.output
    assert "massface[ray]" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_unknown_engine_and_align_on_ray_are_refused(tmp_path, pretrained_onnx, lfw_dir,
                                                     subset_pairs):
    base = ["--model", pretrained_onnx, "--lfw", lfw_dir, "--pairs", subset_pairs]
    r = _invoke(*base, "--out", tmp_path / "a", "--engine", "spark")
    assert r.exit_code == 2 and "unknown execution engine 'spark'" in r.output and "ray" in r.output
    r = _invoke(*base, "--out", tmp_path / "b", "--engine", "ray", "--align", "arcface")
    assert r.exit_code == 2 and "massface-align" in r.output


def test_help_offers_every_execution_engine():
    from massface.align.cli import app as align_app
    from massface.align.run import EXECUTION_ENGINES as ALIGN_ENGINES
    from massface.infer.runner import EXECUTION_ENGINES

    for cli, registry in ((app, EXECUTION_ENGINES), (align_app, ALIGN_ENGINES)):
        text = " ".join(run_cli(cli, ["--help"], terminal_width=400).output.split())
        assert registry.names() == ["local", "ray"]
        for name in registry:
            assert f"{name} ({registry.description(name)})" in text, name
