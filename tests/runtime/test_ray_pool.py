"""Sizing the Ray actor pool (no Ray needed): replicas, CPUs and GPUs per replica, and the
pools that could never be placed."""

from __future__ import annotations

import pytest

from massface.errors import InputError
from massface.runtime.ray_pool import (
    WORKER_NICENESS_ENV,
    RaySession,
    local_system_config,
    replica_resources,
)


def _session(cpus: float, gpus: float = 0.0, local: bool = True) -> RaySession:
    return RaySession(None if local else "10.0.0.1:6379", local, 0.0, cpus, gpus, cpus)


def test_replica_resources():
    assert replica_resources(_session(2), 1, None, "auto") == (2, 0)  # the whole machine
    assert replica_resources(_session(2), 2, None, "auto") == (1, 0)
    assert replica_resources(_session(8), 3, 2, "auto") == (2, 0)
    assert replica_resources(_session(8, gpus=2), 2, 1, "auto") == (1, 1)
    assert replica_resources(_session(8, gpus=2), 2, 1, "cpu") == (1, 0)
    # a cluster may grow (autoscaler): more replicas than CPUs now wait instead of failing
    assert replica_resources(_session(4, local=False), 8, 1, "auto") == (1, 0)


@pytest.mark.parametrize(("session", "replicas", "threads", "device", "says"), [
    (_session(2), 2, 2, "auto", "this machine has 2"),  # would hang waiting for CPUs
    (_session(2), 1, 4, "auto", "no node of the Ray cluster has that many"),
    (_session(2), 0, 1, "auto", "at least 1"),
    (_session(2), 1, 1, "cuda", "no GPU"),
])
def test_a_pool_that_cannot_be_placed_is_refused(session, replicas, threads, device, says):
    with pytest.raises(InputError, match=says):
        replica_resources(session, replicas, threads, device)


def test_local_instance_runs_replicas_at_the_drivers_priority(monkeypatch):
    monkeypatch.delenv(WORKER_NICENESS_ENV, raising=False)
    assert local_system_config() == {"worker_niceness": 0}
    monkeypatch.setenv(WORKER_NICENESS_ENV, "15")  # the user's own choice wins
    assert local_system_config() == {}
