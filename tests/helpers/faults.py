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


def full_disk_after(monkeypatch: Any, n: int) -> None:
    """Every atomic write of :mod:`massface.io` after the first ``n`` fails as a full disk
    does (``OSError(ENOSPC)`` naming the file), for the rest of the test."""
    import contextlib
    import errno

    from massface import io

    real, calls = io.atomic_path, iter(range(n))

    @contextlib.contextmanager
    def atomic_path(path: Any) -> Any:
        if next(calls, None) is None:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        with real(path) as tmp:
            yield tmp

    monkeypatch.setattr(io, "atomic_path", atomic_path)
