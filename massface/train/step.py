"""The compiled training step and the state it owns: the global step and the loss scale.

One ``tf.function``: forward, objective (mining included), weight decay, optional
float16 loss scaling, gradient sum over replicas, optimiser update. Every random draw
inside step ``i`` is seeded by ``(seed, i)``, so a resumed run repeats a straight one bit
for bit. The variables here are checkpointed beside the model (``step``, ``loss_scale``,
``good_steps``) so that a resumed float16 run keeps its loss scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

#: float16 loss scaling: the first scale, and how many finite steps double it.
INITIAL_LOSS_SCALE = 2.0**15
GROWTH_INTERVAL = 2000


class TrainStep:
    """``step(images, labels, lr, i)`` -> the step's metrics as floats (one replica mean).

    Create it under no particular scope: its variables are made in ``strategy.scope()``
    with ``ONLY_FIRST_REPLICA`` aggregation (each replica holds the same value).
    """

    def __init__(self, strategy: Any, model: Any, head: Any, objective: Any, optimizer: Any,
                 *, variables: Sequence[Any], decayed: Sequence[Any], weight_decay: float,
                 seed: int, loss_scaling: bool,
                 overflow_check: Callable[[Sequence[Any]], Any] | None = None) -> None:
        import tensorflow as tf

        self.strategy, self.model, self.head = strategy, model, head
        self.objective, self.optimizer = objective, optimizer
        self.variables, self.decayed = list(variables), list(decayed)
        self.weight_decay, self.seed, self.loss_scaling = weight_decay, seed, loss_scaling
        # None: tf.math.is_finite; an NPU in saturation mode passes the plugin's float status
        self.overflow_check = overflow_check
        with strategy.scope():
            agg = tf.VariableAggregation.ONLY_FIRST_REPLICA
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                    aggregation=agg)
            self.loss_scale = tf.Variable(INITIAL_LOSS_SCALE if loss_scaling else 1.0,
                                          trainable=False, name="loss_scale", aggregation=agg)
            self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                          name="good_steps", aggregation=agg)
        self.compiled = self._compile()

    def checkpoint_parts(self) -> dict[str, Any]:
        """What a checkpoint stores of this step's state (names are checkpoint keys)."""
        return {"step": self.step, "loss_scale": self.loss_scale,
                "good_steps": self.good_steps}

    def __call__(self, images: Any, labels: Any, lr: float, step: int) -> dict[str, float]:
        import tensorflow as tf

        out = self.compiled(images, labels, tf.constant(lr, tf.float32),
                            tf.constant(step, tf.int64))
        return {k: float(v) for k, v in out.items()}

    def _replica_step(self, images: Any, labels: Any, lr: Any, step: Any) -> dict[str, Any]:
        import tensorflow as tf

        replicas = float(self.strategy.num_replicas_in_sync)
        wd = float(self.weight_decay)
        with tf.GradientTape() as tape:
            emb = self.model(images, training=True)
            loss, metrics = self.objective(emb, labels, self.head,
                                           tf.stack([tf.constant(self.seed, tf.int64), step]))
            decay = wd * tf.add_n([tf.nn.l2_loss(w) for w in self.decayed]) if wd else 0.0
            total = loss + decay
            scaled = total * self.loss_scale / replicas
        grads = tape.gradient(scaled, self.variables)
        grads = [g / self.loss_scale for g in grads]
        ok = self.optimizer.apply_gradients(grads, self.variables, lr, step,
                                            overflow_check=self.overflow_check)
        if self.loss_scaling:
            self._update_loss_scale(ok)
        out = dict(metrics)
        out.update(loss=total, objective=loss, weight_decay=tf.cast(decay, tf.float32),
                   finite_grads=tf.cast(ok, tf.float32))
        return out

    def _compile(self) -> Any:
        import tensorflow as tf

        strategy = self.strategy

        @tf.function
        def train_step(images: Any, labels: Any, lr: Any, step: Any) -> dict[str, Any]:
            per = strategy.run(self._replica_step, args=(images, labels, lr, step))
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                    for k, v in per.items()}

        return train_step

    def _update_loss_scale(self, ok: Any) -> None:
        """Dynamic loss scale: halve on overflow (step skipped), double after 2000 good."""
        import tensorflow as tf

        good = tf.where(ok, self.good_steps + 1, tf.zeros_like(self.good_steps))
        grow = good >= GROWTH_INTERVAL
        scale = tf.where(ok, tf.where(grow, self.loss_scale * 2.0, self.loss_scale),
                         tf.maximum(self.loss_scale / 2.0, 1.0))
        self.loss_scale.assign(scale)
        self.good_steps.assign(tf.where(grow, tf.zeros_like(good), good))
