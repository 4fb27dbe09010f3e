"""Experiment configuration: typed sections, YAML files with ``base:`` inheritance, ``--set``.

The dataclasses below are the one source of every key and its default
(``configs/base.yaml`` repeats them with comments; a test checks that the two agree). A
file or override naming any other key is an :class:`InputError` that names it (and the
keys its section allows), so a typo never silently trains with a default. Values are
coerced and checked by the field's type: ``1e-4`` (which YAML reads as text) becomes a
number where a number is expected, a name or a path stays text (``name: 2024`` is the
folder "2024"), and a kind must be one of its ``Literal`` choices.

Nothing here imports TensorFlow: ``massface-train x.yaml --print-config`` and config
errors answer at once. The merged config is snapshotted as ``<work_dir>/<name>/config.yaml``
(plain YAML, :func:`dump_config`) and is all a run needs to be reproduced or resumed.
"""

from __future__ import annotations

import copy
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from massface.errors import InputError

LossKind = Literal["softmax", "cosface", "arcface", "triplet", "triplet_cosface"]
MiningKind = Literal["batch_all", "batch_random", "batch_min_min", "batch_min_max",
                     "batch_hardest"]
OptimizerKind = Literal["adam", "adagrad", "sgd"]
ScheduleKind = Literal["constant", "table", "piecewise", "cosine"]
HeadKind = Literal["softmax", "cosface", "arcface"]  # chosen by loss.kind, not a key
SamplerKind = Literal["shuffle", "pk"]               # chosen by loss.kind, not a key
Precision = Literal["float32", "mixed_float16", "mixed_bfloat16"]
Distribute = Literal["none", "mirrored", "multi_worker"]
Device = Literal["auto", "cpu", "gpu", "npu"]
Cache = Literal["auto", "true", "false"]
Color = Literal["RGB"]

#: The loss kinds fed P x K batches (the objectives' ``sampler == "pk"``; known here
#: without importing them, which needs TensorFlow; a test pins the agreement).
PK_LOSSES = ("triplet", "triplet_cosface")

#: Extra words for a refused choice.
_CHOICE_HINTS = {"data.color": "only RGB is supported for training"}


@dataclass
class AugmentConfig:
    """``data.augment``: the settings of :class:`massface.train.data.Augment` (which
    applies them)."""

    flip: bool = True
    crop: float = 0.0
    shift: int = 0
    brightness: float = 0.0
    contrast: float = 0.0


@dataclass
class DataConfig:
    train_dir: str | None = None        # folder-per-identity dataset
    identities: list[str] | None = None  # identity folder names (None: all)
    min_images: int = 1                 # drop identities with fewer images
    image_size: list[int] = field(default_factory=lambda: [112, 112])  # [H, W]
    batch_size: int = 90                # shuffled batches (softmax/cosface/arcface)
    P: int = 41                         # identities per P x K batch (triplet losses)
    K: int = 5                          # images per identity
    cache: Cache = "auto"               # decode into memory: true, false or auto (<= 2 GB)
    threads: int = 4                    # decode threads
    mean: float = 127.5                 # (x - mean) / std
    std: float = 128.0
    color: Color = "RGB"
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        # YAML reads `cache: true` as a boolean; the key is text, any case
        self.cache = str(self.cache).lower()  # type: ignore[assignment]

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the network input."""
        return int(self.image_size[0]), int(self.image_size[1])


@dataclass
class ModelConfig:
    embedding_size: int = 1024


@dataclass
class LossConfig:
    kind: LossKind = "softmax"
    scale: float = 64.0                 # cosface / arcface s
    margin: float = 0.25                # cosface / arcface m
    alpha: float = 0.25                 # triplet margin
    mining: MiningKind = "batch_min_max"
    cosface_weight: float = 0.5         # triplet_cosface: triplet + weight * cosface


@dataclass
class OptimizerConfig:
    kind: OptimizerKind = "adam"
    learning_rate: float = 0.1
    weight_decay: float = 1e-4          # wd * sum(w^2) / 2 over conv kernels, head weights
    epsilon: float = 0.1                # adam
    beta1: float = 0.9
    beta2: float = 0.999
    momentum: float = 0.9               # sgd
    initial_accumulator: float = 0.1    # adagrad


@dataclass
class ScheduleConfig:
    kind: ScheduleKind = "constant"
    table: list[list[float]] = field(default_factory=list)  # [[epoch, lr], ...] (MassFace)
    boundaries: list[int] = field(default_factory=list)     # piecewise: step boundaries
    values: list[float] = field(default_factory=list)       # len(boundaries) + 1 rates
    min_lr: float = 0.0                 # cosine floor
    warmup_steps: int = 0


@dataclass
class TrainConfig:
    epochs: int = 10
    max_steps: int | None = None        # overrides epochs when set
    steps_per_epoch: int | None = None  # default: images // batch (shuffle) or ids // P
    checkpoint_every: int = 500         # steps (and at the end, on Ctrl-C/SIGTERM)
    keep_checkpoints: int = 3
    log_every: int = 10
    precision: Precision = "float32"
    distribute: Distribute = "none"     # multi_worker: TF_CONFIG
    device: Device = "auto"
    npu_precision_mode: str = "allow_mix_precision"
    deterministic: bool = False         # tf.config.experimental.enable_op_determinism()
    pretrained: str | None = None       # run folder / prefix whose backbone starts this run
    progress: bool = True


@dataclass
class ValidationConfig:
    pairs: str | None = None            # pairs file (LFW pairs.txt or massface path pairs)
    root: str | None = None             # image root the pairs refer to
    every: int = 0                      # steps between verifications (0: at the end only)
    batch_size: int = 64
    flip: bool = True                   # also report mirror-averaged (sum) accuracy
    allow_overlap: bool = False         # pairs naming a training identity: warn, not refuse


@dataclass
class ExperimentConfig:
    """One experiment: what ``massface-train`` runs and snapshots as ``config.yaml``."""

    name: str = "run"                   # run folder: <work_dir>/<name>
    work_dir: str = "work_dirs"
    seed: int = 0                       # weights, sampling, augmentation, batch_random
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.work_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict, keys in declaration order (what ``config.yaml`` holds)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        """From a complete, already coerced dict (see :func:`load_config`)."""
        return _build(cls, data)


# ------------------------------------------------------------------------ field types


def _build(cls: type, data: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        value = data[f.name]
        kwargs[f.name] = (_build(hints[f.name], value) if is_dataclass(hints[f.name])
                          else copy.deepcopy(value))
    return cls(**kwargs)


def _leaf_types(cls: type, prefix: str = "") -> dict[str, Any]:
    """``{"data.batch_size": int, ...}`` for every leaf key."""
    out: dict[str, Any] = {}
    for name, hint in typing.get_type_hints(cls).items():
        if is_dataclass(hint):
            out.update(_leaf_types(hint, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = hint
    return out


FIELD_TYPES: dict[str, Any] = _leaf_types(ExperimentConfig)

#: Every config key with its default, as a plain nested dict (derived from the classes).
DEFAULTS: dict[str, Any] = ExperimentConfig().to_dict()


def _split_optional(hint: Any) -> tuple[Any, bool]:
    """(the type without ``None``, whether ``None`` is allowed)."""
    if get_origin(hint) in (Union, types.UnionType):  # the keys use only `X | None`
        rest = [a for a in get_args(hint) if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return hint, False


def choices(dotted: str) -> tuple[str, ...]:
    """The allowed values of a ``Literal`` key (empty for any other key)."""
    base, _ = _split_optional(FIELD_TYPES[dotted])
    return get_args(base) if get_origin(base) is Literal else ()


def is_text_key(dotted: str) -> bool:
    """Whether ``dotted`` names a string-valued key (a name, a kind, a path)."""
    if dotted not in FIELD_TYPES:
        return False
    base, _ = _split_optional(FIELD_TYPES[dotted])
    return base is str or bool(choices(dotted))


def _coerce(value: Any, dotted: str, where: str) -> Any:
    """``value`` as the key's type wants it, or an :class:`InputError` naming the key.

    YAML reads ``1e-4`` as text: numbers where the key is a number; text where the key is
    text (YAML reads ``name: 2024`` as an integer, which a path cannot join)."""
    base, optional = _split_optional(FIELD_TYPES[dotted])

    def refuse(what: str) -> InputError:
        return InputError(f"{where}: {dotted} must be {what}, got {value!r}")

    if value is None:
        if optional:
            return None
        raise refuse("set" if is_text_key(dotted) else _describe(base))
    if is_text_key(dotted):
        if isinstance(value, (bool, int, float)):
            return str(value)
        if not isinstance(value, str):
            raise refuse("text")
        return value
    if base is bool:
        if not isinstance(value, bool):
            raise refuse("true or false")
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise refuse("a number")
        try:
            return float(value)
        except ValueError:
            raise refuse("a number") from None
    if base is int:
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise refuse("an integer") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise refuse("an integer")
        return value
    if get_origin(base) is list:
        if not isinstance(value, list):
            raise refuse("a list")
        if get_args(base) == (str,):  # identity folder names
            return [str(v) for v in value]
        return value  # numbers stay as written (the snapshot keeps [0, 0.1])
    return value


def _describe(base: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false"}.get(base, "set")


# ------------------------------------------------------------------------- merging


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
            base[key] = _coerce(value, dotted, where)


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


def _nested(dotted: list[str], value: Any) -> Any:
    for k in reversed(dotted):
        value = {k: value}
    return value


def load_config(path: str | os.PathLike[str] | None = None,
                overrides: list[str] | None = None,
                values: dict[str, Any] | None = None) -> ExperimentConfig:
    """Defaults <- config file (and its ``base:`` chain) <- ``--set`` overrides <- ``values``
    (``{"dotted.key": value}`` taken as given, no YAML parsing: the CLI's ``--name``,
    ``--work-dir``, ``--pretrained``, ``--max-steps``), validated."""
    merged = copy.deepcopy(DEFAULTS)
    if path is not None:
        for file, data in _file_layers(Path(path)):
            _check_and_merge(merged, data, str(file))
        if merged["name"] == DEFAULTS["name"]:
            merged["name"] = Path(path).stem
    for text in overrides or []:
        keys, value = parse_override(text)
        _check_and_merge(merged, _nested(keys, value), "--set")
    for dotted, value in (values or {}).items():
        _check_and_merge(merged, _nested(dotted.split("."), value), "command line")
    cfg = ExperimentConfig.from_dict(merged)
    validate(cfg)
    return cfg


# ------------------------------------------------------------------------- validation


def _get(cfg: ExperimentConfig, dotted: str) -> Any:
    node: Any = cfg
    for k in dotted.split("."):
        node = getattr(node, k)
    return node


def validate(cfg: ExperimentConfig, where: str = "config") -> None:
    """Values that would fail later, refused now with the key's name (no TensorFlow)."""

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise InputError(f"{where}: {msg}")

    for dotted in FIELD_TYPES:
        allowed = choices(dotted)
        value = _get(cfg, dotted)
        if allowed and value not in allowed:
            hint = f"; {_CHOICE_HINTS[dotted]}" if dotted in _CHOICE_HINTS else ""
            need(False, f"unknown {dotted} {value!r} (choose one of: "
                        f"{', '.join(allowed)}){hint}")
    size = cfg.data.image_size
    need(isinstance(size, list) and len(size) == 2
         and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size),
         f"data.image_size must be [height, width] (two positive integers), got {size!r}")
    for key in ("data.batch_size", "data.P", "data.K", "data.threads",
                "model.embedding_size", "train.epochs", "train.log_every",
                "validation.batch_size"):
        need(_get(cfg, key) >= 1, f"{key} must be at least 1 (got {_get(cfg, key)})")
    need(cfg.train.max_steps is None or cfg.train.max_steps >= 1,
         f"train.max_steps must be a positive number of steps (got {cfg.train.max_steps}); "
         "leave it unset (null) to train for train.epochs")
    if cfg.loss.kind in PK_LOSSES:
        need(cfg.data.K >= 2,
             f"data.K must be at least 2 for loss.kind {cfg.loss.kind!r} (got {cfg.data.K}): "
             "a P x K batch needs 2 images per identity to form any (anchor, positive) "
             "pair, else no triplet is ever selected")
    need(bool(cfg.name) and "/" not in cfg.name, "name must be a plain folder name")


def dump_config(cfg: ExperimentConfig) -> str:
    """The snapshot's text: plain YAML, keys in declaration order."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
