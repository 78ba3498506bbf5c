"""nodeNetworks keeps the zone matrix exact: for every host and every input rule, the loaded ruleset (the
ruleset file with the members file in its include, as `nft -f` loads it; parsed by the policy pack's own
parser) admits the same inventory hosts, deployer, bastion and load balancers with the stack's node networks
as with each node's address. Addresses no stack names (an unused address inside a node network) are the
trade-off the README states."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from benchmarks.preview import overrides
from offline.engine import run_program
from offline.engine.runner import ProgramRun
from policy.rules.artifacts import parse_ruleset

FW = "containercloud:net:HostFirewall"
Admitted = dict[tuple[str, str, int], frozenset[str]]  # (host, chain, rule index) -> admitted addresses


def _firewalls(run: ProgramRun) -> list[dict[str, Any]]:
    assert run.error is None, run.error
    return [r.plain_inputs for r in run.of_type(FW)]


def _candidates(firewalls: list[dict[str, Any]]) -> set[str]:
    """Every inventory host, plus the deployer's networks (both ends), the bastion and the load balancers
    (`notNodes` of the run with node networks lists them)."""
    out = {fw["address"] for fw in firewalls}
    for fw in firewalls:
        for cidr in fw.get("notNodes") or []:
            net = ipaddress.ip_network(cidr)
            out |= {str(net.network_address), str(net.broadcast_address)}
    return out


def _admits(sources: list[str] | None, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if sources is None:
        return True
    return any(ip.version == n.version and ip in n for n in map(ipaddress.ip_network, sources))


def admitted(firewalls: list[dict[str, Any]], candidates: set[str]) -> Admitted:
    out: Admitted = {}
    for fw in firewalls:
        for chain in parse_ruleset(fw["ruleset"]):
            for i, rule in enumerate(chain.rules):
                assert not rule.missing_sets, (fw["host"], rule.text)
                out[(fw["host"], chain.name, i)] = frozenset(a for a in candidates if _admits(rule.saddr, a))
    return out


def _compare(with_nets: ProgramRun, without: ProgramRun) -> None:
    firewalls = _firewalls(with_nets)
    assert any(fw["nodeNetworks"] for fw in firewalls)
    candidates = _candidates(firewalls)
    exact, by_network = admitted(_firewalls(without), candidates), admitted(firewalls, candidates)
    assert exact.keys() == by_network.keys()
    differ = {k: (sorted(exact[k] ^ by_network[k])) for k in exact if exact[k] != by_network[k]}
    assert differ == {}
    # and the two are really different files: the node networks replaced the node addresses
    members = {fw["host"]: fw["members"] for fw in _firewalls(without)}
    assert sum(fw["members"] != members[fw["host"]] for fw in firewalls) >= len(firewalls) // 2


@pytest.mark.parametrize("stack", ["dev", "ha"])
def test_node_networks_admit_exactly_the_hosts_addresses_admit(stack: str) -> None:
    _compare(run_program(stack), run_program(stack, {"nodeNetworks": []}))


def test_node_networks_are_exact_at_200_workers() -> None:
    with_nets = overrides(200)
    _compare(run_program("dev", with_nets), run_program("dev", with_nets | {"nodeNetworks": []}))


def test_the_comparison_sees_a_node_network_that_admits_a_host_it_should_not() -> None:
    """The check can fail: dev's members with the DMZ node network widened over Harbor admit harbor-1 on the
    VXLAN port (the config check forbids that stack, so the ruleset text is edited as loaded)."""
    firewalls = _firewalls(run_program("dev"))
    candidates = _candidates(firewalls)
    before = admitted(firewalls, candidates)
    for fw in firewalls:
        fw["ruleset"] = fw["ruleset"].replace("203.0.113.16/28", "203.0.113.0/27")
    after = admitted(firewalls, candidates)
    assert any("203.0.113.10" in after[k] - before[k] for k in before)
