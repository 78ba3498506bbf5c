"""Issue 16 (scale): adding one worker to a generated 200-worker stack touches that worker, plus one small,
restart-free set-only step (`<host>-firewall-members`) on each host whose firewall admits it.

Measured by the benchmark's own diff (benchmarks/preview.py: blast_radius), the way `pulumi up` diffs state.
"""

from __future__ import annotations

import pytest

from benchmarks.preview import blast_radius

WORKERS = 200
# What adding one worker may change among the existing resources: the firewall members of the 200 other nodes
# and the 3 platform hosts that admit it (master-1: VXLAN and the API; rancher-1 and harbor-1: 443), the
# drain host's last rollout batch (rolling.py, which lists the batch's nodes), the smoke test and one
# Kubernetes object (CoreDNS's hosts block). Before issue 16: 426 (every firewall and every worker's runtime).
MAX_CHANGED = WORKERS + 10


@pytest.fixture(scope="module")
def blast() -> object:
    return blast_radius(WORKERS)


def test_adding_a_worker_changes_at_most_a_set_only_step_per_host(blast) -> None:  # type: ignore[no-untyped-def]
    changed = blast.changed
    assert len(changed) <= MAX_CHANGED, f"{len(changed)} existing resources change"
    members = [name for _, _, name in changed if name.endswith("-firewall-members")]
    assert len(members) == WORKERS + 3
    # no ruleset is reloaded and no /etc/hosts block or runtime step changes anywhere
    for _, _, name in changed:
        assert not name.endswith(("-firewall", "-runtime", "-etc-hosts", "-kubelet")), name


def test_no_other_step_on_another_dmz_host(blast) -> None:  # type: ignore[no-untyped-def]
    """On the other DMZ hosts (199 workers and the registry) only the members step re-runs: it swaps set
    elements in one `nft -f` transaction and restarts nothing."""
    assert blast.dmz_replaced, "the measurement saw no DMZ host (the harness changed?)"
    others = [step for step in blast.dmz_replaced if not step.split(" ")[0].endswith("-firewall-members")]
    assert others == []
