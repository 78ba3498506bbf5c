"""The stack's settings: one typed model, parsed once, validated before any resource exists.

Defaults live in Pulumi.yaml (the CLI applies them; the test harness does the same), so the model
declares types and rules only. `load_settings()` reads `pulumi.Config`; `parse_settings()` takes a
plain mapping and is what the tests call. Every fault is reported at once, each naming its key.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, Optional

import pulumi
from pydantic import BaseModel, ConfigDict, Field

PROJECT = "container-cloud"
ROLES = ("etcd", "control-plane", "worker", "registry", "rancher")
CORE_ROLES = ("etcd", "control-plane")
TEAM_ROLES = ("view", "edit", "admin")
SECRET_KEYS = ("sshPrivateKey", "registryDatabasePassword", "registryRedisPassword", "directoryBindPassword",
               "directoryAdminPassword")
DIRECTORY_TYPES = ("openldap", "activedirectory")

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_K8S_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_V_VERSION = re.compile(r"^v\d+\.\d+\.\d+$")
_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")


Fault = tuple[str, str]
"""One fault: the stack key it concerns (without the project prefix, `hosts[3].zone`; "" for none) and
what is wrong, in the stack file's terms."""


def fault_line(fault: Fault) -> str:
    key, message = fault
    return f"{PROJECT}:{key}: {message}" if key else message


class ConfigError(pulumi.RunError):
    """Raised with every configuration fault, one per line, before any resource is registered."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        self.faults: list[Fault] = []
        super().__init__("invalid stack configuration:\n  " + "\n  ".join(problems))

    @classmethod
    def of(cls, faults: list[Fault]) -> ConfigError:
        err = cls([fault_line(f) for f in faults])
        err.faults = list(faults)
        return err


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, strict=True)


class HostSsh(_Model):
    user: Optional[str] = None
    port: Optional[int] = None
    host_key: Optional[str] = Field(default=None, alias="hostKey")


class Host(_Model):
    name: str
    address: str
    zone: str
    roles: list[str]
    ssh: HostSsh = HostSsh()

    def has(self, role: str) -> bool:
        return role in self.roles

    @property
    def is_node(self) -> bool:
        """A Kubernetes node: it runs kubelet, kube-proxy and flannel (worker or control-plane role)."""
        return self.has("worker") or self.has("control-plane")


class Quota(_Model):
    cpu: Optional[str] = None
    memory: Optional[str] = None
    pods: Optional[int] = None


class Team(_Model):
    name: str
    namespaces: list[str]
    role: str = "view"
    cluster_read: bool = Field(default=False, alias="clusterRead")
    quota: Optional[Quota] = None
    cert_validity_hours: Optional[int] = Field(default=None, alias="certValidityHours")
    directory_group: Optional[str] = Field(default=None, alias="directoryGroup")  # the group's DN


class Directory(_Model):
    """An LDAP (OpenLDAP) or Active Directory server that Harbor and Rancher authenticate people against;
    unset (`url` empty) by default. The bind password (`directoryBindPassword`) and the password of
    `adminUser` (`directoryAdminPassword`: the directory login Rancher's testAndApply logs in with, which
    becomes Rancher's admin principal) are secrets set with `pulumi config set --secret`."""

    type: str = "openldap"  # openldap | activedirectory
    url: str = ""  # ldaps://host[:port]
    ca_certificate: str = Field(default="", alias="caCertificate")  # PEM of the CA of the server's certificate
    bind_dn: str = Field(default="", alias="bindDn")
    user_search_base: str = Field(default="", alias="userSearchBase")
    user_search_filter: str = Field(default="", alias="userSearchFilter")
    user_login_attribute: str = Field(default="", alias="userLoginAttribute")  # "": uid / sAMAccountName
    group_search_base: str = Field(default="", alias="groupSearchBase")
    group_search_filter: str = Field(default="", alias="groupSearchFilter")
    admin_user: str = Field(default="", alias="adminUser")

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @property
    def login_attribute(self) -> str:
        return self.user_login_attribute or ("sAMAccountName" if self.type == "activedirectory" else "uid")

    def _authority(self) -> tuple[str, str]:
        rest = self.url.removeprefix("ldaps://").split("/", 1)[0]
        host, sep, port = rest.rpartition(":")
        return (host, port) if sep and port.isdigit() else (rest, "636")

    @property
    def host(self) -> str:
        return self._authority()[0]

    @property
    def port(self) -> int:
        return int(self._authority()[1])


class FirewallRule(_Model):
    hosts: list[str]
    port: int | str
    protocol: Literal["tcp", "udp"] = "tcp"
    sources: list[str]
    purpose: str


class Settings(_Model):
    """Every `container-cloud:<key>` of Pulumi.yaml. Field aliases are the config keys."""

    zones: dict[str, str]
    hosts: list[Host]
    allow_control_plane_in_dmz: bool = Field(alias="allowControlPlaneInDmz")
    ssh_user: str = Field(alias="sshUser")
    ssh_port: int = Field(alias="sshPort")
    ssh_bastion: str = Field(alias="sshBastion")
    ssh_bastion_user: str = Field(alias="sshBastionUser")
    ssh_bastion_port: int = Field(alias="sshBastionPort")
    ssh_bastion_host_key: str = Field(alias="sshBastionHostKey")
    ssh_allowed_from: list[str] = Field(alias="sshAllowedFrom")
    kubernetes_version: str = Field(alias="kubernetesVersion")
    service_cidr: str = Field(alias="serviceCidr")
    pod_cidr: str = Field(alias="podCidr")
    cluster_domain: str = Field(alias="clusterDomain")
    flannel_vxlan_port: int = Field(alias="flannelVxlanPort")
    node_port_range: str = Field(alias="nodePortRange")
    api_server_port: int = Field(alias="apiServerPort")
    api_load_balancer_name: str = Field(alias="apiLoadBalancerName")
    api_load_balancer_address: str = Field(alias="apiLoadBalancerAddress")
    key_algorithm: str = Field(alias="keyAlgorithm")
    rsa_bits: int = Field(alias="rsaBits")
    ecdsa_curve: str = Field(alias="ecdsaCurve")
    ca_validity_hours: int = Field(alias="caValidityHours")
    cert_validity_hours: int = Field(alias="certValidityHours")
    cert_early_renewal_hours: int = Field(alias="certEarlyRenewalHours")
    registry_mode: str = Field(alias="registryMode")
    registry_version: str = Field(alias="registryVersion")
    registry_hostname_setting: str = Field(alias="registryHostname")
    registry_load_balancer_address: str = Field(alias="registryLoadBalancerAddress")
    registry_data_path: str = Field(alias="registryDataPath")
    registry_shared_storage: str = Field(alias="registrySharedStorage")
    registry_database_address: str = Field(alias="registryDatabaseAddress")
    registry_redis_address: str = Field(alias="registryRedisAddress")
    rancher_mode: str = Field(alias="rancherMode")
    rancher_version: str = Field(alias="rancherVersion")
    rancher_hostname_setting: str = Field(alias="rancherHostname")
    rancher_replicas: int = Field(alias="rancherReplicas")
    teams: list[Team]
    firewall_extra_rules: list[FirewallRule] = Field(alias="firewallExtraRules")
    public_ports: list[int] = Field(alias="publicPorts")
    node_networks: list[str] = Field(alias="nodeNetworks")
    artifacts_mirror_url: str = Field(alias="artifactsMirrorUrl")
    artifacts_directory: str = Field(alias="artifactsDirectory")
    install_host_packages: bool = Field(alias="installHostPackages")
    etcd_backup_interval_hours: int = Field(alias="etcdBackupIntervalHours")
    etcd_backup_retain: int = Field(alias="etcdBackupRetain")
    etcd_backup_host: str = Field(alias="etcdBackupHost")
    max_unavailable_workers: int = Field(alias="maxUnavailableWorkers")
    directory: Directory = Field(alias="directory")
    registry_keep_team_projects: bool = Field(alias="registryKeepTeamProjects")
    smoke_test: bool = Field(alias="smokeTest")
    headlamp: bool = Field(alias="headlamp")

    # --- derived views --------------------------------------------------------
    @cached_property
    def _by_role(self) -> dict[str, tuple[Host, ...]]:
        """The hosts of each role, in inventory order: built once (a scan of every host per call made
        the program's run quadratic in hosts at 1000 workers)."""
        out: dict[str, list[Host]] = {}
        for h in self.hosts:
            for role in h.roles:
                out.setdefault(role, []).append(h)
        return {role: tuple(hosts) for role, hosts in out.items()}

    @cached_property
    def _by_name(self) -> dict[str, Host]:
        out: dict[str, Host] = {}
        for h in self.hosts:
            out.setdefault(h.name, h)  # the first, as a scan would find it
        return out

    def hosts_with(self, role: str) -> list[Host]:
        return list(self._by_role.get(role, ()))

    def host(self, name: str) -> Host:
        return self._by_name[name]

    @property
    def etcd_hosts(self) -> list[Host]:
        return self.hosts_with("etcd")

    @property
    def control_plane_hosts(self) -> list[Host]:
        return self.hosts_with("control-plane")

    @property
    def worker_hosts(self) -> list[Host]:
        return self.hosts_with("worker")

    @property
    def node_hosts(self) -> list[Host]:
        """Kubernetes nodes: every worker and control-plane host runs containerd, kubelet, kube-proxy and
        flannel (control-plane nodes are tainted NoSchedule), so the API server reaches the pod network
        (admission webhooks, aggregated APIs) as in kubeadm, kubespray and RKE."""
        return [h for h in self.hosts if h.is_node]

    @property
    def other_hosts(self) -> list[Host]:
        """Inventory hosts that are not Kubernetes nodes (Rancher in docker mode, Harbor, etcd-only members)."""
        return [h for h in self.hosts if not h.is_node]

    @property
    def registry_hosts(self) -> list[Host]:
        return self.hosts_with("registry")

    @property
    def rancher_hosts(self) -> list[Host]:
        return self.hosts_with("rancher")

    @property
    def api_host(self) -> str:
        """What clients put in their kubeconfig: the load balancer, else the first control-plane host."""
        if self.api_load_balancer_name:
            return self.api_load_balancer_name
        if self.api_load_balancer_address:
            return self.api_load_balancer_address
        return self.control_plane_hosts[0].address

    @property
    def api_endpoint(self) -> str:
        return f"https://{self.api_host}:{self.api_server_port}"

    @property
    def kubernetes_service_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_cidr)[1])

    @property
    def cluster_dns_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_cidr)[10])

    @property
    def registry_hostname(self) -> str:
        return self.registry_hostname_setting or self.registry_hosts[0].name

    @property
    def rancher_hostname(self) -> str:
        return self.rancher_hostname_setting or self.rancher_hosts[0].name

    def ssh_user_for(self, host: Host) -> str:
        return host.ssh.user or self.ssh_user

    def ssh_port_for(self, host: Host) -> int:
        return host.ssh.port or self.ssh_port


@dataclass(frozen=True)
class StackSecrets:
    """Secret settings, kept as Pulumi secrets from the moment they are read."""

    ssh_private_key: pulumi.Output[str]
    registry_database_password: pulumi.Output[str]
    registry_redis_password: pulumi.Output[str]
    directory_bind_password: pulumi.Output[str]
    directory_admin_password: pulumi.Output[str]


# --- parsing ------------------------------------------------------------------------------------
# The single validation pass lives in components/config_pass.py (types, every rule, the bill of
# materials); these two entry points call it.


def parse_settings(raw: dict[str, Any]) -> Settings:
    """Parse `{key: value}` (keys without the project prefix); raise ConfigError with every fault."""
    from components.config_pass import validate

    result = validate(raw)
    if result.errors or result.settings is None:
        raise ConfigError.of(result.errors)
    return result.settings


def load_settings() -> tuple[Settings, StackSecrets]:
    """Read the stack's configuration through the Pulumi SDK (defaults applied from Pulumi.yaml), run the
    validation pass, print its warnings (`pulumi.log.warn`) and raise one ConfigError with every fault."""
    from components.config_pass import validate

    prefix = f"{PROJECT}:"
    raw = {k[len(prefix):]: v for k, v in pulumi.runtime.config.CONFIG.get().items() if k.startswith(prefix)}
    result = validate(raw)
    for warning in result.warnings:
        pulumi.log.warn(fault_line(warning))
    errors = result.errors + _secret_problems(raw)
    if errors or result.settings is None:
        raise ConfigError.of(errors)
    cfg = pulumi.Config(PROJECT)
    return result.settings, StackSecrets(
        ssh_private_key=cfg.require_secret("sshPrivateKey"),
        registry_database_password=cfg.get_secret("registryDatabasePassword") or pulumi.Output.secret(""),
        registry_redis_password=cfg.get_secret("registryRedisPassword") or pulumi.Output.secret(""),
        directory_bind_password=cfg.get_secret("directoryBindPassword") or pulumi.Output.secret(""),
        directory_admin_password=cfg.get_secret("directoryAdminPassword") or pulumi.Output.secret(""),
    )


def _directory_set(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return False
    return isinstance(value, dict) and bool(value.get("url"))


def _secret_problems(raw: dict[str, Any]) -> list[Fault]:
    def present(key: str) -> bool:
        return bool(pulumi.runtime.config.get_config(f"{PROJECT}:{key}"))

    problems: list[Fault] = []
    if not present("sshPrivateKey"):
        problems.append(("sshPrivateKey", "missing; set it with "
                         f"`pulumi config set --secret {PROJECT}:sshPrivateKey < ~/.ssh/id_ed25519`"))
    if raw.get("registryMode") == "ha":
        for key in ("registryDatabasePassword", "registryRedisPassword"):
            if not present(key):
                problems.append((key, "missing; registryMode ha needs it (set it with --secret)"))
    if _directory_set(raw.get("directory")):
        for key in ("directoryBindPassword", "directoryAdminPassword"):
            if not present(key):
                problems.append((key, "missing; `directory` needs it (set it with --secret)"))
    return problems
