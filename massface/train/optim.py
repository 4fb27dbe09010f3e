"""Optimisers (Adam, Adagrad, SGD momentum) and learning-rate schedules, by name.

Why hand-written optimisers: the model is a plain ``tf.Module`` (no Keras), and these
create every slot variable up front (a checkpoint restores them before the first step,
so a resumed run is bit-identical to a straight one), follow TF1's update rules exactly
as MassFace used them (``tf.train.AdamOptimizer`` with epsilon 0.1, ``AdagradOptimizer``
with accumulator 0.1), work unchanged under ``tf.distribute`` (gradients are summed
across replicas, then each variable is updated through ``strategy.extended.update``),
and can skip a step whose gradients are not finite (float16 loss scaling).

Schedules map a step to a learning rate in Python; the rate is fed to the compiled step
as a tensor (no retracing).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from massface.errors import InputError
from massface.registry import Registry

if TYPE_CHECKING:
    from massface.train.config import OptimizerConfig, ScheduleConfig


class Optimizer(tf.Module):
    """Base: ``slot_names`` slots per variable, created in ``__init__``."""

    slot_names: tuple[str, ...] = ()
    slot_init: float = 0.0

    def __init__(self, variables: Sequence[tf.Variable], name: str) -> None:
        super().__init__(name=name)
        self.slots = [
            {s: tf.Variable(tf.fill(v.shape, tf.constant(self.slot_init, v.dtype)),
                            trainable=False, name=s) for s in self.slot_names}
            for v in variables
        ]

    def update(self, var: tf.Variable, grad: tf.Tensor, slots: dict[str, tf.Variable],
               lr: tf.Tensor, t: tf.Tensor, ok: tf.Tensor) -> None:
        raise NotImplementedError

    def apply_gradients(self, grads: Sequence[tf.Tensor], variables: Sequence[tf.Variable],
                        lr: tf.Tensor, step: tf.Tensor,
                        overflow_check: Callable[[Sequence[tf.Tensor]], tf.Tensor] | None = None
                        ) -> tf.Tensor:
        """Sum gradients over replicas and update (in replica context, or plain eager).

        ``step`` is the 0-based global step (Adam's bias correction uses ``step + 1``).
        ``overflow_check(grads)`` replaces the ``tf.math.is_finite`` test where overflow
        does not show as inf/NaN (an NPU in saturation mode, see devices.py).
        Returns whether the gradients were finite (when not, nothing changes).
        """
        ctx = tf.distribute.get_replica_context()
        grads = [tf.convert_to_tensor(g) for g in grads]
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if overflow_check is not None:
            ok = overflow_check(grads)
        else:
            ok = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        t = tf.cast(step, tf.float32) + 1.0
        lr = tf.cast(lr, tf.float32)

        def cross_replica(strategy: Any, grads: Any, lr: Any, t: Any, ok: Any) -> None:
            for var, grad, slots in zip(variables, grads, self.slots, strict=True):
                strategy.extended.update(var, self.update, args=(grad, slots, lr, t, ok),
                                         group=False)

        if ctx is None:  # cross-replica context (not used by the trainer)
            cross_replica(tf.distribute.get_strategy(), grads, lr, t, ok)
        else:
            ctx.merge_call(cross_replica, args=(grads, lr, t, ok))
        return ok


def _keep(ok: tf.Tensor, new: tf.Tensor, old: tf.Tensor) -> tf.Tensor:
    return tf.where(ok, new, old)


class Adam(Optimizer):
    """TF1 Adam: ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``; ``var -= lr_t m / (sqrt(v) + eps)``."""

    slot_names = ("m", "v")

    def __init__(self, variables: Sequence[tf.Variable], *, beta1: float = 0.9,
                 beta2: float = 0.999, epsilon: float = 0.1, **_: Any) -> None:
        super().__init__(variables, name="adam")
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def update(self, var: tf.Variable, grad: tf.Tensor, slots: dict[str, tf.Variable],
               lr: tf.Tensor, t: tf.Tensor, ok: tf.Tensor) -> None:
        b1, b2 = self.beta1, self.beta2
        m = slots["m"] * b1 + grad * (1.0 - b1)
        v = slots["v"] * b2 + tf.square(grad) * (1.0 - b2)
        lr_t = lr * tf.sqrt(1.0 - tf.pow(b2, t)) / (1.0 - tf.pow(b1, t))
        new = var - lr_t * m / (tf.sqrt(v) + self.epsilon)
        slots["m"].assign(_keep(ok, m, slots["m"]))
        slots["v"].assign(_keep(ok, v, slots["v"]))
        var.assign(_keep(ok, new, var))


class Adagrad(Optimizer):
    """TF1 Adagrad: ``acc += g^2``; ``var -= lr g / sqrt(acc)`` (accumulator starts at 0.1)."""

    slot_names = ("accumulator",)

    def __init__(self, variables: Sequence[tf.Variable], *, initial_accumulator: float = 0.1,
                 **_: Any) -> None:
        self.slot_init = initial_accumulator
        super().__init__(variables, name="adagrad")

    def update(self, var: tf.Variable, grad: tf.Tensor, slots: dict[str, tf.Variable],
               lr: tf.Tensor, t: tf.Tensor, ok: tf.Tensor) -> None:
        acc = slots["accumulator"] + tf.square(grad)
        new = var - lr * grad / tf.sqrt(acc)
        slots["accumulator"].assign(_keep(ok, acc, slots["accumulator"]))
        var.assign(_keep(ok, new, var))


class Momentum(Optimizer):
    """TF1 momentum SGD: ``acc = momentum acc + g``; ``var -= lr acc`` (momentum 0 = SGD)."""

    slot_names = ("momentum",)

    def __init__(self, variables: Sequence[tf.Variable], *, momentum: float = 0.9,
                 **_: Any) -> None:
        super().__init__(variables, name="sgd")
        self.momentum = momentum

    def update(self, var: tf.Variable, grad: tf.Tensor, slots: dict[str, tf.Variable],
               lr: tf.Tensor, t: tf.Tensor, ok: tf.Tensor) -> None:
        acc = slots["momentum"] * self.momentum + grad
        new = var - lr * acc
        slots["momentum"].assign(_keep(ok, acc, slots["momentum"]))
        var.assign(_keep(ok, new, var))


#: ``optimizer.kind`` -> ``cls(variables, *, epsilon, momentum, beta1, beta2,
#: initial_accumulator)`` (each takes the keywords it uses).
OPTIMIZERS: Registry[Callable[..., Optimizer]] = Registry("optimizer")
OPTIMIZERS.register("adam", Adam, description="TF1 Adam (optimizer.epsilon, beta1, beta2)")
OPTIMIZERS.register("adagrad", Adagrad,
                    description="TF1 Adagrad (optimizer.initial_accumulator)")
OPTIMIZERS.register("sgd", Momentum, description="TF1 momentum SGD (optimizer.momentum)")


def build_optimizer(cfg: OptimizerConfig, variables: Sequence[tf.Variable]) -> Optimizer:
    """The optimiser ``cfg.kind`` names, its slots created for ``variables``."""
    return OPTIMIZERS.get(cfg.kind, "optimizer.kind")(
        variables, epsilon=cfg.epsilon, momentum=cfg.momentum, beta1=cfg.beta1,
        beta2=cfg.beta2, initial_accumulator=cfg.initial_accumulator)


# --------------------------------------------------------------------------- schedules


def constant(lr: float, steps_per_epoch: int, total_steps: int, **_: Any
             ) -> Callable[[int], float]:
    return lambda step: lr


def table(lr: float, steps_per_epoch: int, total_steps: int, *, table: Sequence[Any],
          **_: Any) -> Callable[[int], float]:
    """MassFace's per-epoch table: ``[[epoch, lr], ...]``, the last row with epoch <= now."""
    rows = sorted((int(e), float(v)) for e, v in table)
    if not rows or rows[0][0] != 0:
        raise InputError("schedule.table must start at epoch 0: [[0, lr], [epoch, lr], ...]")
    epochs = [e for e, _ in rows]
    return lambda step: rows[bisect.bisect_right(epochs, step // steps_per_epoch) - 1][1]


def piecewise(lr: float, steps_per_epoch: int, total_steps: int, *, boundaries: Sequence[int],
              values: Sequence[float], **_: Any) -> Callable[[int], float]:
    """``values[i]`` for steps in ``[boundaries[i-1], boundaries[i])`` (steps, not epochs)."""
    if len(values) != len(boundaries) + 1:
        raise InputError("schedule.values needs one more entry than schedule.boundaries")
    b = [int(x) for x in boundaries]
    return lambda step: float(values[bisect.bisect_right(b, step)])


def cosine(lr: float, steps_per_epoch: int, total_steps: int, *, min_lr: float = 0.0,
           **_: Any) -> Callable[[int], float]:
    """Cosine decay from ``lr`` to ``min_lr`` over the run."""
    n = max(total_steps, 1)
    return lambda step: min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(step, n) / n))


#: ``schedule.kind`` -> ``make(lr, steps_per_epoch, total_steps, *, table, boundaries,
#: values, min_lr) -> (step -> lr)``.
SCHEDULES: Registry[Callable[..., Callable[[int], float]]] = Registry("schedule")
SCHEDULES.register("constant", constant, description="optimizer.learning_rate throughout")
SCHEDULES.register("table", table, description="per-epoch [[epoch, lr], ...] (MassFace)")
SCHEDULES.register("piecewise", piecewise,
                   description="schedule.values between step schedule.boundaries")
SCHEDULES.register("cosine", cosine, description="cosine decay to schedule.min_lr")


def build_schedule(cfg: ScheduleConfig, lr: float, steps_per_epoch: int, total_steps: int
                   ) -> Callable[[int], float]:
    """``step -> lr`` with linear warm-up over ``schedule.warmup_steps``."""
    base = SCHEDULES.get(cfg.kind, "schedule.kind")(
        lr, steps_per_epoch, total_steps, table=cfg.table, boundaries=cfg.boundaries,
        values=cfg.values, min_lr=cfg.min_lr)
    warm = int(cfg.warmup_steps)
    if warm <= 0:
        return base
    return lambda step: base(step) * min(1.0, (step + 1) / warm)
