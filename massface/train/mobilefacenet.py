"""MobileFaceNet exactly as MassFace uses it (SPEC section 3), as a plain ``tf.Module``.

Why a hand-written module instead of Keras layers: every variable is created in
``__init__`` (a checkpoint restores without a first call, and the export stage can build
the model and freeze it right away), the checkpoint keys are the attribute paths below
(readable and stable: ``backbone/blocks/3/expand/bn/moving_mean``,
``backbone/gdconv/kernel``), and the inference graph uses ``FusedBatchNormV3`` with the
moving statistics so a frozen graph folds it.

Layout (input ``[N, 112, 112, 3]`` NHWC, ``(x - 127.5) / 128``, RGB)::

    stem      conv 3x3/2 64 P, depthwise 3x3/1 P, conv 1x1 64 lin        -> 56x56x64
    blocks    bottlenecks (t, c, n, s) = (2,64,5,2) (4,128,1,2) (2,128,6,1)
              (4,128,1,2) (2,128,2,1); expand 1x1 P, depthwise 3x3 P,
              project 1x1 lin; residual when stride 1 and shapes agree      -> 7x7x128
    head      conv 1x1 512 P, GDConv 7x7 VALID lin, conv 1x1 512 lin,
              linear conv 1x1 D                                             -> D

Every convolution is bias-free and followed by BatchNorm (epsilon 2e-5, momentum 0.995,
with scale and offset); PReLU is per channel, initialised at 0.25. With D = 1024 this is
1,731,072 learnable values plus 22,528 BN moving statistics, as in MassFace's release.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

BN_EPSILON = 2e-5
BN_MOMENTUM = 0.995
PRELU_INIT = 0.25

#: (expansion t, output channels c, repeats n, first stride s) as in SPEC section 3.
BOTTLENECKS: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


class _Init:
    """Seeded NumPy initialiser: Xavier-uniform (slim's default in MobileFaceNet_TF).

    NumPy rather than TF random ops so that the same seed gives the same weights on any
    device, under any distribution strategy, and without tracking a generator object.
    """

    def __init__(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)

    def xavier(self, shape: Sequence[int], fan_in: int, fan_out: int) -> np.ndarray:
        limit = float(np.sqrt(6.0 / (fan_in + fan_out)))
        return self.rng.uniform(-limit, limit, size=tuple(shape)).astype(np.float32)


class BatchNorm(tf.Module):
    """BatchNorm with scale and offset; inference (and export) uses the moving stats.

    Training normalises with the batch statistics and moves the averages by
    ``moving = momentum * moving + (1 - momentum) * batch``. The moving statistics are
    sync-on-read variables averaged over replicas (what Keras does), so under
    ``tf.distribute`` each replica updates its own copy and a checkpoint holds their mean.
    """

    def __init__(self, channels: int, *, name: str = "bn") -> None:
        super().__init__(name=name)
        self.epsilon = BN_EPSILON
        self.momentum = BN_MOMENTUM
        self.gamma = tf.Variable(tf.ones([channels]), name="gamma")
        self.beta = tf.Variable(tf.zeros([channels]), name="beta")
        self.moving_mean = tf.Variable(
            tf.zeros([channels]), trainable=False, name="moving_mean",
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.MEAN)
        self.moving_variance = tf.Variable(
            tf.ones([channels]), trainable=False, name="moving_variance",
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.MEAN)

    def __call__(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        if training:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
            decay = 1.0 - self.momentum
            self.moving_mean.assign_sub((self.moving_mean - mean) * decay)
            self.moving_variance.assign_sub((self.moving_variance - variance) * decay)
            return y
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            x, self.gamma, self.beta, mean=self.moving_mean, variance=self.moving_variance,
            epsilon=self.epsilon, is_training=False)
        return y


class PReLU(tf.Module):
    """Per-channel PReLU: ``max(x, 0) + alpha * min(x, 0)``, alpha initialised at 0.25."""

    def __init__(self, channels: int, *, name: str = "prelu") -> None:
        super().__init__(name=name)
        self.alpha = tf.Variable(tf.fill([channels], PRELU_INIT), name="alpha")

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        alpha = tf.cast(self.alpha, x.dtype)
        return tf.nn.relu(x) - alpha * tf.nn.relu(-x)


class ConvBN(tf.Module):
    """Bias-free convolution (plain or depthwise) + BatchNorm + optional PReLU.

    ``padding`` is TF's ("SAME" pads bottom/right at stride 2). Weight decay applies to
    ``kernel`` only (see :meth:`MobileFaceNet.regularized_variables`).
    """

    def __init__(self, init: _Init, in_channels: int, out_channels: int, kernel: int, *,
                 stride: int = 1, depthwise: bool = False, prelu: bool = True,
                 padding: str = "SAME", name: str) -> None:
        super().__init__(name=name)
        self.stride = stride
        self.depthwise = depthwise
        self.padding = padding
        if depthwise:
            if out_channels != in_channels:
                raise ValueError("a depthwise convolution keeps the channel count")
            shape = (kernel, kernel, in_channels, 1)
            fan_in, fan_out = kernel * kernel, kernel * kernel
        else:
            shape = (kernel, kernel, in_channels, out_channels)
            fan_in, fan_out = kernel * kernel * in_channels, kernel * kernel * out_channels
        self.kernel = tf.Variable(init.xavier(shape, fan_in, fan_out), name="kernel")
        self.bn = BatchNorm(out_channels)
        self.prelu = PReLU(out_channels) if prelu else None

    def __call__(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        kernel = tf.cast(self.kernel, x.dtype)
        strides = [1, self.stride, self.stride, 1]
        if self.depthwise:
            x = tf.nn.depthwise_conv2d(x, kernel, strides, self.padding)
        else:
            x = tf.nn.conv2d(x, kernel, strides, self.padding)
        x = self.bn(x, training=training)
        if self.prelu is not None:
            x = self.prelu(x)
        return x


class Bottleneck(tf.Module):
    """Inverted residual: expand 1x1 P, depthwise 3x3 P, project 1x1 linear."""

    def __init__(self, init: _Init, in_channels: int, out_channels: int, expansion: int,
                 stride: int, *, name: str) -> None:
        super().__init__(name=name)
        hidden = in_channels * expansion
        self.residual = stride == 1 and in_channels == out_channels
        self.expand = ConvBN(init, in_channels, hidden, 1, name="expand")
        self.depthwise = ConvBN(init, hidden, hidden, 3, stride=stride, depthwise=True,
                                name="depthwise")
        self.project = ConvBN(init, hidden, out_channels, 1, prelu=False, name="project")

    def __call__(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        y = self.expand(x, training=training)
        y = self.depthwise(y, training=training)
        y = self.project(y, training=training)
        return x + y if self.residual else y


class MobileFaceNet(tf.Module):
    """MobileFaceNet backbone: preprocessed ``[N, 112, 112, 3]`` -> raw ``[N, D]`` embedding.

    The output is NOT L2-normalised (losses and evaluation normalise it). ``seed`` makes
    the initial weights reproducible. ``compute_dtype`` ("float32", "float16",
    "bfloat16") is the dtype activations are computed in for mixed precision: variables
    stay float32 and the output is returned as float32.
    """

    def __init__(self, embedding_size: int = 1024, name: str = "MobileFaceNet", *,
                 seed: int | None = None, compute_dtype: str = "float32") -> None:
        super().__init__(name=name)
        if int(embedding_size) < 1:
            raise ValueError(f"embedding_size must be positive, got {embedding_size}")
        self.embedding_size = int(embedding_size)
        self.compute_dtype = compute_dtype
        init = _Init(seed)
        with self.name_scope:
            self.conv1 = ConvBN(init, 3, 64, 3, stride=2, name="conv1")
            self.dwconv1 = ConvBN(init, 64, 64, 3, depthwise=True, name="dwconv1")
            self.conv2 = ConvBN(init, 64, 64, 1, prelu=False, name="conv2")
            blocks = []
            channels = 64
            for t, c, n, s in BOTTLENECKS:
                for i in range(n):
                    blocks.append(Bottleneck(init, channels, c, t, s if i == 0 else 1,
                                             name=f"block{len(blocks)}"))
                    channels = c
            self.blocks = blocks
            self.conv3 = ConvBN(init, channels, 512, 1, name="conv3")
            self.gdconv = ConvBN(init, 512, 512, 7, depthwise=True, prelu=False,
                                 padding="VALID", name="gdconv")
            self.linear = ConvBN(init, 512, 512, 1, prelu=False, name="linear")
            self.embedding = ConvBN(init, 512, self.embedding_size, 1, prelu=False,
                                    name="embedding")

    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = tf.cast(images, self.compute_dtype)
        for layer in (self.conv1, self.dwconv1, self.conv2):
            x = layer(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        for layer in (self.conv3, self.gdconv, self.linear, self.embedding):
            x = layer(x, training=training)
        # GDConv VALID on 7x7 leaves [N, 1, 1, D]; fixed reshape keeps shapes static.
        x = tf.reshape(x, [-1, self.embedding_size])
        return tf.cast(x, tf.float32)

    def regularized_variables(self) -> list[tf.Variable]:
        """Convolution kernels: the variables weight decay applies to (as slim did)."""
        return [v for key, v in variables_by_key(self).items() if key.endswith("kernel")]

    def batchnorm_statistics(self) -> list[tf.Variable]:
        """The BN moving means and variances (not trained; saved with the weights)."""
        return [v for v in self.variables if not v.trainable]


def variables_by_key(module: tf.Module) -> dict[str, tf.Variable]:
    """``{"blocks/3/expand/bn/moving_mean": var, ...}``: the module's checkpoint paths.

    These are the attribute paths ``tf.train.Checkpoint`` uses for the module's object
    graph, so ``f"backbone/{key}/.ATTRIBUTES/VARIABLE_VALUE"`` is the key in a run's
    checkpoint (a test holds this against a real checkpoint).
    """
    out: dict[str, tf.Variable] = {}
    for path, var in module._flatten(
            predicate=lambda v: isinstance(v, tf.Variable), with_path=True):
        out["/".join(str(p) for p in path)] = var
    return out


def count_parameters(model: MobileFaceNet) -> tuple[int, int]:
    """(learnable values, BN moving-statistic values)."""
    learnable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    statistics = sum(int(np.prod(v.shape)) for v in model.batchnorm_statistics())
    return learnable, statistics
