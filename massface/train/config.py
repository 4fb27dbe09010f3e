"""Experiment configuration: defaults, YAML files with ``base:`` inheritance, ``--set`` overrides.

Every key that exists is in :data:`DEFAULTS` below; a file or override naming any other
key is an :class:`InputError` that names it (and the keys its section allows), so a typo
never silently trains with a default. The merged config is snapshotted as
``work_dirs/<name>/config.yaml`` and is all a run needs to be reproduced or resumed.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from massface.errors import InputError

#: Every config key with its default (and the documentation of what it means).
DEFAULTS: dict[str, Any] = {
    "name": "run",              # run folder: <work_dir>/<name>
    "work_dir": "work_dirs",
    "seed": 0,                  # weights, sampling, augmentation, batch_random mining
    "data": {
        "train_dir": None,      # folder-per-identity dataset
        "identities": None,     # list of identity folder names (None: all)
        "min_images": 1,        # drop identities with fewer images
        "image_size": [112, 112],
        "batch_size": 90,       # shuffled batches (softmax/cosface/arcface)
        "P": 41,                # identities per P x K batch (triplet losses)
        "K": 5,                 # images per identity
        "cache": "auto",        # decode into memory: true, false or auto (<= 2 GB)
        "threads": 4,           # decode threads
        "mean": 127.5,          # (x - mean) / std
        "std": 128.0,
        "color": "RGB",
        "augment": {"flip": True, "crop": 0.0, "shift": 0, "brightness": 0.0,
                    "contrast": 0.0},
    },
    "model": {"embedding_size": 1024},
    "loss": {
        "kind": "softmax",      # softmax | cosface | arcface | triplet | triplet_cosface
        "scale": 64.0,          # cosface / arcface s
        "margin": 0.25,         # cosface / arcface m
        "alpha": 0.25,          # triplet margin
        "mining": "batch_min_max",
        "cosface_weight": 0.5,  # triplet_cosface: triplet + weight * cosface
    },
    "optimizer": {
        "kind": "adam",         # adam | adagrad | sgd
        "learning_rate": 0.1,
        "weight_decay": 1e-4,   # wd * sum(w^2) / 2 over conv kernels and head weights
        "epsilon": 0.1,         # adam
        "beta1": 0.9,
        "beta2": 0.999,
        "momentum": 0.9,        # sgd
        "initial_accumulator": 0.1,  # adagrad
    },
    "schedule": {
        "kind": "constant",     # constant | table | piecewise | cosine
        "table": [],            # [[epoch, lr], ...] (MassFace's per-epoch table)
        "boundaries": [],       # piecewise: step boundaries
        "values": [],           # piecewise: len(boundaries) + 1 rates
        "min_lr": 0.0,          # cosine floor
        "warmup_steps": 0,
    },
    "train": {
        "epochs": 10,
        "max_steps": None,      # overrides epochs when set
        "steps_per_epoch": None,  # default: images // batch (shuffle) or identities // P
        "checkpoint_every": 500,  # steps (and at the end, on Ctrl-C/SIGTERM)
        "keep_checkpoints": 3,
        "log_every": 10,
        "precision": "float32",  # float32 | mixed_float16 | mixed_bfloat16
        "distribute": "none",    # none | mirrored | multi_worker (TF_CONFIG)
        "device": "auto",        # auto | cpu | gpu | npu
        "npu_precision_mode": "allow_mix_precision",
        "deterministic": False,  # tf.config.experimental.enable_op_determinism()
        "pretrained": None,      # run folder / prefix whose backbone starts this run
        "progress": True,
    },
    "validation": {
        "pairs": None,           # pairs file (LFW pairs.txt or massface path pairs)
        "root": None,            # image root the pairs refer to
        "every": 0,              # steps between verifications (0: at the end only)
        "batch_size": 64,
        "flip": True,            # also report mirror-averaged (sum) accuracy
    },
}

OPEN_KEYS = {"data.identities", "schedule.table", "schedule.boundaries", "schedule.values",
             "data.image_size"}

#: Keys holding a path (default None): like keys whose default is a string, their value
#: stays text (``--set train.pretrained=2024`` is the folder "2024", not the integer).
PATH_KEYS = {"data.train_dir", "train.pretrained", "validation.pairs", "validation.root"}


def is_text_key(dotted: str) -> bool:
    """Whether ``dotted`` names a string-valued key (a name, a kind, a path)."""
    if dotted in PATH_KEYS:
        return True
    node: Any = DEFAULTS
    for k in dotted.split("."):
        if not isinstance(node, dict) or k not in node:
            return False
        node = node[k]
    return isinstance(node, str)


def _check_and_merge(base: dict[str, Any], update: dict[str, Any], where: str,
                     prefix: str = "") -> None:
    """Merge ``update`` into ``base`` in place; unknown keys raise naming them."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            allowed = ", ".join(sorted(base))
            raise InputError(f"{where}: unknown config key {dotted!r} "
                             f"(allowed here: {allowed})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise InputError(f"{where}: config key {dotted!r} must be a mapping")
            _check_and_merge(base[key], value, where, dotted + ".")
        else:
            base[key] = _coerce(base[key], value, dotted, where)


def _coerce(default: Any, value: Any, dotted: str, where: str) -> Any:
    """YAML reads ``1e-4`` as a string; numbers where the default is a number, text where
    the key is text (YAML reads ``name: 2024`` as an integer, which a path cannot join)."""
    if value is None or dotted in OPEN_KEYS:
        return value
    if isinstance(default, str) or dotted in PATH_KEYS:
        if isinstance(value, (bool, int, float)):
            return str(value)
        if not isinstance(value, str):
            raise InputError(f"{where}: {dotted} must be text, got {value!r}")
        return value
    if isinstance(default, bool):
        return value
    if isinstance(default, float) and isinstance(value, (int, str)):
        try:
            return float(value)
        except ValueError:
            raise InputError(f"{where}: {dotted} must be a number, got {value!r}") from None
    if isinstance(default, int) and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise InputError(f"{where}: {dotted} must be an integer, got {value!r}") from None
    return value


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{p}: cannot read config ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{p}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{p}: a config file must hold a mapping")
    return data


def _file_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict]]:
    """The file and its ``base:`` ancestors, oldest first."""
    path = path.resolve()
    if path in seen:
        raise InputError(f"{path}: 'base' inheritance loops")
    data = read_yaml(path)
    base = data.pop("base", None)
    layers = _file_layers((path.parent / base), (*seen, path)) if base else []
    return [*layers, (path, data)]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optimizer.learning_rate=0.01"`` -> (["optimizer", "learning_rate"], 0.01).

    For text keys (names, kinds, paths) the value is the text as typed (``name=yes`` is
    "yes", ``name=007`` is "007"); only ``null``/empty (None) and quoted YAML strings are
    read as YAML there.
    """
    if "=" not in text:
        raise InputError(f"--set {text!r}: expected key.sub=value")
    key, raw = text.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        if not is_text_key(".".join(keys)):
            raise InputError(f"--set {text!r}: value is not valid YAML ({exc})") from exc
        value = raw.strip()
    if is_text_key(".".join(keys)) and value is not None and not isinstance(value, str):
        value = raw.strip()
    return keys, value


def load_config(path: str | os.PathLike[str] | None = None,
                overrides: list[str] | None = None,
                values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults <- config file (and its ``base:`` chain) <- ``--set`` overrides <- ``values``
    (``{"dotted.key": value}`` taken as given, no YAML parsing: the CLI's ``--name``,
    ``--work-dir``, ``--pretrained``, ``--max-steps``), validated."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        for file, data in _file_layers(Path(path)):
            _check_and_merge(cfg, data, str(file))
        if cfg["name"] == DEFAULTS["name"]:
            cfg["name"] = Path(path).stem
    for text in overrides or []:
        keys, value = parse_override(text)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        _check_and_merge(cfg, nested, "--set")
    for dotted, value in (values or {}).items():
        nested = value
        for k in reversed(dotted.split(".")):
            nested = {k: nested}
        _check_and_merge(cfg, nested, "command line")
    validate(cfg)
    return cfg


def validate(cfg: dict[str, Any], where: str = "config") -> None:
    """Values that would fail later, refused now with the key's name."""
    from massface.train import heads, losses, mining, optim

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise InputError(f"{where}: {msg}")

    need(cfg["loss"]["kind"] in losses.OBJECTIVES,
         f"loss.kind {cfg['loss']['kind']!r} unknown (one of {', '.join(losses.OBJECTIVES)})")
    need(cfg["loss"]["mining"] in mining.MINERS,
         f"loss.mining {cfg['loss']['mining']!r} unknown (one of {', '.join(mining.MINERS)})")
    need(cfg["optimizer"]["kind"] in optim.OPTIMIZERS,
         f"optimizer.kind {cfg['optimizer']['kind']!r} unknown "
         f"(one of {', '.join(optim.OPTIMIZERS)})")
    need(cfg["schedule"]["kind"] in optim.SCHEDULES,
         f"schedule.kind {cfg['schedule']['kind']!r} unknown "
         f"(one of {', '.join(optim.SCHEDULES)})")
    need(cfg["train"]["precision"] in ("float32", "mixed_float16", "mixed_bfloat16"),
         "train.precision must be float32, mixed_float16 or mixed_bfloat16")
    need(cfg["train"]["distribute"] in ("none", "mirrored", "multi_worker"),
         "train.distribute must be none, mirrored or multi_worker")
    need(cfg["train"]["device"] in ("auto", "cpu", "gpu", "npu"),
         "train.device must be auto, cpu, gpu or npu")
    need(str(cfg["data"]["cache"]).lower() in ("auto", "true", "false"),
         "data.cache must be auto, true or false")
    need(cfg["data"]["color"] == "RGB", "data.color: only RGB is supported for training")
    for key in ("batch_size", "P", "K"):
        need(int(cfg["data"][key]) >= 1, f"data.{key} must be at least 1")
    kind = cfg["loss"]["kind"]
    if losses.build_objective(cfg["loss"]).sampler == "pk":
        need(int(cfg["data"]["K"]) >= 2,
             f"data.K must be at least 2 for loss.kind {kind!r} (got {cfg['data']['K']}): "
             "a P x K batch needs 2 images per identity to form any (anchor, positive) "
             "pair, else no triplet is ever selected")
    need(int(cfg["model"]["embedding_size"]) >= 1, "model.embedding_size must be positive")
    need(cfg["name"] and "/" not in str(cfg["name"]), "name must be a plain folder name")
    assert set(heads.HEADS) >= {"softmax", "cosface", "arcface"}


def dump_config(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
