"""The port catalogue: every network flow the platform needs, with the document it comes from.

One list of `Flow`s is the single source of truth for three consumers:
  * `components/firewall.py` turns the flows that end on a host into that host's nftables rules;
  * the policy pack (`rules/network.py`) takes from it the only flows allowed from DMZ to INSIDE;
  * the README's port table is generated from it (`python -m policy.rules.ports --markdown`).

Sources and destinations are symbolic and resolved per stack by the firewall component: role names
  (etcd, control-plane, worker, registry, rancher) - the hosts with that role; `hosts` - every
  inventory host; `nodes` - the Kubernetes nodes (hosts with the worker or the control-plane role, or the
  stack's nodeNetworks when set:
  they run kubelet, kube-proxy and flannel; as a destination, those hosts); `zone` - the destination
  host's own zone CIDR; `deployer` - sshAllowedFrom and the bastion; `operators` - the deployer plus
  the INSIDE zone (users, admins, kubectl); `pods` - podCidr; `api-lb` / `registry-lb` - the load
  balancer addresses; `self` - the host itself (loopback: no rule needed, listed for completeness);
  `external:<setting>` - a service outside the inventory (outbound from our hosts; our input-only
  firewall renders nothing for it).

Ports are numbers, ranges "a-b", or the name of the setting that holds them (`PORT_SETTINGS`).

Reconciled conflicts (the upstream tables disagree):
  * kube-controller-manager is 10257 and kube-scheduler 10259 (kubernetes.io; kubespray's port doc
    swaps them). Both are bound for the host itself only: no inbound rule.
  * Flannel VXLAN is the setting flannelVxlanPort: 8472/udp is the Linux kernel and flannel
    default, RKE2's table says 4789/udp for its own flannel (the IANA VXLAN port).
  * RKE2's 9345 (supervisor) and 2381 (etcd metrics) do not exist in this binary install.
  * Harbor's :5000 (registry) is internal to its compose network; clients use Harbor's https 443.
    Port 80 (http redirect) and 4443 (old notary) are not opened: the registry is https only.
  * Rancher's 80/tcp is only for a TLS-terminating load balancer, 22/2376 only for node drivers
    (we import existing hosts): neither is opened.
  * Rancher in helm mode is served by ingress-nginx on the Rancher nodes' host network: 443 as above;
    its 80 (https redirect) is not opened. A pod on a Rancher node reaching that node's own address
    arrives with its pod address (flannel masquerades only traffic leaving the node): `pods` → 443.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Union

Port = Union[int, str]

DOCS = {
    "k8s": "Kubernetes: Ports and Protocols",
    "flannel": "flannel: Backends (VXLAN)",
    "rancher": "Rancher: Port Requirements",
    "harbor": "Harbor: Installation Prerequisites (network ports)",
    "harbor-ha": "Harbor: High Availability (external PostgreSQL, Redis, shared storage)",
    "design": "container-cloud: zones and deployer access",
}

DOC_URLS = {
    "k8s": "https://kubernetes.io/docs/reference/networking/ports-and-protocols/",
    "flannel": "https://github.com/flannel-io/flannel/blob/master/Documentation/backends.md",
    "rancher": "https://ranchermanager.docs.rancher.com/getting-started/installation-and-upgrade/installation-requirements/port-requirements",
    "harbor": "https://goharbor.io/docs/main/install-config/installation-prereqs/",
    "harbor-ha": "https://goharbor.io/docs/main/install-config/harbor-ha-helm/",
    "design": "#ports",
}

# Settings that hold a port, with their Pulumi.yaml defaults (the README shows both).
PORT_SETTINGS: dict[str, Port] = {
    "sshPort": 22,
    "apiServerPort": 6443,
    "flannelVxlanPort": 8472,
    "nodePortRange": "30000-32767",
}

ROLES = ("etcd", "control-plane", "worker", "registry", "rancher")
NODE_ROLES = ("worker", "control-plane")  # `nodes`: the hosts that run kubelet, kube-proxy and flannel


def destination_applies(destination: str, roles: list[str] | tuple[str, ...]) -> bool:
    """Whether a flow's destination (a role, `nodes` or `all`) covers a host with `roles`."""
    if destination == "all":
        return True
    if destination == "nodes":
        return any(r in roles for r in NODE_ROLES)
    return destination in roles
SOURCE_KINDS = ROLES + ("hosts", "nodes", "zone", "deployer", "operators", "pods", "api-lb", "registry-lb", "self")


@dataclass(frozen=True)
class Flow:
    """Traffic from `sources` to `destination` on `port`/`protocol`.

    `dmz_to_inside` says whether the flow may cross from the DMZ into the INSIDE zone:
    "" never, "any" from any DMZ source, "nodes" only between cluster nodes."""

    sources: tuple[str, ...]
    destination: str
    port: Port
    protocol: str
    purpose: str
    doc: str
    dmz_to_inside: str = ""

    @property
    def rendered(self) -> bool:
        """Whether the flow becomes an input rule on one of our hosts."""
        return not self.destination.startswith("external:") and self.sources != ("self",)


FLOWS: tuple[Flow, ...] = (
    # --- access for the deployer ------------------------------------------------------------
    Flow(("deployer",), "all", "sshPort", "tcp", "SSH from the deployer or the bastion (host configuration)", "design"),
    # --- Kubernetes control plane -------------------------------------------------------------
    Flow(("hosts",), "control-plane", "apiServerPort", "tcp",
         "kube-apiserver: kubelet, kube-proxy, flannel, Rancher and its cluster agents", "k8s", "any"),
    Flow(("operators", "api-lb"), "control-plane", "apiServerPort", "tcp",
         "kube-apiserver: kubectl users and the API load balancer", "k8s", "any"),
    Flow(("pods",), "control-plane", "apiServerPort", "tcp",
         "kube-apiserver through the kubernetes Service from pods on a control-plane node: kube-proxy DNATs to "
         "the node's own address, so the packet is local and never masqueraded", "k8s"),
    Flow(("etcd", "control-plane"), "etcd", 2379, "tcp", "etcd client API: kube-apiserver and etcd members", "k8s"),
    Flow(("etcd", "control-plane"), "etcd", 2380, "tcp", "etcd peer traffic between members", "k8s"),
    Flow(("self",), "control-plane", 10257, "tcp", "kube-controller-manager (kubespray's doc swaps 10257/10259)",
         "k8s"),
    Flow(("self",), "control-plane", 10259, "tcp", "kube-scheduler (kubespray's doc swaps 10257/10259)", "k8s"),
    # --- Kubernetes nodes ---------------------------------------------------------------------
    Flow(("control-plane",), "nodes", 10250, "tcp", "kubelet API: kube-apiserver (logs, exec, metrics)", "k8s"),
    Flow(("pods",), "nodes", 10250, "tcp", "kubelet API: metrics-server and pods on the node's own bridge", "k8s"),
    Flow(("nodes",), "nodes", "flannelVxlanPort", "udp",
         "flannel VXLAN overlay between nodes (8472 Linux default, 4789 in RKE2's table)", "flannel", "nodes"),
    Flow(("zone", "operators"), "worker", "nodePortRange", "tcp", "NodePort Services", "k8s"),
    Flow(("zone", "operators"), "worker", "nodePortRange", "udp", "NodePort Services", "k8s"),
    # --- Rancher --------------------------------------------------------------------------------
    Flow(("hosts", "operators"), "rancher", 443, "tcp", "Rancher UI and API: users, cluster agents and nodes",
         "rancher", "any"),
    Flow(("pods",), "rancher", 443, "tcp",
         "Rancher (helm mode, ingress-nginx on the host network): agents in pods on a Rancher node's own bridge, "
         "not masqueraded", "rancher"),
    # --- Harbor ---------------------------------------------------------------------------------
    Flow(("hosts", "operators", "registry-lb"), "registry", 443, "tcp",
         "Harbor over https: image pulls by nodes, pushes by the deployer, the registry load balancer", "harbor"),
    Flow(("self",), "registry", 1514, "tcp", "Harbor log collector (127.0.0.1 only)", "harbor"),
    Flow(("registry",), "external:registryDatabaseAddress", 5432, "tcp",
         "Harbor HA: external PostgreSQL (port from registryDatabaseAddress)", "harbor-ha"),
    Flow(("registry",), "external:registryRedisAddress", 6379, "tcp",
         "Harbor HA: external Redis (port from registryRedisAddress)", "harbor-ha"),
    Flow(("registry",), "external:registrySharedStorage", 2049, "tcp",
         "Harbor HA: NFS shared storage (registrySharedStorage nfs:...)", "harbor-ha"),
)


def port_text(port: Port) -> str:
    if isinstance(port, str) and port in PORT_SETTINGS:
        return f"{PORT_SETTINGS[port]} (`{port}`)"
    return str(port)


def resolve_port(port: Port, ports: dict[str, Port]) -> Port:
    """A flow's port with the stack's settings applied (`ports`: setting name -> value)."""
    if isinstance(port, str) and port in PORT_SETTINGS:
        value = ports.get(port, PORT_SETTINGS[port])
        if isinstance(value, float):
            return int(value)
        return value
    return port


def dmz_to_inside_flows() -> list[Flow]:
    return [f for f in FLOWS if f.dmz_to_inside]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    """The README's port table (between `<!-- ports:begin -->` and `<!-- ports:end -->`)."""
    lines = [
        "| Source | Destination | Port | Protocol | Purpose | Document |",
        "|---|---|---|---|---|---|",
    ]
    for f in FLOWS:
        dest = f.destination.replace("external:", "external ")
        crossing = {"any": " (DMZ→INSIDE allowed)", "nodes": " (DMZ↔INSIDE between nodes)"}.get(f.dmz_to_inside, "")
        lines.append(
            f"| {_cell(', '.join(f.sources))} | {_cell(dest)}{crossing} | {port_text(f.port)} | {f.protocol} "
            f"| {_cell(f.purpose)} | [{DOCS[f.doc]}]({DOC_URLS[f.doc]}) |"
        )
    lines += [
        "",
        "Sources: a role means the hosts with that role; `hosts` every inventory host; `nodes` the Kubernetes "
        "nodes (worker and control-plane hosts; with `nodeNetworks` set, those networks, and `hosts` is then "
        "the node networks plus the hosts that are not nodes); `zone` the destination's own zone; "
        "`deployer` sshAllowedFrom and the bastion; "
        "`operators` the deployer plus the INSIDE zone; `pods` podCidr; `self` the host itself (loopback, "
        "no rule). Every host drops all other input (table `inet containercloud`); extra rules come from "
        "`firewallExtraRules` and pass the same policies.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if "--markdown" in sys.argv[1:]:
        sys.stdout.write(markdown_table())
    else:
        for flow in FLOWS:
            route = f"{','.join(flow.sources)} -> {flow.destination}"
            print(f"{route} {port_text(flow.port)}/{flow.protocol}: {flow.purpose}")
