"""Each policy against compliant and non-compliant props, called directly (props proxied as the SDK does)."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any, Optional

import pytest
from pulumi_policy import EnforcementLevel, PolicyResource, ResourceValidationArgs, StackValidationArgs
from pulumi_policy.policy import PolicyCustomTimeouts, PolicyResourceOptions
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from components.firewall import MEMBERS_PATH
from components.host_step import HostFile
from offline.engine.runner import ProgramRun
from policy.rules import credentials, hardening, host_artifacts, network, pki, rbac
from policy.rules.artifacts import exec_start, expand_includes, host_files, parse_ruleset
from policy.rules.artifacts.steps import step_props
from policy.rules.common import HOST_FIREWALL, REMOTE_COMMAND
from tests.step_support import command_props

FW = HOST_FIREWALL
INVENTORY: list[dict[str, Any]] = [
    {"name": "rancher-1", "address": "198.51.100.10", "zone": "inside", "roles": ["rancher"]},
    {"name": "master-1", "address": "198.51.100.11", "zone": "inside", "roles": ["etcd", "control-plane"]},
    {"name": "edge-1", "address": "198.51.100.30", "zone": "inside", "roles": ["worker"]},
    {"name": "worker-1", "address": "203.0.113.21", "zone": "dmz", "roles": ["worker"]},
]
ZONES = {"inside": "198.51.100.0/24", "dmz": "203.0.113.0/24"}
PORTS = {"sshPort": 22.0, "apiServerPort": 6443.0, "flannelVxlanPort": 8472.0, "nodePortRange": "30000-32767"}
RULESET = "table inet containercloud {\n chain input {\n  type filter hook input priority filter; policy drop;\n }\n}\n"


def render(rules: list[dict[str, Any]]) -> str:
    """A ruleset as the firewall template writes it: one accept line per rule (the rules are what is judged)."""
    lines = []
    for r in rules:
        port = r["port"] if isinstance(r["port"], str) else int(r["port"])
        lines.append(f' ip saddr {{ {", ".join(r["sources"])} }} {r["protocol"]} dport {port} accept comment "test"\n')
    return RULESET.replace(" }\n}\n", "".join(lines) + " }\n}\n")


def firewall(host: str, rules: list[dict[str, Any]], public: list[float] | None = None) -> dict[str, Any]:
    h = next(i for i in INVENTORY if i["name"] == host)
    return {"host": host, "zone": h["zone"], "address": h["address"], "roles": h["roles"], "defaultPolicy": "drop",
            "rules": rules, "ruleset": render(rules), "publicPorts": public or [], "zones": ZONES,
            "etcdPeers": [i["address"] for i in INVENTORY if {"etcd", "control-plane"} & set(i["roles"])],
            "nodeAddresses": ([i["address"] for i in INVENTORY if {"worker", "control-plane"} & set(i["roles"])]
                              if h["zone"] == "inside" else []),
            "ports": PORTS}


def rule(port: Any, sources: list[str], protocol: str = "tcp") -> dict[str, Any]:
    return {"port": port, "protocol": protocol, "sources": sources, "purpose": "test", "source": "test"}


def run(fn: Callable[..., None], typ: str, props: dict[str, Any], name: str = "r") -> list[str]:
    found: list[str] = []
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    args = ResourceValidationArgs(typ, unknown_checking_proxy(props), f"urn:pulumi:dev::p::{typ}::{name}", name,
                                  opts, None)
    fn(args, lambda message, urn=None: found.append(message))
    return found


# --- 1. zone matrix -----------------------------------------------------------------------------------------

MASTER_OK = [rule(22.0, ["198.51.100.5/32"]), rule(6443.0, ["198.51.100.10/32", "203.0.113.21/32"]),
             rule(2379.0, ["198.51.100.11/32"]), rule(2380, ["198.51.100.11/32"])]


def test_zone_matrix_allows_the_catalogue_crossings() -> None:
    assert run(network.validate_zone_matrix, FW, firewall("master-1", MASTER_OK)) == []
    assert run(network.validate_zone_matrix, FW, firewall("rancher-1", [rule(443, ["203.0.113.0/24"])])) == []
    overlay = rule(8472.0, ["198.51.100.30/32", "203.0.113.21/32"], "udp")
    assert run(network.validate_zone_matrix, FW, firewall("edge-1", [overlay])) == []


@pytest.mark.parametrize("host,bad", [
    ("master-1", rule(2379, ["203.0.113.0/24"])),
    ("master-1", rule(22, ["203.0.113.21/32"])),
    ("rancher-1", rule(6443, ["203.0.113.21/32"])),  # not a control-plane host
    ("edge-1", rule(8472, ["203.0.113.0/24"], "udp")),  # overlay from the whole DMZ, not just nodes
    ("edge-1", rule(10250, ["0.0.0.0/0"])),
])
def test_zone_matrix_refuses_other_dmz_flows(host: str, bad: dict[str, Any]) -> None:
    problems = run(network.validate_zone_matrix, FW, firewall(host, [bad]))
    assert len(problems) == 1 and "DMZ" in problems[0]


def test_zone_matrix_ignores_dmz_hosts_and_public_ports() -> None:
    assert run(network.validate_zone_matrix, FW, firewall("worker-1", [rule(2379, ["0.0.0.0/0"])])) == []
    public = firewall("rancher-1", [rule(8443, ["0.0.0.0/0"])], public=[8443.0])
    assert run(network.validate_zone_matrix, FW, public) == []


# --- 2. etcd -------------------------------------------------------------------------------------------------


def test_etcd_ports_only_from_members_and_control_plane() -> None:
    assert run(network.validate_etcd_ports, FW, firewall("master-1", MASTER_OK)) == []
    for bad in (rule(2379, ["198.51.100.10/32"]), rule(2380.0, ["198.51.100.0/24"]),
                rule("2000-3000", ["203.0.113.21/32"]), rule(2379, ["0.0.0.0/0"])):
        assert len(run(network.validate_etcd_ports, FW, firewall("master-1", MASTER_OK + [bad]))) == 1, bad
    assert run(network.validate_etcd_ports, FW, firewall("master-1", [rule(2379, ["x"])]))  # unparsable source


# --- 3. any-source -------------------------------------------------------------------------------------------


def test_no_any_source_on_inside_unless_public() -> None:
    open_all = [rule(8443, ["0.0.0.0/0"])]
    assert run(network.validate_no_any_source, FW, firewall("rancher-1", open_all))
    assert run(network.validate_no_any_source, FW, firewall("rancher-1", [rule(443, ["::/0"])]))
    assert run(network.validate_no_any_source, FW, firewall("rancher-1", open_all, public=[8443.0])) == []
    assert run(network.validate_no_any_source, FW, firewall("rancher-1", [rule("8443-8444", ["0.0.0.0/0"])],
                                                            public=[8443])), "a range needs every port public"
    assert run(network.validate_no_any_source, FW, firewall("worker-1", open_all)) == []


# --- 4. every host firewalled -----------------------------------------------------------------------------------


def test_default_drop() -> None:
    assert run(network.validate_default_drop, FW, firewall("master-1", MASTER_OK)) == []
    no_drop = firewall("master-1", MASTER_OK) | {"ruleset": render(MASTER_OK).replace("policy drop;", "policy accept;")}
    assert run(network.validate_default_drop, FW, no_drop)
    no_input = firewall("master-1", MASTER_OK) | {"ruleset": render(MASTER_OK).replace("hook input", "hook output")}
    assert run(network.validate_default_drop, FW, no_input)


def test_the_structured_rules_are_a_summary_the_ruleset_is_judged() -> None:
    summary_ok = firewall("master-1", MASTER_OK) | {"ruleset": render(MASTER_OK + [rule(2379, ["203.0.113.0/24"])])}
    assert run(network.validate_zone_matrix, FW, summary_ok)
    assert run(network.validate_etcd_ports, FW, summary_ok)
    extra_line = render(MASTER_OK).replace(" }\n}\n", " tcp dport 8080 accept\n }\n}\n")
    assert run(network.validate_no_any_source, FW, firewall("master-1", MASTER_OK) | {"ruleset": extra_line})


def _stack(resources: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    res = [PolicyResource(t, unknown_checking_proxy(p), f"urn::{t}::{n}", n, opts, None, None, [], {})
           for t, n, p in resources]
    network.validate_every_host_firewalled(StackValidationArgs(res), lambda m, urn=None: found.append((m, urn)))
    return found


def test_every_host_firewalled() -> None:
    all_fw = [(FW, f"{h['name']}-firewall", firewall(h["name"], [])) for h in INVENTORY]
    ssh = (REMOTE_COMMAND, "worker-1-step", {"connection": {"host": "203.0.113.21"}})
    worker_step = (REMOTE_COMMAND, "worker-1-runtime",
                   command_props("worker-1-runtime", "worker-1", "203.0.113.21", []))
    assert _stack(all_fw + [ssh, worker_step]) == []
    missing = _stack([r for r in all_fw if r[1] != "worker-1-firewall"] + [ssh, worker_step])
    assert ("host worker-1 has no HostFirewall (containercloud:net:HostFirewall)", None) in missing
    assert ("SSH target 203.0.113.21 has no HostFirewall", f"urn::{REMOTE_COMMAND}::worker-1-step") in missing
    stray = _stack(all_fw + [(REMOTE_COMMAND, "x", {"connection": {"host": "203.0.113.99"}})])
    assert len(stray) == 1 and stray[0][1] == f"urn::{REMOTE_COMMAND}::x"
    # a step names its host by its inventory name: no firewall of that name is a finding of its own, besides
    # its SSH target's
    harbor_step = (REMOTE_COMMAND, "s", command_props("s", "harbor-1", "203.0.113.10", []))
    assert _stack([harbor_step]) == [("host harbor-1 has no HostFirewall (containercloud:net:HostFirewall)", None),
                                     ("SSH target 203.0.113.10 has no HostFirewall", f"urn::{REMOTE_COMMAND}::s")]
    assert _stack([(REMOTE_COMMAND, "s", {"connection": {"host": "203.0.113.10"}})]) == [
        ("SSH target 203.0.113.10 has no HostFirewall", f"urn::{REMOTE_COMMAND}::s")]  # not a step: no host name


# --- 5. host artifacts: the parsers and the rules that read the files a step's Command places ----------------

UNIT = """[Unit]
Description=x
ExecStart=/bin/false --not-this=1

[Service]
ExecStart=/usr/local/bin/kube-apiserver \\
  --anonymous-auth=false \\
  --authorization-mode Node,RBAC \\
  --profiling \\
  -H tcp://0.0.0.0:2375
Restart=always
"""


def test_unit_parser_reads_flags_with_their_lines() -> None:
    cmd = exec_start(UNIT)
    assert cmd is not None and cmd.binary == "/usr/local/bin/kube-apiserver" and cmd.line == 6
    assert cmd.get("anonymous-auth") == "false" and cmd.line_of("anonymous-auth") == 7
    assert cmd.get("authorization-mode") == "Node,RBAC" and cmd.get("profiling") == "true"
    assert cmd.get("H") == "tcp://0.0.0.0:2375" and cmd.get("not-this") is None
    assert exec_start("[Unit]\nDescription=none\n") is None


def test_nft_parser_reads_chains_sources_and_ports() -> None:
    text = ("table inet t {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n"
            "\t\tct state established,related accept\n"
            '\t\tip saddr { 10.0.0.1/32, 10.0.0.2/32 } tcp dport 2379 accept comment "etcd [k8s]"\n'
            "\t\ttcp dport { 80, 8000-8100 } accept\n\t}\n}\n")
    (chain,) = parse_ruleset(text)
    assert (chain.name, chain.hook, chain.policy) == ("input", "input", "drop")
    assert chain.rules[0].baseline
    assert chain.rules[1].saddr == ["10.0.0.1/32", "10.0.0.2/32"] and chain.rules[1].dports == ["2379"]
    assert chain.rules[1].line == 5 and chain.rules[1].verdict == "accept"
    assert chain.rules[2].saddr is None and chain.rules[2].dports == ["80", "8000-8100"]


def step(files: list[HostFile]) -> dict[str, Any]:
    """A step's Command on master-1 placing `files` (secret ones on its stdin)."""
    return command_props("master-1-s", "master-1", "198.51.100.11", files)


def test_apiserver_rule_reads_the_unit_file() -> None:
    path = host_artifacts.APISERVER_UNIT
    found = run(host_artifacts.validate_apiserver_unit, REMOTE_COMMAND, step([HostFile(path, UNIT)]))
    assert any(m.startswith(f"master-1 {path}:9: --profiling is true") and "CIS 1.2.15" in m for m in found)
    assert not any("anonymous-auth" in m for m in found)
    # at preview, a file from a provider output leaves the whole Command unknown: nothing to judge, no finding
    unknown = step([HostFile(path, UNIT)]) | {key: UNKNOWN_STRING_VALUE for key in ("create", "delete")}
    unknown["triggers"] = [UNKNOWN_STRING_VALUE]
    assert run(host_artifacts.validate_apiserver_unit, REMOTE_COMMAND, unknown) == []


def test_secret_files_must_be_marked_and_private() -> None:
    key = "-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----\n"
    assert run(host_artifacts.validate_secret_files, REMOTE_COMMAND, step([HostFile("/k.key", key)]))
    ok = step([HostFile("/k.key", key, "0600", secret=True)])
    assert "stdin" in ok and key.strip() not in ok["create"]
    assert run(host_artifacts.validate_secret_files, REMOTE_COMMAND, ok) == []
    loose = step([HostFile("/k.key", key, "0644", secret=True)])
    assert run(host_artifacts.validate_secret_files, REMOTE_COMMAND, loose)


WN = "containercloud:k8s:WorkerNode"


# --- 7. registry ----------------------------------------------------------------------------------------------------


def test_registry_https_only() -> None:
    ok = {"hostname": "harbor-1", "script": '{"insecure-registries": []}'}
    assert run(hardening.validate_registry_https, "containercloud:registry:Harbor", ok) == []
    assert run(hardening.validate_registry_https, WN, {"insecureRegistries": []}) == []
    assert run(hardening.validate_registry_https, WN, {"insecureRegistries": ["harbor-1:443"]})
    for text in ('{"insecure-registries": ["harbor-1:5000"]}', "dockerd --insecure-registry harbor-1:5000",
                 "insecure_registries = [\"harbor-1\"]", "[plugins.x.configs.\"harbor-1\".tls]\n"
                 "  insecure_skip_verify = true"):
        assert run(hardening.validate_registry_https, "command:remote:Command", {"create": text}), text
    rancher = "containercloud:rancher:RancherServer"
    assert run(hardening.validate_registry_https, rancher, {"systemDefaultRegistry": "http://harbor-1"})
    assert run(hardening.validate_registry_https, rancher, {"systemDefaultRegistry": "harbor-1"}) == []


# --- 8. credentials -------------------------------------------------------------------------------------------------

RP = credentials.RANDOM_PASSWORD


def test_no_default_or_weak_credentials() -> None:
    assert run(credentials.validate_credentials, RP, {"length": 32.0, "special": False}) == []
    assert run(credentials.validate_credentials, RP, {"length": 8.0})
    comp = "containercloud:rancher:RancherServer"
    assert run(credentials.validate_credentials, comp, {"bootstrapPassword": "admin"})
    assert run(credentials.validate_credentials, comp, {"db": {"password": "short-pass"}})
    assert run(credentials.validate_credentials, comp, {"adminPassword": "[secret]"}) == []
    assert run(credentials.validate_credentials, comp, {"adminPassword": "x" * 24}) == []
    assert run(credentials.validate_credentials, comp, {"adminPassword": UNKNOWN_STRING_VALUE}) == []
    for text in ("harbor_admin_password: Harbor12345\n", "docker run -e CATTLE_BOOTSTRAP_PASSWORD=admin rancher",
                 "login --password changeme"):
        assert run(credentials.validate_credentials, "command:remote:Command", {"create": text}), text
    assert run(credentials.validate_credentials, "command:remote:Command",
               {"create": "harbor_admin_password: $(cat /etc/x/admin.password)\n"}) == []


# --- 9. pki ----------------------------------------------------------------------------------------------------------


def test_pki_key_strength_and_validity() -> None:
    key = pki.PRIVATE_KEY
    assert run(pki.validate_pki, key, {"algorithm": "RSA", "rsaBits": 2048.0}) == []
    assert run(pki.validate_pki, key, {"algorithm": "RSA", "rsaBits": 1024.0})
    assert run(pki.validate_pki, key, {"algorithm": "ECDSA"}), "the provider's default curve is P224"
    assert run(pki.validate_pki, key, {"algorithm": "ECDSA", "ecdsaCurve": "P256"}) == []
    ca = {"isCaCertificate": True, "validityPeriodHours": 87600.0}
    assert run(pki.validate_pki, pki.SELF_SIGNED, ca) == []
    assert run(pki.validate_pki, pki.SELF_SIGNED, ca | {"validityPeriodHours": 175200.0})
    assert run(pki.validate_leaf_validity, pki.LOCALLY_SIGNED, {"validityPeriodHours": 8760.0}) == []
    assert run(pki.validate_leaf_validity, pki.LOCALLY_SIGNED, {"validityPeriodHours": 26280.0})


def test_pki_system_masters_and_usages() -> None:
    csr = {"subject": {"commonName": "kubernetes-admin", "organization": "system:masters"}}
    assert run(pki.validate_pki, pki.CERT_REQUEST, csr, name="admin-csr") == []
    assert run(pki.validate_pki, pki.CERT_REQUEST, csr, name="team-payments-csr")
    team = "containercloud:k8s:TeamAccess"
    assert run(pki.validate_pki, team, {"organization": "team:payments"}) == []
    assert run(pki.validate_pki, team, {"organization": "system:masters"})
    server = {"name": "kube-apiserver", "kind": "server", "usages": ["digital_signature", "server_auth"]}
    props = {"keyAlgorithm": "RSA", "rsaBits": 2048.0, "caValidityHours": 87600.0, "certificates": [server]}
    assert run(pki.validate_pki, "containercloud:pki:ClusterPki", props) == []
    no_server_auth = props | {"certificates": [server | {"usages": ["digital_signature", "client_auth"]}]}
    assert run(pki.validate_pki, "containercloud:pki:ClusterPki", no_server_auth)
    masters = props | {"certificates": [{"name": "ops", "kind": "client", "usages": ["client_auth"],
                                         "organization": "system:masters"}]}
    assert run(pki.validate_pki, "containercloud:pki:ClusterPki", masters)


def test_pki_a_kubelet_certificate_names_its_node() -> None:
    """One certificate per node is the kubelet's client identity and its serving certificate."""
    csr = {"subject": {"commonName": "system:node:worker-1", "organization": "system:nodes"},
           "dnsNames": ["worker-1"], "ipAddresses": ["100.64.0.21"]}
    assert run(pki.validate_pki, pki.CERT_REQUEST, csr, name="kubelet-worker-1-csr") == []
    assert run(pki.validate_pki, pki.CERT_REQUEST, csr | {"ipAddresses": []}, name="kubelet-worker-1-csr")
    assert run(pki.validate_pki, pki.CERT_REQUEST, csr | {"dnsNames": ["worker-2"]}, name="kubelet-worker-1-csr")
    wrong_group = csr | {"subject": {"commonName": "system:node:worker-1", "organization": "system:masters"}}
    assert any("system:nodes" in p for p in run(pki.validate_pki, pki.CERT_REQUEST, wrong_group, name="x-csr"))
    node = {"name": "kubelet-worker-1", "kind": "peer", "commonName": "system:node:worker-1",
            "organization": "system:nodes", "usages": ["digital_signature", "key_encipherment", "server_auth",
                                                       "client_auth"],
            "dnsNames": ["worker-1"], "ipAddresses": ["100.64.0.21"]}
    props = {"keyAlgorithm": "RSA", "rsaBits": 2048.0, "caValidityHours": 87600.0, "certificates": [node]}
    assert run(pki.validate_pki, "containercloud:pki:ClusterPki", props) == []
    client_only = node | {"kind": "client", "usages": ["digital_signature", "key_encipherment", "client_auth"]}
    assert any("server_auth" in p for p in run(pki.validate_pki, "containercloud:pki:ClusterPki",
                                                props | {"certificates": [client_only]}))
    no_sans = node | {"dnsNames": [], "ipAddresses": []}
    assert len(run(pki.validate_pki, "containercloud:pki:ClusterPki", props | {"certificates": [no_sans]})) == 2


# --- 10. rbac ---------------------------------------------------------------------------------------------------------


def test_rbac_no_anonymous_bindings() -> None:
    crb = rbac.BINDING_TYPES[1]
    ok = {"roleRef": {"name": "view"}, "subjects": [{"kind": "Group", "name": "team:analytics"}]}
    assert run(rbac.validate_rbac, crb, ok) == []
    for name in rbac.FORBIDDEN_SUBJECTS:
        bad = {"roleRef": {"name": "view"}, "subjects": [{"kind": "Group", "name": name}]}
        assert run(rbac.validate_rbac, crb, bad) and run(rbac.validate_rbac, rbac.BINDING_TYPES[0], bad)


def test_readme_lists_every_rule_with_its_level() -> None:
    from pathlib import Path

    from policy.rules.pack import POLICIES

    readme = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    for p in POLICIES:
        level = "advisory" if p.enforcement_level == EnforcementLevel.ADVISORY else "mandatory"
        assert re.search(rf"^\| [^|]*`{re.escape(p.name)}`[^|]*\| {level} \|", readme, re.M), p.name


# --- the nftables parser against the real nft: what the pack reads is what the kernel loads ------------------


def _nft_values(right: Any) -> list[str]:
    values = right["set"] if isinstance(right, dict) and "set" in right else [right]
    out = []
    for v in values:
        if isinstance(v, dict) and "prefix" in v:
            out.append(str(ipaddress.ip_network(f"{v['prefix']['addr']}/{v['prefix']['len']}")))
        elif isinstance(v, dict) and "range" in v and isinstance(v["range"][0], str):
            low, high = (ipaddress.ip_address(a) for a in v["range"])
            out += [str(n) for n in ipaddress.summarize_address_range(low, high)]  # type: ignore[arg-type]
        elif isinstance(v, dict) and "range" in v:
            out.append(f"{v['range'][0]}-{v['range'][1]}")
        elif isinstance(v, str) and ("." in v or ":" in v):
            out.append(str(ipaddress.ip_network(v)))
        else:
            out.append(str(v))
    return out


def _collapsed(networks: list[str]) -> list[str]:
    nets = [ipaddress.ip_network(n) for n in networks]
    return sorted(str(n) for n in ipaddress.collapse_addresses(nets))  # type: ignore[type-var]


def _loaded(text: str) -> list[tuple[str, Any, Any, Optional[str]]]:
    """(chain policy or verdict, saddr, dports, protocol) per chain and rule, as nft itself loaded them."""
    done = subprocess.run(["unshare", "-n", "sh", "-c", "nft -f - && nft -j list ruleset"], input=text,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot load a ruleset in a private netns here: {done.stderr.strip()}")
    chains: dict[str, list[tuple[str, Any, Any, Optional[str]]]] = {}  # nft -j lists every chain, then every rule
    items = json.loads(done.stdout)["nftables"]
    # named sets with the elements the kernel holds (nft -j lists sets before the rules that use them)
    sets = {i["set"]["name"]: {"set": i["set"].get("elem", [])} for i in items if "set" in i}
    for item in items:
        if "chain" in item:
            chains[item["chain"]["name"]] = [(f"policy {item['chain'].get('policy')}", None, None, None)]
        elif "rule" in item:
            out = chains[item["rule"]["chain"]]
            saddr = dports = proto = None
            verdict = next((k for e in item["rule"]["expr"] for k in ("accept", "drop", "jump") if k in e), "")
            for e in item["rule"]["expr"]:
                left = e.get("match", {}).get("left", {})
                if left.get("payload", {}).get("field") == "saddr":
                    right = e["match"]["right"]
                    if isinstance(right, str) and right.startswith("@"):
                        right = sets[right[1:]]
                    saddr = _collapsed(_nft_values(right))
                if left.get("payload", {}).get("field") == "dport":
                    dports, proto = sorted(_nft_values(e["match"]["right"])), left["payload"]["protocol"]
                if left.get("meta", {}).get("key") == "l4proto":
                    proto = e["match"]["right"]
                if left.get("ct", {}).get("key") == "proto-dst":
                    dports = sorted(_nft_values(e["match"]["right"]))
            out.append((verdict, saddr, dports, proto))
    return [entry for rules in chains.values() for entry in rules]


def _parsed(text: str) -> list[tuple[str, Any, Any, Optional[str]]]:
    out: list[tuple[str, Any, Any, Optional[str]]] = []
    for chain in parse_ruleset(text):
        out.append((f"policy {chain.policy}", None, None, None))
        for r in chain.rules:
            saddr = _collapsed(r.saddr) if r.saddr is not None else None
            out.append((r.verdict or "", saddr, sorted(r.dports) if r.protocol else None, r.protocol))
    return out


@pytest.mark.skipif(not shutil.which("nft") or not shutil.which("unshare"), reason="nft or unshare missing")
def test_nft_parser_agrees_with_nft(dev: ProgramRun, ha: ProgramRun) -> None:
    """Each host's ruleset file, loaded with its members file (the include), as parsed vs as nft loads it."""
    steps = [(run.stack, step) for run in (dev, ha) for reg in run.of_type(REMOTE_COMMAND)
             if (step := step_props(reg.type, reg.plain_inputs, reg.name)) is not None]
    files = [(stack, f) for stack, step in steps for f in host_files(step) if f.path.endswith(".nft") and f.content]
    members = {f"{stack}:{f.host}": f.content or "" for stack, f in files if f.path == MEMBERS_PATH}
    rulesets = {f"{stack}:{f.host}": expand_includes(f.content or "", {MEMBERS_PATH: members[f"{stack}:{f.host}"]})
                for stack, f in files if f.path != MEMBERS_PATH}
    assert len(rulesets) >= 13 and all("@src" in text for text in rulesets.values())
    extra = rulesets["dev:master-1"].replace(
        '\t\tiifname "lo" accept\n',
        '\t\tiifname "lo" accept\n\t\ttcp dport 8080 accept\n\t\tip saddr 0.0.0.0/0 udp dport { 8472, 10250-10259 } '
        'accept comment "x"\n\t\tip saddr { 10.0.0.0/8, 192.0.2.7 } tcp dport 2379 drop\n')
    rulesets["edited"] = extra.replace("policy drop;", "policy accept;")
    for name, text in rulesets.items():
        assert _parsed(text) == _loaded(text), name
