"""``Backend.embed_many``: several model calls in flight, results in order, same as ``embed``.

Checked on a test double with asynchronous calls that finish in random order and at
random times (no OpenVINO needed), and on ONNX Runtime (synchronous: one call at a time,
exactly ``embed``'s result).
"""

from __future__ import annotations

import numpy as np
import pytest

from massface.runtime.backends import open_backend
from massface.runtime.backends.base import DYNAMIC, STATIC, Backend, ModelInfo
from tests.helpers.models import make_linear_onnx

SIZE = (6, 5)


class _AsyncDouble(Backend):
    """``y = flatten(x) @ W``, each call "running" until a random number of polls pass."""

    name = "double"

    def __init__(self, in_flight: int, static: int | None, seed: int = 0) -> None:
        self.in_flight = in_flight
        self.rng = np.random.default_rng(seed)
        self.weight = self.rng.standard_normal((SIZE[0] * SIZE[1] * 3, 4)).astype(np.float32)
        self.info = ModelInfo("double", "-", "input", [static, *SIZE, 3], "NHWC", *SIZE, 3,
                              STATIC if static else DYNAMIC, (static,) if static else (),
                              "embeddings", "float32", 4)
        self.running: set[int] = set()
        self.max_running = 0
        self.started = 0
        self.collected: list[int] = []

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return batch.reshape(batch.shape[0], -1) @ self.weight

    def _start(self, batch: np.ndarray) -> dict:
        call = {"id": self.started, "polls": int(self.rng.integers(0, 4)),
                "out": self._run(batch)}
        self.started += 1
        self.running.add(call["id"])
        self.max_running = max(self.max_running, len(self.running))
        return call

    def _ready(self, handle: dict) -> bool:
        handle["polls"] -= 1
        return handle["polls"] < 0

    def _collect(self, handle: dict) -> np.ndarray:
        self.running.remove(handle["id"])
        self.collected.append(handle["id"])
        return handle["out"]


def _batches(sizes: list[int], seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (n, *SIZE, 3)).astype(np.float32) for n in sizes]


@pytest.mark.parametrize("in_flight", [1, 2, 3, 5])
@pytest.mark.parametrize("static", [None, 4])
def test_calls_in_flight_give_embed_results_in_order(in_flight, static):
    sizes = [7, 0, 4, 1, 9, 3, 0, 8, 2]
    batches = _batches(sizes)
    backend = _AsyncDouble(in_flight, static)
    latencies: list[float] = []
    got = list(backend.embed_many(iter(batches), latencies))
    assert [g.shape for g in got] == [(n, 4) for n in sizes]
    for x, y in zip(batches, got, strict=True):
        # reference: each image alone through the plain formula
        want = np.array([img.reshape(-1) @ backend.weight for img in x]).reshape(-1, 4)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    assert backend.max_running <= in_flight
    assert backend.collected == sorted(backend.collected)  # collected as started
    assert not backend.running
    assert len(latencies) == sum(1 for n in sizes if n)  # empty batches need no call
    if static:
        assert backend.started == sum(-(-n // static) for n in sizes)


def test_results_are_handed_back_before_the_input_ends():
    """A pipeline must not hold results back until every batch has been handed in."""
    backend = _AsyncDouble(2, None)
    handed: list[int] = []

    def source():
        for i, b in enumerate(_batches([3] * 6)):
            handed.append(i)
            yield b

    for k, _ in enumerate(backend.embed_many(source())):
        assert max(handed) <= k + backend.in_flight


def test_synchronous_backend_embed_many_is_embed(tmp_path):
    model = tmp_path / "m.onnx"
    make_linear_onnx(model, batch=4, size=SIZE, dim=6)
    batches = _batches([5, 0, 4, 11])
    with open_backend(model, backend="onnxruntime") as b:  # a synchronous one (auto: OpenVINO)
        calls = []
        run = b._run
        b._run = lambda arr: calls.append(arr.shape[0]) or run(arr)
        many = list(b.embed_many(batches))
        assert calls == [4, 4, 4, 4, 4, 4]  # 5 -> 4 + (1 padded), 4, 11 -> 4 + 4 + (3 padded)
        for x, y in zip(batches, many, strict=True):
            np.testing.assert_array_equal(y, b.embed(x))
