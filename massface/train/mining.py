"""Online triplet selection (SPEC section 4) in pure TensorFlow ops.

MassFace mined in ``tf.py_func`` (which kept its Ascend port from compiling the graph),
located identity blocks from sorted label counts (wrong when an identity has fewer than K
images in the batch) and crashed when no triplet was valid. Here every strategy is a
dense, static-shape mask over ``(anchor, positive, negative)`` computed from the labels
themselves, so it runs inside the compiled training step, on any device, for uneven
identities, and an empty selection is just an all-false mask.

Definitions (``d`` = squared L2 between L2-normalised embeddings):

- anchors are every image but the last of its identity (in batch order); the positives
  of an anchor are the LATER images of its identity;
- a negative ``n`` (another identity) is *valid* for ``(a, p)`` when
  ``d(a, n) - d(a, p) < alpha``;
- ``batch_all``: every valid ``(a, p, n)``;
- ``batch_random``: for every ``(a, p)`` with a valid negative, one of them uniformly at
  random (seeded);
- ``batch_min_min``: per anchor, for each positive its closest valid negative; keep the
  ``(p, n)`` whose negative is the closest;
- ``batch_min_max``: as min_min but keep the ``(p, n)`` whose closest valid negative is
  the farthest (what MassFace's scripts use);
- ``batch_hardest``: one triplet per anchor: its farthest positive with its closest
  negative, no alpha filter.

Ties always go to the lowest batch index (explicitly, not by relying on ``argmin``).

Note: read literally, these definitions make ``batch_min_min`` and ``batch_min_max``
select the same triplets. If any negative is valid for ``(a, p)``, the anchor's closest
negative overall is valid too (``d(a, n0) <= d(a, n) < d(a, p) + alpha``), so every
positive has the same "closest valid negative", all positives tie, and the lowest index
wins in both. The two are kept as separate names (MassFace's scripts use min_max), and a
test pins this equivalence so a change of definition is a deliberate one.
The dense mask is ``[B, B, B]`` booleans: 8.6 MB at MassFace's B = 205; fine for
batches up to a few hundred images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from massface.registry import Registry


def pairwise_squared_distances(embeddings: tf.Tensor) -> tf.Tensor:
    """``[B, B]`` squared Euclidean distances (clamped at 0, exact 0 on the diagonal)."""
    e = tf.cast(embeddings, tf.float32)
    sq = tf.reduce_sum(tf.square(e), axis=1)
    d = sq[:, None] + sq[None, :] - 2.0 * tf.matmul(e, e, transpose_b=True)
    d = tf.maximum(d, 0.0)
    return tf.linalg.set_diag(d, tf.zeros_like(sq))


def _first_index_where(mask: tf.Tensor, axis: int) -> tf.Tensor:
    """Lowest index along ``axis`` where ``mask`` holds (size of the axis when none)."""
    n = tf.shape(mask)[axis]
    shape = [1] * len(mask.shape)
    shape[axis] = -1
    positions = tf.reshape(tf.range(n), shape)
    return tf.reduce_min(tf.where(mask, positions, n), axis=axis)


def _pick(values: tf.Tensor, allowed: tf.Tensor, axis: int, largest: bool
          ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(index, value, any) of the min/max of ``values`` over ``allowed`` along ``axis``.

    Ties go to the lowest index. ``index`` is meaningless where ``any`` is false.
    """
    fill = tf.constant(-np.inf if largest else np.inf, values.dtype)
    masked = tf.where(allowed, values, fill)
    best = (tf.reduce_max if largest else tf.reduce_min)(masked, axis=axis, keepdims=True)
    hit = allowed & tf.equal(masked, best)
    index = _first_index_where(hit, axis)
    return index, tf.squeeze(best, axis), tf.reduce_any(allowed, axis=axis)


def _one_hot_mask(index: tf.Tensor, size: tf.Tensor, keep: tf.Tensor) -> tf.Tensor:
    """Boolean one-hot along a new last axis, all false where ``keep`` is false."""
    return tf.logical_and(tf.cast(tf.one_hot(index, size, on_value=1, off_value=0), tf.bool),
                          keep[..., None])


class _Context:
    """The masks every strategy starts from (batch size B, all [B, B] or [B, B, B])."""

    def __init__(self, dist: tf.Tensor, labels: tf.Tensor, alpha: float) -> None:
        labels = tf.reshape(labels, [-1])
        self.dist = dist
        self.size = tf.shape(dist)[0]
        same = tf.equal(labels[:, None], labels[None, :])
        idx = tf.range(self.size)
        later = idx[None, :] > idx[:, None]
        self.positive = same & later            # [a, p]
        self.negative = tf.logical_not(same)    # [a, n]
        d_ap = dist[:, :, None]
        d_an = dist[:, None, :]
        self.valid = (self.positive[:, :, None] & self.negative[:, None, :]
                      & (d_an - d_ap < alpha))  # [a, p, n]


def _batch_all(ctx: _Context, seed: Any) -> tf.Tensor:
    return ctx.valid


def _batch_random(ctx: _Context, seed: Any) -> tf.Tensor:
    shape = tf.shape(ctx.valid)
    if seed is None:
        keys = tf.random.uniform(shape)
    else:
        keys = tf.random.stateless_uniform(shape, seed=tf.cast(seed, tf.int64))
    n, _, has = _pick(keys, ctx.valid, axis=2, largest=True)
    return _one_hot_mask(n, ctx.size, has)


def _closest_valid_negative(ctx: _Context, largest: bool) -> tf.Tensor:
    d_an = tf.broadcast_to(ctx.dist[:, None, :], tf.shape(ctx.valid))
    n, dn, has = _pick(d_an, ctx.valid, axis=2, largest=False)       # per (a, p)
    p, _, keep = _pick(dn, has, axis=1, largest=largest)              # per a
    p_mask = _one_hot_mask(p, ctx.size, keep)                         # [a, p]
    n_mask = _one_hot_mask(n, ctx.size, has)                          # [a, p, n]
    return p_mask[:, :, None] & n_mask


def _batch_min_min(ctx: _Context, seed: Any) -> tf.Tensor:
    return _closest_valid_negative(ctx, largest=False)


def _batch_min_max(ctx: _Context, seed: Any) -> tf.Tensor:
    return _closest_valid_negative(ctx, largest=True)


def _batch_hardest(ctx: _Context, seed: Any) -> tf.Tensor:
    p, _, has_p = _pick(ctx.dist, ctx.positive, axis=1, largest=True)
    n, _, has_n = _pick(ctx.dist, ctx.negative, axis=1, largest=False)
    keep = has_p & has_n
    p_mask = _one_hot_mask(p, ctx.size, keep)
    n_mask = _one_hot_mask(n, ctx.size, keep)
    return p_mask[:, :, None] & n_mask[:, None, :]


#: strategy name -> mask builder (see the module docstring for semantics).
MINERS: Registry[Callable[[_Context, Any], tf.Tensor]] = Registry("mining strategy")
MINERS.register("batch_all", _batch_all, description="every valid (a, p, n)")
MINERS.register("batch_random", _batch_random,
                description="one random valid negative per (anchor, positive)")
MINERS.register("batch_min_min", _batch_min_min,
                description="per anchor, the (p, n) whose closest valid negative is closest")
MINERS.register("batch_min_max", _batch_min_max,
                description="per anchor, the (p, n) whose closest valid negative is farthest")
MINERS.register("batch_hardest", _batch_hardest,
                description="per anchor, farthest positive with closest negative, no alpha")

STRATEGIES = tuple(MINERS.names())


def check_strategy(strategy: str) -> str:
    """``strategy`` if it names a miner; :class:`InputError` listing them otherwise."""
    MINERS.get(strategy)
    return strategy


def triplet_mask(embeddings: tf.Tensor, labels: tf.Tensor, strategy: str,
                 alpha: float = 0.25, seed: Any = None, *,
                 distances: tf.Tensor | None = None) -> tf.Tensor:
    """Static-shape ``[B, B, B]`` boolean mask of the selected ``(a, p, n)`` triplets.

    This is what the training step uses (no data-dependent shapes, so it compiles for
    accelerators that need static shapes). ``distances`` may pass a precomputed
    :func:`pairwise_squared_distances`. ``seed`` (int or shape-[2] int tensor) seeds
    ``batch_random``; ``None`` draws from TF's global generator.
    """
    miner = MINERS.get(strategy)
    dist = pairwise_squared_distances(embeddings) if distances is None else distances
    dist = tf.stop_gradient(dist)
    return miner(_Context(dist, labels, alpha), seed)


def _checked_inputs(embeddings: Any, labels: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """Embeddings ``[B, D]`` and ``B`` labels, or a ValueError naming both lengths.

    Known (static) shapes are checked here in Python; where a ``tf.function`` leaves a
    length unknown, a ``tf.debugging.assert_equal`` with the same message guards the run.
    """
    emb = tf.convert_to_tensor(embeddings, tf.float32)
    lab = tf.convert_to_tensor(labels)
    if emb.shape.rank is not None and emb.shape.rank != 2:
        raise ValueError(f"select_triplets: embeddings must be [batch, dim], got shape "
                         f"{emb.shape.as_list()}")
    lab = tf.reshape(lab, [-1])
    n_emb, n_lab = emb.shape[0] if emb.shape.rank else None, lab.shape[0]
    if n_emb is not None and n_lab is not None:
        if n_emb != n_lab:
            raise ValueError(f"select_triplets: {n_emb} embeddings but {n_lab} labels "
                             "(one label per embedding row)")
        return emb, lab
    check = tf.debugging.assert_equal(
        tf.shape(emb)[0], tf.shape(lab)[0],
        message="select_triplets: the number of embeddings and of labels differ "
                "(one label per embedding row)")
    with tf.control_dependencies([check]):
        return tf.identity(emb), tf.identity(lab)


def select_triplets(embeddings: Any, labels: Any, strategy: str, alpha: float = 0.25,
                    seed: Any = None) -> Any:
    """Selected triplets as an int array ``(T, 3)`` of (anchor, positive, negative).

    ``embeddings`` are L2-normalised ``[B, D]``; ``labels`` ``[B]`` identity ids (any
    integers, any order). Rows are sorted by (anchor, positive, negative). With NumPy
    inputs (eagerly) the result is a NumPy int64 array; with tensors (also inside a
    ``tf.function``) it is an int64 tensor of dynamic length T (0 is a valid result).
    """
    numpy_in = not (tf.is_tensor(embeddings) or tf.is_tensor(labels))
    if numpy_in and seed is None and strategy == "batch_random":
        seed = np.random.default_rng().integers(0, 2**31 - 1, size=2)
    if isinstance(seed, (int, np.integer)):
        seed = [int(seed), 0]
    emb, lab = _checked_inputs(embeddings, labels)
    mask = triplet_mask(emb, lab, strategy, alpha, seed)
    triplets = tf.where(mask)
    if numpy_in and tf.executing_eagerly():
        return triplets.numpy().astype(np.int64).reshape(-1, 3)
    return triplets


def triplet_statistics(distances: tf.Tensor, mask: tf.Tensor, alpha: float
                       ) -> dict[str, tf.Tensor]:
    """Per-step mining log: count, fraction with positive loss, mean d(a,p), d(a,n), loss."""
    d_ap = distances[:, :, None]
    d_an = distances[:, None, :]
    w = tf.cast(mask, tf.float32)
    count = tf.reduce_sum(w)
    denom = tf.maximum(count, 1.0)
    per = tf.nn.relu(d_ap - d_an + alpha)
    return {
        "triplets": count,
        "active_fraction": tf.reduce_sum(w * tf.cast(per > 0, tf.float32)) / denom,
        "d_ap": tf.reduce_sum(w * d_ap) / denom,
        "d_an": tf.reduce_sum(w * d_an) / denom,
        "triplet_loss": tf.reduce_sum(w * per) / denom,
    }


def collapse_message(stats: dict[str, float], alpha: float, tol: float = 1e-3) -> str | None:
    """A warning when the triplet loss sits at alpha with all distances near zero.

    That is the signature of collapsed embeddings (every image mapped to one point): the
    loss looks constant at alpha while nothing is learnt.
    """
    if not stats.get("triplets"):
        return None
    if (abs(stats["triplet_loss"] - alpha) < tol and stats["d_ap"] < tol
            and stats["d_an"] < tol):
        return (f"triplet loss sits at alpha={alpha} with d(a,p)={stats['d_ap']:.2e} and "
                f"d(a,n)={stats['d_an']:.2e}: embeddings are collapsing (lower the learning "
                "rate, or start from a pretrained backbone)")
    return None
