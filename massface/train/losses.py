"""Training objectives by name: softmax, cosface, arcface, triplet, triplet_cosface.

An objective says which head it needs (if any) and which batch sampler feeds it, and
turns a batch's embeddings into ``(loss, metrics)`` inside the compiled training step.
The triplet objectives mine with :func:`massface.train.mining.triplet_mask` (static
shapes, no py_func); a step with no selected triplet contributes zero triplet loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from massface.registry import Registry
from massface.train import mining

if TYPE_CHECKING:
    from massface.train.config import LossConfig


@dataclass
class Objective:
    """Base: subclasses set ``head`` (name in :data:`massface.train.heads.HEADS` or None)
    and ``sampler`` (name in :data:`massface.train.data.SAMPLERS`: "shuffle" or "pk")."""

    head = None
    sampler = "shuffle"

    def __call__(self, embeddings: tf.Tensor, labels: tf.Tensor, head: Any,
                 seed: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        raise NotImplementedError


def _cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))
    return ce, acc


@dataclass
class Classification(Objective):
    """Cross-entropy over identities through a softmax / CosFace / ArcFace head."""

    head_name: str = "softmax"

    @property
    def head(self) -> str:  # type: ignore[override]
        return self.head_name

    def __call__(self, embeddings: tf.Tensor, labels: tf.Tensor, head: Any,
                 seed: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        ce, acc = _cross_entropy(head(embeddings, labels), labels)
        return ce, {"ce": ce, "train_acc": acc}


@dataclass
class Triplet(Objective):
    """Triplet loss ``mean max(0, d(a,p) - d(a,n) + alpha)`` over mined triplets.

    ``fixed_mask`` (a ``[B, B, B]`` bool array) replaces mining by a fixed selection:
    the benchmark's "same step without mining" baseline.
    """

    alpha: float = 0.25
    strategy: str = "batch_min_max"
    fixed_mask: Any = None
    sampler = "pk"

    def __post_init__(self) -> None:
        mining.check_strategy(self.strategy)

    def triplet_term(self, embeddings: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor
                     ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        e = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=1, epsilon=1e-10)
        dist = mining.pairwise_squared_distances(e)
        if self.fixed_mask is not None:
            mask = tf.constant(self.fixed_mask, tf.bool)
        else:
            mask = mining.triplet_mask(e, labels, self.strategy, self.alpha, seed,
                                       distances=dist)
        stats = mining.triplet_statistics(dist, mask, self.alpha)
        return stats["triplet_loss"], stats

    def __call__(self, embeddings: tf.Tensor, labels: tf.Tensor, head: Any,
                 seed: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        loss, stats = self.triplet_term(embeddings, labels, seed)
        return loss, stats


@dataclass
class TripletCosFace(Triplet):
    """Triplet loss + ``weight`` x CosFace cross-entropy (MassFace's joint option)."""

    weight: float = 0.5
    head = "cosface"

    def __call__(self, embeddings: tf.Tensor, labels: tf.Tensor, head: Any,
                 seed: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        loss, stats = self.triplet_term(embeddings, labels, seed)
        ce, acc = _cross_entropy(head(embeddings, labels), labels)
        stats = dict(stats, ce=ce, train_acc=acc)
        return loss + self.weight * ce, stats


#: ``loss.kind`` -> ``build(loss_config) -> Objective``.
OBJECTIVES: Registry[Callable[[LossConfig], Objective]] = Registry("loss")
OBJECTIVES.register("softmax", lambda c: Classification("softmax"),
                    description="cross-entropy through a softmax head")
OBJECTIVES.register("cosface", lambda c: Classification("cosface"),
                    description="cross-entropy through a CosFace head (loss.scale, margin)")
OBJECTIVES.register("arcface", lambda c: Classification("arcface"),
                    description="cross-entropy through an ArcFace head (loss.scale, margin)")
OBJECTIVES.register("triplet", lambda c: Triplet(alpha=c.alpha, strategy=c.mining),
                    description="triplet loss over mined triplets of P x K batches")
OBJECTIVES.register(
    "triplet_cosface",
    lambda c: TripletCosFace(alpha=c.alpha, strategy=c.mining, weight=c.cosface_weight),
    description="triplet loss + loss.cosface_weight x CosFace cross-entropy")


def build_objective(cfg: LossConfig) -> Objective:
    """Objective from the config's ``loss`` section (``kind`` picks the registry entry)."""
    return OBJECTIVES.get(cfg.kind, "loss.kind")(cfg)
