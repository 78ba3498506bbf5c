"""Shared fixtures: the dev and ha stacks, each run once per test session under the harness.

Tests read these runs and never change them (mutating tests deep-copy a registration first)."""

from __future__ import annotations

import pytest

from offline.engine import ProgramRun, run_program


def _run(stack: str) -> ProgramRun:
    run = run_program(stack)
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="session")
def dev() -> ProgramRun:
    return _run("dev")


@pytest.fixture(scope="session")
def ha() -> ProgramRun:
    return _run("ha")


@pytest.fixture(scope="session")
def dev_helm() -> ProgramRun:
    """dev with Rancher by Helm: the rancher host is also a worker, as helm mode requires."""
    hosts = [
        {"name": "rancher-1", "address": "198.51.100.10", "zone": "inside", "roles": ["rancher", "worker"]},
        {"name": "master-1", "address": "198.51.100.11", "zone": "inside", "roles": ["etcd", "control-plane"]},
        {"name": "harbor-1", "address": "203.0.113.10", "zone": "dmz", "roles": ["registry"]},
        {"name": "worker-1", "address": "203.0.113.21", "zone": "dmz", "roles": ["worker"]},
    ]
    run = run_program("dev", {"rancherMode": "helm", "rancherReplicas": 1, "hosts": hosts,
                              "nodeNetworks": ["198.51.100.10/31", "203.0.113.16/28"]})
    assert run.error is None, run.error
    return run
