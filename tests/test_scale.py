"""Issue 16 (scale): adding one worker to a generated 200-worker stack (with nodeNetworks, as the benchmark
generates it) touches that worker, plus the new node's batch steps on the drain host (restart-free), the smoke
test and the CoreDNS hosts block: no other host's firewall, runtime or kubelet step.

Measured by the benchmark's own diff (benchmarks/preview.py: blast_radius), the way `pulumi up` diffs state.
"""

from __future__ import annotations

import ipaddress

import pytest

from benchmarks.preview import ZONES, blast_radius

WORKERS = 200
# The issue's target. Measured: 4 (master-1's rollout batch and batch-node steps for the new node, the smoke
# test, CoreDNS's hosts block). Before nodeNetworks: 207 (every host's firewall members); before that, 426.
MAX_CHANGED = 30
# What may re-run on an INSIDE host: the drain host's batch steps of the new node (a drain drains only
# registered nodes whose fingerprint differs: nothing here; restart-free) and the smoke test.
INSIDE_STEPS = ("-rollout-batch-", "-node", "smoke-test-run")


@pytest.fixture(scope="module")
def blast() -> object:
    return blast_radius(WORKERS)


def test_adding_a_worker_changes_at_most_30_existing_resources(blast) -> None:  # type: ignore[no-untyped-def]
    changed = blast.changed
    assert len(changed) <= MAX_CHANGED, f"{len(changed)} existing resources change: {changed}"
    # no firewall (ruleset or members), /etc/hosts block, runtime or kubelet step changes anywhere
    for _, _, name in changed:
        assert not name.endswith(("-firewall", "-runtime", "-etc-hosts", "-kubelet")), name


def test_no_step_on_another_dmz_host(blast) -> None:  # type: ignore[no-untyped-def]
    assert blast.dmz_replaced == []


def test_inside_hosts_re_run_only_restart_free_steps(blast) -> None:  # type: ignore[no-untyped-def]
    assert blast.hosts, "the measurement saw no other host (the harness changed?)"
    inside = ipaddress.ip_network(ZONES["inside"])
    assert all(ipaddress.ip_address(h) in inside for h in blast.hosts), blast.hosts
    for name in blast.commands:
        assert any(part in name for part in INSIDE_STEPS), name
