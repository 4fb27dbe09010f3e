"""Where a run computes: the device choice, determinism and the distribution strategy.

``train.device`` picks CPU, GPU or Ascend (``npu_device``, imported only when asked for
or, under ``auto``, when installed); ``train.distribute`` picks one device, all local
devices (``mirrored``) or several processes (``multi_worker``, from ``TF_CONFIG``). Only
the chief of a multi-worker run writes the run folder.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from typing import Any

from massface.errors import InputError
from massface.train.config import ExperimentConfig


def setup_devices(cfg: ExperimentConfig) -> Any:
    """Apply ``train.device`` and determinism; open Ascend when asked (or auto and present).

    ``npu_device`` is imported only for ``device: npu``, or for ``auto`` when the module
    is installed; ``npu_precision_mode`` is set on its global options before it opens.
    Returns the opened NPU device handle or None.
    """
    import tensorflow as tf

    train = cfg.train
    device = train.device
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()
    if device == "cpu":
        with contextlib.suppress(RuntimeError):
            tf.config.set_visible_devices([], "GPU")
    elif device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise InputError("train.device is 'gpu' but TensorFlow sees no GPU")
    want_npu = device == "npu" or (device == "auto"
                                   and importlib.util.find_spec("npu_device") is not None)
    if not want_npu:
        return None
    try:
        npu_device = importlib.import_module("npu_device")
    except ImportError as exc:
        raise InputError(f"train.device is 'npu' but npu_device does not import ({exc}); "
                         "source the CANN set_env.sh and install the TF2 NPU adapter") from exc
    npu_device.global_options().precision_mode = train.npu_precision_mode
    npu = npu_device.open()
    npu.as_default()
    return npu


def make_strategy(cfg: ExperimentConfig) -> Any:
    """``none`` -> default strategy; ``mirrored`` -> all GPUs, else all logical CPUs;
    ``multi_worker`` -> MultiWorkerMirroredStrategy from ``TF_CONFIG``."""
    import tensorflow as tf

    kind = cfg.train.distribute
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if not os.environ.get("TF_CONFIG"):
        raise InputError("train.distribute is 'multi_worker' but TF_CONFIG is not set "
                         "(JSON with cluster.worker and task.index)")
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy: Any) -> bool:
    """Whether this process writes the run folder (always, outside multi-worker runs)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())
