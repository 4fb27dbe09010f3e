"""Injected failures for resume tests."""

from __future__ import annotations

from typing import Any


def failing_backend(backend: Any, n: int) -> Any:
    """``backend``, made to raise at its model call after ``n`` calls (an injected crash);
    everything else (padding, layout, requests in flight) stays the real backend's."""
    run, calls = backend._run, iter(range(n))

    def run_or_fail(batch: Any) -> Any:
        if next(calls, None) is None:
            raise RuntimeError("injected failure")
        return run(batch)

    backend._run = run_or_fail
    return backend
