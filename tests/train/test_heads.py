"""Softmax, CosFace and ArcFace heads against NumPy formulas written here, and a 2-step
ArcFace training on ORL."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from massface.train.config import LossConfig, load_config
from massface.train.heads import HEADS
from massface.train.losses import build_objective

D, C, B = 6, 5, 8
SCALE = 30.0


def _inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(D, C)).astype(np.float32)
    x = rng.normal(size=(B, D)).astype(np.float32) * 3.0  # not unit length: heads normalise
    labels = np.arange(B, dtype=np.int64) % C
    return w, x, labels


def _cosines(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    wn = w / np.linalg.norm(w, axis=0, keepdims=True)
    return np.clip(xn.astype(np.float64) @ wn.astype(np.float64), -1.0, 1.0)


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def _head(kind: str, w: np.ndarray, margin: float):
    head = HEADS.get(kind)(D, C, scale=SCALE, margin=margin, seed=0)
    head.weights.assign(w)
    return head


def _check_loss(kind: str, head, x, labels, expected_logits) -> None:
    """The objective's cross-entropy equals the NumPy one over the expected logits."""
    ce, metrics = build_objective(LossConfig(kind=kind))(tf.constant(x), tf.constant(labels), head,
                                                  tf.constant([0, 0], tf.int64))
    np.testing.assert_allclose(float(ce), _cross_entropy(expected_logits, labels),
                               rtol=1e-4, atol=1e-4)
    acc = np.mean(expected_logits.argmax(axis=1) == labels)
    assert float(metrics["train_acc"]) == pytest.approx(acc)


def test_softmax_head_is_affine():
    w, x, labels = _inputs()
    head = _head("softmax", w, 0.0)
    bias = np.linspace(-1, 1, C).astype(np.float32)
    head.bias.assign(bias)
    expected = x.astype(np.float64) @ w + bias
    got = head(tf.constant(x), tf.constant(labels)).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    _check_loss("softmax", head, x, labels, expected)


def test_cosface_subtracts_margin_at_target_only():
    w, x, labels = _inputs(1)
    m = 0.35
    head = _head("cosface", w, m)
    cos = _cosines(x, w)
    expected = SCALE * cos
    expected[np.arange(B), labels] = SCALE * (cos[np.arange(B), labels] - m)
    got = head(tf.constant(x), tf.constant(labels)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    _check_loss("cosface", head, x, labels, expected)


def _arcface_reference(cos: np.ndarray, labels: np.ndarray, m: float) -> np.ndarray:
    """``s cos(theta + m)`` at the target; ``s (cos theta - m sin m)`` where
    ``theta + m > pi``; ``s cos theta`` elsewhere (one element at a time)."""
    out = SCALE * cos.copy()
    for i, j in enumerate(labels):
        theta = math.acos(cos[i, j])
        if theta + m < math.pi:
            out[i, j] = SCALE * math.cos(theta + m)
        else:
            out[i, j] = SCALE * (cos[i, j] - m * math.sin(m))
    return out


def test_arcface_angular_margin_and_fallback_past_pi():
    w, x, labels = _inputs(2)
    m = 0.5
    # rows 0 and 1 point away from their target class: theta near pi, theta + m > pi
    x[0] = -w[:, labels[0]] * 2.0
    x[1] = -w[:, labels[1]] + 0.05 * np.random.default_rng(3).normal(size=D).astype(
        np.float32)
    head = _head("arcface", w, m)
    cos = _cosines(x, w)
    targets = cos[np.arange(B), labels]
    past_pi = np.arccos(targets) + m > math.pi
    assert past_pi[:2].all() and not past_pi[2:].all()  # both branches are exercised
    expected = _arcface_reference(cos, labels, m)
    got = head(tf.constant(x), tf.constant(labels)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-3)
    # the fallback keeps the target logit below the plain cosine logit (a real margin)
    assert (got[np.arange(B), labels] < SCALE * targets).all()
    _check_loss("arcface", head, x, labels, expected)


def test_arcface_logit_decreases_with_angle():
    """cos(theta + m) and its fallback join into one decreasing curve over [0, pi]."""
    m = 0.5
    w = np.eye(2, dtype=np.float32)
    thetas = np.linspace(0.0, math.pi, 181)
    x = np.stack([np.cos(thetas), np.sin(thetas)], axis=1).astype(np.float32)
    head = HEADS.get("arcface")(2, 2, scale=1.0, margin=m, seed=0)
    head.weights.assign(w)
    target = head(tf.constant(x), tf.zeros(len(x), tf.int64)).numpy()[:, 0]
    assert (np.diff(target) < 1e-6).all()
    np.testing.assert_allclose(target, _arcface_reference(
        _cosines(x, w), np.zeros(len(x), np.int64), m)[:, 0] / SCALE, atol=2e-3)


@pytest.mark.slow
def test_arcface_two_training_steps(orl_dir, tmp_path):
    from massface.train.trainer import Trainer

    cfg = load_config(None, [f"data.train_dir={orl_dir}", f"work_dir={tmp_path}",
                             "name=arc", "loss.kind=arcface", "loss.margin=0.5",
                             "model.embedding_size=16", "data.batch_size=8",
                             "data.identities=[s1, s2]", "train.max_steps=2",
                             "train.log_every=1", "train.progress=false"])
    trainer = Trainer(cfg)
    assert type(trainer.head).__name__ == "ArcFaceHead" and trainer.head.margin == 0.5
    result = trainer.run()
    assert result.status == "completed" and result.final_step == 2
    assert np.isfinite([result.first_loss, result.last_loss]).all()
    import csv

    with open(tmp_path / "arc" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["ce"])) and float(r["ce"]) > 0 for r in rows)
