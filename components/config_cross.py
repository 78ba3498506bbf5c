"""Rules between settings: ports two components bind on one host, names and addresses that collide, sizes
that do not fit, certificate lifetimes, roles sharing a host, and features that need each other.

Errors (CHECKS) are mistakes that fail on the hosts or leave a broken cluster; warnings (WARNINGS) are
legal settings that are unwise or have no effect, printed at preview. Each yields `(key, message)`.

Where a rule rests on an upstream fact, the fact and its source are noted next to it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from components.config import Fault, Host, Settings
from components.config_rules import (
    Check,
    Network,
    _address,
    _network,
    _port_range,
    blame,
    changed,
)

# kube-controller-manager allocates each node a pod range of --node-cidr-mask-size; the program passes
# none, so the defaults apply: defaultNodeMaskCIDRIPv4 = 24, defaultNodeMaskCIDRIPv6 = 64
# (kubernetes/kubernetes cmd/kube-controller-manager/app/core.go).
NODE_MASK = {4: 24, 6: 64}


@dataclass(frozen=True)
class Binding:
    """A port a component listens on, on a host with one of `roles` (nodes: worker or control-plane)."""

    port: int
    protocol: str
    what: str
    setting: str = ""  # the key that chooses the port ("" for a fixed port)


def _ssh(s: Settings, i: int, h: Host) -> Binding:
    key = f"hosts[{i}].ssh.port" if h.ssh.port else "sshPort"
    return Binding(s.ssh_port_for(h), "tcp", "sshd", key)


def bindings(s: Settings, i: int, h: Host) -> list[Binding]:
    """What listens on host `h` (index `i`), from the flags and files the program renders."""
    out = [_ssh(s, i, h)]
    if h.has("etcd"):  # components/control_plane.py etcd flags: client 2379, peer 2380, metrics 127.0.0.1:2381
        out += [Binding(2379, "tcp", "etcd (client)"), Binding(2380, "tcp", "etcd (peer)"),
                Binding(2381, "tcp", "etcd (metrics)")]
    if h.has("control-plane"):  # kube-apiserver --secure-port; controller-manager 10257, scheduler 10259
        out += [Binding(s.api_server_port, "tcp", "kube-apiserver", "apiServerPort"),
                Binding(10257, "tcp", "kube-controller-manager"), Binding(10259, "tcp", "kube-scheduler")]
    if h.is_node:  # components/worker.py kubelet and kube-proxy configs
        out += [Binding(10250, "tcp", "kubelet"), Binding(10248, "tcp", "kubelet (healthz)"),
                Binding(10249, "tcp", "kube-proxy (metrics)"), Binding(10256, "tcp", "kube-proxy (healthz)"),
                Binding(s.flannel_vxlan_port, "udp", "flannel VXLAN", "flannelVxlanPort")]
    if h.has("registry"):  # Harbor's docker-compose: proxy {http_port}:8080, {https_port}:8443, log 127.0.0.1:1514
        out += [Binding(80, "tcp", "Harbor (http)"), Binding(443, "tcp", "Harbor (https)"),
                Binding(1514, "tcp", "Harbor (log collector)")]
    if h.has("rancher") and s.rancher_mode == "docker":  # rancher/docker.sh.j2: docker run -p 443:443
        out += [Binding(443, "tcp", "Rancher (docker)")]
    if h.has("rancher") and s.rancher_mode == "helm":  # ingress-nginx on the host network (--http-port/
        out += [Binding(80, "tcp", "ingress-nginx (http)"),  # --https-port, probes on 10254)
                Binding(443, "tcp", "ingress-nginx (https, Rancher)"), Binding(10254, "tcp", "ingress-nginx (healthz)")]
    return out


def check_ports_on_hosts(s: Settings) -> Iterable[Fault]:
    """Two components that bind one port on one host: the second fails to start on the host."""
    reported: set[tuple[str, int, str]] = set()
    for i, h in enumerate(s.hosts):
        seen: dict[tuple[int, str], Binding] = {}
        for b in bindings(s, i, h):
            first = seen.setdefault((b.port, b.protocol), b)
            if first is b:
                continue
            key = b.setting or first.setting or f"hosts[{i}].roles"
            if (key, b.port, b.protocol) in reported:
                continue
            reported.add((key, b.port, b.protocol))
            value = f"{b.port}/{b.protocol}"
            fix = ("choose another port" if (b.setting or first.setting)
                   else "put these roles on separate hosts")
            yield key, f"{first.what} and {b.what} would both bind {value} on host {h.name}; {fix}"


def check_ports_in_node_port_range(s: Settings) -> Iterable[Fault]:
    """kube-proxy DNATs every node's NodePorts: a host service in nodePortRange is shadowed as soon as a
    Service is given that port."""
    rng = _port_range(s.node_port_range)
    if rng is None:
        return
    for i, h in enumerate(s.hosts):
        if not h.is_node:
            continue
        for b in bindings(s, i, h):
            if b.setting and b.protocol == "tcp" and rng[0] <= b.port <= rng[1]:
                yield b.setting, (f"{b.port} ({b.what} on node {h.name}) lies in nodePortRange {s.node_port_range}; "
                                  "a NodePort Service would take it over; choose a port outside that range")
                return


# Ports no host may open to any source (publicPorts): etcd, the kubelet and the control-plane
# components' own ports (kubernetes.io "Ports and Protocols"), and SSH (open only to the deployer).
_PRIVATE_PORTS = {2379: "etcd client", 2380: "etcd peer", 2381: "etcd metrics", 10250: "kubelet",
                  10248: "kubelet healthz", 10249: "kube-proxy metrics", 10256: "kube-proxy healthz",
                  10257: "kube-controller-manager", 10259: "kube-scheduler"}


def check_public_ports_private(s: Settings) -> Iterable[Fault]:
    for i, port in enumerate(s.public_ports):
        if port in _PRIVATE_PORTS:
            yield f"publicPorts[{i}]", (f"{port} is the {_PRIVATE_PORTS[port]} port; it must stay closed to "
                                        "everyone but the cluster's own hosts")


def check_public_ports_ssh(s: Settings) -> Iterable[Fault]:
    ssh_ports = {s.ssh_port} | {h.ssh.port for h in s.hosts if h.ssh.port}
    for i, port in enumerate(s.public_ports):
        if port in ssh_ports:
            yield f"publicPorts[{i}]", (f"{port} is the SSH port; SSH is open only to sshAllowedFrom and the "
                                        "bastion")


# --- names ------------------------------------------------------------------------------------------

def check_hostname_collisions(s: Settings) -> Iterable[Fault]:
    """Names the managed hosts block (components/cluster_hosts.py) maps to addresses: one name, one address."""
    registry, rancher, lb = s.registry_hostname_setting, s.rancher_hostname_setting, s.api_load_balancer_name
    if registry and rancher and registry == rancher:
        key, _ = blame(s, "registryHostname", "rancherHostname")
        yield key, (f"'{rancher}' is both registryHostname and rancherHostname; the hosts block would map one "
                    "name to two addresses; give Rancher and Harbor their own names")
    for other, value in (("registryHostname", registry), ("rancherHostname", rancher)):
        if lb and lb == value:
            yield "apiLoadBalancerName", f"'{lb}' is also {other}; the API load balancer needs its own name"


def check_hostnames_of_hosts(s: Settings) -> Iterable[Fault]:
    """A service name that is also an inventory host's name resolves to that host."""
    hosts = {h.name: h for h in s.hosts}
    registry, rancher, lb = s.registry_hostname_setting, s.rancher_hostname_setting, s.api_load_balancer_name
    if registry in hosts and not hosts[registry].has("registry"):
        yield "registryHostname", f"'{registry}' is the name of host {registry}, which has no registry role"
    elif registry in hosts and s.registry_mode == "ha":
        yield "registryHostname", (f"'{registry}' is one registry host's name; registryMode ha needs the load "
                                   "balancer's name, or nodes pull from that one host only")
    if rancher in hosts and not hosts[rancher].has("rancher"):
        yield "rancherHostname", f"'{rancher}' is the name of host {rancher}, which has no rancher role"
    if lb in hosts:
        yield "apiLoadBalancerName", f"'{lb}' is the name of host {lb}; the API load balancer needs its own name"


# Namespaces the platform itself uses (Rancher: cattle-system, cattle-*; fleet-*; ingress-nginx;
# flannel's kube-flannel is already kube-*).
_PLATFORM_NAMESPACE = re.compile(r"^(cattle-.*|fleet-.*|ingress-nginx|local)$")


def check_team_namespaces(s: Settings) -> Iterable[Fault]:
    for i, t in enumerate(s.teams):
        for j, ns in enumerate(t.namespaces):
            if _PLATFORM_NAMESPACE.match(ns):
                yield f"teams[{i}].namespaces[{j}]", f"'{ns}' is used by the platform (Rancher, Fleet or ingress-nginx)"


# --- addresses --------------------------------------------------------------------------------------

def _external_addresses(s: Settings) -> list[tuple[str, str]]:
    """(key, address) of what lives outside the cluster and must be reachable from nodes and pods."""
    out = [("apiLoadBalancerAddress", s.api_load_balancer_address),
           ("registryLoadBalancerAddress", s.registry_load_balancer_address), ("sshBastion", s.ssh_bastion)]
    if s.registry_mode == "ha":
        out += [("registryDatabaseAddress", s.registry_database_address.rpartition(":")[0]),
                ("registryRedisAddress", s.registry_redis_address.rpartition(":")[0])]
        parts = s.registry_shared_storage.split(":")
        if len(parts) >= 3:
            out.append(("registrySharedStorage", parts[1]))
    return [(k, a) for k, a in out if a and _address(a)]


def check_addresses_outside_cluster_ranges(s: Settings) -> Iterable[Fault]:
    """An address inside podCidr or serviceCidr is routed into the overlay or to a Service, never to it."""
    ranges = [(k, n) for k, n in (("podCidr", _network(s.pod_cidr)), ("serviceCidr", _network(s.service_cidr))) if n]
    for key, value in _external_addresses(s):
        ip = ipaddress.ip_address(value)
        for rkey, net in ranges:
            if ip.version == net.version and ip in net:
                yield key, f"{value} lies in {rkey} ({net}); nodes and pods would never reach it there"
    for i, cidr in enumerate(s.ssh_allowed_from):
        allowed = _network(cidr)
        for rkey, rnet in ranges:
            if allowed and allowed.version == rnet.version and allowed.overlaps(rnet):
                yield f"sshAllowedFrom[{i}]", f"{allowed} overlaps {rkey} ({rnet}); pods could reach SSH from it"


def check_load_balancer_addresses(s: Settings) -> Iterable[Fault]:
    """A load balancer on the address of a host that already binds the port it would listen on."""
    for key, value, role, port in (("apiLoadBalancerAddress", s.api_load_balancer_address, "control-plane",
                                    s.api_server_port),
                                   ("registryLoadBalancerAddress", s.registry_load_balancer_address, "registry", 443)):
        for h in s.hosts:
            if value and h.address == value and h.has(role):
                yield key, (f"{value} is the address of {role} host {h.name}, which binds {port} itself; "
                            "the load balancer needs its own address")


# --- node networks (the firewalls admit node-to-node flows by network) ---------------------------------

def _node_networks(s: Settings) -> list[tuple[str, Network]]:
    return [(f"nodeNetworks[{i}]", net) for i, cidr in enumerate(s.node_networks) if (net := _network(cidr))]


def _inside(address: str, net: Network) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.version == net.version and ip in net


def check_node_networks_hold_nodes(s: Settings) -> Iterable[Fault]:
    """When nodeNetworks is set, the firewalls admit these networks wherever a flow's source is the nodes:
    every node must lie in one, and nothing else may (it would be admitted as a node)."""
    nets = _node_networks(s)
    if not s.node_networks:
        return
    for h in s.node_hosts:
        if _address(h.address) and not any(_inside(h.address, n) for _, n in nets):
            yield "nodeNetworks", (f"{h.name} ({h.address}) is a Kubernetes node outside every node network; "
                                   "add a network that holds it")
    for key, net in nets:
        for h in s.other_hosts:
            if _address(h.address) and _inside(h.address, net):
                yield key, (f"{net} holds {h.name} ({h.address}), which is not a Kubernetes node; a node network "
                            "may hold only workers and control-plane hosts")
        for other, value in _external_addresses(s):
            if _inside(value, net):
                yield key, (f"{net} holds {other} ({value}); a node network may hold only workers and "
                            "control-plane hosts")
        for i, cidr in enumerate(s.ssh_allowed_from):
            allowed = _network(cidr)
            if allowed and allowed.version == net.version and allowed.overlaps(net):
                yield key, (f"{net} overlaps sshAllowedFrom[{i}] ({allowed}); the deployer would be admitted as a "
                            "node")
        for rkey, value in (("podCidr", s.pod_cidr), ("serviceCidr", s.service_cidr)):
            cluster = _network(value)
            if cluster and cluster.version == net.version and cluster.overlaps(net):
                yield key, f"{net} overlaps {rkey} ({cluster}); node networks hold host addresses only"


# --- sizes ------------------------------------------------------------------------------------------

def check_pod_cidr_size(s: Settings) -> Iterable[Fault]:
    net = _network(s.pod_cidr)
    if net is None:
        return
    mask = NODE_MASK[net.version]
    nodes = len(s.node_hosts)
    if net.prefixlen > mask:
        yield "podCidr", (f"{net} is smaller than one node's pod range (/{mask}, kube-controller-manager's "
                          f"--node-cidr-mask-size default); use /{mask} or larger")
    elif 2 ** (mask - net.prefixlen) < nodes:
        fits = 2 ** (mask - net.prefixlen)
        need = mask - max(nodes - 1, 1).bit_length()
        yield "podCidr", (f"{net} holds {fits} node ranges of /{mask}, but {nodes} hosts are Kubernetes nodes; "
                          f"use /{need} or larger")


def check_service_cidr_size(s: Settings) -> Iterable[Fault]:
    """The kubernetes Service takes the first address, cluster DNS the 11th (Settings.cluster_dns_ip)."""
    net = _network(s.service_cidr)
    if net is not None and net.num_addresses < 16:
        yield "serviceCidr", f"{net} is too small; the cluster DNS Service takes its 11th address (use /28 or larger)"


def check_add_on_hosts(s: Settings) -> Iterable[Fault]:
    """CoreDNS (and every workload) needs an untainted node: control-plane hosts without the worker role
    register tainted NoSchedule (components/worker.py), and CoreDNS tolerates only CriticalAddonsOnly."""
    if s.control_plane_hosts and not s.worker_hosts:
        yield "hosts", ("no host has the worker role; control-plane nodes are tainted NoSchedule, so CoreDNS "
                        "and every workload would stay Pending; give at least one host the worker role")


# --- lifetimes --------------------------------------------------------------------------------------

def check_team_cert_lifetimes(s: Settings) -> Iterable[Fault]:
    for i, t in enumerate(s.teams):
        hours = t.cert_validity_hours
        if hours is not None and 0 < hours <= s.cert_early_renewal_hours:
            yield f"teams[{i}].certValidityHours", (
                f"{hours} is within certEarlyRenewalHours ({s.cert_early_renewal_hours}); the team's certificate "
                "would be replaced on every run; use more hours than certEarlyRenewalHours")


# --- roles sharing a host, features that need each other --------------------------------------------

def check_rancher_docker_single_host(s: Settings) -> Iterable[Fault]:
    """Docker mode runs one Rancher container, on the first rancher host (components/rancher.py)."""
    if s.rancher_mode == "docker" and len(s.rancher_hosts) > 1:
        names = ", ".join(h.name for h in s.rancher_hosts)
        yield "rancherMode", (f"docker runs one Rancher container, but {len(s.rancher_hosts)} hosts have the "
                              f"rancher role ({names}); use helm for several, or keep one rancher host")


def check_api_load_balancer(s: Settings) -> Iterable[Fault]:
    """Without the address the host firewalls cannot admit the load balancer (source `api-lb`), and the
    managed hosts block cannot map the name."""
    if s.api_load_balancer_name and not s.api_load_balancer_address:
        yield "apiLoadBalancerAddress", (f"empty, but apiLoadBalancerName is '{s.api_load_balancer_name}'; the "
                                         "firewalls admit the load balancer by its address: set both")


def check_registry_load_balancer(s: Settings) -> Iterable[Fault]:
    """In ha mode nodes resolve registryHostname to registryLoadBalancerAddress (components/cluster_hosts.py);
    without it every pull goes to the first registry host."""
    if s.registry_mode == "ha" and not s.registry_load_balancer_address:
        yield "registryLoadBalancerAddress", "empty; registryMode ha needs the load balancer's address"


CHECKS: tuple[Check, ...] = (
    check_ports_on_hosts,
    check_ports_in_node_port_range,
    check_public_ports_private,
    check_public_ports_ssh,
    check_hostname_collisions,
    check_hostnames_of_hosts,
    check_team_namespaces,
    check_addresses_outside_cluster_ranges,
    check_load_balancer_addresses,
    check_node_networks_hold_nodes,
    check_pod_cidr_size,
    check_service_cidr_size,
    check_add_on_hosts,
    check_team_cert_lifetimes,
    check_rancher_docker_single_host,
    check_api_load_balancer,
    check_registry_load_balancer,
)


# --- warnings ---------------------------------------------------------------------------------------

def warn_registry_ha_on_one_host(s: Settings) -> Iterable[Fault]:
    """Works (external PostgreSQL and Redis, shared storage, a load balancer) and a second host can be added
    later without moving data, so not an error; but nothing is redundant yet."""
    if s.registry_mode == "ha" and len(s.registry_hosts) == 1:
        yield "registryMode", (f"ha with one registry host ({s.registry_hosts[0].name}) has no redundancy; "
                               "add a second registry host")


def warn_rancher_replicas(s: Settings) -> Iterable[Fault]:
    """The rancher chart's pod anti-affinity is `preferred` by default (chart/values.yaml antiAffinity), so
    extra replicas do start, on a node that already runs one: legal, but no added availability."""
    nodes = len(s.rancher_hosts)
    if s.rancher_mode == "helm" and nodes and s.rancher_replicas > nodes:
        yield "rancherReplicas", (f"{s.rancher_replicas} replicas on {nodes} rancher hosts; the extra replicas "
                                  "share a node and add no availability")
    if s.rancher_mode == "docker" and changed(s, "rancherReplicas"):
        yield "rancherReplicas", f"{s.rancher_replicas} has no effect in rancherMode docker (one container)"


def warn_ignored_settings(s: Settings) -> Iterable[Fault]:
    """Settings that only matter with another one: set without it, they do nothing."""
    if s.registry_mode == "single":
        for key in ("registrySharedStorage", "registryDatabaseAddress", "registryRedisAddress"):
            if changed(s, key):
                yield key, "has no effect in registryMode single"
    if not s.ssh_bastion:
        for key in ("sshBastionUser", "sshBastionPort"):
            if changed(s, key):
                yield key, "has no effect without sshBastion"
    if s.key_algorithm == "RSA" and changed(s, "ecdsaCurve"):
        yield "ecdsaCurve", "has no effect with keyAlgorithm RSA"
    if s.key_algorithm == "ECDSA" and changed(s, "rsaBits"):
        yield "rsaBits", "has no effect with keyAlgorithm ECDSA"


def warn_renewal_window(s: Settings) -> Iterable[Fault]:
    if s.cert_validity_hours > 0 and s.cert_validity_hours / 2 < s.cert_early_renewal_hours < s.cert_validity_hours:
        yield "certEarlyRenewalHours", (f"{s.cert_early_renewal_hours} is more than half of certValidityHours "
                                        f"({s.cert_validity_hours}); certificates are replaced every "
                                        f"{s.cert_validity_hours - s.cert_early_renewal_hours} h")


def warn_single_etcd(s: Settings) -> Iterable[Fault]:
    if len(s.etcd_hosts) == 1 and len(s.control_plane_hosts) > 1:
        yield "hosts", (f"{len(s.control_plane_hosts)} control-plane hosts share one etcd member "
                        f"({s.etcd_hosts[0].name}); losing it stops the cluster: use 3 etcd members")


def warn_even_etcd(s: Settings) -> Iterable[Fault]:
    """Legal, and a necessary step while growing or shrinking etcd one member at a time (docs/upgrade.md),
    but an even count tolerates no more failures than the odd count below it."""
    if len(s.etcd_hosts) % 2 == 0 and s.etcd_hosts:
        yield "hosts", (f"{len(s.etcd_hosts)} etcd members tolerate no more failures than "
                        f"{len(s.etcd_hosts) - 1}; end a growth or shrink at an odd number (1, 3, 5)")


def warn_no_node_networks(s: Settings) -> Iterable[Fault]:
    """Without nodeNetworks every host's firewall lists every node's address: growing the cluster re-loads
    the firewall members on every host (restart-free, but one remote step per host per added node)."""
    if not s.node_networks and s.node_hosts:
        yield "nodeNetworks", (f"not set; every host's firewall lists each of the {len(s.node_hosts)} nodes' "
                               "addresses, so adding or removing a node re-runs the firewall members step on "
                               "every host; set the networks that hold only the nodes")


WARNINGS: tuple[Check, ...] = (
    warn_no_node_networks,
    warn_even_etcd,
    warn_registry_ha_on_one_host,
    warn_rancher_replicas,
    warn_ignored_settings,
    warn_renewal_window,
    warn_single_etcd,
)
