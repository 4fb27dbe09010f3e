"""Where a run computes: the device choice, determinism and the distribution strategy.

``train.device`` picks CPU, GPU or Ascend (``npu_device``, imported only when asked for
or, under ``auto``, when installed); ``train.distribute`` picks one device, all local
devices (``mirrored``) or several processes (``multi_worker``, from ``TF_CONFIG``). Only
the chief of a multi-worker run writes the run folder.

Ascend (``device: npu``) is checked against the TF2 plugin's own code and Huawei's TF2
training scripts (github.com/Ascend/tensorflow ``tf_adapter_2.x/python/npu_device``:
``npu_device.py`` global_options/open, ``distribute/hccl.py``,
``train/optimizer/npu_loss_scale_optimizer.py``; the TF2 models of Ascend's ModelZoo):

* the precision is the plugin's ``precision_mode`` (set on ``global_options()`` before
  ``open()``), not Keras' mixed-precision policy: ``train.precision`` must stay float32;
* several devices are one process per device joined by HCCL (``RANK_TABLE_FILE``,
  ``RANK_ID``, ``RANK_SIZE``, ``ASCEND_DEVICE_ID``), with the plugin's ``all_reduce`` of
  the gradients, ``broadcast`` of the variables from rank 0 and a sharded dataset; a
  ``tf.distribute`` strategy does not use HCCL. massface-train does not implement that,
  so it refuses ``distribute`` with ``npu`` and a rank table of more than one device,
  rather than letting every process train alone into the same run folder;
* modes in which the NPU computes in float16 (``allow_mix_precision``, massface's
  default, ``allow_fp32_to_fp16``, ``force_fp16``) need loss scaling: the plugin's
  ``NpuLossScaleOptimizer`` is what its scripts use. massface turns its own dynamic loss
  scaling on for those modes (see ``npu_needs_loss_scaling``). Its overflow test is the
  plugin's own (``npu_overflow_check``): where ``npu_device.is_inf_nan_enabled()`` (INF_NAN
  mode, the default on Ascend 910B) overflow shows as inf/NaN and ``tf.math.is_finite``
  sees it; otherwise (saturation mode, the first Ascend 910) overflowed values are
  clamped to finite maxima and only the NPU's float status tells, read after the
  gradients with ``gen_npu_ops.npu_get_float_status_v2()`` (int32[8], all zero when no
  overflow) and then cleared with ``npu_clear_float_status_v2()``, as
  ``NpuLossScaleOptimizer.apply_gradients`` does (single device: no all-reduce of it).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from typing import Any

from massface.errors import InputError
from massface.registry import Registry
from massface.train.config import ExperimentConfig

#: the plugin's precision modes (CANN TF2 adapter, global_options().precision_mode); the
#: value says whether (some) operators compute in float16, so gradients need loss scaling
NPU_PRECISION_MODES: Registry[bool] = Registry("npu_device precision mode")
for _mode, _fp16 in (("allow_mix_precision", True), ("allow_fp32_to_fp16", True),
                     ("force_fp16", True), ("must_keep_origin_dtype", False),
                     ("force_fp32", False), ("allow_mix_precision_fp16", True),
                     ("allow_mix_precision_bf16", False), ("allow_fp32_to_bf16", False)):
    NPU_PRECISION_MODES.register(_mode, _fp16)


def npu_needs_loss_scaling(cfg: ExperimentConfig, npu: Any) -> bool:
    """Whether an opened NPU computes in float16 under ``cfg`` (loss scaling needed)."""
    return npu is not None and NPU_PRECISION_MODES.get(cfg.train.npu_precision_mode)


def npu_overflow_check(npu: Any) -> Callable[[Sequence[Any]], Any] | None:
    """The plugin's overflow test for an opened NPU in saturation mode, else None.

    None means ``tf.math.is_finite`` is right (CPU/GPU, or the NPU's INF_NAN mode). The
    returned ``check(grads)`` -> scalar bool (True: no overflow) reads the NPU's float
    status once the gradients exist, then clears it for the next step. Mode and ops are
    the plugin's (github.com/Ascend/tensorflow tf_adapter_2.x/python/npu_device/
    npu_device.py ``is_inf_nan_enabled``, train/optimizer/npu_loss_scale_optimizer.py
    ``_npu_finite_status_after_executed``; op shapes in tf_adapter/ops/aicore/
    npu_mixed_precesion_ops.cc).
    """
    if npu is None:
        return None
    npu_device = importlib.import_module("npu_device")
    if npu_device.is_inf_nan_enabled():
        return None
    ops = npu_device.gen_npu_ops

    def check(grads: Sequence[Any]) -> Any:
        import tensorflow as tf

        with tf.control_dependencies([g for g in grads if g is not None]):
            status = ops.npu_get_float_status_v2()
        with tf.control_dependencies([status]):
            cleared = ops.npu_clear_float_status_v2()
        with tf.control_dependencies([cleared]):
            return tf.reduce_all(tf.equal(status, 0))

    return check


def check_npu_config(cfg: ExperimentConfig) -> None:
    """Refuse what the TF2 plugin would run wrongly or not at all (see the docstring)."""
    train = cfg.train
    NPU_PRECISION_MODES.get(train.npu_precision_mode, "train.npu_precision_mode")
    if train.precision != "float32":
        raise InputError(f"train.precision {train.precision} with train.device npu: on "
                         "Ascend the precision is the plugin's train.npu_precision_mode "
                         "(e.g. allow_mix_precision); keep train.precision float32")
    if train.distribute != "none":
        raise InputError(f"train.distribute {train.distribute} with train.device npu: "
                         "several Ascend devices are one process each, joined by HCCL "
                         "(RANK_TABLE_FILE, RANK_ID, RANK_SIZE), not a tf.distribute "
                         "strategy; massface-train runs on one NPU (distribute: none)")
    size = os.environ.get("RANK_SIZE", "1").strip() or "1"
    if not size.isdigit() or int(size) > 1:
        raise InputError(f"RANK_SIZE={size} (an HCCL rank table of several devices) with "
                         "train.device npu: massface-train has no HCCL all-reduce, so each "
                         "process would train alone into the same run folder; run one "
                         "process with RANK_SIZE unset or 1")


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
    check_npu_config(cfg)
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
