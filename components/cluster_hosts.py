"""Shared pieces of the Kubernetes host steps: the /etc/hosts block and the step options."""

from __future__ import annotations

from typing import Optional

import pulumi

from components.config import Host, Settings
from components.host_step import HostStep, HostStepArgs, host_connection, needs_sudo
from components.templating import render


def hosts_entries(s: Settings) -> list[tuple[str, str]]:
    """address -> name for every inventory host, the API LB name, the registry hostname and, in docker
    mode, the Rancher hostname. Nodes get them in /etc/hosts, pods through CoreDNS's hosts block, so an
    intranet without these DNS records still resolves them (site DNS answers everything else)."""
    entries = [(h.address, h.name) for h in s.hosts]
    names = {h.name for h in s.hosts}
    if s.api_load_balancer_name and s.api_load_balancer_address:
        entries.append((s.api_load_balancer_address, s.api_load_balancer_name))
    if s.registry_hostname not in names:
        address = s.registry_load_balancer_address or (s.registry_hosts[0].address if s.registry_hosts else "")
        if address:
            entries.append((address, s.registry_hostname))
    if s.rancher_mode == "docker" and s.rancher_hosts and s.rancher_hostname not in names:
        entries.append((s.rancher_hosts[0].address, s.rancher_hostname))
    return entries


def worker_only(host: Host) -> bool:
    """A worker-only node: the kind of host the cluster grows by."""
    return set(host.roles) == {"worker"}


def host_entries(s: Settings, host: Host) -> list[tuple[str, str]]:
    """The /etc/hosts entries `host` needs, none of which grows with the number of workers: its own name,
    the names it resolves (the API endpoint's host, the registry's hostname, the load balancers) and, on a
    platform host (not a worker-only node), the platform hosts and the Rancher hostname. The API server
    reaches kubelets by InternalIP first (control_plane.py: kubelet-preferred-address-types), flannel and
    kube-proxy by address: no host resolves a worker's name but the worker itself. Pods still resolve every
    inventory name through CoreDNS's hosts block (hosts_entries)."""
    wanted = {host.name, s.api_host, s.registry_hostname, s.api_load_balancer_name}
    if not worker_only(host):
        wanted |= {h.name for h in s.hosts if not worker_only(h)} | {s.rancher_hostname}
    return [(address, name) for address, name in hosts_entries(s) if name in wanted]


def etc_hosts_script(s: Settings, host: Host) -> str:
    return render("hosts/etc_hosts.sh.j2", entries=host_entries(s, host))


def etc_hosts_undo() -> str:
    return render("hosts/etc_hosts_undo.sh.j2")


def etc_hosts_step(s: Settings, host: Host, key: pulumi.Input[str], parent: pulumi.Resource) -> HostStep:
    """`<host>-etc-hosts`: a managed block in /etc/hosts (removed again on delete)."""
    return HostStep(
        f"{host.name}-etc-hosts",
        HostStepArgs(host=host.name, connection=host_connection(s, host, key),
                     script=etc_hosts_script(s, host), delete_script=etc_hosts_undo(), use_sudo=needs_sudo(s, host)),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def step_opts(parent: pulumi.Resource, depends_on: Optional[list[pulumi.Resource]] = None) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, depends_on=depends_on or [])
