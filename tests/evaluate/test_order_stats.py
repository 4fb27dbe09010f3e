"""Exact order statistics against a full sort, and BLUFR's threshold rule against its
literal statement (SPEC section 5)."""

from __future__ import annotations

import numpy as np
import pytest

from massface.evaluate.protocols import order_stats
from massface.evaluate.protocols.far import false_alarms, far_thresholds
from massface.evaluate.protocols.order_stats import StreamingSelector, kth_largest
from tests.helpers.blufr_reference import spec_thresholds


def sorted_desc(values):
    return np.sort(values)[::-1]


def make_values(rng, n, kind):
    if kind == "ties":
        v = rng.integers(-5, 6, size=n).astype(np.float32) / 8
        v[v == 0] = np.where(rng.random((v == 0).sum()) < 0.5, -0.0, 0.0)
        return v
    return rng.standard_normal(n).astype(np.float32)


@pytest.mark.parametrize("kind", ["ties", "continuous"])
@pytest.mark.parametrize("n", [1, 2, 7, 1000, 200_000])
def test_kth_largest_and_streaming_match_a_full_sort(n, kind, monkeypatch):
    monkeypatch.setattr(order_stats, "SORT_SIZE", 64)  # exercise the partition path
    rng = np.random.default_rng(n)
    values = make_values(rng, n, kind)
    ks = np.r_[1, n, rng.integers(1, n + 1, size=50), np.arange(1, min(n, 30) + 1)]
    want = sorted_desc(values)[ks - 1]
    work = values.copy()
    assert kth_largest(work, ks).tolist() == want.tolist()
    assert sorted(work.tolist()) == sorted(values.tolist())  # reordered, nothing lost
    sel = StreamingSelector()
    blocks = np.array_split(values, 5)
    for b in blocks:
        sel.count(b)
    sel.want(ks)
    for b in blocks:
        sel.keep(b)
    assert sel.n == n
    assert sel.values().tolist() == want.tolist()


def test_streaming_refuses_a_second_pass_that_differs():
    sel = StreamingSelector()
    sel.count(np.array([0.5, 0.25, 0.125], np.float32))
    sel.want([1, 2])
    sel.keep(np.array([0.5, 0.5, 0.125], np.float32))
    with pytest.raises(RuntimeError, match="pass 2 saw other scores"):
        sel.values()


def test_ranks_out_of_range():
    with pytest.raises(ValueError):
        kth_largest(np.zeros(3, np.float32), [4])


def test_false_alarms_round_halves_up_like_matlab():
    # 0.5 and 2.5 round up (MATLAB), not to even (Python, NumPy)
    assert false_alarms([0.5, 0.25, 0.125, 0.1], 5).tolist() == [3, 1, 1, 1]
    assert false_alarms([0.5], 1).tolist() == [1]


@pytest.mark.parametrize("case", range(6))
def test_far_thresholds_follow_the_spec_literally(case):
    rng = np.random.default_rng(case)
    imp = rng.integers(-8, 8, size=rng.integers(1, 40)).astype(np.float32) / 8
    gen = rng.integers(-8, 9, size=rng.integers(1, 20)).astype(np.float32) / 8
    if case == 0:
        gen = np.array([imp.max()], np.float32)   # no genuine above the top impostor
    fars = [0.0, 0.01, 0.1, 0.3, 0.5, 0.9, 1.0]
    got = far_thresholds(fars, imp.size, lambda ks: kth_largest(imp.copy(), ks), gen)
    ref = spec_thresholds([float(x) for x in imp], [float(x) for x in gen], fars)
    assert got.threshold.tolist() == [r[0] for r in ref]
    assert got.far.tolist() == [r[1] for r in ref]
