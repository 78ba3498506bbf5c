"""Settings: Pulumi.yaml declares every key, the stacks parse, and bad input fails before any resource."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from components.config import SECRET_KEYS, Settings
from offline.engine import run_program
from offline.engine.runner import ROOT, load_stack_config

DEV_HOSTS: list[dict[str, Any]] = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"][
    "container-cloud:hosts"
]


def hosts_with(index: int, **changes: Any) -> list[dict[str, Any]]:
    hosts = [dict(h) for h in DEV_HOSTS]
    hosts[index].update(changes)
    return hosts


def test_pulumi_yaml_declares_every_setting_with_description() -> None:
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    model_keys = {f.alias or n for n, f in Settings.model_fields.items()}
    assert model_keys | set(SECRET_KEYS) == set(declared)
    for key, decl in declared.items():
        assert decl.get("description"), key
        assert "default" in decl or "value" in decl or decl.get("secret"), f"{key} has no default"


@pytest.mark.parametrize("stack", ["dev", "ha"])
def test_stack_files_parse(stack: str) -> None:
    from components.config import parse_settings

    values = load_stack_config(stack).values
    raw = {k.split(":", 1)[1]: v for k, v in values.items()}
    settings = parse_settings(raw)
    assert settings.etcd_hosts and settings.control_plane_hosts and settings.worker_hosts


def test_dev_topology_matches_the_seeds() -> None:
    from components.config import parse_settings

    raw = {k.split(":", 1)[1]: v for k, v in load_stack_config("dev").values.items()}
    s = parse_settings(raw)
    inside = {h.name for h in s.hosts if h.zone == "inside"}
    dmz = {h.name for h in s.hosts if h.zone == "dmz"}
    assert {h.name for h in s.rancher_hosts} <= inside and {h.name for h in s.etcd_hosts} <= inside
    assert {h.name for h in s.registry_hosts} <= dmz and len(s.worker_hosts) == 3
    assert {h.name for h in s.worker_hosts} <= dmz and len(s.teams) == 2


# (override, expected key, expected words) — each must fail before any resource is registered.
BAD_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown zone", {"hosts": hosts_with(3, zone="dmz2")}, "hosts[3].zone",
     "'dmz2' is not a zone; zones are inside, dmz"),
    ("duplicate name", {"hosts": hosts_with(4, name="worker-1")}, "hosts[3].name", "more than one host"),
    ("duplicate address", {"hosts": hosts_with(4, address="203.0.113.21")}, "hosts[4].address", "more than one"),
    ("address outside zone", {"hosts": hosts_with(3, address="198.51.100.40")}, "hosts[3].address",
     "outside zone dmz"),
    ("malformed address", {"hosts": hosts_with(3, address="203.0.113")}, "hosts[3].address", "not an IP address"),
    ("unknown role", {"hosts": hosts_with(3, roles=["wroker"])}, "hosts[3].roles[0]", "'wroker' is not a role"),
    ("no etcd", {"hosts": hosts_with(1, roles=["control-plane"])}, "hosts", "no host has the etcd role"),
    ("no control plane", {"hosts": hosts_with(1, roles=["etcd"])}, "hosts", "no host has the control-plane role"),
    ("etcd in dmz", {"hosts": hosts_with(3, roles=["etcd", "worker"])}, "hosts[3].roles", "etcd on DMZ host"),
    ("control plane in dmz", {"hosts": hosts_with(3, roles=["control-plane", "worker"])}, "hosts[3].roles",
     "control-plane on DMZ host"),
    ("no registry", {"hosts": hosts_with(2, roles=["worker"])}, "hosts", "no host has the registry role"),
    ("no rancher", {"hosts": hosts_with(0, roles=["worker"], zone="inside")}, "hosts",
     "no host has the rancher role"),
    ("bad service cidr", {"serviceCidr": "10.96.0.0/33"}, "serviceCidr", "not a CIDR"),
    ("overlapping pod cidr", {"podCidr": "10.96.0.0/16"}, "podCidr", "overlaps serviceCidr"),
    ("zone overlaps pods", {"podCidr": "198.51.0.0/16"}, "podCidr", "overlaps zones.inside"),
    ("bad version", {"kubernetesVersion": "v1.35"}, "kubernetesVersion", "not a version"),
    ("bad port", {"flannelVxlanPort": 70000}, "flannelVxlanPort", "not a port"),
    ("seed node port range", {"nodePortRange": "80-65535"}, "nodePortRange", "leaves 30000-32767"),
    ("non-integer port", {"apiServerPort": "https"}, "apiServerPort", "'https' is not a whole number"),
    ("unknown registry mode", {"registryMode": "cluster"}, "registryMode", "not single or ha"),
    ("weak rsa", {"rsaBits": 1024}, "rsaBits", "too small"),
    ("ca too long", {"caValidityHours": 200000}, "caValidityHours", "10 years"),
    ("bad team role", {"teams": [{"name": "payments", "namespaces": ["payments"], "role": "owner"}]},
     "teams[0].role", "'owner' is not a role"),
    ("team owns kube-system", {"teams": [{"name": "ops", "namespaces": ["kube-system"]}]},
     "teams[0].namespaces[0]", "is a system namespace (default, kube-*)"),
    ("extra rule to nowhere", {"firewallExtraRules": [{"hosts": ["nosuch"], "port": 80, "sources": ["10.0.0.0/8"],
                                                        "purpose": "x"}]},
     "firewallExtraRules[0].hosts[0]", "neither a host nor a role"),
    ("bad rancher mode", {"rancherMode": "k3s"}, "rancherMode", "not docker or helm"),
    ("ha without db", {"registryMode": "ha", "registryHostname": "harbor.corp.example"},
     "registryDatabaseAddress", "not host:port"),
    ("unknown field in host", {"hosts": hosts_with(3, zones="dmz")}, "hosts[3].zones",
     "unknown key in a host entry; did you mean `zone`?"),
    ("no ssh source", {"sshAllowedFrom": []}, "sshAllowedFrom", "lock the deployer out"),
    ("registry name without a dot", {"registryHostname": "harbor-1"}, "registryHostname",
     "not a fully qualified DNS name"),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_config_fails_before_any_resource(case: tuple[str, dict[str, Any], str, str]) -> None:
    _, overrides, key, words = case
    run = run_program("dev", overrides=overrides)
    assert run.error is not None, "the program accepted a bad configuration"
    assert run.registrations == [], "resources were registered before the configuration was rejected"
    lines = str(run.error).splitlines()
    assert any(f"container-cloud:{key}:" in line and words in line for line in lines), str(run.error)


def test_several_faults_are_reported_together() -> None:
    overrides = {
        "hosts": hosts_with(3, zone="dmz2", address="x"),
        "kubernetesVersion": "latest",
        "podCidr": "10.96.0.0/16",
        "registryMode": "cluster",
    }
    run = run_program("dev", overrides=overrides)
    message = str(run.error)
    for key in ("hosts[3].zone", "hosts[3].address", "kubernetesVersion", "podCidr", "registryMode"):
        assert f"container-cloud:{key}:" in message, key
    assert run.registrations == []


def test_missing_ssh_key_and_unknown_setting_are_named() -> None:
    run = run_program("dev", overrides={"sshPrivateKey": "", "kubernetesVersio": "1.35.4"})
    message = str(run.error)
    assert "container-cloud:sshPrivateKey: missing" in message
    assert "container-cloud:kubernetesVersio: unknown setting" in message
    assert run.registrations == []


def test_dmz_control_plane_allowed_with_explicit_override() -> None:
    from components.config import parse_settings

    raw: dict[str, Any] = {k.split(":", 1)[1]: v for k, v in load_stack_config("dev").values.items()}
    hosts = [dict(h) for h in DEV_HOSTS]
    hosts[1]["roles"] = ["control-plane"]
    for i in (3, 4, 5):
        hosts[i]["roles"] = ["worker", "etcd"]
    raw["hosts"] = hosts
    raw["allowControlPlaneInDmz"] = "true"
    settings = parse_settings(raw)
    assert len(settings.etcd_hosts) == 3
