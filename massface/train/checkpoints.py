"""Find, check and load MobileFaceNet weights from a run folder or a checkpoint prefix.

A run folder ``work_dirs/<name>/`` holds ``config.yaml`` and ``checkpoints/`` (a
``tf.train.CheckpointManager`` over ``tf.train.Checkpoint(backbone=model, head=...,
optimizer=..., step=...)``). The backbone's variables sit under
``backbone/<attribute path>/.ATTRIBUTES/VARIABLE_VALUE`` (see
:func:`massface.train.mobilefacenet.variables_by_key`). Loading compares the two key
sets and shapes first so that a mismatch says which variables are missing, unexpected or
of the wrong shape instead of restoring half a model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from massface.errors import InputError

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.yaml"
_BACKBONE = "backbone/"
_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def resolve_checkpoint(path: str | os.PathLike[str]) -> tuple[str, Path | None]:
    """(checkpoint prefix, run folder or None) for a run folder, its checkpoints/ or a prefix.

    Raises :class:`InputError` when ``path`` holds no checkpoint.
    """
    import tensorflow as tf

    p = Path(path)
    if p.is_dir():
        ckpt_dir = p / CHECKPOINT_DIR if (p / CHECKPOINT_DIR).is_dir() else p
        prefix = tf.train.latest_checkpoint(str(ckpt_dir))
        if prefix is None:
            raise InputError(f"{p}: no checkpoint found (looked in {ckpt_dir})")
    elif Path(str(p) + ".index").is_file():
        prefix = str(p)
    else:
        raise InputError(f"{p}: not a run folder, checkpoint folder or checkpoint prefix "
                         "(no such folder and no matching .index file)")
    ckpt_parent = Path(prefix).parent
    run_dir = ckpt_parent.parent if ckpt_parent.name == CHECKPOINT_DIR else ckpt_parent
    return prefix, (run_dir if (run_dir / CONFIG_FILE).is_file() else None)


def read_run_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``config.yaml`` snapshot of a run as a dict."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the run's config ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping at the top level")
    return data


def checkpoint_backbone_shapes(prefix: str) -> dict[str, tuple[int, ...]]:
    """``{attribute path: shape}`` of the backbone variables stored in a checkpoint."""
    import tensorflow as tf

    try:
        listed = tf.train.list_variables(prefix)
    except (tf.errors.OpError, ValueError) as exc:
        raise InputError(f"{prefix}.index: damaged checkpoint index ({_first_line(exc)})"
                         ) from exc
    out = {}
    for name, shape in listed:
        if name.startswith(_BACKBONE) and name.endswith(_SUFFIX) and "OPTIMIZER_SLOT" not in name:
            out[name[len(_BACKBONE):-len(_SUFFIX)]] = tuple(int(s) for s in shape)
    return out


@dataclass
class BackboneMismatch:
    """How a checkpoint's backbone variables differ from a model's."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shape)

    def describe(self, limit: int = 8) -> str:
        parts = []
        for what, names in (("missing from the checkpoint", self.missing),
                            ("unexpected in the checkpoint", self.unexpected),
                            ("wrong shape", self.wrong_shape)):
            if names:
                shown = ", ".join(names[:limit])
                more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
                parts.append(f"{len(names)} {what}: {shown}{more}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, list[str]]:
        return {"missing": self.missing, "unexpected": self.unexpected,
                "wrong_shape": self.wrong_shape}


def compare_backbone(model: Any, prefix: str) -> BackboneMismatch:
    """Compare a model's variables with a checkpoint's backbone entries."""
    from massface.train.mobilefacenet import variables_by_key

    want = {k: tuple(int(s) for s in v.shape) for k, v in variables_by_key(model).items()}
    have = checkpoint_backbone_shapes(prefix)
    result = BackboneMismatch(
        missing=sorted(set(want) - set(have)),
        unexpected=sorted(set(have) - set(want)),
    )
    for key in sorted(set(want) & set(have)):
        if want[key] != have[key]:
            result.wrong_shape.append(f"{key} (model {list(want[key])}, "
                                      f"checkpoint {list(have[key])})")
    return result


def check_readable(prefix: str) -> None:
    """Read every tensor of the checkpoint ``prefix`` once, so that a truncated or damaged
    ``.index`` / ``.data-*`` file is an :class:`InputError` naming it.

    TensorFlow reports such files as ``DataLossError`` / ``OpError``, ``IndexError`` ("Read
    less bytes than requested") or ``ValueError``, at restore time or, for variables
    restored lazily (optimizer slots), in the middle of training; reading everything first
    turns all of them into one message before anything starts.
    """
    import tensorflow as tf

    errors = (tf.errors.OpError, ValueError, IndexError)
    how = ("restore it from a copy, or delete this checkpoint's files to fall back to an "
           "earlier one")
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = list(reader.get_variable_to_shape_map())
    except errors as exc:
        raise InputError(f"{prefix}.index: damaged checkpoint index ({_first_line(exc)}); "
                         f"{how}") from exc
    try:
        for name in names:
            reader.get_tensor(name)
    except errors as exc:
        shards = ", ".join(sorted(str(p) for p in Path(prefix).parent.glob(
            Path(prefix).name + ".data-*"))) or f"{prefix}.data-*"
        raise InputError(f"{shards}: checkpoint data truncated or damaged "
                         f"({_first_line(exc)}); {how}") from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def restore_backbone(model: Any, prefix: str) -> None:
    """Assign a checkpoint's backbone weights (BN moving stats included) to ``model``.

    Raises :class:`InputError` naming the variables when the checkpoint does not match,
    or the file when it is damaged (:func:`check_readable`).
    """
    import tensorflow as tf

    from massface.train.mobilefacenet import variables_by_key

    check_readable(prefix)
    mismatch = compare_backbone(model, prefix)
    if mismatch:
        raise InputError(f"{prefix}: checkpoint does not match the MobileFaceNet "
                         f"(D={model.embedding_size}): {mismatch.describe()}")
    reader = tf.train.load_checkpoint(prefix)
    for key, var in variables_by_key(model).items():
        value = reader.get_tensor(_BACKBONE + key + _SUFFIX)
        if not np.all(np.isfinite(value)):
            raise InputError(f"{prefix}: variable {key} holds NaN or infinity")
        var.assign(value)


def load_backbone(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """(MobileFaceNet with restored weights, run config dict) from a run or a prefix.

    ``path`` is a run folder (its latest checkpoint), its ``checkpoints/`` folder or a
    checkpoint prefix (``.../checkpoints/ckpt-12``). The embedding size comes from the
    run's ``config.yaml`` (``model.embedding_size``); without a config it is read from the
    checkpoint. Raises :class:`InputError` when there is no checkpoint or the variables do
    not match the model (naming the missing / unexpected / wrong-shape ones).
    """
    from massface.train.mobilefacenet import MobileFaceNet

    prefix, run_dir = resolve_checkpoint(path)
    config: dict[str, Any] = read_run_config(run_dir) if run_dir is not None else {}
    size = (config.get("model") or {}).get("embedding_size")
    if size is None:
        shapes = checkpoint_backbone_shapes(prefix)
        kernel = shapes.get("embedding/kernel")
        if kernel is None:
            raise InputError(f"{prefix}: no MobileFaceNet backbone in this checkpoint "
                             "(no backbone/embedding/kernel)")
        size = kernel[-1]
        config.setdefault("model", {})["embedding_size"] = int(size)
    model = MobileFaceNet(embedding_size=int(size))
    restore_backbone(model, prefix)
    return model, config
