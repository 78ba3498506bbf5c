"""Semantic checks of the settings. Each returns messages `container-cloud:<key>: <what is wrong>`."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable

from components.config import (
    _DNS_LABEL,
    _DNS_NAME,
    _K8S_VERSION,
    _QUANTITY,
    _V_VERSION,
    CORE_ROLES,
    PROJECT,
    ROLES,
    TEAM_ROLES,
    Settings,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _k(key: str) -> str:
    return f"{PROJECT}:{key}"


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


def check_zones(s: Settings) -> Iterable[str]:
    if not s.zones:
        yield f"{_k('zones')}: no zone declared; declare at least inside and dmz"
    for name, cidr in s.zones.items():
        if not _DNS_LABEL.match(name):
            yield f"{_k(f'zones.{name}')}: {name!r} is not a valid zone name (lowercase letters, digits, -)"
        if _network(cidr) is None:
            yield f"{_k(f'zones.{name}')}: {cidr!r} is not a CIDR like 10.0.0.0/24"


def check_networks(s: Settings) -> Iterable[str]:
    named: list[tuple[str, Network]] = []
    for name, cidr in s.zones.items():
        net = _network(cidr)
        if net:
            named.append((f"zones.{name}", net))
    for key, value in (("serviceCidr", s.service_cidr), ("podCidr", s.pod_cidr)):
        net = _network(value)
        if net is None:
            yield f"{_k(key)}: {value!r} is not a CIDR like 10.96.0.0/12"
        else:
            named.append((key, net))
    for i, (key_a, a) in enumerate(named):
        for key_b, b in named[i + 1:]:
            if a.version == b.version and a.overlaps(b):
                yield f"{_k(key_b)}: {b} overlaps {_k(key_a)} ({a})"


def check_host_fields(s: Settings) -> Iterable[str]:
    zone_names = ", ".join(s.zones) or "(none declared)"
    for i, h in enumerate(s.hosts):
        key = f"hosts[{i}]"
        if not _DNS_LABEL.match(h.name):
            yield f"{_k(key + '.name')}: {h.name!r} is not a valid node name (lowercase RFC 1123 label)"
        if not _address(h.address):
            yield f"{_k(key + '.address')}: {h.address!r} is not an IP address"
        if h.zone not in s.zones:
            yield f"{_k(key + '.zone')}: {h.zone!r} is not a zone; zones are {zone_names}"
        elif _address(h.address):
            net = _network(s.zones[h.zone])
            if net and ipaddress.ip_address(h.address) not in net:
                yield f"{_k(key + '.address')}: {h.address} is outside zone {h.zone} ({net})"
        if not h.roles:
            yield f"{_k(key + '.roles')}: no role; roles are {', '.join(ROLES)}"
        for j, role in enumerate(h.roles):
            if role not in ROLES:
                yield f"{_k(f'{key}.roles[{j}]')}: {role!r} is not a role; roles are {', '.join(ROLES)}"
        if len(set(h.roles)) != len(h.roles):
            yield f"{_k(key + '.roles')}: a role is listed twice"
        if h.ssh.port is not None and not _port(h.ssh.port):
            yield f"{_k(key + '.ssh.port')}: {h.ssh.port} is not a port (1-65535)"
        if h.zone == "dmz" and not s.allow_control_plane_in_dmz:
            for role in CORE_ROLES:
                if role in h.roles:
                    yield (
                        f"{_k(key + '.roles')}: {role} on DMZ host {h.name}; the core platform belongs "
                        f"inside (set {_k('allowControlPlaneInDmz')} to override)"
                    )


def _duplicates(values: list[str]) -> set[str]:
    return {v for v, n in Counter(values).items() if n > 1}


def check_host_set(s: Settings) -> Iterable[str]:
    if not s.hosts:
        yield f"{_k('hosts')}: no host declared"
        return
    for kind, values in (("name", [h.name for h in s.hosts]), ("address", [h.address for h in s.hosts])):
        dups = _duplicates(values)
        for i, h in enumerate(s.hosts):
            value = getattr(h, kind)
            if value in dups:
                yield f"{_k(f'hosts[{i}].{kind}')}: {value!r} is used by more than one host"
    etcd = len(s.etcd_hosts)
    if etcd == 0:
        yield f"{_k('hosts')}: no host has the etcd role; etcd needs 1, 3 or 5 members"
    elif etcd % 2 == 0:
        yield f"{_k('hosts')}: {etcd} etcd members; use an odd number (1, 3, 5) so a quorum survives a failure"
    if not s.control_plane_hosts:
        yield f"{_k('hosts')}: no host has the control-plane role"
    if not s.registry_hosts:
        yield f"{_k('hosts')}: no host has the registry role; the cluster pulls every image from Harbor"
    if not s.rancher_hosts:
        yield f"{_k('hosts')}: no host has the rancher role"
    if len(s.control_plane_hosts) > 1 and not (s.api_load_balancer_name or s.api_load_balancer_address):
        yield (
            f"{_k('apiLoadBalancerAddress')}: {len(s.control_plane_hosts)} control-plane hosts need an API "
            "load balancer (apiLoadBalancerName or apiLoadBalancerAddress)"
        )


def check_ssh(s: Settings) -> Iterable[str]:
    for key, value in (("sshPort", s.ssh_port), ("sshBastionPort", s.ssh_bastion_port)):
        if not _port(value):
            yield f"{_k(key)}: {value} is not a port (1-65535)"
    if s.ssh_bastion and not (_address(s.ssh_bastion) or _DNS_NAME.match(s.ssh_bastion)):
        yield f"{_k('sshBastion')}: {s.ssh_bastion!r} is not an address or host name"
    for i, cidr in enumerate(s.ssh_allowed_from):
        if _network(cidr) is None:
            yield f"{_k(f'sshAllowedFrom[{i}]')}: {cidr!r} is not a CIDR"
    if not s.ssh_bastion and not s.ssh_allowed_from:
        yield f"{_k('sshAllowedFrom')}: empty and no sshBastion; the host firewalls would lock the deployer out"


def check_kubernetes(s: Settings) -> Iterable[str]:
    if not _K8S_VERSION.match(s.kubernetes_version):
        yield f"{_k('kubernetesVersion')}: {s.kubernetes_version!r} is not a version like 1.35.4"
    if not _DNS_NAME.match(s.cluster_domain):
        yield f"{_k('clusterDomain')}: {s.cluster_domain!r} is not a DNS domain"
    for key, value in (("flannelVxlanPort", s.flannel_vxlan_port), ("apiServerPort", s.api_server_port)):
        if not _port(value):
            yield f"{_k(key)}: {value} is not a port (1-65535)"
    rng = _port_range(s.node_port_range)
    if rng is None:
        yield f"{_k('nodePortRange')}: {s.node_port_range!r} is not a range like 30000-32767"
    elif rng[0] < 30000 or rng[1] > 32767:
        yield f"{_k('nodePortRange')}: {s.node_port_range} leaves 30000-32767; NodePorts must not shadow host services"
    if s.api_load_balancer_name and not _DNS_NAME.match(s.api_load_balancer_name):
        yield f"{_k('apiLoadBalancerName')}: {s.api_load_balancer_name!r} is not a DNS name"
    if s.api_load_balancer_address and not _address(s.api_load_balancer_address):
        yield f"{_k('apiLoadBalancerAddress')}: {s.api_load_balancer_address!r} is not an IP address"


def check_pki(s: Settings) -> Iterable[str]:
    if s.key_algorithm not in ("RSA", "ECDSA"):
        yield f"{_k('keyAlgorithm')}: {s.key_algorithm!r} is not RSA or ECDSA"
    if s.rsa_bits < 2048:
        yield f"{_k('rsaBits')}: {s.rsa_bits} is too small; use 2048 or more"
    if s.ecdsa_curve not in ("P256", "P384"):
        yield f"{_k('ecdsaCurve')}: {s.ecdsa_curve!r} is not P256 or P384"
    if not 0 < s.ca_validity_hours <= 87600:
        yield f"{_k('caValidityHours')}: {s.ca_validity_hours} is outside 1-87600 (10 years)"
    if not 0 < s.cert_validity_hours <= s.ca_validity_hours:
        yield f"{_k('certValidityHours')}: {s.cert_validity_hours} must be positive and within caValidityHours"
    if not 0 <= s.cert_early_renewal_hours < s.cert_validity_hours:
        yield f"{_k('certEarlyRenewalHours')}: {s.cert_early_renewal_hours} must be below certValidityHours"


def _host_port(value: str) -> bool:
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit() and _port(int(port)) and (_address(host) or bool(_DNS_NAME.match(host)))


def check_registry(s: Settings) -> Iterable[str]:
    if s.registry_mode not in ("single", "ha"):
        yield f"{_k('registryMode')}: {s.registry_mode!r} is not single or ha"
    if not _V_VERSION.match(s.registry_version):
        yield f"{_k('registryVersion')}: {s.registry_version!r} is not a version like v2.13.2"
    if not _DNS_NAME.match(s.registry_hostname_setting) or "." not in s.registry_hostname_setting:
        yield (f"{_k('registryHostname')}: {s.registry_hostname_setting!r} is not a fully qualified DNS name; "
               "image references need a dot in the registry part (harbor-1/system/pause would mean Docker Hub)")
    if not s.registry_data_path.startswith("/"):
        yield f"{_k('registryDataPath')}: {s.registry_data_path!r} is not an absolute path"
    if s.registry_load_balancer_address and not _address(s.registry_load_balancer_address):
        yield f"{_k('registryLoadBalancerAddress')}: {s.registry_load_balancer_address!r} is not an IP address"
    if s.registry_mode == "single" and len(s.registry_hosts) > 1:
        yield f"{_k('registryMode')}: single, but {len(s.registry_hosts)} hosts have the registry role; use ha"
    if s.registry_mode == "ha":
        yield from _check_registry_ha(s)


def _check_registry_ha(s: Settings) -> Iterable[str]:
    if not re.fullmatch(r"(nfs|ceph):\S+:/\S*", s.registry_shared_storage):
        yield (f"{_k('registrySharedStorage')}: {s.registry_shared_storage!r} is not fstype:source "
               "like nfs:10.0.0.5:/export")
    for key, value in (("registryDatabaseAddress", s.registry_database_address),
                       ("registryRedisAddress", s.registry_redis_address)):
        if not _host_port(value):
            yield f"{_k(key)}: {value!r} is not host:port (registryMode ha needs it)"


def check_rancher(s: Settings) -> Iterable[str]:
    if s.rancher_mode not in ("docker", "helm"):
        yield f"{_k('rancherMode')}: {s.rancher_mode!r} is not docker or helm"
    if not _V_VERSION.match(s.rancher_version):
        yield f"{_k('rancherVersion')}: {s.rancher_version!r} is not a version like v2.12.3"
    if s.rancher_hostname_setting and not _DNS_NAME.match(s.rancher_hostname_setting):
        yield f"{_k('rancherHostname')}: {s.rancher_hostname_setting!r} is not a DNS name"
    if s.rancher_replicas < 1:
        yield f"{_k('rancherReplicas')}: {s.rancher_replicas} must be at least 1"
    for i, h in enumerate(s.hosts):
        if h.has("rancher") and h.zone != "inside":
            yield f"{_k(f'hosts[{i}].roles')}: rancher on {h.zone} host {h.name}; Rancher belongs inside"
        if s.rancher_mode == "docker" and h.has("rancher") and h.has("worker"):
            yield f"{_k(f'hosts[{i}].roles')}: rancher in docker mode cannot share host {h.name} with a worker"
        if s.rancher_mode == "helm" and h.has("rancher") and not h.has("worker"):
            yield f"{_k(f'hosts[{i}].roles')}: rancherMode helm runs Rancher on workers; give {h.name} the worker role"


def check_teams(s: Settings) -> Iterable[str]:
    names = _duplicates([t.name for t in s.teams])
    owners: dict[str, str] = {}
    for i, t in enumerate(s.teams):
        key = f"teams[{i}]"
        if not _DNS_LABEL.match(t.name):
            yield f"{_k(key + '.name')}: {t.name!r} is not a valid team name (lowercase RFC 1123 label)"
        if t.name in names:
            yield f"{_k(key + '.name')}: {t.name!r} is declared more than once"
        if t.role not in TEAM_ROLES:
            yield f"{_k(key + '.role')}: {t.role!r} is not a role; roles are {', '.join(TEAM_ROLES)}"
        if not t.namespaces:
            yield f"{_k(key + '.namespaces')}: a team needs at least one namespace"
        for j, ns in enumerate(t.namespaces):
            nkey = f"{key}.namespaces[{j}]"
            if not _DNS_LABEL.match(ns) or ns.startswith("kube-") or ns in ("default", "kube-system"):
                yield f"{_k(nkey)}: {ns!r} is not a namespace a team may own"
            elif ns in owners:
                yield f"{_k(nkey)}: {ns!r} already belongs to team {owners[ns]}"
            else:
                owners[ns] = t.name
        if t.quota:
            for field in ("cpu", "memory"):
                value = getattr(t.quota, field)
                if value is not None and not _QUANTITY.match(value):
                    yield f"{_k(f'{key}.quota.{field}')}: {value!r} is not a Kubernetes quantity"
        if t.cert_validity_hours is not None and not 0 < t.cert_validity_hours <= s.ca_validity_hours:
            yield f"{_k(key + '.certValidityHours')}: {t.cert_validity_hours} is outside 1-{s.ca_validity_hours}"


def check_firewall(s: Settings) -> Iterable[str]:
    targets = {h.name for h in s.hosts} | set(ROLES)
    for i, rule in enumerate(s.firewall_extra_rules):
        key = f"firewallExtraRules[{i}]"
        for j, target in enumerate(rule.hosts):
            if target not in targets:
                yield f"{_k(f'{key}.hosts[{j}]')}: {target!r} is neither a host nor a role"
        port_ok = _port(rule.port) if isinstance(rule.port, int) else _port_range(rule.port) is not None
        if not port_ok:
            yield f"{_k(key + '.port')}: {rule.port!r} is not a port or range like 8080-8090"
        for j, cidr in enumerate(rule.sources):
            if _network(cidr) is None:
                yield f"{_k(f'{key}.sources[{j}]')}: {cidr!r} is not a CIDR"
        if not rule.purpose.strip():
            yield f"{_k(key + '.purpose')}: say why the port is open"
    for i, port in enumerate(s.public_ports):
        if not _port(port):
            yield f"{_k(f'publicPorts[{i}]')}: {port} is not a port (1-65535)"


def check_artifacts(s: Settings) -> Iterable[str]:
    url = s.artifacts_mirror_url
    if url and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        yield f"{_k('artifactsMirrorUrl')}: {url!r} is not an http(s) URL"
    if not url and not s.artifacts_directory:
        yield f"{_k('artifactsDirectory')}: empty and no artifactsMirrorUrl; binaries and images need a source"


CHECKS: tuple[Callable[[Settings], Iterable[str]], ...] = (
    check_zones,
    check_networks,
    check_host_fields,
    check_host_set,
    check_ssh,
    check_kubernetes,
    check_pki,
    check_registry,
    check_rancher,
    check_teams,
    check_firewall,
    check_artifacts,
)


def check_settings(s: Settings) -> list[str]:
    return [problem for check in CHECKS for problem in check(s)]
