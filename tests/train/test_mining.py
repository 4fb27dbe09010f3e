"""Every mining strategy against a brute-force triple loop (SPEC section 4)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from massface.train.mining import (
    STRATEGIES,
    pairwise_squared_distances,
    select_triplets,
    triplet_mask,
)

ALPHA = 0.25


def _batch(seed: int, ties: bool = False):
    """Uneven identities (1 to 6 images, interleaved), L2-normalised, optional exact ties."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 7, size=rng.integers(3, 8))
    counts[0] = 1  # always one identity with a single image
    labels = np.repeat(rng.choice(1000, size=len(counts), replace=False), counts)
    rng.shuffle(labels)
    emb = rng.normal(size=(len(labels), 8)).astype(np.float32)
    if ties:  # duplicate rows give exactly equal distances
        dup = rng.choice(len(labels), size=len(labels) // 3, replace=False)
        emb[dup] = emb[dup[0]]
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb, labels


def _brute(dist: np.ndarray, labels: np.ndarray, strategy: str) -> list[tuple[int, int, int]]:
    """Slow, obviously-correct selection written from the SPEC's words."""
    B = len(labels)
    out = []
    for a in range(B):
        positives = [p for p in range(a + 1, B) if labels[p] == labels[a]]
        negatives = [n for n in range(B) if labels[n] != labels[a]]
        if strategy == "batch_hardest":
            if positives and negatives:
                p = positives[0]
                for q in positives:
                    if dist[a, q] > dist[a, p]:
                        p = q
                n = negatives[0]
                for m in negatives:
                    if dist[a, m] < dist[a, n]:
                        n = m
                out.append((a, p, n))
            continue
        best = None  # (p, n, d_an)
        for p in positives:
            valid = [n for n in negatives if dist[a, n] - dist[a, p] < ALPHA]
            if strategy == "batch_all":
                out.extend((a, p, n) for n in valid)
                continue
            if not valid:
                continue
            n = valid[0]
            for m in valid:
                if dist[a, m] < dist[a, n]:
                    n = m
            closer = strategy == "batch_min_min" and best is not None and dist[a, n] < best[2]
            farther = strategy == "batch_min_max" and best is not None and dist[a, n] > best[2]
            if best is None or closer or farther:  # strict: ties keep the earlier p
                best = (p, n, dist[a, n])
        if best is not None:
            out.append((a, best[0], best[1]))
    return out


def test_distances_match_numpy():
    emb, _ = _batch(0)
    d = pairwise_squared_distances(tf.constant(emb)).numpy()
    ref = ((emb[:, None, :].astype(np.float64) - emb[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(d, ref, atol=2e-6)
    assert np.all(np.diag(d) == 0)


@pytest.mark.parametrize("strategy", ["batch_all", "batch_min_min", "batch_min_max",
                                      "batch_hardest"])
@pytest.mark.parametrize("seed", range(12))
def test_deterministic_strategies_match_brute_force(strategy, seed):
    emb, labels = _batch(seed, ties=seed % 3 == 0)
    dist = pairwise_squared_distances(tf.constant(emb)).numpy()
    got = select_triplets(emb, labels, strategy, alpha=ALPHA)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64 and got.shape[1] == 3
    assert [tuple(t) for t in got] == _brute(dist, labels, strategy)


@pytest.mark.parametrize("seed", range(8))
def test_batch_random_one_valid_negative_per_pair(seed):
    emb, labels = _batch(seed, ties=seed % 2 == 0)
    dist = pairwise_squared_distances(tf.constant(emb)).numpy()
    got = select_triplets(emb, labels, "batch_random", alpha=ALPHA, seed=seed)
    pairs_with_valid = {(a, p) for a, p, _ in _brute(dist, labels, "batch_all")}
    chosen = [(int(a), int(p)) for a, p, _ in got]
    assert sorted(chosen) == sorted(pairs_with_valid)  # exactly one per (a, p)
    for a, p, n in got:
        assert labels[a] == labels[p] and a < p and labels[n] != labels[a]
        assert dist[a, n] - dist[a, p] < ALPHA
    again = select_triplets(emb, labels, "batch_random", alpha=ALPHA, seed=seed)
    np.testing.assert_array_equal(got, again)  # seeded


def test_batch_random_draws_vary_with_seed():
    emb, labels = _batch(1)
    draws = {select_triplets(emb, labels, "batch_random", seed=s).tobytes() for s in range(6)}
    assert len(draws) > 1


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_empty_selection_is_valid(strategy):
    # all one identity: no negatives; and all singletons: no positives
    emb, _ = _batch(3)
    for labels in (np.zeros(len(emb), int), np.arange(len(emb))):
        got = select_triplets(emb, labels, strategy, seed=0)
        assert got.shape == (0, 3)


def test_separated_identities_give_no_valid_negative():
    labels = np.array([0, 0, 1, 1])
    emb = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32)  # d(a,p)=0, d(a,n)=2
    assert select_triplets(emb, labels, "batch_all").shape == (0, 3)
    assert select_triplets(emb, labels, "batch_hardest").tolist() == [[0, 1, 2], [2, 3, 0]]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_runs_inside_tf_function(strategy):
    emb, labels = _batch(4)

    @tf.function(input_signature=[tf.TensorSpec([None, 8]), tf.TensorSpec([None], tf.int64)])
    def mined(e, lab):
        mask = triplet_mask(e, lab, strategy, ALPHA, seed=tf.constant([3, 4]))
        return tf.where(mask), select_triplets(e, lab, strategy, ALPHA, seed=[3, 4])

    from_mask, direct = mined(tf.constant(emb), tf.constant(labels, tf.int64))
    np.testing.assert_array_equal(from_mask.numpy(), direct.numpy())
    eager = select_triplets(emb, labels, strategy, ALPHA, seed=[3, 4])
    np.testing.assert_array_equal(direct.numpy(), eager)
    graph = mined.get_concrete_function().graph
    assert not any("PyFunc" in op.type for op in graph.get_operations())


def test_unknown_strategy():
    emb, labels = _batch(0)
    with pytest.raises(ValueError, match="unknown mining strategy 'batch_hard'"):
        select_triplets(emb, labels, "batch_hard")


def test_statistics_of_selected_triplets():
    from massface.train.mining import triplet_statistics

    emb, labels = _batch(5)
    dist = pairwise_squared_distances(tf.constant(emb))
    mask = triplet_mask(tf.constant(emb), tf.constant(labels), "batch_all", ALPHA)
    stats = {k: float(v) for k, v in triplet_statistics(dist, mask, ALPHA).items()}
    d = dist.numpy()
    t = select_triplets(emb, labels, "batch_all", ALPHA)
    losses = np.maximum(d[t[:, 0], t[:, 1]] - d[t[:, 0], t[:, 2]] + ALPHA, 0)
    assert stats["triplets"] == len(t)
    np.testing.assert_allclose(stats["triplet_loss"], losses.mean(), rtol=1e-5)
    np.testing.assert_allclose(stats["active_fraction"], (losses > 0).mean(), rtol=1e-6)
    np.testing.assert_allclose(stats["d_ap"], d[t[:, 0], t[:, 1]].mean(), rtol=1e-5)
    np.testing.assert_allclose(stats["d_an"], d[t[:, 0], t[:, 2]].mean(), rtol=1e-5)
    empty = triplet_statistics(dist, tf.zeros_like(mask), ALPHA)
    assert float(empty["triplets"]) == 0 and float(empty["triplet_loss"]) == 0


def test_collapse_warning():
    from massface.train.mining import collapse_message

    collapsed = {"triplets": 40.0, "triplet_loss": 0.25, "d_ap": 1e-5, "d_an": 2e-5}
    assert "collapsing" in collapse_message(collapsed, 0.25)
    assert collapse_message({**collapsed, "d_an": 0.5}, 0.25) is None
    assert collapse_message({**collapsed, "triplets": 0.0}, 0.25) is None


@pytest.mark.parametrize("seed", range(6))
def test_min_min_and_min_max_coincide_under_the_spec(seed):
    # see the module docstring: the closest negative overall is valid for every positive
    # that has any valid negative, so both rules pick the lowest such positive
    emb, labels = _batch(seed)
    a = select_triplets(emb, labels, "batch_min_min")
    b = select_triplets(emb, labels, "batch_min_max")
    np.testing.assert_array_equal(a, b)


def test_mismatched_lengths_name_both():
    emb = np.eye(4, dtype=np.float32)
    labels = np.array([0, 0, 1])
    with pytest.raises(ValueError, match="4 embeddings but 3 labels"):
        select_triplets(emb, labels, "batch_all")
    with pytest.raises(ValueError, match="4 embeddings but 3 labels"):
        select_triplets(tf.constant(emb), tf.constant(labels), "batch_all")

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32),
                                  tf.TensorSpec([None], tf.int64)])
    def graph(e, lab):
        return select_triplets(e, lab, "batch_all")

    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="number of embeddings and of labels differ"):
        graph(tf.constant(emb), tf.constant(labels))
    assert graph(tf.constant(emb), tf.constant([0, 0, 1, 1], tf.int64)).shape == (4, 3)
