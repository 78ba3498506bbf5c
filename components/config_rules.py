"""Checks of one setting (or one entry) at a time: formats, ranges, the roles a stack needs. Each check yields
faults `(key, message)`; components/config_cross.py holds the rules between settings, and
components/config_pass.py runs them all in one pass."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from components.config import (
    _DNS_LABEL,
    _DNS_NAME,
    _K8S_VERSION,
    _QUANTITY,
    _V_VERSION,
    CORE_ROLES,
    DIRECTORY_TYPES,
    ROLES,
    TEAM_ROLES,
    Fault,
    Settings,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


Check = Callable[[Settings], Iterable[Fault]]
PROJECT_FILE = Path(__file__).resolve().parents[1] / "Pulumi.yaml"


@functools.lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    declared = (yaml.safe_load(PROJECT_FILE.read_text()) or {}).get("config") or {}
    return {k: d.get("value", d.get("default")) for k, d in declared.items() if isinstance(d, dict)}


_FIELD = {f.alias or n: n for n, f in Settings.model_fields.items()}


def changed(s: Settings, key: str) -> bool:
    """Whether the stack sets `key` to something else than Pulumi.yaml's default: of two settings that
    conflict, a message names the one the user changed."""
    default = _defaults().get(key)
    return default is None or getattr(s, _FIELD[key]) != type(getattr(s, _FIELD[key]))(default)


def blame(s: Settings, first: str, second: str) -> tuple[str, str]:
    """(the key to name, the other): `second` unless only `first` differs from its default."""
    return (first, second) if changed(s, first) and not changed(s, second) else (second, first)


def _network(value: str) -> Network | None:
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        return None


def _address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def _port(value: int) -> bool:
    return 1 <= value <= 65535


def _port_range(value: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"(\d+)-(\d+)", value)
    if not m:
        return None
    low, high = int(m[1]), int(m[2])
    return (low, high) if _port(low) and _port(high) and low <= high else None


def check_zones(s: Settings) -> Iterable[Fault]:
    if not s.zones:
        yield 'zones', "no zone declared; declare at least inside and dmz"
    for name, cidr in s.zones.items():
        if not _DNS_LABEL.match(name):
            yield f'zones.{name}', f"'{name}' is not a valid zone name (lowercase letters, digits, -)"
        if _network(cidr) is None:
            yield f'zones.{name}', f"'{cidr}' is not a CIDR like 10.0.0.0/24"


def check_networks(s: Settings) -> Iterable[Fault]:
    named: list[tuple[str, Network]] = []
    for name, cidr in s.zones.items():
        net = _network(cidr)
        if net:
            named.append((f"zones.{name}", net))
    for key, value in (("serviceCidr", s.service_cidr), ("podCidr", s.pod_cidr)):
        net = _network(value)
        if net is None:
            yield key, f"'{value}' is not a CIDR like 10.96.0.0/12"
        else:
            named.append((key, net))
    for i, (key_a, a) in enumerate(named):
        for key_b, b in named[i + 1:]:
            if a.version == b.version and a.overlaps(b):
                key, other = blame(s, key_a, key_b)
                mine, theirs = (a, b) if key == key_a else (b, a)
                yield key, f"{mine} overlaps {other} ({theirs}); pods, Services and zones need separate ranges"


def check_host_fields(s: Settings) -> Iterable[Fault]:
    zone_names = ", ".join(s.zones) or "(none declared)"
    for i, h in enumerate(s.hosts):
        key = f"hosts[{i}]"
        if not _DNS_LABEL.match(h.name):
            yield key + '.name', f"'{h.name}' is not a valid node name (lowercase RFC 1123 label)"
        if not _address(h.address):
            yield key + '.address', f"'{h.address}' is not an IP address"
        if h.zone not in s.zones:
            yield key + '.zone', f"'{h.zone}' is not a zone; zones are {zone_names}"
        elif _address(h.address):
            net = _network(s.zones[h.zone])
            if net and ipaddress.ip_address(h.address) not in net:
                yield key + '.address', f"{h.address} is outside zone {h.zone} ({net})"
        if not h.roles:
            yield key + '.roles', f"no role; roles are {', '.join(ROLES)}"
        for j, role in enumerate(h.roles):
            if role not in ROLES:
                yield f'{key}.roles[{j}]', f"'{role}' is not a role; roles are {', '.join(ROLES)}"
        for role in sorted(_duplicates(h.roles)):
            yield key + '.roles', f"{role} is listed twice"
        if h.ssh.port is not None and not _port(h.ssh.port):
            yield key + '.ssh.port', f"{h.ssh.port} is not a port (1-65535)"
        if h.zone == "dmz" and not s.allow_control_plane_in_dmz:
            for role in CORE_ROLES:
                if role in h.roles:
                    yield (
                        key + '.roles', f"{role} on DMZ host {h.name}; the core platform belongs "
                        "inside (set allowControlPlaneInDmz: true to override)"
                    )


def _duplicates(values: list[str]) -> set[str]:
    return {v for v, n in Counter(values).items() if n > 1}


def check_host_set(s: Settings) -> Iterable[Fault]:
    if not s.hosts:
        yield 'hosts', "no host declared"
        return
    for kind, values in (("name", [h.name for h in s.hosts]), ("address", [h.address for h in s.hosts])):
        dups = _duplicates(values)
        for i, h in enumerate(s.hosts):
            value = getattr(h, kind)
            if value in dups:
                yield f'hosts[{i}].{kind}', f"'{value}' is used by more than one host"
    etcd = len(s.etcd_hosts)
    if etcd == 0:
        yield 'hosts', "no host has the etcd role; etcd needs 1, 3 or 5 members"
    if not s.control_plane_hosts:
        yield 'hosts', "no host has the control-plane role"
    if not s.registry_hosts:
        yield 'hosts', "no host has the registry role; the cluster pulls every image from Harbor"
    if not s.rancher_hosts:
        yield 'hosts', "no host has the rancher role"
    if len(s.control_plane_hosts) > 1 and not (s.api_load_balancer_name or s.api_load_balancer_address):
        yield ('hosts', f"{len(s.control_plane_hosts)} control-plane hosts need an API load balancer in front "
               "of them; set apiLoadBalancerAddress (and apiLoadBalancerName if clients use a name)")


def check_ssh(s: Settings) -> Iterable[Fault]:
    for key, value in (("sshPort", s.ssh_port), ("sshBastionPort", s.ssh_bastion_port)):
        if not _port(value):
            yield key, f"{value} is not a port (1-65535)"
    if s.ssh_bastion and not (_address(s.ssh_bastion) or _DNS_NAME.match(s.ssh_bastion)):
        yield 'sshBastion', f"'{s.ssh_bastion}' is not an address or host name"
    for i, cidr in enumerate(s.ssh_allowed_from):
        if _network(cidr) is None:
            yield f'sshAllowedFrom[{i}]', f"'{cidr}' is not a CIDR"
    if not s.ssh_bastion and not s.ssh_allowed_from:
        yield 'sshAllowedFrom', "empty and no sshBastion; the host firewalls would lock the deployer out"


def check_kubernetes(s: Settings) -> Iterable[Fault]:
    if not _K8S_VERSION.match(s.kubernetes_version):
        yield 'kubernetesVersion', f"'{s.kubernetes_version}' is not a version like 1.35.4"
    if not _DNS_NAME.match(s.cluster_domain):
        yield 'clusterDomain', f"'{s.cluster_domain}' is not a DNS domain"
    for key, value in (("flannelVxlanPort", s.flannel_vxlan_port), ("apiServerPort", s.api_server_port)):
        if not _port(value):
            yield key, f"{value} is not a port (1-65535)"
    rng = _port_range(s.node_port_range)
    if rng is None:
        yield 'nodePortRange', f"'{s.node_port_range}' is not a range like 30000-32767"
    elif rng[0] < 30000 or rng[1] > 32767:
        yield 'nodePortRange', f"{s.node_port_range} leaves 30000-32767; NodePorts must not shadow host services"
    if s.api_load_balancer_name and not _DNS_NAME.match(s.api_load_balancer_name):
        yield 'apiLoadBalancerName', f"'{s.api_load_balancer_name}' is not a DNS name"
    if s.api_load_balancer_address and not _address(s.api_load_balancer_address):
        yield 'apiLoadBalancerAddress', f"'{s.api_load_balancer_address}' is not an IP address"


def check_pki(s: Settings) -> Iterable[Fault]:
    if s.key_algorithm not in ("RSA", "ECDSA"):
        yield 'keyAlgorithm', f"'{s.key_algorithm}' is not RSA or ECDSA"
    if s.rsa_bits < 2048:
        yield 'rsaBits', f"{s.rsa_bits} is too small; use 2048 or more"
    if s.ecdsa_curve not in ("P256", "P384"):
        yield 'ecdsaCurve', f"'{s.ecdsa_curve}' is not P256 or P384"
    if not 0 < s.ca_validity_hours <= 87600:
        yield 'caValidityHours', f"{s.ca_validity_hours} is outside 1-87600 (10 years)"
    if s.cert_validity_hours < 1:
        yield 'certValidityHours', f"{s.cert_validity_hours} is not a number of hours (1 or more)"
    elif s.cert_validity_hours > s.ca_validity_hours:
        key, other = blame(s, "caValidityHours", "certValidityHours")
        yield key, (f"certificates ({s.cert_validity_hours} h) would outlive their CA ({s.ca_validity_hours} h); "
                    f"certValidityHours must not exceed caValidityHours")
    if s.cert_early_renewal_hours < 0:
        yield 'certEarlyRenewalHours', f"{s.cert_early_renewal_hours} is negative; use 0 (no early renewal) or more"
    elif s.cert_validity_hours >= 1 and s.cert_early_renewal_hours >= s.cert_validity_hours:
        key, other = blame(s, "certValidityHours", "certEarlyRenewalHours")
        yield key, (f"certificates valid {s.cert_validity_hours} h with an early-renewal window of "
                    f"{s.cert_early_renewal_hours} h would be replaced on every run; certEarlyRenewalHours must "
                    "be below certValidityHours")


def _host_port(value: str) -> bool:
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit() and _port(int(port)) and (_address(host) or bool(_DNS_NAME.match(host)))


def check_registry(s: Settings) -> Iterable[Fault]:
    if s.registry_mode not in ("single", "ha"):
        yield 'registryMode', f"'{s.registry_mode}' is not single or ha"
    if not _V_VERSION.match(s.registry_version):
        yield 'registryVersion', f"'{s.registry_version}' is not a version like v2.13.2"
    if not _DNS_NAME.match(s.registry_hostname_setting) or "." not in s.registry_hostname_setting:
        yield ('registryHostname', f"'{s.registry_hostname_setting}' is not a fully qualified DNS name; "
               "image references need a dot in the registry part (harbor-1/system/pause would mean Docker Hub)")
    if not s.registry_data_path.startswith("/"):
        yield 'registryDataPath', f"'{s.registry_data_path}' is not an absolute path"
    if s.registry_load_balancer_address and not _address(s.registry_load_balancer_address):
        yield 'registryLoadBalancerAddress', f"'{s.registry_load_balancer_address}' is not an IP address"
    if s.registry_mode == "ha":
        yield from _check_registry_ha(s)


def check_registry_hosts(s: Settings) -> Iterable[Fault]:
    if s.registry_mode == "single" and len(s.registry_hosts) > 1:
        names = ", ".join(h.name for h in s.registry_hosts)
        yield 'registryMode', f"single, but {len(s.registry_hosts)} hosts have the registry role ({names}); use ha"


def _check_registry_ha(s: Settings) -> Iterable[Fault]:
    if not re.fullmatch(r"(nfs|ceph):\S+:/\S*", s.registry_shared_storage):
        yield ('registrySharedStorage', f"'{s.registry_shared_storage}' is not fstype:source "
               "like nfs:10.0.0.5:/export")
    for key, value in (("registryDatabaseAddress", s.registry_database_address),
                       ("registryRedisAddress", s.registry_redis_address)):
        if not _host_port(value):
            yield key, f"'{value}' is not host:port (registryMode ha needs it)"


def check_rancher(s: Settings) -> Iterable[Fault]:
    if s.rancher_mode not in ("docker", "helm"):
        yield 'rancherMode', f"'{s.rancher_mode}' is not docker or helm"
    if not _V_VERSION.match(s.rancher_version):
        yield 'rancherVersion', f"'{s.rancher_version}' is not a version like v2.12.3"
    if s.rancher_hostname_setting and not _DNS_NAME.match(s.rancher_hostname_setting):
        yield 'rancherHostname', f"'{s.rancher_hostname_setting}' is not a DNS name"
    if s.rancher_replicas < 1:
        yield 'rancherReplicas', f"{s.rancher_replicas} must be at least 1"


def check_rancher_hosts(s: Settings) -> Iterable[Fault]:
    for i, h in enumerate(s.hosts):
        if h.has("rancher") and h.zone != "inside":
            yield f'hosts[{i}].roles', f"rancher on {h.zone} host {h.name}; Rancher belongs inside"
        if s.rancher_mode == "docker" and h.has("rancher") and h.has("worker"):
            yield f'hosts[{i}].roles', f"rancher in docker mode cannot share host {h.name} with a worker"
        if s.rancher_mode == "helm" and h.has("rancher") and not h.has("worker"):
            yield f'hosts[{i}].roles', f"rancherMode helm runs Rancher on workers; give {h.name} the worker role"


def check_teams(s: Settings) -> Iterable[Fault]:
    names = _duplicates([t.name for t in s.teams])
    owners: dict[str, str] = {}
    for i, t in enumerate(s.teams):
        key = f"teams[{i}]"
        if not _DNS_LABEL.match(t.name):
            yield key + '.name', f"'{t.name}' is not a valid team name (lowercase RFC 1123 label)"
        if t.name in names:
            yield key + '.name', f"'{t.name}' is declared more than once"
        if t.role not in TEAM_ROLES:
            yield key + '.role', f"'{t.role}' is not a role; roles are {', '.join(TEAM_ROLES)}"
        if not t.namespaces:
            yield key + '.namespaces', "a team needs at least one namespace"
        for j, ns in enumerate(t.namespaces):
            nkey = f"{key}.namespaces[{j}]"
            if not _DNS_LABEL.match(ns):
                yield nkey, f"'{ns}' is not a namespace name (lowercase letters, digits and -, at most 63)"
            elif ns.startswith("kube-") or ns == "default":
                yield nkey, f"'{ns}' is a system namespace (default, kube-*); a team may not own it"
            elif ns in owners:
                yield nkey, f"'{ns}' already belongs to team {owners[ns]}"
            else:
                owners[ns] = t.name
        if t.quota:
            for field in ("cpu", "memory"):
                value = getattr(t.quota, field)
                if value is not None and not _QUANTITY.match(value):
                    yield f'{key}.quota.{field}', f"'{value}' is not a Kubernetes quantity"
            if t.quota.pods is not None and t.quota.pods < 1:
                yield f'{key}.quota.pods', f"{t.quota.pods} pods would let the team run nothing; use 1 or more"
        if t.cert_validity_hours is not None and not 0 < t.cert_validity_hours <= s.ca_validity_hours:
            yield key + '.certValidityHours', f"{t.cert_validity_hours} is outside 1-{s.ca_validity_hours}"


_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----")


def check_directory(s: Settings) -> Iterable[Fault]:
    d = s.directory
    if not d.enabled:
        return
    if d.type not in DIRECTORY_TYPES:
        yield 'directory.type', f"'{d.type}' is not a directory type; types are {', '.join(DIRECTORY_TYPES)}"
    if not re.fullmatch(r"ldaps://[A-Za-z0-9.-]+(:\d{1,5})?/?", d.url):
        yield 'directory.url', f"'{d.url}' is not ldaps://host[:port] (LDAP without TLS is refused)"
    elif not _port(d.port):
        yield 'directory.url', f"{d.port} is not a port (1-65535)"
    if not _PEM_CERT.search(d.ca_certificate):
        yield 'directory.caCertificate', "a PEM certificate (the CA that signed the directory server's certificate)"
    for key in ("bind_dn", "user_search_base", "group_search_base"):
        alias = type(d).model_fields[key].alias
        if "=" not in getattr(d, key):
            yield f'directory.{alias}', f"'{getattr(d, key)}' is not a distinguished name (like cn=x,dc=example,dc=org)"
    if not d.admin_user.strip():
        yield 'directory.adminUser', "the directory login Rancher tests the settings with (it becomes Rancher's admin)"


def check_team_groups(s: Settings) -> Iterable[Fault]:
    for i, t in enumerate(s.teams):
        if t.directory_group is None:
            continue
        key = f"teams[{i}].directoryGroup"
        if not s.directory.enabled:
            yield key, "set, but no directory is configured (directory.url is empty)"
        elif "=" not in t.directory_group or '"' in t.directory_group:
            yield key, f"'{t.directory_group}' is not a group's distinguished name (cn=team,ou=groups,dc=example)"


def check_firewall(s: Settings) -> Iterable[Fault]:
    targets = {h.name for h in s.hosts} | set(ROLES)
    for i, rule in enumerate(s.firewall_extra_rules):
        key = f"firewallExtraRules[{i}]"
        for j, target in enumerate(rule.hosts):
            if target not in targets:
                yield f'{key}.hosts[{j}]', f"'{target}' is neither a host nor a role"
        port_ok = _port(rule.port) if isinstance(rule.port, int) else _port_range(rule.port) is not None
        if not port_ok:
            yield key + '.port', f"{rule.port} is not a port or range like 8080-8090"
        for j, cidr in enumerate(rule.sources):
            if _network(cidr) is None:
                yield f'{key}.sources[{j}]', f"'{cidr}' is not a CIDR"
        if not rule.purpose.strip():
            yield key + '.purpose', "say why the port is open"


def check_node_networks(s: Settings) -> Iterable[Fault]:
    """Each node network is a CIDR inside one declared zone (the firewall admits it as a zone's nodes)."""
    zones = [(name, net) for name, cidr in s.zones.items() if (net := _network(cidr)) is not None]
    for i, cidr in enumerate(s.node_networks):
        key = f"nodeNetworks[{i}]"
        net = _network(cidr)
        if net is None:
            yield key, f"'{cidr}' is not a CIDR like 10.20.0.0/26"
        elif not any(net.version == z.version and net.subnet_of(z) for _, z in zones):  # type: ignore[arg-type]
            declared = ", ".join(f"{name} {z}" for name, z in zones)
            yield key, f"{net} is not inside one zone ({declared}); a node network lies within one zone"


def check_public_ports(s: Settings) -> Iterable[Fault]:
    for i, port in enumerate(s.public_ports):
        if not _port(port):
            yield f'publicPorts[{i}]', f"{port} is not a port (1-65535)"


def check_artifacts(s: Settings) -> Iterable[Fault]:
    url = s.artifacts_mirror_url
    if url and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        yield 'artifactsMirrorUrl', f"'{url}' is not an http(s) URL"
    if not url and not s.artifacts_directory:
        yield 'artifactsDirectory', "empty and no artifactsMirrorUrl; binaries and images need a source"
    if not url and not s.registry_hosts:
        yield 'artifactsDirectory', ("the binaries are copied to the first registry host, which publishes them to "
                                     "every host: add a host with the registry role, or set artifactsMirrorUrl")


def check_day_two(s: Settings) -> Iterable[Fault]:
    """etcd backups and rolling upgrades (components/etcd_backup.py, components/rolling.py)."""
    if not 1 <= s.etcd_backup_interval_hours <= 168:
        yield "etcdBackupIntervalHours", f"{s.etcd_backup_interval_hours} is not between 1 and 168 hours"
    if not 1 <= s.etcd_backup_retain <= 1000:
        yield "etcdBackupRetain", f"{s.etcd_backup_retain} is not between 1 and 1000 snapshots"
    if not 1 <= s.max_unavailable_workers <= 100:
        yield "maxUnavailableWorkers", f"{s.max_unavailable_workers} is not a percentage between 1 and 100"
    name = s.etcd_backup_host
    if not name:
        return
    host = next((h for h in s.hosts if h.name == name), None)
    if host is None:
        yield "etcdBackupHost", (f"'{name}' is not an inventory host; hosts are "
                                 + ", ".join(h.name for h in s.hosts))
    elif host.zone != "inside":
        yield "etcdBackupHost", (f"'{name}' is in zone {host.zone}; etcd snapshots hold every Secret of the "
                                 "cluster and may only go to an inside host")


CHECKS: tuple[Check, ...] = (
    check_zones,
    check_networks,
    check_host_fields,
    check_host_set,
    check_ssh,
    check_kubernetes,
    check_pki,
    check_registry,
    check_registry_hosts,
    check_rancher,
    check_rancher_hosts,
    check_teams,
    check_directory,
    check_team_groups,
    check_firewall,
    check_public_ports,
    check_node_networks,
    check_artifacts,
    check_day_two,
)
