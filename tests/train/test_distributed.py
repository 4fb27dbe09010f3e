"""The tf.distribute path for real on CPU (two logical devices, in a subprocess), the
precision options, and the Ascend hook through a test double of ``npu_device``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from massface.train.config import load_config

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
from massface.train.config import load_config
from massface.train.trainer import Trainer
cfg = load_config(None, sys.argv[1:])
trainer = Trainer(cfg)
_, per_replica_labels = next(trainer._dataset(0))
local = trainer.strategy.experimental_local_results(per_replica_labels)
split_ok = (len(local) == 2 and np.array_equal(np.concatenate([t.numpy() for t in local]),
                                                trainer.source.batch(0)[1]))
result = trainer.run()
mirrored = trainer.model.conv1.kernel
copies = [v.numpy() for v in mirrored.values]
print("RESULT" + json.dumps({
    "replicas": trainer.replicas, "status": result.status, "final_step": result.final_step,
    "first_loss": result.first_loss, "last_loss": result.last_loss,
    "devices": sorted({v.device for v in mirrored.values}),
    "in_sync": all(np.array_equal(copies[0], c) for c in copies[1:]), "split_ok": split_ok,
    "checkpoint": result.last_checkpoint}))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(orl_dir, tmp_path):
    args = [f"data.train_dir={orl_dir}", f"work_dir={tmp_path}", "name=dist",
            "train.distribute=mirrored", "loss.kind=triplet_cosface", "data.P=4", "data.K=3",
            "data.identities=[s1, s2, s3, s4, s5, s6]", "model.embedding_size=32",
            "train.max_steps=2", "train.progress=false", "optimizer.learning_rate=0.01"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True,
                          text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    out = json.loads(line[len("RESULT"):])
    assert out["replicas"] == 2 and len(out["devices"]) == 2
    assert out["status"] == "completed" and out["final_step"] == 2
    assert out["in_sync"]
    assert out["split_ok"]  # replica r gets rows [r B/2, (r+1) B/2) of the global batch
    assert out["checkpoint"].endswith("ckpt-2")
    # the checkpoint a distributed run writes loads as a plain model
    from massface.train.checkpoints import load_backbone

    model, cfg = load_backbone(tmp_path / "dist")
    assert model.embedding_size == 32 and cfg["train"]["distribute"] == "mirrored"


def test_multi_worker_needs_tf_config(monkeypatch):
    from massface.errors import InputError
    from massface.train.devices import make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    cfg = load_config(None, ["train.distribute=multi_worker"])
    with pytest.raises(InputError, match="TF_CONFIG is not set"):
        make_strategy(cfg)


class _FakeNPU:
    """Test double of the TF2 ``npu_device`` module, as strict as the plugin
    (github.com/Ascend/tensorflow tf_adapter_2.x/python/npu_device/npu_device.py):
    options are read when the device opens, so they must be set before ``open()``; the
    precision mode must be one the plugin knows; the device opens once per process.

    Overflow, as the chip reports it: ``is_inf_nan_enabled()`` is the plugin's test of the
    device's saturation mode (npu_device.py, ``GetDeviceSatMode() == 1``). In saturation
    mode (``inf_nan=False``, the first Ascend 910) an overflowing float16 result is clamped
    to +-65504 and a bit is set in the NPU's float status; ``gen_npu_ops`` has the
    plugin's two ops for it (tf_adapter/ops/aicore/npu_mixed_precesion_ops.cc):
    ``npu_get_float_status_v2()`` takes no input and returns int32[8], all zero when no
    overflow happened; ``npu_clear_float_status_v2()`` takes no input and has no output.
    ``chip_fp16(x)`` stands for an NPU operator computing ``x`` in float16."""

    MODES = ("allow_mix_precision", "allow_fp32_to_fp16", "force_fp16",
             "must_keep_origin_dtype", "force_fp32", "allow_mix_precision_fp16",
             "allow_mix_precision_bf16", "allow_fp32_to_bf16")
    FP16_MAX = 65504.0

    def __init__(self, *, inf_nan: bool = True) -> None:
        import tensorflow as tf

        self.options = types.SimpleNamespace(precision_mode=None)
        self.calls: list[str] = []
        self.inf_nan = inf_nan
        self.status = tf.Variable(tf.zeros([8], tf.int32), trainable=False)
        outer = self

        class GenNpuOps:
            @staticmethod
            def npu_get_float_status_v2(name=None):
                outer._require_open("npu_get_float_status_v2")
                return tf.identity(outer.status.read_value())

            @staticmethod
            def npu_clear_float_status_v2(name=None):
                outer._require_open("npu_clear_float_status_v2")
                return tf.group(outer.status.assign(tf.zeros([8], tf.int32)))

        self.gen_npu_ops = GenNpuOps()

    def _require_open(self, what: str) -> None:
        if not any(c.startswith("open") for c in self.calls):
            raise AssertionError(f"{what} before npu_device.open()")

    def global_options(self):
        return self.options

    def is_inf_nan_enabled(self) -> bool:
        return self.inf_nan

    def chip_fp16(self, x):
        """``x`` as an NPU float16 operator returns it: inf where INF_NAN mode is on,
        else clamped to the float16 range with the overflow bit set."""
        import tensorflow as tf

        over = tf.reduce_any(tf.abs(x) > self.FP16_MAX)
        if self.inf_nan:
            return tf.where(tf.abs(x) > self.FP16_MAX, x * np.inf, x)
        flag = self.status.assign(tf.maximum(self.status, tf.fill([8], tf.cast(over, tf.int32))))
        with tf.control_dependencies([flag]):
            return tf.clip_by_value(x, -self.FP16_MAX, self.FP16_MAX)

    def open(self):
        if any(c.startswith("open") for c in self.calls):
            raise AssertionError("npu_device.open() twice in one process")
        mode = self.options.precision_mode
        if mode is not None and mode not in self.MODES:
            raise AssertionError(f"the plugin has no precision_mode {mode!r}")
        self.calls.append(f"open(precision_mode={mode})")
        outer = self

        class Device:
            def as_default(self):
                outer.calls.append("as_default")
                return self

        return Device()


def _install_npu(monkeypatch, **kwargs):
    fake = _FakeNPU(**kwargs)
    module = types.ModuleType("npu_device")
    for name in ("global_options", "open", "is_inf_nan_enabled", "gen_npu_ops"):
        setattr(module, name, getattr(fake, name))
    monkeypatch.setitem(sys.modules, "npu_device", module)
    return fake


def test_npu_hook_sets_precision_before_open(monkeypatch):
    from massface.train.devices import setup_devices

    fake = _install_npu(monkeypatch)
    cfg = load_config(None, ["train.device=npu", "train.npu_precision_mode=must_keep_origin_dtype"])
    assert setup_devices(cfg) is not None
    assert fake.calls == ["open(precision_mode=must_keep_origin_dtype)", "as_default"]


@pytest.mark.parametrize("overrides, env, why", [
    (["train.distribute=mirrored"], {}, "HCCL"),
    (["train.distribute=multi_worker"], {}, "HCCL"),
    ([], {"RANK_SIZE": "8", "RANK_TABLE_FILE": "/r.json", "RANK_ID": "0"}, "RANK_SIZE=8"),
    (["train.precision=mixed_float16"], {}, "npu_precision_mode"),
    (["train.npu_precision_mode=fp8"], {}, "unknown npu_device precision mode 'fp8'"),
])
def test_npu_refuses_what_the_plugin_would_run_wrongly(monkeypatch, overrides, env, why):
    """Several Ascend devices are HCCL processes (rank table), not a tf.distribute
    strategy; precision is the plugin's mode: refused before the device opens."""
    from massface.errors import InputError
    from massface.train.devices import setup_devices

    fake = _install_npu(monkeypatch)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(InputError, match=why):
        setup_devices(load_config(None, ["train.device=npu", *overrides]))
    assert fake.calls == []


@pytest.mark.parametrize("mode, scaled", [("allow_mix_precision", True),
                                          ("allow_fp32_to_fp16", True),
                                          ("must_keep_origin_dtype", False),
                                          ("force_fp32", False)])
def test_npu_fp16_modes_turn_loss_scaling_on(monkeypatch, mode, scaled):
    """The plugin's scripts wrap the optimizer in NpuLossScaleOptimizer whenever the NPU
    computes in float16: massface's dynamic loss scaling is on for those modes."""
    from massface.train.devices import npu_needs_loss_scaling, setup_devices

    _install_npu(monkeypatch)
    monkeypatch.delenv("RANK_SIZE", raising=False)
    cfg = load_config(None, ["train.device=npu", f"train.npu_precision_mode={mode}"])
    npu = setup_devices(cfg)
    assert npu_needs_loss_scaling(cfg, npu) is scaled
    assert npu_needs_loss_scaling(load_config(None, ["train.device=cpu"]), None) is False


def _saturating_step(fake, overflow_check):
    """A one-weight TrainStep whose backward runs through the chip in float16: with the
    initial loss scale 2**15 the gradient (2.5 x scale) overflows float16, at 2**14 not."""
    import tensorflow as tf

    from massface.train.optim import Momentum
    from massface.train.step import TrainStep

    w = tf.Variable([1.0, 2.0])

    @tf.custom_gradient
    def on_chip(x):
        return x, lambda g: fake.chip_fp16(g * 2.5) / 2.5

    def model(images, training):
        return on_chip(images * w)

    def objective(emb, labels, head, seed):
        return tf.reduce_sum(emb), {}

    step = TrainStep(tf.distribute.get_strategy(), model, None, objective,
                     Momentum([w], momentum=0.0), variables=[w], decayed=[],
                     weight_decay=0.0, seed=0, loss_scaling=True,
                     overflow_check=overflow_check)
    return step, w


def test_npu_saturation_mode_overflow_skips_step_and_halves_scale(monkeypatch):
    """Saturation mode (first Ascend 910): an overflowed gradient comes back clamped to
    65504, finite, so tf.math.is_finite passes it; the plugin's float status must flag it,
    the step must be skipped, the scale halved and the status cleared for the next step."""
    import tensorflow as tf

    from massface.train.devices import npu_overflow_check, setup_devices

    fake = _install_npu(monkeypatch, inf_nan=False)
    monkeypatch.delenv("RANK_SIZE", raising=False)
    npu = setup_devices(load_config(None, ["train.device=npu"]))
    check = npu_overflow_check(npu)
    assert check is not None
    step, w = _saturating_step(fake, check)
    images, labels = tf.ones([2]), tf.zeros([2], tf.int64)
    first = step(images, labels, 0.1, 0)
    assert first["finite_grads"] == 0.0
    np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])
    assert float(step.loss_scale.numpy()) == 2.0**14
    second = step(images, labels, 0.1, 1)  # 2.5 x 2**14 fits: applied, status was cleared
    assert second["finite_grads"] == 1.0
    np.testing.assert_allclose(w.numpy(), [1.0 - 0.1, 2.0 - 0.1], rtol=1e-6)
    assert float(step.loss_scale.numpy()) == 2.0**14
    np.testing.assert_array_equal(fake.status.numpy(), np.zeros(8))


def test_npu_inf_nan_mode_and_cpu_keep_is_finite(monkeypatch):
    """INF_NAN mode (Ascend 910B) reports overflow as inf, so tf.math.is_finite is the
    plugin's test there too (no float-status ops); CPU/GPU never touch the plugin."""
    import tensorflow as tf

    from massface.train.devices import npu_overflow_check, setup_devices

    assert npu_overflow_check(None) is None
    fake = _install_npu(monkeypatch, inf_nan=True)
    monkeypatch.delenv("RANK_SIZE", raising=False)
    npu = setup_devices(load_config(None, ["train.device=npu"]))
    assert npu_overflow_check(npu) is None
    step, w = _saturating_step(fake, None)
    out = step(tf.ones([2]), tf.zeros([2], tf.int64), 0.1, 0)
    assert out["finite_grads"] == 0.0
    np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])
    assert float(step.loss_scale.numpy()) == 2.0**14


def test_npu_not_imported_unless_present(monkeypatch):
    from massface.errors import InputError
    from massface.train.devices import setup_devices

    monkeypatch.delitem(sys.modules, "npu_device", raising=False)
    assert setup_devices(load_config(None, ["train.device=cpu"])) is None
    assert "npu_device" not in sys.modules
    with pytest.raises(InputError, match="npu_device does not import"):
        setup_devices(load_config(None, ["train.device=npu"]))


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_steps(orl_dir, tmp_path, precision):
    from massface.train.trainer import Trainer

    cfg = load_config(None, [f"data.train_dir={orl_dir}", f"work_dir={tmp_path}",
                             f"train.precision={precision}", "model.embedding_size=32",
                             "data.batch_size=8", "data.identities=[s1, s2]",
                             "train.max_steps=2", "train.progress=false", "loss.kind=cosface"])
    trainer = Trainer(cfg)
    result = trainer.run()
    assert result.status == "completed" and result.final_step == 2
    assert trainer.model.compute_dtype == {"mixed_float16": "float16",
                                           "mixed_bfloat16": "bfloat16"}[precision]
    assert np.isfinite([result.first_loss, result.last_loss]).all()
    scale = float(trainer.train_step.loss_scale.numpy())
    if precision == "mixed_bfloat16":
        assert scale == 1.0  # bfloat16 has float32's range: no loss scaling
        return
    # float16: starts at 2^15 and can only have halved (<= 2 overflows in 2 steps)
    assert scale in (2.0**15, 2.0**14, 2.0**13)
    # a forced overflow: the scaled gradients are inf in float16, so the step is skipped
    # (weights unchanged) and the scale halves
    weights = [v.numpy() for v in trainer.variables]
    trainer.train_step.loss_scale.assign(1e30)
    trainer.total_steps = 3
    trainer._prepare_run_dir = lambda: 2  # keep the forced scale (no restore from ckpt-2)
    again = trainer.run()
    assert again.final_step == 3 and np.isfinite(again.last_loss)
    assert float(trainer.train_step.loss_scale.numpy()) == pytest.approx(5e29)
    for before, var in zip(weights, trainer.variables, strict=True):
        np.testing.assert_array_equal(before, var.numpy(), err_msg=var.name)


WORKER = r"""
import json, sys
from massface.train.config import load_config
from massface.train.trainer import Trainer
trainer = Trainer(load_config(None, sys.argv[1:]))
_, labels = next(trainer._dataset(0))
mine = [t.numpy().tolist() for t in trainer.strategy.experimental_local_results(labels)]
whole = trainer.source.batch(0)[1].tolist()
result = trainer.run()
print("RESULT" + json.dumps({"replicas": trainer.replicas, "chief": trainer.chief,
                             "status": result.status, "final_step": result.final_step,
                             "last_loss": result.last_loss, "labels": mine,
                             "batch": whole}))
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_two_local_processes(orl_dir, tmp_path):
    """MultiWorkerMirroredStrategy for real: two worker processes on loopback."""
    cluster = {"worker": [f"localhost:{_free_port()}" for _ in range(2)]}
    args = [f"data.train_dir={orl_dir}", f"work_dir={tmp_path}", "name=mw",
            "train.distribute=multi_worker", "loss.kind=triplet", "data.P=4", "data.K=2",
            "data.identities=[s1, s2, s3, s4, s5, s6]", "model.embedding_size=16",
            "train.max_steps=2", "train.progress=false"]
    procs = []
    for index in range(2):
        env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, *args], env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outs = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, stderr[-4000:]
        outs.append(json.loads(next(x for x in stdout.splitlines()
                                    if x.startswith("RESULT"))[len("RESULT"):]))
    assert [o["chief"] for o in outs] == [True, False]
    assert all(o["replicas"] == 2 and o["final_step"] == 2 for o in outs)
    assert outs[0]["last_loss"] == pytest.approx(outs[1]["last_loss"])
    whole = outs[0]["batch"]  # each worker trains on its own half of the global batch
    assert outs[0]["labels"] == [whole[:4]] and outs[1]["labels"] == [whole[4:]]
    assert (tmp_path / "mw" / "checkpoints" / "ckpt-2.index").exists()
    assert not (tmp_path / "mw" / ".worker-1").exists()
