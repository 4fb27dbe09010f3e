"""Choosing ``--engine``: what is refused before any model loads or Ray starts (no Ray
needed for these)."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from massface.errors import InputError
from massface.infer.cli import app
from massface.infer.ray_engine import RaySession, replica_resources


def _invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


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
    assert r.exit_code == 2 and "unknown engine 'spark'" in r.output and "ray" in r.output
    r = _invoke(*base, "--out", tmp_path / "b", "--engine", "ray", "--align", "arcface")
    assert r.exit_code == 2 and "massface-align" in r.output


def _session(cpus: float, gpus: float = 0.0, local: bool = True) -> RaySession:
    return RaySession(None if local else "10.0.0.1:6379", local, 0.0, cpus, gpus, cpus)


def test_replica_resources():
    assert replica_resources(_session(2), 1, None, "auto") == (2, 0)  # the whole machine
    assert replica_resources(_session(2), 2, None, "auto") == (1, 0)
    assert replica_resources(_session(8), 3, 2, "auto") == (2, 0)
    assert replica_resources(_session(8, gpus=2), 2, 1, "auto") == (1, 1)
    assert replica_resources(_session(8, gpus=2), 2, 1, "cpu") == (1, 0)
    # a cluster may grow (autoscaler): more replicas than CPUs now wait instead of failing
    assert replica_resources(_session(4, local=False), 8, 1, "auto") == (1, 0)


@pytest.mark.parametrize(("session", "replicas", "threads", "device", "says"), [
    (_session(2), 2, 2, "auto", "this machine has 2"),  # would hang waiting for CPUs
    (_session(2), 1, 4, "auto", "no node of the Ray cluster has that many"),
    (_session(2), 0, 1, "auto", "at least 1"),
    (_session(2), 1, 1, "cuda", "no GPU"),
])
def test_a_pool_that_cannot_be_placed_is_refused(session, replicas, threads, device, says):
    with pytest.raises(InputError, match=says):
        replica_resources(session, replicas, threads, device)
