"""Config files, inheritance, --set overrides and their errors, through the CLI."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from massface.train.cli import app
from massface.train.config import DEFAULTS, load_config

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_base_yaml_lists_every_default(tmp_path):
    from pathlib import Path

    base = yaml.safe_load((Path(__file__).parents[2] / "configs" / "base.yaml").read_text())
    assert base == DEFAULTS


def test_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("seed: 3\noptimizer: {kind: sgd, momentum: 0.5}\n")
    (tmp_path / "exp.yaml").write_text("base: base.yaml\noptimizer: {learning_rate: 1e-3}\n")
    cfg = load_config(tmp_path / "exp.yaml", ["optimizer.momentum=0.8", "data.P=7"])
    assert cfg["name"] == "exp" and cfg["seed"] == 3
    assert cfg["optimizer"] == {**DEFAULTS["optimizer"], "kind": "sgd", "momentum": 0.8,
                                "learning_rate": 0.001}
    assert cfg["data"]["P"] == 7


def test_print_config_cli(tmp_path):
    (tmp_path / "exp.yaml").write_text("loss: {kind: triplet, mining: batch_hardest}\n")
    res = _run(tmp_path / "exp.yaml", "--set", "data.K=4", "--name", "x", "--print-config")
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load(res.stdout)
    assert cfg["name"] == "x" and cfg["data"]["K"] == 4
    assert cfg["loss"]["mining"] == "batch_hardest"


def test_unknown_keys_are_errors_naming_them(tmp_path):
    (tmp_path / "exp.yaml").write_text("optimizer: {learning_rat: 0.1}\n")
    res = _run(tmp_path / "exp.yaml")
    assert res.exit_code == 2
    assert "unknown config key 'optimizer.learning_rat'" in res.output
    assert "exp.yaml" in res.output
    res = _run("--set", "trian.epochs=3", "--print-config")
    assert res.exit_code == 2 and "unknown config key 'trian'" in res.output


def test_bad_values_and_files(tmp_path):
    for override, message in (("loss.kind=hinge", "loss.kind 'hinge' unknown"),
                              ("loss.mining=batch_hard", "loss.mining 'batch_hard' unknown"),
                              ("optimizer.learning_rate=fast", "must be a number"),
                              ("train.precision=fp8", "train.precision must be"),
                              ("data", "expected key.sub=value")):
        res = _run("--set", override, "--print-config")
        assert res.exit_code == 2 and message in res.output, (override, res.output)
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    res = _run(tmp_path / "bad.yaml")
    assert res.exit_code == 2 and "not valid YAML" in res.output
    res = _run(tmp_path / "missing.yaml")
    assert res.exit_code == 2 and "cannot read config" in res.output
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    assert "inheritance loops" in _run(tmp_path / "loop.yaml").output


def test_shipped_configs_load():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[2] / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg["name"] == (path.stem if path.stem != "base" else "base")
