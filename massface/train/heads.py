"""Classification heads over the embedding: softmax, CosFace and ArcFace (a registry).

Each head is a ``tf.Module`` whose weights are created in ``__init__`` (checkpointed as
``head/...``) and returns logits in float32 (computed in float32 under mixed precision:
margins and scales of 64 overflow float16).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from massface.registry import Registry


def _xavier(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)


class SoftmaxHead(tf.Module):
    """Plain fully connected logits ``x W + b`` (MassFace's softmax pretraining)."""

    def __init__(self, embedding_size: int, num_classes: int, *, seed: int | None = None,
                 **_: float) -> None:
        super().__init__(name="softmax")
        rng = np.random.default_rng(seed)
        self.weights = tf.Variable(_xavier(rng, embedding_size, num_classes), name="weights")
        self.bias = tf.Variable(tf.zeros([num_classes]), name="bias")

    def __call__(self, embeddings: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        return tf.matmul(tf.cast(embeddings, tf.float32), self.weights) + self.bias

    def regularized_variables(self) -> list[tf.Variable]:
        return [self.weights]


class _CosineHead(tf.Module):
    """Logits ``s * cos(theta)`` with a margin on the true class (CosFace / ArcFace)."""

    def __init__(self, embedding_size: int, num_classes: int, *, scale: float = 64.0,
                 margin: float = 0.25, seed: int | None = None, name: str = "cosine",
                 **_: float) -> None:
        super().__init__(name=name)
        rng = np.random.default_rng(seed)
        self.scale = float(scale)
        self.margin = float(margin)
        self.weights = tf.Variable(_xavier(rng, embedding_size, num_classes), name="weights")

    def cosines(self, embeddings: tf.Tensor) -> tf.Tensor:
        x = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=1, epsilon=1e-10)
        w = tf.math.l2_normalize(self.weights, axis=0, epsilon=1e-10)
        return tf.clip_by_value(tf.matmul(x, w), -1.0, 1.0)

    def regularized_variables(self) -> list[tf.Variable]:
        return [self.weights]


class CosFaceHead(_CosineHead):
    """CosFace (large-margin cosine): ``s * (cos(theta) - m)`` on the true class."""

    def __init__(self, embedding_size: int, num_classes: int, **kw: float) -> None:
        super().__init__(embedding_size, num_classes, name="cosface", **kw)

    def __call__(self, embeddings: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        cos = self.cosines(embeddings)
        onehot = tf.one_hot(labels, tf.shape(cos)[1], dtype=cos.dtype)
        return self.scale * (cos - self.margin * onehot)


class ArcFaceHead(_CosineHead):
    """ArcFace (additive angular margin): ``s * cos(theta + m)`` on the true class.

    Where ``theta + m`` would pass pi (``cos(theta) <= cos(pi - m)``) the usual
    monotonic fallback ``cos(theta) - m * sin(m)`` keeps the logit decreasing in theta.
    """

    def __init__(self, embedding_size: int, num_classes: int, **kw: float) -> None:
        kw.setdefault("margin", 0.5)
        super().__init__(embedding_size, num_classes, name="arcface", **kw)

    def __call__(self, embeddings: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        m = self.margin
        cos = self.cosines(embeddings)
        sin = tf.sqrt(tf.maximum(1.0 - tf.square(cos), 0.0))
        target = cos * math.cos(m) - sin * math.sin(m)
        target = tf.where(cos > math.cos(math.pi - m), target, cos - m * math.sin(m))
        # (tf.one_hot cannot build a bool tensor directly: on/off values of 1/0 fail)
        onehot = tf.cast(tf.one_hot(labels, tf.shape(cos)[1], dtype=tf.int32), tf.bool)
        return self.scale * tf.where(onehot, target, cos)


#: Head name -> ``cls(embedding_size, num_classes, *, scale, margin, seed)``.
HEADS: Registry[Callable[..., tf.Module]] = Registry("head")
HEADS.register("softmax", SoftmaxHead, description="fully connected logits x W + b")
HEADS.register("cosface", CosFaceHead, description="s * (cos(theta) - m) on the true class")
HEADS.register("arcface", ArcFaceHead, description="s * cos(theta + m) on the true class")
