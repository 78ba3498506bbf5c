"""A corpus of insecure changes, written as an auditor would (CIS Kubernetes Benchmark, Harbor and Docker
hardening, the zone design), each refused by the real pack over its analyzer gRPC server for the right reason.

Most variants edit what a host receives — a file, a mode or the script of a step, in its Command's `create`
and `stdin` as components/host_step.py renders them (tests/step_support.py) — and leave every component's props
untouched: the pack must judge the artifact. Others edit a Kubernetes object or TLS resource's own inputs, or
change the stack config and run the program again. The dev and ha programs run once each, in memory; every
variant is a copy of one registration sent to the same analyzer process.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Optional

import pytest

from components.host_step import HostFile, HostStepArgs
from offline.engine import run_program
from offline.engine.mocks import SECRET_SIG, SECRET_VALUE
from offline.engine.monitor import Registration
from offline.engine.policy_client import PolicyAnalyzer, mandatory
from offline.engine.runner import ProgramRun
from policy.rules.artifacts.steps import step_props
from tests.step_support import REMOTE_COMMAND, is_step, registered_step, rendered, with_file
from tests.test_teams_platform import directory as platform_directory

FW = "containercloud:net:HostFirewall"
CRB = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
RB = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
CR = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
NS = "kubernetes:core/v1:Namespace"
CM = "kubernetes:core/v1:ConfigMap"
LSC = "tls:index/locallySignedCert:LocallySignedCert"
CSR = "tls:index/certRequest:CertRequest"
APISERVER = "/etc/systemd/system/kube-apiserver.service"
ETCD = "/etc/systemd/system/etcd.service"
CM_UNIT = "/etc/systemd/system/kube-controller-manager.service"
SCHED_UNIT = "/etc/systemd/system/kube-scheduler.service"
SCHED_CONFIG = "/etc/kubernetes/kube-scheduler.yaml"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
KUBELET_UNIT = "/etc/systemd/system/kubelet.service"
NFT = "/etc/containercloud/firewall.nft"
MEMBERS = "/etc/containercloud/firewall-members.nft"
HOSTS_TOML = "/etc/containerd/certs.d/harbor.corp.example/hosts.toml"
HARBOR_YML = "/etc/containercloud/registry/harbor.yml.in"  # harbor.yml with password placeholders
DOCKER_UNIT = "/etc/systemd/system/docker.service"
DAEMON_JSON = "/etc/docker/daemon.json"

@pytest.fixture(scope="module")
def analyzer() -> Iterator[PolicyAnalyzer]:
    with PolicyAnalyzer() as pa:
        yield pa


# --- edits -----------------------------------------------------------------------------------------------------

Runs = dict[str, ProgramRun]  # the session's dev and ha runs (tests/conftest.py)
Edit = Callable[[Runs], list[Registration]]


def _find(run: ProgramRun, typ: str, name: str) -> Registration:
    found = [r for r in run.registrations if r.type == typ and r.name == name]
    assert len(found) == 1, f"no single {typ} {name}"
    return found[0]


def step_edit(stack_name: str, step: str, change: Callable[[HostStepArgs], HostStepArgs]) -> Edit:
    """The Command of one step as it would be rendered from `change`d step arguments (the step read back from
    its registered Command); every other input of it and every component stay as they were."""
    def build(runs: Runs) -> list[Registration]:
        reg = _find(runs[stack_name], REMOTE_COMMAND, step)
        before = registered_step(reg)
        after = change(before)
        assert after != before, f"the edit of {step} changed nothing"
        return [rendered(reg, after)]
    return build


def file_edit(stack_name: str, step: str, path: str, change: Callable[[str], str]) -> Edit:
    """One file of one step changed (what its Command writes, or sends on stdin when the file is secret)."""
    def edit(args: HostStepArgs) -> HostStepArgs:
        entries = [f for f in args.files if f.path == path]
        assert len(entries) == 1, f"{step} has no single file {path}"
        return with_file(args, path, content=change(str(entries[0].content)))
    return step_edit(stack_name, step, edit)


def sub(pattern: str, replacement: str, count: int = 1) -> Callable[[str], str]:
    def change(text: str) -> str:
        new, n = re.subn(pattern, replacement, text, count=count, flags=re.MULTILINE)
        assert n, f"pattern {pattern!r} not found"
        return new
    return change


def drop_line(pattern: str) -> Callable[[str], str]:
    return sub(rf"^.*{pattern}.*\n", "")


def add_flag(flag: str) -> Callable[[str], str]:
    """A flag added to the ExecStart= command line (after its first line)."""
    return sub(r"^(ExecStart=\S+ \\\n)", rf"\g<1>  {flag} \\\n")


def add_accept(rule: str) -> Callable[[str], str]:
    return sub(r"^(\t\tiifname \"lo\" accept\n)", rf"\g<1>\t\t{rule}\n")


def ruleset_edit(stack_name: str, host: str, change: Callable[[str], str]) -> Edit:
    """A template edit of a host's ruleset: the firewall step's firewall.nft and the HostFirewall's `ruleset` prop are
    the same rendered text, so both change."""
    step = file_edit(stack_name, f"{host}-firewall", NFT, change)

    def build(runs: Runs) -> list[Registration]:
        firewall = copy.deepcopy(_find(runs[stack_name], FW, f"{host}-firewall"))
        firewall.inputs["ruleset"] = change(firewall.inputs["ruleset"])
        return step(runs) + [firewall]
    return build


def members_edit(stack_name: str, host: str, *changes: Callable[[str], str]) -> Edit:
    """An edit of a host's firewall members (the sets' contents): the firewall step's members file and the
    HostFirewall's `members` and loaded `ruleset` props, which hold the same text."""
    def change(text: str) -> str:
        for c in changes:
            text = c(text)
        return text
    step = file_edit(stack_name, f"{host}-firewall", MEMBERS, change)

    def build(runs: Runs) -> list[Registration]:
        firewall = copy.deepcopy(_find(runs[stack_name], FW, f"{host}-firewall"))
        firewall.inputs["members"] = change(firewall.inputs["members"])
        firewall.inputs["ruleset"] = change(firewall.inputs["ruleset"])
        return step(runs) + [firewall]
    return build


def with_props(edit: Edit, host: str, **props: Any) -> Edit:
    """`edit`, with the HostFirewall of `host` also carrying other props (None: the prop is absent)."""
    def build(runs: Runs) -> list[Registration]:
        regs = edit(runs)
        firewall = next(r for r in regs if r.type == FW and r.name == f"{host}-firewall")
        for key, value in props.items():
            if value is None:
                firewall.inputs.pop(key, None)
            else:
                firewall.inputs[key] = value
        return regs
    return build


def add_file(stack_name: str, step: str, path: str, content: str) -> Edit:
    """A file added to a step (e.g. a systemd drop-in)."""
    def edit(args: HostStepArgs) -> HostStepArgs:
        return dataclasses.replace(args, files=[*args.files, HostFile(path, content)])
    return step_edit(stack_name, step, edit)


def script_edit(stack_name: str, step: str, change: Callable[[str], str]) -> Edit:
    """A step's script changed (the rendered template), its files and every component unchanged."""
    def edit(args: HostStepArgs) -> HostStepArgs:
        return dataclasses.replace(args, script=change(args.script))
    return step_edit(stack_name, step, edit)


def file_meta(stack_name: str, step: str, path: str, **fields: Any) -> Edit:
    """A step's file with another mode, or marked secret (sent on stdin) or not (written by `create`)."""
    return step_edit(stack_name, step, lambda args: with_file(args, path, **fields))


def input_edit(stack_name: str, typ: str, name: str, change: Callable[[dict[str, Any]], None]) -> Edit:
    def build(runs: Runs) -> list[Registration]:
        reg = copy.deepcopy(_find(runs[stack_name], typ, name))
        change(reg.inputs)
        return [reg]
    return build


def config_change(stack_name: str, overrides: dict[str, Any], typ: str) -> Edit:
    def build(runs: Runs) -> list[Registration]:
        run = run_program(stack_name, overrides)
        assert run.error is None, run.error
        return run.of_type(typ)
    return build


def put(*path: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        target: Any = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def append(*path: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        target: Any = d
        for key in path:
            target = target[key]
        target.append(value)
    return change


KUBECONFIG = ("apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n"
              "    client-certificate-data: LS0t\n    client-key-data: LS0tLS1CRUdJTiBSU0E=\n")
PRIVATE_KEY = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\n-----END EC PRIVATE KEY-----\n"


@dataclass(frozen=True)
class Variant:
    id: str
    build: Edit
    policy: str
    fragment: str
    also: frozenset[str] = frozenset()  # other policies this change rightly trips as well


def V(id: str, build: Edit, policy: str, fragment: str, also: Optional[set[str]] = None) -> Variant:
    return Variant(id, build, policy, fragment, frozenset(also or ()))


API = ("dev", "master-1-kube-apiserver", APISERVER)
ETC = ("dev", "master-1-etcd", ETCD)
CTL = "master-1-controllers"
KUB = ("dev", "worker-1-kubelet")
SVC = "kubernetes:core/v1:Service"
DIRECTORY_AUTH = "containercloud:auth:DirectoryAuth"
PLATFORM = {"headlamp": True, "directory": platform_directory(), "directoryBindPassword": "Bind-Pa55word-1",
            "directoryAdminPassword": "Admin-Pa55word-1",
            "teams": [{"name": "payments", "namespaces": ["payments"], "role": "edit",
                       "directoryGroup": "cn=payments,ou=groups,dc=corp,dc=example"}]}


@functools.cache
def platform_run() -> ProgramRun:
    """The dev stack with a directory and Headlamp on (run once; every edit deep-copies what it changes)."""
    run = run_program("dev", PLATFORM)
    assert run.error is None, run.error
    return run


def platform_edit(typ: str, name: str, change: Callable[[dict[str, Any]], None]) -> Edit:
    """A resource of the dev stack with a directory and Headlamp on, changed."""
    def build(runs: Runs) -> list[Registration]:
        reg = copy.deepcopy(_find(platform_run(), typ, name))
        change(reg.inputs)
        return [reg]
    return build


def platform_step_edit(edit: Callable[..., Edit], step: str, *args: Any, **fields: Any) -> Edit:
    """file_edit / script_edit / file_meta of a step of the directory + Headlamp stack."""
    inner = edit("platform", step, *args, **fields)
    return lambda runs: inner({**runs, "platform": platform_run()})


HARBOR_LDAP = "/etc/containercloud/directory-harbor/ldap.json"
RANCHER_AUTH = "/etc/containercloud/directory-rancher/auth.json"
ROBOT_JSON = "/etc/containercloud/registry-teams/{}/robot.json"
PUSH_BODY = ('{"name":"pull","level":"project","permissions":[{"kind":"project","namespace":"payments",'
             '"access":[{"resource":"repository","action":"push"}]}]}')

CORPUS: list[Variant] = [
    # --- kube-apiserver unit (CIS 1.2) ---------------------------------------------------------------------------
    V("apiserver-anonymous-auth", file_edit(*API, sub("anonymous-auth=false", "anonymous-auth=true")),
      "apiserver-hardening", "--anonymous-auth is true; must be false (CIS 1.2.1)"),
    V("apiserver-anonymous-auth-unset", file_edit(*API, drop_line("--anonymous-auth")),
      "apiserver-hardening", "unset (true)"),
    V("apiserver-always-allow", file_edit(*API, sub("authorization-mode=Node,RBAC", "authorization-mode=AlwaysAllow")),
      "apiserver-hardening", "includes AlwaysAllow (CIS 1.2.6)"),
    V("apiserver-no-node-authz", file_edit(*API, sub("authorization-mode=Node,RBAC", "authorization-mode=RBAC")),
      "apiserver-hardening", "lacks Node (CIS 1.2.7)"),
    V("apiserver-no-rbac", file_edit(*API, sub("authorization-mode=Node,RBAC", "authorization-mode=Node")),
      "apiserver-hardening", "lacks RBAC (CIS 1.2.8)"),
    V("apiserver-token-file", file_edit(*API, add_flag("--token-auth-file=/etc/kubernetes/tokens.csv")),
      "apiserver-hardening", "--token-auth-file is set"),
    V("apiserver-profiling", file_edit(*API, sub("--profiling=false", "--profiling=true")),
      "apiserver-hardening", "(CIS 1.2.15)"),
    V("apiserver-no-audit-log", file_edit(*API, drop_line("--audit-log-path")),
      "apiserver-hardening", "--audit-log-path is not set"),
    V("apiserver-audit-maxage-7", file_edit(*API, sub("audit-log-maxage=30", "audit-log-maxage=7")),
      "apiserver-hardening", "--audit-log-maxage is 7; keep at least 30 (CIS 1.2.17)"),
    V("apiserver-no-kubelet-ca", file_edit(*API, drop_line("--kubelet-certificate-authority")),
      "apiserver-hardening", "(CIS 1.2.5)"),
    V("apiserver-always-admit", file_edit(*API, sub("enable-admission-plugins=NodeRestriction",
                                                    "enable-admission-plugins=NodeRestriction,AlwaysAdmit")),
      "apiserver-hardening", "AlwaysAdmit is enabled (CIS 1.2.10)"),
    V("apiserver-no-node-restriction", file_edit(*API, sub("enable-admission-plugins=NodeRestriction",
                                                           "enable-admission-plugins=PodSecurity")),
      "apiserver-hardening", "NodeRestriction is not enabled (CIS 1.2.14)"),
    V("apiserver-disable-serviceaccount", file_edit(*API, add_flag("--disable-admission-plugins=ServiceAccount")),
      "apiserver-hardening", "ServiceAccount is disabled (CIS 1.2.12)"),
    V("apiserver-no-encryption", file_edit(*API, drop_line("--encryption-provider-config")),
      "apiserver-hardening", "Secrets are encrypted at rest in etcd (CIS 1.2.27)"),
    V("apiserver-etcd-over-http", file_edit(*API, sub("etcd-servers=https://", "etcd-servers=http://")),
      "apiserver-hardening", "is not https"),
    V("apiserver-no-sa-lookup", file_edit(*API, add_flag("--service-account-lookup=false")),
      "apiserver-hardening", "(CIS 1.2.21)"),
    V("apiserver-no-client-ca", file_edit(*API, drop_line("--client-ca-file")),
      "apiserver-hardening", "--client-ca-file is not set"),
    V("apiserver-no-etcd-ca", file_edit(*API, drop_line("--etcd-cafile")),
      "apiserver-hardening", "(CIS 1.2.26)"),
    V("apiserver-node-ports-everywhere",
      file_edit(*API, sub("node-port-range=30000-32767", "node-port-range=80-65535")),
      "apiserver-hardening", "leaves 30000-32767"),
    V("apiserver-insecure-port", file_edit(*API, add_flag("--insecure-port=8080")),
      "apiserver-hardening", "insecure HTTP port"),
    V("apiserver-drop-in-overrides-flags",
      add_file("dev", "master-1-kube-apiserver", APISERVER + ".d/10-debug.conf",
               "[Service]\nExecStart=\nExecStart=/usr/local/bin/kube-apiserver --anonymous-auth=true "
               "--authorization-mode=AlwaysAllow\n"),
      "apiserver-hardening", "kube-apiserver.service.d/10-debug.conf:3: --anonymous-auth is true"),
    # --- etcd unit (CIS 2) ------------------------------------------------------------------------------------------
    V("etcd-no-client-cert-auth", file_edit(*ETC, sub("--client-cert-auth=true", "--client-cert-auth=false")),
      "etcd-hardening", "--client-cert-auth is false; must be true (CIS 2.2)"),
    V("etcd-no-peer-cert-auth", file_edit(*ETC, sub("peer-client-cert-auth=true", "peer-client-cert-auth=false")),
      "etcd-hardening", "(CIS 2.5)"),
    V("etcd-auto-tls", file_edit(*ETC, sub("--auto-tls=false", "--auto-tls=true")),
      "etcd-hardening", "(CIS 2.3)"),
    V("etcd-peer-auto-tls", file_edit(*ETC, sub("--peer-auto-tls=false", "--peer-auto-tls=true")),
      "etcd-hardening", "(CIS 2.6)"),
    V("etcd-client-over-http", file_edit(*ETC, sub("listen-client-urls=https://", "listen-client-urls=http://")),
      "etcd-hardening", "is plain http"),
    V("etcd-peer-over-http", file_edit(*ETC, sub("listen-peer-urls=https://", "listen-peer-urls=http://")),
      "etcd-hardening", "--listen-peer-urls http://"),
    V("etcd-listens-everywhere", file_edit(*ETC, sub("listen-client-urls=https://198.51.100.11:2379",
                                                     "listen-client-urls=https://0.0.0.0:2379")),
      "etcd-hardening", "listens beyond the member's own INSIDE address"),
    V("etcd-advertises-and-listens-everywhere",
      file_edit(*ETC, sub("(listen|advertise)-client-urls=https://198.51.100.11:2379", r"\1-client-urls=https://0.0.0.0:2379",
                          count=2)),
      "etcd-hardening", "--listen-client-urls https://0.0.0.0:2379 listens beyond"),
    V("etcd-metrics-everywhere", file_edit(*ETC, sub("http://127.0.0.1:2381", "http://0.0.0.0:2381")),
      "etcd-hardening", "serves metrics beyond loopback"),
    V("etcd-no-trusted-ca", file_edit(*ETC, drop_line("  --trusted-ca-file")),
      "etcd-hardening", "--trusted-ca-file is not set"),
    V("etcd-no-cert-file", file_edit(*ETC, drop_line("  --cert-file")),
      "etcd-hardening", "--cert-file is not set (CIS 2.1)"),
    # --- controller-manager and scheduler (CIS 1.3, 1.4) -----------------------------------------------------------
    V("controller-manager-on-all-interfaces",
      file_edit("dev", CTL, CM_UNIT, sub("bind-address=127.0.0.1", "bind-address=0.0.0.0")),
      "controller-manager-scheduler-hardening", "port 10257 must listen on 127.0.0.1 only (CIS 1.3.7)"),
    V("controller-manager-profiling", file_edit("dev", CTL, CM_UNIT, sub("--profiling=false", "--profiling=true")),
      "controller-manager-scheduler-hardening", "(CIS 1.3.2)"),
    V("controller-manager-shared-credentials",
      file_edit("dev", CTL, CM_UNIT, sub("service-account-credentials=true", "service-account-credentials=false")),
      "controller-manager-scheduler-hardening", "(CIS 1.3.3)"),
    V("controller-manager-no-root-ca", file_edit("dev", CTL, CM_UNIT, drop_line("--root-ca-file")),
      "controller-manager-scheduler-hardening", "--root-ca-file is not set (CIS 1.3.5)"),
    V("scheduler-on-all-interfaces",
      file_edit("dev", CTL, SCHED_UNIT, sub("bind-address=127.0.0.1", "bind-address=0.0.0.0")),
      "controller-manager-scheduler-hardening", "port 10259 must listen on 127.0.0.1 only (CIS 1.4.2)"),
    V("scheduler-config-profiling",
      file_edit("dev", CTL, SCHED_CONFIG, sub("enableProfiling: false", "enableProfiling: true")),
      "controller-manager-scheduler-hardening", "kube-scheduler.yaml:7: enableProfiling is True"),
    V("scheduler-flag-profiling", file_edit("dev", CTL, SCHED_UNIT, add_flag("--profiling=true")),
      "controller-manager-scheduler-hardening", "(CIS 1.4.1)"),
    # --- kubelet (CIS 4.2) ------------------------------------------------------------------------------------------
    V("kubelet-config-anonymous", file_edit(*KUB, KUBELET_CONFIG, sub(r"(anonymous:\n\s+enabled:) false", r"\1 true")),
      "kubelet-hardening", "config.yaml:4: anonymous authentication is true; must be false (CIS 4.2.1)"),
    V("kubelet-config-always-allow", file_edit(*KUB, KUBELET_CONFIG, sub("mode: Webhook", "mode: AlwaysAllow")),
      "kubelet-hardening", "(CIS 4.2.2)"),
    V("kubelet-config-no-webhook-authn",
      file_edit(*KUB, KUBELET_CONFIG, sub(r"(webhook:\n\s+enabled:) true", r"\1 false")),
      "kubelet-hardening", "webhook authentication is off"),
    V("kubelet-config-no-client-ca", file_edit(*KUB, KUBELET_CONFIG, drop_line("clientCAFile")),
      "kubelet-hardening", "(CIS 4.2.3)"),
    V("kubelet-config-read-only-port", file_edit(*KUB, KUBELET_CONFIG, sub("readOnlyPort: 0", "readOnlyPort: 10255")),
      "kubelet-hardening", "read-only port 10255"),
    V("kubelet-config-streaming-forever",
      file_edit(*KUB, KUBELET_CONFIG, sub("^readOnlyPort: 0$", "readOnlyPort: 0\nstreamingConnectionIdleTimeout: 0s")),
      "kubelet-hardening", "(CIS 4.2.5)"),
    V("kubelet-config-no-iptables-chains",
      file_edit(*KUB, KUBELET_CONFIG, sub("makeIPTablesUtilChains: true", "makeIPTablesUtilChains: false")),
      "kubelet-hardening", "(CIS 4.2.6)"),
    V("kubelet-config-no-serving-cert", file_edit(*KUB, KUBELET_CONFIG, drop_line("tlsCertFile")),
      "kubelet-hardening", "no serving certificate"),
    V("kubelet-unit-anonymous-flag", file_edit(*KUB, KUBELET_UNIT, add_flag("--anonymous-auth=true")),
      "kubelet-hardening", "kubelet.service:"),
    V("kubelet-unit-read-only-port", file_edit(*KUB, KUBELET_UNIT, add_flag("--read-only-port=10255")),
      "kubelet-hardening", "(CIS 4.2.4)"),
    V("control-plane-kubelet-anonymous",
      file_edit("dev", "master-1-kubelet", KUBELET_CONFIG, sub(r"(anonymous:\n\s+enabled:) false", r"\1 true")),
      "kubelet-hardening", "master-1 /var/lib/kubelet/config.yaml"),
    # --- the nftables ruleset as loaded (zone design) ------------------------------------------------------------
    V("ruleset-policy-accept", file_edit("dev", "worker-1-firewall", NFT, sub("policy drop;", "policy accept;")),
      "host-firewall-ruleset", "has policy accept; must be drop"),
    V("ruleset-no-input-chain", file_edit("dev", "master-1-firewall", NFT, sub("hook input", "hook output")),
      "host-firewall-ruleset", "no input base chain"),
    V("ruleset-extra-accept-any-source",
      file_edit("dev", "master-1-firewall", NFT, add_accept("tcp dport 8080 accept")),
      "host-firewall-ruleset", "accepts 8080 from any source"),
    V("ruleset-any-source-network",
      file_edit("dev", "rancher-1-firewall", NFT, add_accept("ip saddr 0.0.0.0/0 tcp dport 443 accept")),
      "host-firewall-ruleset", "from 0.0.0.0/0"),
    V("ruleset-interface-accept", file_edit("dev", "master-1-firewall", NFT, add_accept('iifname "eth0" accept')),
      "host-firewall-ruleset", "accepts every port from any source"),
    V("ruleset-dmz-kubelet-any-source",
      file_edit("dev", "worker-1-firewall", NFT, sub(r"ip saddr @src\w+ tcp dport 10250",
                                                     "ip saddr { 0.0.0.0/0 } tcp dport 10250")),
      "host-firewall-ruleset", "accepts 10250 from 0.0.0.0/0"),
    V("ruleset-dmz-vxlan-any-source",
      file_edit("dev", "worker-1-firewall", NFT, sub(r"ip saddr @src\w+ udp dport 8472", "udp dport 8472")),
      "host-firewall-ruleset", "accepts 8472 from any source"),
    V("ruleset-etcd-from-a-network",
      file_edit("dev", "master-1-firewall", NFT, sub(r"ip saddr @src\w+ tcp dport 2379",
                                                     "ip saddr { 198.51.100.0/24 } tcp dport 2379")),
      "host-firewall-ruleset", "etcd client port 2379 accepts 198.51.100.0/24"),
    # the members: the sets' contents, judged with the rules that use them (the HostFirewall carries both files)
    V("members-kubelet-from-a-wide-network",
      members_edit("dev", "worker-2", sub(r"(add element inet containercloud src\w+) \{ 10\.244\.0\.0/16 \}",
                                          r"\1 { 10.0.0.0/8 }")),
      "host-firewall-ruleset", "kubelet API port 10250 accepts 10.0.0.0/8"),
    V("members-etcd-from-a-network",
      members_edit("dev", "master-1", sub(r"(add element inet containercloud src\w+) \{ 198\.51\.100\.11/32 \}",
                                          r"\1 { 198.51.100.0/24 }")),
      "host-firewall-ruleset", "etcd client port 2379 accepts 198.51.100.0/24",
      {"etcd-ports-members-only"}),
    V("members-any-source",
      file_edit("dev", "worker-1-firewall", MEMBERS,
                sub(r"(add element inet containercloud src\w+) \{ [^}]* \}", r"\1 { 0.0.0.0/0 }")),
      "host-firewall-ruleset", "holds 0.0.0.0/0"),
    # node networks: a network in a VXLAN set stands for the nodes only if it is declared and holds only nodes
    V("members-vxlan-whole-dmz",
      members_edit("dev", "worker-1", sub(r"\{ 198\.51\.100\.11/32, 203\.0\.113\.16/28 \}",
                                          "{ 198.51.100.11/32, 203.0.113.0/24 }")),
      "overlay-nodes-only", "admits 203.0.113.0/24 to the overlay"),
    V("members-vxlan-whole-dmz-inside",
      members_edit("dev", "master-1", sub(r"\{ 198\.51\.100\.11/32, 203\.0\.113\.16/28 \}",
                                          "{ 198.51.100.11/32, 203.0.113.0/24 }")),
      "overlay-nodes-only", "admits 203.0.113.0/24 to the overlay", {"zone-matrix"}),
    V("node-network-holds-harbor",
      with_props(members_edit("dev", "master-1", sub(r"\{ 198\.51\.100\.11/32, 203\.0\.113\.16/28 \}",
                                                     "{ 198.51.100.11/32, 203.0.113.0/27 }")),
                 "master-1", nodeNetworks=["198.51.100.11/32", "203.0.113.0/27"]),
      "overlay-nodes-only", "admits 203.0.113.0/27 to the overlay", {"zone-matrix"}),
    V("node-network-holds-harbor-dmz",
      with_props(members_edit("dev", "worker-2", sub(r"\{ 198\.51\.100\.11/32, 203\.0\.113\.16/28 \}",
                                                     "{ 198.51.100.11/32, 203.0.113.0/27 }")),
                 "worker-2", nodeNetworks=["198.51.100.11/32", "203.0.113.0/27"]),
      "overlay-nodes-only", "admits 203.0.113.0/27 to the overlay"),
    V("node-network-without-outsiders",
      with_props(members_edit("dev", "worker-3", sub(r"\{ 198\.51\.100\.11/32, 203\.0\.113\.16/28 \}",
                                                     "{ 198.51.100.11/32, 203.0.113.0/27 }")),
                 "worker-3", nodeNetworks=["198.51.100.11/32", "203.0.113.0/27"], notNodes=None),
      "overlay-nodes-only", "admits 198.51.100.11/32, 203.0.113.0/27 to the overlay"),
    V("members-vxlan-harbor-address",
      members_edit("ha", "worker-1", sub(r"(add element inet containercloud src\w+ \{ 198\.51\.100\.8/29, "
                                         r"198\.51\.100\.16/28, 203\.0\.113\.16/28) \}", r"\1, 203.0.113.10/32 }")),
      "overlay-nodes-only", "admits 203.0.113.10/32 to the overlay"),
    V("members-set-missing",
      members_edit("dev", "master-1", sub(r"^\tset src1_v4 .*\n", ""),
                   sub(r"^(flush set|add element) \S+ \S+ src1_v4.*\n", "", 2)),
      "host-firewall-ruleset", "which the loaded ruleset does not define", {"host-firewall-default-drop"}),
    V("template-dmz-to-controller-manager",
      ruleset_edit("dev", "master-1", add_accept("ip saddr { 203.0.113.21/32 } tcp dport 10257 accept")),
      "zone-matrix", "is open to DMZ sources 203.0.113.21/32"),
    V("template-etcd-from-rancher",
      ruleset_edit("dev", "master-1", add_accept("ip saddr { 198.51.100.10/32 } tcp dport 2380 accept")),
      "etcd-ports-members-only", "opens etcd to 198.51.100.10/32"),
    V("template-inside-any-source",
      ruleset_edit("dev", "rancher-1", add_accept("tcp dport 9443 accept")),
      "no-any-source-inside", "9443/tcp", {"host-firewall-ruleset", "zone-matrix"}),
    V("template-dmz-vxlan-any-source",
      ruleset_edit("dev", "worker-3", sub(r"ip saddr @src\w+ udp dport 8472", "ip saddr 0.0.0.0/0 udp dport 8472")),
      "cluster-ports-never-public", "opens flannel VXLAN port 8472 to any source on a dmz host",
      {"host-firewall-ruleset", "overlay-nodes-only"}),
    V("template-default-accept",
      ruleset_edit("dev", "harbor-1", sub("policy drop;", "policy accept;")),
      "host-firewall-default-drop", "the input policy must be drop", {"host-firewall-ruleset"}),
    # --- registry clients, Harbor, dockerd -------------------------------------------------------------------------
    V("hosts-toml-plain-http", file_edit("dev", "worker-1-runtime", HOSTS_TOML, sub('server = "https://', 'server = "http://')),
      "registry-tls-artifacts", "is not https"),
    V("hosts-toml-skip-verify",
      file_edit("dev", "worker-2-runtime", HOSTS_TOML, sub(r"(capabilities = .*\n)", r"\1  skip_verify = true\n")),
      "registry-tls-artifacts", "skip_verify = true", {"registry-https-only"}),
    V("hosts-toml-http-mirror",
      file_edit("dev", "master-1-runtime", HOSTS_TOML, sub(r"\Z", '\n[host."http://harbor.corp.example"]\n'
                                                                   '  capabilities = ["pull"]\n')),
      "registry-tls-artifacts", "[host.'http://harbor.corp.example'] is not https"),
    V("harbor-yml-without-https",
      file_edit("dev", "harbor-1-harbor", HARBOR_YML, sub(r"^https:\n(  .*\n)+", "")),
      "registry-tls-artifacts", "harbor.yml has no https block"),
    V("harbor-yml-https-without-certificate",
      file_edit("dev", "harbor-1-harbor", HARBOR_YML, drop_line("  certificate:")),
      "registry-tls-artifacts", "Harbor would serve plain http"),
    V("harbor-ha-database-without-tls",
      file_edit("ha", "harbor-1-harbor", HARBOR_YML, sub("ssl_mode: require", "ssl_mode: disable")),
      "registry-tls-artifacts", "external_database ssl_mode is disable"),
    V("dockerd-on-tcp", file_edit("dev", "harbor-1-docker", DOCKER_UNIT,
                                  sub("-H unix:///var/run/docker.sock", "-H unix:///var/run/docker.sock -H tcp://0.0.0.0:2375")),
      "docker-daemon-unix-socket-only", "dockerd listens on tcp://0.0.0.0:2375"),
    V("dockerd-daemon-json-tcp",
      file_edit("dev", "rancher-1-docker", DAEMON_JSON, sub(r"^\{\n", '{\n  "hosts": ["tcp://0.0.0.0:2376"],\n')),
      "docker-daemon-unix-socket-only", '"hosts" has tcp://0.0.0.0:2376'),
    V("docker-socket-activation-on-tcp",
      add_file("dev", "rancher-1-docker", "/etc/systemd/system/docker-tcp.socket",
               "[Unit]\nDescription=Docker API\n\n[Socket]\nListenStream=2375\nService=docker.service\n"),
      "docker-daemon-unix-socket-only", "docker-tcp.socket:5: ListenStream=2375"),
    V("rancher-publishes-http",
      script_edit("dev", "rancher-1-rancher", sub(r"-p 443:443 \\", r"-p 443:443 -p 80:80 \\")),
      "rancher-server-tls", "publishes Rancher's plain-http port (80:80)"),
    V("rancher-without-our-certificate",
      script_edit("dev", "rancher-1-rancher", drop_line("/etc/rancher/ssl/key.pem:ro")),
      "rancher-server-tls", "Rancher runs without /etc/rancher/ssl/key.pem"),
    V("rancher-no-cacerts",
      script_edit("dev", "rancher-1-rancher", sub(r"--privileged \\", r"--privileged --no-cacerts \\")),
      "rancher-server-tls", "--no-cacerts"),
    # --- secrets in the wrong place ------------------------------------------------------------------------------
    V("host-key-not-secret", file_meta("dev", "harbor-1-harbor", "/etc/containercloud/registry/tls.key", secret=False),
      "host-secret-files", "tls.key: holds a private key but is not marked secret"),
    V("host-kubeconfig-not-secret",
      file_meta("dev", "master-1-kube-apiserver", "/etc/kubernetes/admin.conf", secret=False),
      "host-secret-files", "admin.conf: holds a kubeconfig with credentials"),
    V("host-key-world-readable", file_meta("dev", "master-1-etcd", "/etc/etcd/pki/server.key", mode="0644"),
      "host-secret-files", "mode 0644 lets others read a secret file"),
    V("configmap-kubeconfig",
      input_edit("dev", CM, "configmap-kube-system-coredns", put("data", "kubeconfig", value=KUBECONFIG)),
      "no-credentials-in-configmaps", "data.kubeconfig holds a kubeconfig with credentials"),
    V("configmap-private-key",
      input_edit("ha", CM, "configmap-kube-flannel-kube-flannel-cfg", put("data", "tls.key", value=PRIVATE_KEY)),
      "no-credentials-in-configmaps", "data.tls.key holds a private key"),
    # --- RBAC and Pod Security (CIS 5.1, 5.2) -------------------------------------------------------------------
    V("team-gets-cluster-admin",
      input_edit("dev", CRB, "analytics-cluster-view", put("roleRef", "name", value="cluster-admin")),
      "rbac-least-privilege", "binds cluster-admin to Group team:analytics"),
    V("authenticated-get-view",
      input_edit("dev", CRB, "analytics-cluster-view", put("subjects", 0, "name", value="system:authenticated")),
      "rbac-least-privilege", "binds view to Group system:authenticated"),
    V("all-service-accounts-edit",
      input_edit("ha", RB, "payments-payments-edit", put("subjects", 0, "name", value="system:serviceaccounts")),
      "rbac-least-privilege", "Group system:serviceaccounts"),
    V("default-service-account-bound",
      input_edit("dev", RB, "payments-payments-edit",
                 put("subjects", 0, value={"kind": "ServiceAccount", "name": "default", "namespace": "payments"})),
      "rbac-least-privilege", "default ServiceAccount of payments; every pod there"),
    V("team-cluster-wide-edit", input_edit("ha", CRB, "analytics-cluster-view", put("roleRef", "name", value="edit")),
      "rbac-least-privilege", "binds edit cluster-wide to Group team:analytics"),
    V("wildcard-cluster-role",
      input_edit("dev", CR, "clusterrole-flannel", append("rules", value={"apiGroups": ["*"], "resources": ["*"],
                                                                           "verbs": ["*"]})),
      "rbac-least-privilege", "grants every verb on every resource (wildcards; CIS 5.1.3)"),
    V("impersonating-cluster-role",
      input_edit("ha", CR, "ingress-clusterrole-ingress-nginx",
                 append("rules", value={"apiGroups": [""], "resources": ["users", "groups"],
                                        "verbs": ["impersonate"]})),
      "rbac-least-privilege", "grants impersonate"),
    V("team-namespace-privileged",
      input_edit("dev", NS, "payments-payments",
                 put("metadata", "labels", "pod-security.kubernetes.io/enforce", value="privileged")),
      "team-pod-security", "pod-security.kubernetes.io/enforce=privileged"),
    V("team-namespace-without-pod-security",
      input_edit("ha", NS, "analytics-analytics",
                 lambda inputs: inputs["metadata"]["labels"].pop("pod-security.kubernetes.io/enforce")),
      "team-pod-security", "no pod-security.kubernetes.io/enforce label"),
    V("team-namespace-warn-privileged",
      input_edit("ha", NS, "payments-payments-staging",
                 put("metadata", "labels", "pod-security.kubernetes.io/warn", value="privileged")),
      "team-pod-security", "pod-security.kubernetes.io/warn=privileged"),
    V("bind-anonymous",
      input_edit("dev", RB, "analytics-analytics-view", put("subjects", 0, "name", value="system:anonymous")),
      "rbac-no-anonymous", "binds view to Group system:anonymous", {"rbac-least-privilege"}),
    # --- PKI -------------------------------------------------------------------------------------------------------
    V("team-certificate-is-a-ca", input_edit("ha", LSC, "team-payments-cert", put("isCaCertificate", value=True)),
      "pki-no-issued-ca", "isCaCertificate is true"),
    V("node-certificate-can-sign",
      input_edit("dev", LSC, "kubelet-worker-1-cert", append("allowedUses", value="cert_signing")),
      "pki-no-issued-ca", "allowedUses has cert_signing"),
    V("kubelet-certificate-without-node-address",
      input_edit("dev", CSR, "kubelet-worker-1-csr", put("ipAddresses", value=[])),
      "pki-strength", "has no IP SAN"),
    # --- stack config changes ------------------------------------------------------------------------------------
    # publicPorts: [10250] itself is refused by the configuration pass (tests/fixtures/bad_stacks/
    # port-public-kubelet.yaml); the ruleset such a change would render is refused here.
    V("public-ports-exempt-kubelet",
      ruleset_edit("dev", "master-1", add_accept("ip saddr 0.0.0.0/0 tcp dport 10250 accept")),
      "cluster-ports-never-public", "10250", also={"zone-matrix", "host-firewall-ruleset", "no-any-source-inside"}),
    # --- teams platform (issue 17) -------------------------------------------------------------------------------
    V("robot-with-push", file_edit("dev", "payments-registry-harbor", ROBOT_JSON.format("payments"),
                                   sub('"action":"pull"', '"action":"push"')),
      "robot-pull-only", "repository:push on project payments"),
    V("robot-system-level",
      file_edit("ha", "analytics-registry-harbor", ROBOT_JSON.format("analytics"),
                sub('"level":"project"', '"level":"system"')),
      "robot-pull-only", "level 'system'"),
    V("robot-second-project",
      file_edit("dev", "analytics-registry-harbor", ROBOT_JSON.format("analytics"),
                sub(re.escape('"permissions":['), '"permissions":[{"kind":"project","namespace":"payments","access":'
                                                  '[{"resource":"repository","action":"pull"}]},')),
      "robot-pull-only", "2 permissions"),
    V("robot-body-inline-in-script",
      script_edit("dev", "payments-registry-harbor", sub(r"-d @\S*/robot\.json", f"-d '{PUSH_BODY}'")),
      "robot-pull-only", "repository:push on project payments"),
    V("robot-body-secret", file_meta("dev", "payments-registry-harbor", ROBOT_JSON.format("payments"), secret=True),
      "robot-pull-only", "is secret, so what it asks for cannot be read"),
    V("robot-body-made-on-host",
      script_edit("dev", "payments-registry-harbor", sub(r"-d @\S*/robot\.json", '-d @"$robot_body"')),
      "robot-pull-only", "made on the host from nothing the step shows"),
    V("ldap-without-tls", platform_step_edit(file_edit, "directory-harbor", HARBOR_LDAP,
                                             sub('"ldaps://([^":]*):636"', r'"ldap://\1:389"')),
      "directory-tls", "is not ldaps:// (LDAP without TLS)"),
    V("ldap-no-verify", platform_step_edit(file_edit, "directory-harbor", HARBOR_LDAP,
                                           sub('"ldap_verify_cert": true', '"ldap_verify_cert": false')),
      "directory-tls", "ldap_verify_cert is not true"),
    V("ldap-body-secret", platform_step_edit(file_meta, "directory-harbor", HARBOR_LDAP, secret=True),
      "directory-tls", "Harbor's configurations are written but its body"),
    V("ldap-put-of-another-file",
      platform_step_edit(script_edit, "directory-harbor",
                         sub(r'-X PUT "\$api/configurations" -d @"\$body"',
                             '-X PUT "$api/configurations" -d @' + HARBOR_LDAP.replace("ldap", "bind-password"))),
      "directory-tls", "bind-password.json is secret"),
    V("rancher-starttls", platform_step_edit(file_edit, "directory-rancher", RANCHER_AUTH,
                                             sub('"starttls": false', '"starttls": true')),
      "directory-tls", "Rancher ldapConfig: tls must be true"),
    V("rancher-no-certificate", platform_step_edit(file_edit, "directory-rancher", RANCHER_AUTH,
                                                   sub('"certificate": "[^"]*"', '"certificate": ""')),
      "directory-tls", "no certificate to verify the directory with"),
    V("rancher-body-inline", platform_step_edit(script_edit, "directory-rancher",
                                                sub(r'-d @"\$work/body\.json"',
                                                    """-d '{"ldapConfig":{"tls":false,"servers":["x"]}}'""")),
      "directory-tls", "tls must be true"),
    V("headlamp-nodeport",
      platform_edit(SVC, "headlamp-service-headlamp-headlamp", put("spec", "type", value="NodePort")),
      "headlamp-not-exposed", "exposes Headlamp as NodePort"),
    V("headlamp-cluster-admin",
      input_edit("dev", CRB, "analytics-cluster-view",
                 put("subjects", 0, value={"kind": "ServiceAccount", "name": "headlamp", "namespace": "headlamp"})),
      "headlamp-not-exposed", "to Headlamp's ServiceAccount headlamp"),
    V("dmz-kubelet-open-to-any",
      config_change("dev", {"firewallExtraRules": [{"hosts": ["worker-1"], "port": 10250, "protocol": "tcp",
                                                     "sources": ["0.0.0.0/0"], "purpose": "audit"}]}, FW),
      "cluster-ports-never-public", "opens kubelet API port 10250 to any source on a dmz host",
      {"host-firewall-ruleset"}),  # the HostFirewall's files, its members read into its sets
]


def test_the_corpus_is_large_and_distinct() -> None:
    assert len(CORPUS) >= 60
    assert len({v.id for v in CORPUS}) == len(CORPUS)


@pytest.fixture(scope="module")
def runs(dev: ProgramRun, ha: ProgramRun, dev_helm: ProgramRun) -> Runs:
    return {"dev": dev, "ha": ha, "dev_helm": dev_helm}


@pytest.mark.parametrize("name", ["dev", "ha", "dev_helm"])
def test_stacks_have_no_findings(analyzer: PolicyAnalyzer, runs: Runs, name: str) -> None:
    found = analyzer.analyze(runs[name].registrations)
    assert found == [], "\n".join(f"{v.policy} [{v.level}]: {v.message}" for v in found)


def test_a_stack_with_directory_and_headlamp_has_no_findings(analyzer: PolicyAnalyzer) -> None:
    run = run_program("dev", PLATFORM)
    assert run.error is None, run.error
    assert run.of_type(DIRECTORY_AUTH) and run.of_type("containercloud:k8s:Headlamp")
    found = analyzer.analyze(run.registrations)
    assert found == [], "\n".join(f"{v.policy} [{v.level}]: {v.message}" for v in found)


@pytest.mark.parametrize("variant", CORPUS, ids=[v.id for v in CORPUS])
def test_insecure_change_is_refused_for_its_reason(analyzer: PolicyAnalyzer, runs: Runs, variant: Variant) -> None:
    found = mandatory(v for reg in variant.build(runs) for v in analyzer.analyze_resource(reg))
    shown = "\n".join(f"{v.policy}: {v.message}" for v in found)
    assert any(v.policy == variant.policy and variant.fragment in v.message for v in found), shown
    assert {v.policy for v in found} <= {variant.policy} | variant.also, shown


# --- at preview: provider outputs are unknown ---------------------------------------------------------------

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's unknown string (pulumi.runtime.rpc.UNKNOWN)


def _from_provider_outputs(content: Any) -> bool:
    """Contents a real preview cannot know: certificates and keys (pulumi-tls outputs)."""
    return isinstance(content, str) and "-----BEGIN" in content


def as_at_preview(reg: Registration) -> Registration:
    """A step's Command as a real preview of a new stack registers it: the content of the files on its `stdin`
    (pulumi-tls and pulumi-random outputs, secret or not) is unknown, so `stdin` is; `create`, `delete` and
    `triggers` hold no output of another resource (components/host_step.py `render_step`) and stay known."""
    reg = copy.deepcopy(reg)
    if step_props(reg.type, reg.plain_inputs, reg.name) is not None and "stdin" in reg.inputs:
        reg.inputs["stdin"] = {SECRET_SIG: SECRET_VALUE, "value": UNKNOWN}
    return reg


def test_at_preview_the_stacks_stay_clean_and_the_pack_still_runs(analyzer: PolicyAnalyzer, runs: Runs) -> None:
    for name in ("dev", "ha"):
        regs = [as_at_preview(r) for r in runs[name].registrations if is_step(r)]
        assert all(isinstance(r.inputs["create"], str) for r in regs) and any(is_step(r) for r in regs)
        assert any(r.inputs.get("stdin", {}).get("value") == UNKNOWN for r in regs)
        found = [v for r in regs for v in analyzer.analyze_resource(r)]
        assert found == [], "\n".join(f"{v.policy} [{v.level}]: {v.message}" for v in found)


PREVIEW_CAUGHT = [v for v in CORPUS if v.id in {
    "apiserver-anonymous-auth", "etcd-no-client-cert-auth", "scheduler-config-profiling", "kubelet-config-anonymous",
    "ruleset-extra-accept-any-source", "hosts-toml-plain-http", "dockerd-on-tcp", "host-key-world-readable",
    "robot-with-push", "robot-body-made-on-host", "harbor-yml-without-https", "harbor-ha-database-without-tls",
}]


@pytest.mark.parametrize("variant", PREVIEW_CAUGHT, ids=[v.id for v in PREVIEW_CAUGHT])
def test_rendered_file_edits_are_caught_at_preview(analyzer: PolicyAnalyzer, runs: Runs, variant: Variant) -> None:
    found = [v for reg in variant.build(runs) for v in analyzer.analyze_resource(as_at_preview(reg))]
    assert not [v for v in found if "during preview" in v.message]
    assert any(v.level == "mandatory" and v.policy == variant.policy and variant.fragment in v.message
               for v in found), "\n".join(f"{v.policy}: {v.message}" for v in found)


def test_a_harbor_step_without_a_readable_harbor_yml_fails_closed(analyzer: PolicyAnalyzer, runs: Runs) -> None:
    reg = _find(runs["dev"], REMOTE_COMMAND, "harbor-1-harbor")
    args = registered_step(reg)
    assert any(f.path == HARBOR_YML for f in args.files)
    reg = rendered(reg, dataclasses.replace(args, files=[f for f in args.files if f.path != HARBOR_YML]))
    found = analyzer.analyze_resource(reg)
    assert any(v.policy == "registry-tls-artifacts" and "fail closed" in v.message for v in found), found
