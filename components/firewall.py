"""HostFirewall: one nftables ruleset per host, derived from the port catalogue and the inventory.

Two files, one step (`<host>-firewall`), so that growing the cluster does not reload any ruleset:
  * the ruleset (RULESET_PATH): the table, its chains and its rules. Every rule takes its sources from a
    named set (`ip saddr @src3_v4`): the file names no address and changes only when the catalogue, the
    host's roles or the port settings change;
  * the members (MEMBERS_PATH): the sets (`type ipv4_addr; flags interval`) and their elements, `flush set` +
    `add element` in one `nft -f` transaction. Loading it swaps the elements atomically and leaves the table,
    the chains and conntrack untouched (no connection drops).
The ruleset `include`s the members file, so a reload of the ruleset (and the boot unit) loads both in
one transaction. The step loads the ruleset when it changed (or the table is missing), and otherwise only the
members file when that changed: a change of membership re-runs this one step on the hosts that admit the
new address, and reloads no ruleset. (Until issue 16 the members had a step of their own,
`<host>-firewall-members`: one more resource per host for the same effect. The step removes that step's
marker, so its delete, which a `pulumi up` runs once it is gone from the program, finds no marker and
leaves the members file in place.)

The ruleset is a dedicated table `inet containercloud` with an input chain (policy drop;
established/related, loopback and ICMP errors accepted; SSH only from the deployer or the bastion;
then the catalogue's flows that end on this host, and the stack's firewallExtraRules). It is loaded
atomically with `nft -f` (the file creates, deletes and re-creates the table in one transaction)
by a HostStep, and re-loaded at boot by a oneshot unit. Delete removes the table, the unit and the file.

Forward: on a Docker host (registry, rancher in docker mode) Docker publishes Harbor's and Rancher's
ports by DNAT in its nat table, so their traffic takes the forward path. The table then has a forward
chain that applies the same allow-list to connections DNATed to the host's own address (matched on
the original destination port, `ct original proto-dst`) and drops every other one. Other forward
traffic (pods after VXLAN decapsulation, Services DNATed to pods) passes untouched.

The props carry the structured rules, the zones, the inventory and the rendered ruleset: what the
policy pack checks at preview (`containercloud:net:HostFirewall`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi

from components.config import Host, Settings
from components.host_step import MARKER_DIR, HostFile, HostStep, HostStepArgs, host_connection, needs_sudo
from components.templating import render
from policy.rules.ports import DOCS, FLOWS, Flow, destination_applies, resolve_port

TYPE = "containercloud:net:HostFirewall"
RULESET_PATH = "/etc/containercloud/firewall.nft"
MEMBERS_PATH = "/etc/containercloud/firewall-members.nft"
# the marker of `<host>-firewall-members`, the members' own step before issue 16 (components/host_step.py MARKER_DIR)
OLD_MEMBERS_MARKER = MARKER_DIR + "/{}-firewall-members"
TABLE = "inet containercloud"
FAMILIES = (("ip", "ipv4_addr", "v4"), ("ip6", "ipv6_addr", "v6"))
UNIT = "containercloud-firewall.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
DEFAULT_POLICY = "drop"
INSIDE = "inside"


@dataclass(frozen=True)
class FirewallRule:
    port: int | str
    protocol: str
    sources: list[str]
    purpose: str
    source: str  # the document (or setting) the rule comes from

    def props(self) -> dict[str, Any]:
        return {"port": self.port, "protocol": self.protocol, "sources": list(self.sources),
                "purpose": self.purpose, "source": self.source}


@dataclass(frozen=True)
class FirewallPlan:
    host: Host
    rules: list[FirewallRule]
    zones: dict[str, str]
    inventory: list[Host]
    ports: dict[str, int | str]
    node_networks: list[str] = field(default_factory=list)
    not_nodes: list[str] = field(default_factory=list)  # what a node network must not hold
    public_ports: list[int] = field(default_factory=list)
    docker: bool = False  # Docker publishes ports here: the forward path is filtered too


# --- the plan: catalogue x inventory -----------------------------------------------------------------


def collapse(sources: Iterable[str]) -> list[str]:
    """Sorted CIDRs without duplicates or networks inside another (an address becomes /32 or /128).
    Host addresses stay one per entry, so the plan and the policy see each peer by name.

    Sorted by (family, address, prefix length), a supernet comes before everything it contains, and
    networks either nest or are disjoint: one sweep against the last kept network suffices (n log n)."""
    nets = sorted({ipaddress.ip_network(s, strict=False) for s in sources},
                  key=lambda n: (n.version, n.network_address, n.prefixlen))
    kept: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for net in nets:
        last = kept[-1] if kept else None
        if last is not None and last.version == net.version and net.subnet_of(last):  # type: ignore[arg-type]
            continue
        kept.append(net)
    return [str(n) for n in kept]


def _deployer(s: Settings) -> list[str]:
    return list(s.ssh_allowed_from) + ([s.ssh_bastion] if s.ssh_bastion and _is_address(s.ssh_bastion) else [])


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def _nodes(s: Settings) -> list[str]:
    """The Kubernetes nodes as sources: the stack's nodeNetworks when set (config checks that they hold every
    node and nothing else, so they admit exactly the nodes and do not change when a node is added inside
    them), else each node's address."""
    return list(s.node_networks) if s.node_networks else [h.address for h in s.node_hosts]


def resolve_sources(s: Settings, dest: Host, kinds: Iterable[str]) -> list[str]:
    """The catalogue's symbolic sources as CIDRs for destination host `dest`."""
    out: list[str] = []
    for kind in kinds:
        if kind in ("etcd", "control-plane", "worker", "registry", "rancher"):
            out += [h.address for h in s.hosts_with(kind)]
        elif kind == "hosts":
            out += _nodes(s) + [h.address for h in s.other_hosts]
        elif kind == "nodes":
            out += _nodes(s)
        elif kind == "zone":
            out.append(s.zones[dest.zone])
        elif kind == "deployer":
            out += _deployer(s)
        elif kind == "operators":
            out += _deployer(s) + ([s.zones[INSIDE]] if INSIDE in s.zones else [])
        elif kind == "pods":
            out.append(s.pod_cidr)
        elif kind == "api-lb" and s.api_load_balancer_address:
            out.append(s.api_load_balancer_address)
        elif kind == "registry-lb" and s.registry_load_balancer_address:
            out.append(s.registry_load_balancer_address)
    return collapse(out) if out else []


def _ports(s: Settings, host: Host) -> dict[str, int | str]:
    return {
        "sshPort": s.ssh_port_for(host),
        "apiServerPort": s.api_server_port,
        "flannelVxlanPort": s.flannel_vxlan_port,
        "nodePortRange": s.node_port_range,
    }


def _applies(flow: Flow, host: Host) -> bool:
    return flow.rendered and destination_applies(flow.destination, host.roles)


def _extra_applies(targets: list[str], host: Host) -> bool:
    return host.name in targets or any(host.has(t) for t in targets)


def host_rules(s: Settings, host: Host) -> list[FirewallRule]:
    ports = _ports(s, host)
    rules = []
    for flow in FLOWS:
        if not _applies(flow, host):
            continue
        sources = resolve_sources(s, host, flow.sources)
        if sources:
            port = resolve_port(flow.port, dict(ports))
            rules.append(FirewallRule(port, flow.protocol, sources, flow.purpose, DOCS[flow.doc]))
    for i, extra in enumerate(s.firewall_extra_rules):
        if _extra_applies(extra.hosts, host):
            rules.append(FirewallRule(extra.port, extra.protocol, collapse(extra.sources), extra.purpose,
                                      f"firewallExtraRules[{i}]"))
    return rules


def not_nodes(s: Settings) -> list[str]:
    """What the zone rules must never see admitted as a node: the hosts that are not nodes, the deployer,
    the bastion and the load balancers (a fixed handful: it does not grow with the workers)."""
    lbs = [a for a in (s.api_load_balancer_address, s.registry_load_balancer_address) if a]
    return collapse([h.address for h in s.other_hosts] + _deployer(s) + lbs)


def plan(s: Settings, host: Host) -> FirewallPlan:
    return FirewallPlan(host=host, rules=host_rules(s, host), zones=dict(s.zones), inventory=list(s.hosts),
                        ports=_ports(s, host), public_ports=list(s.public_ports), node_networks=list(s.node_networks),
                        not_nodes=not_nodes(s),
                        docker=runs_docker(host, s.rancher_mode))


# --- rendering -----------------------------------------------------------------------------------------


def _comment(text: str) -> str:
    clean = re.sub(r'[^A-Za-z0-9 ,.:;()/+_=\[\]-]', "", text)[:120]
    return f'"{clean}"'


def set_name(index: int, suffix: str) -> str:
    """The named set holding rule `index`'s sources of one address family."""
    return f"src{index}_{suffix}"


def _rule_view(index: int, rule: FirewallRule) -> dict[str, Any]:
    """Both families always, each from its own set (empty when the rule has no source of that family), so
    the ruleset's text does not depend on which addresses the sources hold."""
    return {
        "port": rule.port,
        "protocol": rule.protocol,
        "families": [(fam, set_name(index, suffix)) for fam, _, suffix in FAMILIES],
        "comment": _comment(f"{rule.purpose} [{rule.source}]"),
    }


def _set_views(rules: list[FirewallRule]) -> list[dict[str, Any]]:
    # sources are already normalised CIDRs (collapse): an IPv6 one is the one with a colon
    views = []
    for i, rule in enumerate(rules):
        for fam, typ, suffix in FAMILIES:
            nets = [n for n in rule.sources if (":" in n) == (fam == "ip6")]
            views.append({"name": set_name(i, suffix), "type": typ, "elements": nets})
    return views


def runs_docker(host: Host, rancher_mode: str) -> bool:
    """Whether Docker publishes ports on `host` (Harbor; Rancher in docker mode)."""
    return host.has("registry") or (host.has("rancher") and rancher_mode == "docker")


def render_ruleset(p: FirewallPlan) -> str:
    family = "ip6" if ":" in p.host.address else "ip"
    forward = {"family": family, "address": p.host.address} if p.docker else None
    return render("firewall/ruleset.nft.j2", host=p.host.name, zone=p.host.zone, roles=p.host.roles,
                  default_policy=DEFAULT_POLICY, rules=[_rule_view(i, r) for i, r in enumerate(p.rules)],
                  forward=forward, members_path=MEMBERS_PATH, table=TABLE)


def render_members(p: FirewallPlan) -> str:
    """The sets' definitions and contents: what `nft -f` swaps in one transaction."""
    return render("firewall/members.nft.j2", host=p.host.name, table=TABLE, sets=_set_views(p.rules))


def as_loaded(ruleset: str, members: str) -> str:
    """The ruleset as `nft -f` loads it: the members file in place of its `include` line (self-contained:
    what the policy pack judges and what `nft -c` checks without the host's files)."""
    return ruleset.replace(f'include "{MEMBERS_PATH}"\n', members.rstrip("\n") + "\n", 1)


def firewall_props(p: FirewallPlan, ruleset: str, members: str) -> dict[str, Any]:
    """The props contract the policy pack reads (all config-derived, known at preview). `ruleset` is the
    ruleset as loaded (the members file in place of its include); `rulesetFile` and `members` are the two
    files as the hosts receive them."""
    return {
        "host": p.host.name,
        "zone": p.host.zone,
        "address": p.host.address,
        "roles": list(p.host.roles),
        "defaultPolicy": DEFAULT_POLICY,
        "forwardFiltered": p.docker,
        "rules": [r.props() for r in p.rules],
        "ruleset": as_loaded(ruleset, members),
        "rulesetFile": ruleset,
        "members": members,
        "publicPorts": list(p.public_ports),
        "zones": dict(p.zones),
        # What the zone rules judge sources against, kept small: the whole inventory on every host would
        # make the stack's props grow with the square of the host count.
        "etcdPeers": [h.address for h in p.inventory if h.has("etcd") or h.has("control-plane")],
        # With nodeNetworks the zone rules judge a network source by the declared networks and the hosts that
        # are not nodes (neither grows with the workers); without it, by each node's address (INSIDE hosts).
        "nodeAddresses": ([h.address for h in p.inventory if h.is_node]
                          if p.host.zone == INSIDE and not p.node_networks else []),
        "nodeNetworks": list(p.node_networks),
        "notNodes": list(p.not_nodes),
        "ports": dict(p.ports),
    }


# --- the component ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostFirewallArgs:
    plan: FirewallPlan
    step: HostStepArgs

    @staticmethod
    def from_settings(s: Settings, host: Host, ssh_private_key: pulumi.Input[str]) -> HostFirewallArgs:
        p = plan(s, host)
        names = {"host": host.name, "ruleset_path": RULESET_PATH, "unit": UNIT, "unit_path": UNIT_PATH,
                 "members_path": MEMBERS_PATH, "table": TABLE,
                 "old_members_marker": OLD_MEMBERS_MARKER.format(host.name)}
        step = HostStepArgs(
            host=host.name,
            connection=host_connection(s, host, ssh_private_key),
            script=render("firewall/apply.sh.j2", **names),
            delete_script=render("firewall/delete.sh.j2", **names),
            files=[
                HostFile(MEMBERS_PATH, render_members(p), "0600"),
                HostFile(RULESET_PATH, render_ruleset(p), "0600"),
                HostFile(UNIT_PATH, render("firewall/unit.service.j2", ruleset_path=RULESET_PATH)),
            ],
            use_sudo=needs_sudo(s, host),
        )
        return HostFirewallArgs(plan=p, step=step)


class HostFirewall(pulumi.ComponentResource):
    """`containercloud:net:HostFirewall`: the nftables input policy of one host."""

    step: HostStep

    def __init__(self, name: str, args: HostFirewallArgs, opts: Optional[pulumi.ResourceOptions] = None):
        files = {f.path: f.content for f in args.step.files}
        props = firewall_props(args.plan, files[RULESET_PATH], files[MEMBERS_PATH])
        super().__init__(TYPE, name, props, opts)
        self.host = args.plan.host.name
        self.ruleset = props["ruleset"]
        self.step = HostStep(name, args.step, pulumi.ResourceOptions(parent=self))
        # The stack policy (every host firewalled) reads outputs: who is covered, and how.
        self.register_outputs({k: props[k] for k in ("host", "zone", "address", "roles", "defaultPolicy")})
