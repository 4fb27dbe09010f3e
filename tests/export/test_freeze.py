"""BatchNorm folding and the clean-inference-graph checks, on small graphs."""

from __future__ import annotations

import numpy as np
import pytest

from massface.export.freeze import FreezeError, GraphRunner, freeze

tf = pytest.importorskip("tensorflow")


class _ConvBN(tf.Module):
    """conv (plain or depthwise with a channel multiplier) + fused BatchNorm + PReLU."""

    def __init__(self, depthwise: bool, training_bn: bool = False) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.depthwise = depthwise
        self.training_bn = training_bn
        shape = (3, 3, 3, 2) if depthwise else (3, 3, 3, 5)  # depthwise: multiplier 2
        out = 6 if depthwise else 5
        self.kernel = tf.Variable(rng.normal(size=shape).astype(np.float32))
        self.gamma = tf.Variable(rng.uniform(0.5, 2, out).astype(np.float32))
        self.beta = tf.Variable(rng.normal(size=out).astype(np.float32))
        self.mean = tf.Variable(rng.normal(size=out).astype(np.float32))
        self.var = tf.Variable(rng.uniform(0.2, 3, out).astype(np.float32))
        self.alpha = tf.Variable(rng.uniform(0, 0.5, out).astype(np.float32))
        self.embedding_size = out

    def __call__(self, x, training=False):
        conv = tf.nn.depthwise_conv2d if self.depthwise else tf.nn.conv2d
        y = conv(x, self.kernel, [1, 2, 2, 1], "SAME")
        if self.training_bn:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(y, self.gamma, self.beta,
                                                      epsilon=1e-3, is_training=True)
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                y, self.gamma, self.beta, mean=self.mean, variance=self.var, epsilon=1e-3,
                is_training=False)
        y = tf.nn.relu(y) - self.alpha * tf.nn.relu(-y)
        return tf.reduce_mean(y, axis=[1, 2])


def _slow_reference(m: _ConvBN, x: np.ndarray) -> np.ndarray:
    """BN + PReLU written out in NumPy after TF's convolution."""
    conv = tf.nn.depthwise_conv2d if m.depthwise else tf.nn.conv2d
    y = conv(x, m.kernel, [1, 2, 2, 1], "SAME").numpy().astype(np.float64)
    y = (y - m.mean.numpy()) / np.sqrt(m.var.numpy() + 1e-3) * m.gamma.numpy() + m.beta.numpy()
    y = np.where(y > 0, y, m.alpha.numpy() * y)
    return y.mean(axis=(1, 2))


@pytest.mark.parametrize("depthwise", [False, True])
def test_batchnorm_is_folded_and_the_graph_computes_the_same(depthwise):
    m = _ConvBN(depthwise)
    gd, report = freeze(m, normalize=False)
    assert report.batchnorm_folded == 1 and report.batchnorm_left == 0
    assert not any(n.op.startswith("FusedBatchNorm") for n in gd.node)
    assert report.input["shape"] == [-1, 112, 112, 3]
    x = np.random.default_rng(1).normal(size=(3, 112, 112, 3)).astype(np.float32)
    out = GraphRunner(gd.SerializeToString())(x)
    np.testing.assert_allclose(out, _slow_reference(m, x), rtol=1e-4, atol=1e-4)


def test_normalize_option_puts_unit_rows_in_the_graph():
    m = _ConvBN(False)
    gd, _ = freeze(m, normalize=True)
    x = np.random.default_rng(2).normal(size=(2, 112, 112, 3)).astype(np.float32)
    out = GraphRunner(gd.SerializeToString())(x)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    ref = _slow_reference(m, x)
    np.testing.assert_allclose(out, ref / np.linalg.norm(ref, axis=1, keepdims=True),
                               atol=1e-5)


def test_training_mode_batchnorm_is_refused():
    with pytest.raises(FreezeError, match="training mode"):
        freeze(_ConvBN(False, training_bn=True), normalize=False)


def test_graph_runner_rejects_garbage():
    from massface.errors import InputError

    with pytest.raises(InputError, match="GraphDef"):
        GraphRunner(b"\xff\xff not a graph")
