"""Optimisers against TF1's own (MassFace used tf.train.*Optimizer), and the schedules."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from massface.train.config import OptimizerConfig, ScheduleConfig
from massface.train.optim import build_optimizer, build_schedule


@pytest.mark.parametrize(("kind", "reference"), [
    ("adam", lambda: tf.compat.v1.train.AdamOptimizer(0.05, epsilon=0.1)),
    ("adagrad", lambda: tf.compat.v1.train.AdagradOptimizer(0.05, initial_accumulator_value=0.1)),
    ("sgd", lambda: tf.compat.v1.train.MomentumOptimizer(0.05, momentum=0.9)),
])
def test_updates_match_tf1_optimizers(kind, reference):
    init = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    ours_var, ref_var = tf.Variable(init), tf.Variable(init)
    cfg = OptimizerConfig(kind=kind)
    ours, ref = build_optimizer(cfg, [ours_var]), reference()
    for step in range(4):
        for var, apply in ((ours_var, lambda g, s=step: ours.apply_gradients(
                [g], [ours_var], 0.05, s)), (ref_var, lambda g: ref.apply_gradients(
                [(g, ref_var)]))):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(var) * tf.range(1.0, 5.0))
            apply(tape.gradient(loss, var))
    np.testing.assert_allclose(ours_var.numpy(), ref_var.numpy(), rtol=2e-6, atol=1e-7)
    assert not np.allclose(ours_var.numpy(), init)


def test_non_finite_gradients_skip_the_update():
    var = tf.Variable([1.0, 2.0])
    opt = build_optimizer(OptimizerConfig(kind="adam"), [var])
    ok = opt.apply_gradients([tf.constant([np.nan, 1.0])], [var], 0.1, 0)
    assert not bool(ok)
    np.testing.assert_array_equal(var.numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(opt.slots[0]["m"].numpy(), [0.0, 0.0])


def _schedule(**kw):
    return build_schedule(replace(ScheduleConfig(), **kw), 0.1, steps_per_epoch=10,
                          total_steps=100)


def test_schedules():
    table = _schedule(kind="table", table=[[0, 0.1], [2, 0.01], [5, 0.001]])
    assert [table(s) for s in (0, 19, 20, 49, 50, 99)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    pw = _schedule(kind="piecewise", boundaries=[10, 30], values=[1.0, 0.5, 0.25])
    assert [pw(s) for s in (0, 9, 10, 29, 30)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    cos = _schedule(kind="cosine", min_lr=0.0)
    assert cos(0) == pytest.approx(0.1) and cos(50) == pytest.approx(0.05)
    assert cos(100) == pytest.approx(0.0, abs=1e-12)
    assert _schedule(kind="constant")(77) == 0.1
    warm = _schedule(kind="constant", warmup_steps=4)
    assert [warm(s) for s in range(5)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])
    with pytest.raises(ValueError, match="must start at epoch 0"):
        _schedule(kind="table", table=[[1, 0.1]])
