"""``--shard auto``: the shard index (and count) from a SLURM job array or a Kubernetes
indexed Job; anything ambiguous is refused rather than guessed."""

from __future__ import annotations

import json

import pytest

from massface.errors import InputError
from massface.infer.cli import app
from massface.infer.runner import parse_shard, shard_from_env
from tests.helpers.cli import run_cli

SCHEDULER_VARS = ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
                  "SLURM_ARRAY_TASK_COUNT", "JOB_COMPLETION_INDEX"]


@pytest.mark.parametrize(("text", "env", "expected"), [
    # sbatch --array=0-7: ids 0..7
    ("auto", {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "0",
              "SLURM_ARRAY_TASK_MAX": "7", "SLURM_ARRAY_TASK_COUNT": "8"}, (5, 8)),
    # sbatch --array=1-4: ids count from 1, shards from 0
    ("auto", {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1",
              "SLURM_ARRAY_TASK_MAX": "4", "SLURM_ARRAY_TASK_COUNT": "4"}, (0, 4)),
    # older SLURM without TASK_COUNT: max - min + 1
    ("auto", {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0",
              "SLURM_ARRAY_TASK_MAX": "3"}, (3, 4)),
    ("auto/4", {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, (2, 4)),
    # Kubernetes indexed Job (completionMode: Indexed, completions: 6)
    ("auto/6", {"JOB_COMPLETION_INDEX": "5"}, (5, 6)),
])
def test_shard_from_the_schedulers_environment(text, env, expected):
    assert shard_from_env(text, env)[0] == expected
    assert parse_shard(text, env) == expected


@pytest.mark.parametrize(("text", "env", "says"), [
    ("auto", {}, "neither SLURM_ARRAY_TASK_ID"),
    ("auto", {"JOB_COMPLETION_INDEX": "2"}, "auto/N with N the Job's completions"),
    ("auto/3", {"JOB_COMPLETION_INDEX": "3"}, "outside 0..2"),
    # --array=0-10:2 has 6 tasks with ids 0,2,..,10: ids are not shard numbers
    ("auto", {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "0",
              "SLURM_ARRAY_TASK_MAX": "10", "SLURM_ARRAY_TASK_COUNT": "6"}, "a step or gaps"),
    ("auto/8", {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4"}, "has 4 tasks"),
    ("auto", {"SLURM_ARRAY_TASK_ID": "x1"}, "not a whole number"),
    ("auto", {"SLURM_ARRAY_TASK_ID": "1"}, "SLURM_ARRAY_TASK_COUNT"),
    ("auto/x", {"JOB_COMPLETION_INDEX": "0"}, "expected auto or auto/N"),
])
def test_ambiguous_environments_are_refused(text, env, says):
    with pytest.raises(InputError, match=says):
        shard_from_env(text, env)


def test_cli_takes_the_shard_from_a_kubernetes_indexed_job(tmp_path, monkeypatch,
                                                           pretrained_onnx, lfw_dir,
                                                           subset_pairs):
    for name in SCHEDULER_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    out = tmp_path / "part1"
    r = run_cli(app, ["--model", str(pretrained_onnx), "--lfw", str(lfw_dir),
                                 "--pairs", str(subset_pairs), "--out", str(out), "--quiet",
                                 "--shard", "auto/3"])
    assert r.exit_code == 0, r.output
    assert "shard 1/3 (from JOB_COMPLETION_INDEX)" in r.output
    shard = json.loads((out / "meta.json").read_text())["shard"]
    assert (shard["index"], shard["count"]) == (1, 3)
    assert (shard["start"], shard["stop"]) == (shard["total"] // 3, 2 * shard["total"] // 3)
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    r = run_cli(app, ["--model", str(pretrained_onnx), "--lfw", str(lfw_dir),
                                 "--pairs", str(subset_pairs), "--out", str(tmp_path / "x"),
                                 "--shard", "auto"])
    assert r.exit_code == 2 and "neither SLURM_ARRAY_TASK_ID" in r.output
