"""Zones and host firewalls: rules 1-4.

They read `containercloud:net:HostFirewall` props (config-derived, known at preview):
`{host, zone, address, roles, defaultPolicy, rules: [{port, protocol, sources, purpose, source}],
ruleset, publicPorts, zones: {name: cidr}, etcdPeers: [etcd and control-plane addresses],
nodeAddresses: [Kubernetes node addresses, on INSIDE hosts of stacks without nodeNetworks],
nodeNetworks: [the stack's node networks], notNodes: [what a node network must not hold], ports}`.

What is judged is `ruleset`: the text `nft -f` loads on the host — the firewall step's ruleset file with
the members step's file in place of its `include` — parsed by policy/rules/artifacts/nft.py, named sets
read with their elements (a rule using a set the text does not define is a violation: fail closed).
The structured `rules` are a summary for people and are not judged. The zone, addresses and port settings
give the context (which CIDR is the DMZ, who is a member).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .artifacts import parse_ruleset
from .artifacts.steps import step_of
from .common import (
    HOST_FIREWALL,
    REMOTE_COMMAND,
    Network,
    as_int,
    covers,
    get,
    is_any,
    items,
    network,
    overlaps,
    port_bounds,
)
from .ports import Flow, destination_applies, dmz_to_inside_flows, resolve_port

Report = Callable[..., None]

INSIDE = "inside"
DMZ = "dmz"
ETCD_PORTS = (2379, 2380)


ANY_SOURCE = ["0.0.0.0/0", "::/0"]


def _rules(props: Any) -> list[dict[str, Any]]:
    """The accept rules of the ruleset as loaded: one per destination port (or range), with its sources."""
    text = get(props, "ruleset")
    out = []
    for chain in parse_ruleset(text) if isinstance(text, str) else []:
        if chain.hook != "input":
            continue
        for r in chain.rules:
            if r.verdict != "accept" or r.baseline:
                continue
            for port in r.dports or ["0-65535"]:
                out.append({
                    "port": port,
                    "protocol": r.protocol if r.protocol in ("tcp", "udp") else "any",
                    "sources": r.saddr if r.saddr is not None else ANY_SOURCE,
                    "purpose": f"line {r.line}: {r.comment or r.text}",
                })
    return out


def _addresses(props: Any, key: str) -> set[str]:
    return {a for a in items(get(props, key)) if isinstance(a, str)}


def _within(net: Network, addresses: set[str]) -> bool:
    """Every address of `net` is one of `addresses` (a /32 of a member, or a small block of members)."""
    if net.num_addresses > 1024:
        return False
    return all(str(a) in addresses for a in net)


def _public_ports(props: Any) -> set[int]:
    """The ports the stack declares public (publicPorts): open to any source, DMZ included."""
    return {p for p in (as_int(v) for v in items(get(props, "publicPorts"))) if p is not None}


def _all_public(port: Any, public: set[int]) -> bool:
    bounds = port_bounds(port)
    return bounds is not None and all(p in public for p in range(bounds[0], bounds[1] + 1))


def _describe(props: Any, rule: dict[str, Any]) -> str:
    return f"{get(props, 'host')}: {rule['port']}/{rule['protocol']} ({rule['purpose']})"


# --- 1. zone matrix -----------------------------------------------------------------------------


def _crossing_allowed(flow: Flow, rule: dict[str, Any], roles: list[str], props: Any,
                      dmz_sources: list[Network], nodes: set[str]) -> bool:
    if not destination_applies(flow.destination, roles) or flow.protocol != rule["protocol"]:
        return False
    if port_bounds(resolve_port(flow.port, dict(get(props, "ports") or {}))) != port_bounds(rule["port"]):
        return False
    if flow.dmz_to_inside == "nodes":
        return all(_within(n, nodes) or _node_network(n, props) for n in dmz_sources)
    return True


def _node_network(net: Network, props: Any) -> bool:
    """A network source stands for the nodes only if the stack declares it in nodeNetworks and nothing the
    firewall's props list as not a node (hosts without a node role, the deployer, the bastion, the load
    balancers: `notNodes`) lies in it. Without the list the source cannot be judged: not accepted."""
    declared = {n for n in (network(v) for v in items(get(props, "nodeNetworks"))) if n is not None}
    return net in declared and _holds_no_outsider(net, props)


def _holds_no_outsider(net: Network, props: Any) -> bool:
    """Nothing of `notNodes` lies in `net`; False when the props carry no such list (cannot be judged)."""
    outsiders = get(props, "notNodes")
    return outsiders is not None and not any(
        o is None or overlaps(o, net) for o in (network(v) for v in items(outsiders)))


def validate_zone_matrix(args: Any, report: Report) -> None:
    """No flow from DMZ to INSIDE but those the catalogue allows (API, Rancher, overlay between nodes)."""
    if args.resource_type != HOST_FIREWALL or get(args.props, "zone") != INSIDE:
        return
    props = args.props
    dmz = network(get(props, "zones", DMZ))
    if dmz is None:
        report(f"{get(props, 'host')}: the firewall props carry no DMZ zone CIDR; the zone matrix cannot be checked")
        return
    roles = [r for r in items(get(props, "roles")) if isinstance(r, str)]
    nodes = _addresses(props, "nodeAddresses")  # carried by INSIDE hosts, where this rule applies
    public = _public_ports(props)
    allowed = dmz_to_inside_flows()
    for rule in _rules(props):
        nets = [n for n in (network(s) for s in rule["sources"]) if n is not None]
        dmz_sources = [n for n in nets if overlaps(n, dmz)]
        if not dmz_sources or _all_public(rule["port"], public):
            continue
        if not any(_crossing_allowed(f, rule, roles, props, dmz_sources, nodes) for f in allowed):
            report(
                f"{_describe(props, rule)} is open to DMZ sources {', '.join(map(str, dmz_sources))}; from DMZ "
                "to INSIDE only the API port (control plane), 443 (Rancher) and the flannel VXLAN port "
                "(between cluster nodes) may pass"
            )


def _vxlan_port(props: Any) -> int:
    port = as_int(get(props, "ports", "flannelVxlanPort"))
    return port if port is not None else 8472


def _overlay_source_ok(net: Network, props: Any, nodes: set[str]) -> bool:
    """One source of the overlay rule: a declared node network holding no outsider, or one address that is
    a node (by nodeAddresses where the host carries them, else by not being one of notNodes)."""
    if _node_network(net, props):
        return True
    if net.num_addresses != 1:
        return False
    if nodes:
        return str(net.network_address) in nodes
    return _holds_no_outsider(net, props)


def validate_overlay_nodes_only(args: Any, report: Report) -> None:
    """On every host, the flannel VXLAN port admits only nodes: node addresses, or declared nodeNetworks that
    hold no host that is not a node, nor the deployer, the bastion or a load balancer (flannel: Backends)."""
    if args.resource_type != HOST_FIREWALL:
        return
    props = args.props
    nodes = _addresses(props, "nodeAddresses")
    vxlan = _vxlan_port(props)
    for rule in _rules(props):
        if rule["protocol"] not in ("udp", "any") or not covers(rule["port"], vxlan):
            continue
        bad = [s for s in rule["sources"] if (n := network(s)) is None or not _overlay_source_ok(n, props, nodes)]
        if bad:
            declared = ", ".join(map(str, items(get(props, "nodeNetworks")))) or "none declared"
            report(f"{_describe(props, rule)} admits {', '.join(bad)} to the overlay; only Kubernetes nodes may "
                   f"reach it: their addresses, or nodeNetworks ({declared}) that hold nothing else")


# --- 2. etcd ports --------------------------------------------------------------------------------


def validate_etcd_ports(args: Any, report: Report) -> None:
    """etcd client and peer ports (2379, 2380) only from etcd members and control-plane hosts."""
    if args.resource_type != HOST_FIREWALL:
        return
    props = args.props
    allowed = _addresses(props, "etcdPeers")
    for rule in _rules(props):
        if rule["protocol"] != "tcp":
            continue
        bounds = port_bounds(rule["port"])
        if bounds is None or not any(bounds[0] <= p <= bounds[1] for p in ETCD_PORTS):
            continue
        bad = [s for s in rule["sources"] if (n := network(s)) is None or not _within(n, allowed)]
        if bad:
            report(
                f"{_describe(props, rule)} opens etcd to {', '.join(bad)}; etcd 2379/2380 accept only etcd "
                f"members and control-plane hosts ({', '.join(sorted(allowed)) or 'none declared'})"
            )


# --- 3. no any-source on INSIDE ---------------------------------------------------------------------


def validate_no_any_source(args: Any, report: Report) -> None:
    """No 0.0.0.0/0 or ::/0 rule on an INSIDE host except the stack's publicPorts."""
    if args.resource_type != HOST_FIREWALL or get(args.props, "zone") != INSIDE:
        return
    props = args.props
    public = _public_ports(props)
    for rule in _rules(props):
        nets = [n for n in (network(s) for s in rule["sources"]) if n is not None]
        if any(is_any(n) for n in nets) and not _all_public(rule["port"], public):
            report(
                f"{_describe(props, rule)} is open to any source on INSIDE host; declare the port in "
                f"publicPorts (now {sorted(public)}) or name the source networks"
            )


# --- 4. every host firewalled, default drop ---------------------------------------------------------


def validate_default_drop(args: Any, report: Report) -> None:
    """A HostFirewall's ruleset, as loaded, has an input base chain and every input chain drops by default."""
    if args.resource_type != HOST_FIREWALL:
        return
    props = args.props
    host = get(props, "host")
    ruleset = get(props, "ruleset", default="")
    chains = [c for c in parse_ruleset(ruleset) if c.hook == "input"] if isinstance(ruleset, str) else []
    if not chains:
        report(f"{host}: the rendered ruleset has no input chain with policy drop")
    for chain in chains:
        if chain.policy != "drop":
            report(f"{host}: ruleset line {chain.line}: input chain {chain.name} has policy "
                   f"{chain.policy or 'accept (default)'}; the input policy must be drop")
        for rule in chain.rules:
            if rule.missing_sets:  # fail closed: sources that cannot be read cannot be judged
                report(f"{host}: ruleset line {rule.line}: `{rule.text}` takes its sources from "
                       f"{', '.join(rule.missing_sets)}, which the loaded ruleset does not define")


def validate_every_host_firewalled(args: Any, report: Report) -> None:
    """Every host the stack configures (a step's host, policy/rules/artifacts/steps.py) or reaches over SSH has a
    HostFirewall."""
    firewalls = [r for r in args.resources if r.resource_type == HOST_FIREWALL]
    names = {get(r.props, "host"): r for r in firewalls}
    addresses = {get(r.props, "address"): r for r in firewalls}
    expected_names = {step["host"] for r in args.resources if (step := step_of(r)) is not None}
    ssh_targets = {
        (addr, r.urn) for r in args.resources if r.resource_type == REMOTE_COMMAND
        if isinstance(addr := get(r.props, "connection", "host"), str)
    }
    for name in sorted(expected_names - set(names)):
        report(f"host {name} has no HostFirewall (containercloud:net:HostFirewall)")
    for addr, urn in sorted(ssh_targets):
        if addr not in addresses and addr not in names:
            report(f"SSH target {addr} has no HostFirewall", urn)
    for fw in firewalls:
        if get(fw.props, "defaultPolicy") != "drop":
            report(f"host {get(fw.props, 'host')}: HostFirewall default policy is not drop", fw.urn)


# --- cluster ports are never public ---------------------------------------------------------------------

CLUSTER_PORTS = {2379: "etcd client", 2380: "etcd peer", 10250: "kubelet API", 10257: "kube-controller-manager",
                 10259: "kube-scheduler"}


def _cluster_ports(props: Any) -> dict[int, str]:
    ports = dict(CLUSTER_PORTS)
    vxlan = as_int(get(props, "ports", "flannelVxlanPort"))
    ports[vxlan if vxlan is not None else 8472] = "flannel VXLAN"
    return ports


def validate_cluster_ports_not_public(args: Any, report: Report) -> None:
    """On every host, DMZ included: the kubelet, VXLAN, etcd, controller-manager and scheduler ports are never
    open to any source, and publicPorts cannot exempt them (Kubernetes Ports and Protocols; zone design)."""
    if args.resource_type != HOST_FIREWALL:
        return
    props = args.props
    cluster = _cluster_ports(props)
    for port in sorted(_public_ports(props) & set(cluster)):
        report(f"{get(props, 'host')}: publicPorts lists {port} ({cluster[port]}); a cluster port is never public, "
               "it would be exempt from the zone checks")
    for rule in _rules(props):
        nets = [n for n in (network(s) for s in rule["sources"]) if n is not None]
        hit = [p for p in cluster if covers(rule["port"], p)]
        if hit and any(is_any(n) for n in nets):
            report(f"{_describe(props, rule)} opens {cluster[hit[0]]} port {hit[0]} to any source on a "
                   f"{get(props, 'zone')} host; only the hosts of its flow may reach it")
