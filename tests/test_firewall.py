"""HostFirewall: the catalogue, the per-host rules derived from it, the rendered ruleset and host scripts,
and the README's port table."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.config import parse_settings
from components.firewall import MEMBERS_PATH, as_loaded
from offline.engine import load_stack_config, run_program
from offline.engine.runner import PROJECT, ProgramRun
from policy.rules.artifacts import expand_includes, parse_ruleset
from policy.rules.ports import FLOWS, PORT_SETTINGS, markdown_table
from tests.k8s_support import host_step

ROOT = Path(__file__).resolve().parents[1]
FW = "containercloud:net:HostFirewall"


def firewalls(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {r.plain_inputs["host"]: r.plain_inputs for r in run.of_type(FW)}


def ports_of(props: dict[str, Any], protocol: str = "tcp") -> set[Any]:
    return {r["port"] for r in props["rules"] if r["protocol"] == protocol}


def sources(props: dict[str, Any], port: float, protocol: str = "tcp") -> set[str]:
    return {s for r in props["rules"] if r["port"] == port and r["protocol"] == protocol for s in r["sources"]}


def covered(address: str, nets: set[str]) -> bool:
    return any(ipaddress.ip_address(address) in ipaddress.ip_network(n) for n in nets)


def test_catalogue_reconciles_the_upstream_tables() -> None:
    by_port = {f.port: f for f in FLOWS}
    assert "controller-manager" in by_port[10257].purpose and "scheduler" in by_port[10259].purpose
    assert by_port["flannelVxlanPort"].protocol == "udp" and PORT_SETTINGS["flannelVxlanPort"] == 8472
    assert all(f.doc for f in FLOWS) and all(f.purpose for f in FLOWS)
    external = {f.port for f in FLOWS if f.destination.startswith("external:")}
    assert external == {5432, 6379, 2049}


def test_readme_port_table_is_generated_from_the_catalogue() -> None:
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"<!-- ports:begin -->\n(.*?)<!-- ports:end -->", readme, re.S)
    assert section, "README.md lacks the ports markers"
    assert section.group(1) == markdown_table(), "regenerate: python -m policy.rules.ports --markdown"


def test_every_host_gets_one_firewall_with_the_contract(dev: ProgramRun, ha: ProgramRun) -> None:
    for run, stack in ((dev, "dev"), (ha, "ha")):
        settings = parse_settings({k.split(":", 1)[1]: v for k, v in load_stack_config(stack).values.items()
                                   if k.startswith(f"{PROJECT}:")})
        fws = firewalls(run)
        assert set(fws) == {h.name for h in settings.hosts}
        for h in settings.hosts:
            props = fws[h.name]
            assert {"host", "zone", "address", "roles", "defaultPolicy", "rules", "ruleset"} <= set(props)
            assert (props["zone"], props["address"], props["roles"]) == (h.zone, h.address, h.roles)
            assert props["defaultPolicy"] == "drop"
            for rule in props["rules"]:
                assert set(rule) == {"port", "protocol", "sources", "purpose", "source"}
                assert all(ipaddress.ip_network(s) for s in rule["sources"])


def test_dev_rules_follow_roles(dev: ProgramRun) -> None:
    fws = firewalls(dev)
    master, rancher, harbor, worker = fws["master-1"], fws["rancher-1"], fws["harbor-1"], fws["worker-1"]
    assert ports_of(master) == {22, 6443, 2379, 2380, 10250}  # a (tainted) node too
    assert ports_of(master, "udp") == {8472}
    assert sources(master, 2379) == sources(master, 2380) == {"198.51.100.11/32"}
    assert sources(master, 22) == {"198.51.100.5/32"}
    assert ports_of(rancher) == {22, 443} and ports_of(harbor) == {22, 443}
    assert ports_of(worker) == {22, 10250, "30000-32767"}
    assert ports_of(worker, "udp") == {8472, "30000-32767"}
    # dev sets nodeNetworks: the overlay admits those networks (tests/test_firewall_node_networks.py shows they
    # admit exactly the nodes), and `hosts` is them plus the hosts that are not nodes
    assert sources(worker, 8472, "udp") == {"198.51.100.11/32", "203.0.113.16/28"}
    api_from_hosts = [r["sources"] for r in master["rules"] if r["purpose"].startswith("kube-apiserver: kubelet")]
    assert api_from_hosts == [["198.51.100.10/32", "198.51.100.11/32", "203.0.113.10/32", "203.0.113.16/28"]]
    assert sources(worker, 10250) == {"198.51.100.11/32", "10.244.0.0/16"}


def test_without_node_networks_the_nodes_are_listed_one_by_one() -> None:
    run = run_program("dev", {"nodeNetworks": []})
    assert run.error is None, run.error
    fws = firewalls(run)
    assert sources(fws["worker-1"], 8472, "udp") == {"198.51.100.11/32", "203.0.113.21/32", "203.0.113.22/32",
                                                     "203.0.113.23/32"}
    assert fws["master-1"]["nodeAddresses"] and fws["master-1"]["nodeNetworks"] == []


def test_ha_rules_use_bastion_and_load_balancers(ha: ProgramRun) -> None:
    fws = firewalls(ha)
    assert sources(fws["cp-1"], 22) == {"198.51.100.4/32"}
    assert sources(fws["cp-2"], 2380) == {"198.51.100.11/32", "198.51.100.12/32", "198.51.100.13/32"}
    assert covered("198.51.100.100", sources(fws["cp-1"], 6443))  # the API LB (inside the INSIDE /24 here)
    assert "203.0.113.100/32" in sources(fws["harbor-2"], 443)  # the registry LB
    overlay = sources(fws["rancher-1"], 8472, "udp")  # INSIDE node in the overlay with the DMZ workers
    assert covered("203.0.113.25", overlay) and covered("198.51.100.22", overlay)
    assert not covered("203.0.113.10", overlay) and not covered("198.51.100.4", overlay)


def test_flannel_port_and_extra_rules_are_settings() -> None:
    rule = {"hosts": ["registry", "worker-1"], "port": "9000-9001", "protocol": "tcp",
            "sources": ["198.51.100.0/24"], "purpose": "metrics scrape"}
    run = run_program("dev", {"flannelVxlanPort": 4789, "firewallExtraRules": [rule]})
    assert run.error is None, run.error
    fws = firewalls(run)
    assert ports_of(fws["worker-2"], "udp") == {4789, "30000-32767"}
    assert "udp dport 4789 accept" in fws["worker-2"]["ruleset"] and "dport 8472" not in fws["worker-2"]["ruleset"]
    for host in ("harbor-1", "worker-1"):
        extra = [r for r in fws[host]["rules"] if r["source"] == "firewallExtraRules[0]"]
        assert extra and extra[0]["port"] == "9000-9001"
        assert "tcp dport 9000-9001 accept" in fws[host]["ruleset"]
    assert "9000-9001" not in fws["worker-2"]["ruleset"]


def test_ruleset_renders_every_rule(dev: ProgramRun) -> None:
    """Each planned rule is in the ruleset as loaded, its sets holding exactly its sources; the ruleset file the
    host receives names no address (the members file holds them all)."""
    for host, props in firewalls(dev).items():
        text, file = props["ruleset"], props["rulesetFile"]
        assert file.count("table inet containercloud") == 3  # create, delete, define: one atomic replace
        assert f'include "{MEMBERS_PATH}"' in file and as_loaded(file, props["members"]) == text
        assert "policy drop;" in text and 'iifname "lo" accept' in text and "ct state established,related" in text
        assert ("hook forward" in text) == props["forwardFiltered"]  # Docker hosts only (issue 12.6)
        rules = [r for c in parse_ruleset(text) if c.hook == "input" for r in c.rules if not r.baseline]
        for rule in props["rules"]:
            port = str(int(rule["port"]) if isinstance(rule["port"], float) else rule["port"])
            loaded = {s for r in rules if r.protocol == rule["protocol"] and r.dports == [port]
                      for s in r.saddr or []}
            assert set(rule["sources"]) <= loaded, f"{host}: {rule} not rendered"
        for rule in rules:
            assert not rule.missing_sets and "@" in rule.text, rule.text
        assert not re.search(r"saddr\s+\{|\d+\.\d+\.\d+\.\d+/", file.split("table inet containercloud {", 1)[1])


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck not installed")
def test_host_scripts_pass_shellcheck(dev: ProgramRun, tmp_path: Path) -> None:
    cmd = dev.named("master-1-firewall", "command:remote:Command").plain_inputs
    for key in ("create", "delete"):
        path = tmp_path / f"{key}.sh"
        path.write_text(cmd[key])
        done = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout
    step = host_step(dev, "master-1-firewall")[1]
    assert step["host"] == "master-1"
    for key in ("script", "deleteScript"):
        path = tmp_path / f"{key}.sh"
        path.write_text("#!/usr/bin/env bash\nchanged() { :; }\n" + step[key])
        done = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout
    assert "nft -f /etc/containercloud/firewall.nft" in step["script"]
    assert "nft delete table inet containercloud" in step["deleteScript"]
    files = {f["path"]: f for f in step["files"]}
    assert files["/etc/containercloud/firewall.nft"]["content"] == firewalls(dev)["master-1"]["rulesetFile"]
    # one step places the members file with the ruleset it includes: the ruleset's `nft -c` reads it; a change of
    # the members alone loads them alone (no ruleset reload); the members' old step is retired by its marker
    assert files[MEMBERS_PATH]["content"] == firewalls(dev)["master-1"]["members"]
    assert [f["path"] for f in step["files"]].index(MEMBERS_PATH) < [f["path"] for f in step["files"]].index(
        "/etc/containercloud/firewall.nft")
    assert ("elif changed /etc/containercloud/firewall-members.nft; then\n"
            "  # only the sets' elements changed") in step["script"]
    assert "rm -f /var/lib/containercloud/steps/master-1-firewall-members" in step["script"]
    assert MEMBERS_PATH in step["deleteScript"]
    assert not [r for r in dev.registrations if r.name.endswith("-firewall-members")]


# --- issue 12.5 / 12.6 ------------------------------------------------------------------------------------

def test_pods_reach_the_apiserver_on_a_control_plane_node(dev: ProgramRun) -> None:
    """kube-proxy DNATs the kubernetes Service to the node's own address: a pod on that node arrives at
    input with its pod address on 6443 (as on 10250)."""
    fws = firewalls(dev)
    assert "10.244.0.0/16" in sources(fws["master-1"], 6443)
    assert "10.244.0.0/16" not in sources(fws["worker-1"], 6443)


def test_docker_hosts_filter_the_forward_path_with_the_same_allow_list(dev: ProgramRun, dev_helm: ProgramRun) -> None:
    fws = firewalls(dev)
    for host in ("harbor-1", "rancher-1"):
        props = fws[host]
        assert props["forwardFiltered"] is True
        ruleset = props["ruleset"]
        assert "type filter hook forward" in ruleset
        assert f"ct status dnat ct original ip daddr {props['address']} jump published" in ruleset
        published = ruleset.split("chain published {", 1)[1]
        assert "ct original proto-dst 443 accept" in published and "\t\tdrop" in published
    for host in ("master-1", "worker-1"):
        assert fws[host]["forwardFiltered"] is False and "hook forward" not in fws[host]["ruleset"]
    # helm mode: Rancher runs on the cluster (ingress-nginx on the host network), no Docker on its host
    assert firewalls(dev_helm)["rancher-1"]["forwardFiltered"] is False


# --- issue 16: membership in named sets, loaded without reloading the ruleset -----------------------------------

def _nft(netns_script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "--net", "bash", "-c", netns_script], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.skipif(not shutil.which("nft") or not shutil.which("unshare"), reason="nft or unshare missing")
def test_a_new_member_is_loaded_into_the_sets_without_reloading_the_ruleset(tmp_path: Path) -> None:
    """With the real nft in a private network namespace: the ruleset file (with its include of the members
    file) loads; the members file of a bigger stack then swaps the sets' elements in place: the table, chains
    and rules keep their handles (nothing was reloaded) and the new worker is in the VXLAN set."""
    # exact addresses (no nodeNetworks): the mode in which a new node is a new set element on every host
    small, big = (run_program("dev", {"hosts": _hosts_plus(n), "nodeNetworks": []}) for n in (0, 1))
    assert small.error is None and big.error is None
    before, after = firewalls(small)["worker-1"], firewalls(big)["worker-1"]
    assert before["rulesetFile"] == after["rulesetFile"] and before["members"] != after["members"]
    members = tmp_path / "members.nft"
    members.write_text(before["members"])
    ruleset = tmp_path / "firewall.nft"
    ruleset.write_text(before["rulesetFile"].replace(MEMBERS_PATH, str(members)))
    (tmp_path / "members-big.nft").write_text(after["members"])
    listing = "nft -a list table inet containercloud"
    done = _nft(f"set -e; nft -c -f {ruleset}; nft -f {ruleset}; {listing} > {tmp_path}/one;"
                f" cp {tmp_path}/members-big.nft {members}; nft -c -f {members}; nft -f {members}; nft -f {members};"
                f" {listing} > {tmp_path}/two")
    if done.returncode != 0 and "Operation not permitted" in done.stderr:
        pytest.skip("nft needs CAP_NET_ADMIN")
    assert done.returncode == 0, done.stderr
    one, two = (tmp_path / "one").read_text(), (tmp_path / "two").read_text()
    handles = [ln for ln in one.splitlines() if "# handle" in ln and "elements" not in ln and "set " not in ln]
    assert handles and all(ln in two for ln in handles)  # the same chains and rules, the same handles
    assert NEW_ADDRESS not in one and NEW_ADDRESS in two
    vxlan = next(c for c in parse_ruleset(expand_includes(after["rulesetFile"], {MEMBERS_PATH: after["members"]}))
                 if c.hook == "input").rules
    assert any(r.dports == ["8472"] and f"{NEW_ADDRESS}/32" in (r.saddr or []) for r in vxlan)


NEW_ADDRESS = "203.0.113.99"


def _hosts_plus(extra: int) -> list[dict[str, Any]]:
    hosts: list[dict[str, Any]] = json.loads(load_stack_config("dev").values["container-cloud:hosts"])
    return hosts + [{"name": "worker-9", "address": NEW_ADDRESS, "zone": "dmz", "roles": ["worker"]}][:extra]
