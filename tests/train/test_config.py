"""Config files, inheritance, --set overrides and their errors, through the CLI."""

from __future__ import annotations

import typing

import yaml

from massface.train.cli import app
from massface.train.config import DEFAULTS, ExperimentConfig, OptimizerConfig, load_config
from tests.helpers.cli import run_cli


def _run(*args):
    return run_cli(app, [str(a) for a in args])


def test_base_yaml_lists_every_default(tmp_path):
    from pathlib import Path

    base = yaml.safe_load((Path(__file__).parents[2] / "configs" / "base.yaml").read_text())
    assert base == DEFAULTS


def test_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("seed: 3\noptimizer: {kind: sgd, momentum: 0.5}\n")
    (tmp_path / "exp.yaml").write_text("base: base.yaml\noptimizer: {learning_rate: 1e-3}\n")
    cfg = load_config(tmp_path / "exp.yaml", ["optimizer.momentum=0.8", "data.P=7"])
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.name == "exp" and cfg.seed == 3
    assert cfg.optimizer == OptimizerConfig(kind="sgd", momentum=0.8, learning_rate=0.001)
    assert cfg.data.P == 7


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
    for override, message in (
            ("loss.kind=hinge", "unknown loss.kind 'hinge' (choose one of: softmax, "),
            ("loss.mining=batch_hard", "unknown loss.mining 'batch_hard'"),
            ("optimizer.learning_rate=fast", "must be a number"),
            ("train.precision=fp8", "unknown train.precision 'fp8' (choose one of: float32"),
            ("data.color=BGR", "only RGB is supported for training"),
            ("data.image_size=112", "data.image_size must be a list, got 112"),
            ("data.image_size=[112]", "data.image_size must be [height, width]"),
            ("train.epochs=2.5", "train.epochs must be an integer, got 2.5"),
            ("train.epochs=ten", "train.epochs must be an integer"),
            ("train.max_steps=0", "train.max_steps must be a positive number of steps"),
            ("train.max_steps=-3", "train.max_steps must be a positive number of steps"),
            ("train.log_every=0", "train.log_every must be at least 1"),
            ("train.progress=maybe", "train.progress must be true or false"),
            ("data.identities=s1", "data.identities must be a list"),
            ("data", "expected key.sub=value")):
        res = _run("--set", override, "--print-config")
        assert res.exit_code == 2 and message in res.output, (override, res.output)
    for value in ("0", "-1"):  # the --max-steps option goes through the same check
        res = _run("--max-steps", value, "--print-config")
        assert res.exit_code == 2 and "train.max_steps must be a positive" in res.output
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
        assert cfg.name == (path.stem if path.stem != "base" else "base")


def test_text_options_stay_text_through_the_cli(tmp_path):
    """--name 2024 / --name yes used to become an int / True (then Path / int crashed)."""
    res = _run("--name", "2024", "--work-dir", "123", "--pretrained", "007", "--print-config")
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load(res.stdout)
    assert (cfg["name"], cfg["work_dir"], cfg["train"]["pretrained"]) == ("2024", "123", "007")
    res = _run("--name", "yes", "--print-config")
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(res.stdout)["name"] == "yes"
    # the same through --set and a config file: text keys keep the text as typed
    (tmp_path / "exp.yaml").write_text("name: 2024\ndata: {train_dir: 1999}\n")
    res = _run(tmp_path / "exp.yaml", "--set", "validation.pairs=0123", "--set",
               "train.device=cpu", "--set", "validation.root=null", "--print-config")
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load(res.stdout)
    assert (cfg["name"], cfg["data"]["train_dir"], cfg["validation"]["pairs"]) == (
        "2024", "1999", "0123")
    assert cfg["validation"]["root"] is None
    assert load_config(None, ["name=on"]).name == "on"


def test_pk_objectives_need_two_images_per_identity():
    import pytest

    from massface.errors import InputError

    for kind in ("triplet", "triplet_cosface"):
        with pytest.raises(InputError, match=r"data\.K must be at least 2 for loss\.kind"):
            load_config(None, [f"loss.kind={kind}", "data.K=1"])
        assert load_config(None, [f"loss.kind={kind}", "data.K=2"]).data.K == 2
    assert load_config(None, ["loss.kind=cosface", "data.K=1"]).data.K == 1
    res = _run("--set", "loss.kind=triplet", "--set", "data.K=1", "--print-config")
    assert res.exit_code == 2 and "data.K must be at least 2" in res.output


def test_config_errors_exit_2_without_tensorflow(tmp_path):
    """--print-config and config errors answer without importing TensorFlow."""
    import subprocess
    import sys

    from tests.helpers.shared import REPO_ROOT

    script = ("import sys\n"
              "from massface.train.cli import main\n"
              "sys.argv = ['massface-train', *sys.argv[1:]]\n"
              "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
              "print('TF' if 'tensorflow' in sys.modules else 'NO-TF', code)\n")
    for args, code in ((["configs/orl_cosface.yaml", "--print-config"], 0),
                       (["--set", "data.image_size=112", "--print-config"], 2),
                       (["--set", "loss.kind=hinge"], 2)):
        proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                              text=True, cwd=REPO_ROOT, timeout=120)
        assert proc.stdout.splitlines()[-1] == f"NO-TF {code}", (args, proc.stdout,
                                                                   proc.stderr[-2000:])


def test_literal_choices_are_the_registry_names():
    from massface.train import config, data, heads, losses, mining, optim

    assert list(config.choices("loss.kind")) == losses.OBJECTIVES.names()
    assert list(config.choices("loss.mining")) == mining.MINERS.names()
    assert list(config.choices("optimizer.kind")) == optim.OPTIMIZERS.names()
    assert list(config.choices("schedule.kind")) == optim.SCHEDULES.names()
    assert list(typing.get_args(config.HeadKind)) == heads.HEADS.names()
    assert list(typing.get_args(config.SamplerKind)) == data.SAMPLERS.names()
    pk = [k for k in losses.OBJECTIVES
          if losses.build_objective(config.LossConfig(kind=k)).sampler == "pk"]
    assert tuple(pk) == config.PK_LOSSES
    for registry in (losses.OBJECTIVES, mining.MINERS, optim.OPTIMIZERS, optim.SCHEDULES,
                     heads.HEADS, data.SAMPLERS):
        assert all(registry.description(name) for name in registry), registry.kind


def test_defaults_come_from_the_classes():
    """base.yaml == the dataclass defaults (checked above); DEFAULTS is derived, not kept."""
    assert ExperimentConfig().to_dict() == DEFAULTS
    cfg = load_config(None)
    assert cfg == ExperimentConfig() and cfg.data.size == (112, 112)
