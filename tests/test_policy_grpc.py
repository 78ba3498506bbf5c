"""The whole pack through its real analyzer gRPC server (`python policy/__main__.py`), as the CLI drives it.

The dev and ha stacks pass with no mandatory violation; each broken variant (a stack override through
the real program, or a mutated registration) produces the expected violation over the same path. Edits of the
rendered artifacts (unit files, configs, rulesets) are in tests/test_policy_corpus.py.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any, Optional

import pytest

from offline.engine import run_program
from offline.engine.mocks import SECRET_SIG, SECRET_VALUE
from offline.engine.monitor import Registration
from offline.engine.policy_client import PolicyAnalyzer, Violation, mandatory
from offline.engine.runner import ProgramRun

FW = "containercloud:net:HostFirewall"
POLICIES = {
    "zone-matrix", "overlay-nodes-only", "etcd-ports-members-only", "no-any-source-inside",
    "cluster-ports-never-public",
    "host-firewall-default-drop", "every-host-firewalled", "host-firewall-ruleset", "apiserver-hardening",
    "etcd-hardening", "controller-manager-scheduler-hardening", "kubelet-hardening", "registry-https-only",
    "registry-tls-artifacts", "docker-daemon-unix-socket-only", "rancher-server-tls", "host-secret-files",
    "no-default-credentials", "pki-strength", "pki-no-issued-ca", "leaf-validity", "rbac-no-anonymous",
    "rbac-least-privilege", "team-pod-security", "no-credentials-in-configmaps", "robot-pull-only", "directory-tls",
    "headlamp-not-exposed",
}


@pytest.fixture(scope="module")
def analyzer() -> Iterator[PolicyAnalyzer]:
    with PolicyAnalyzer() as pa:
        yield pa


_RUNS: dict[str, ProgramRun] = {}


def stack(name: str) -> ProgramRun:
    if name not in _RUNS:
        run = run_program(name)
        assert run.error is None, run.error
        _RUNS[name] = run
    return _RUNS[name]


def test_the_pack_declares_every_rule(analyzer: PolicyAnalyzer) -> None:
    assert analyzer.info is not None and analyzer.info.name == "container-cloud"
    assert set(analyzer.policy_names) == POLICIES


@pytest.mark.parametrize("name", ["dev", "ha"])
def test_stacks_pass_the_pack(analyzer: PolicyAnalyzer, name: str) -> None:
    run = stack(name)
    assert len(run.of_type(FW)) == len({r.plain_inputs["host"] for r in run.of_type(FW)})
    violations = analyzer.analyze(run.registrations)
    assert mandatory(violations) == [], "\n".join(f"{v.policy}: {v.message}" for v in mandatory(violations))
    assert not [v for v in violations if "during preview" in v.message]


# --- broken variants ------------------------------------------------------------------------------------------


def _set(d: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        d = d[key]
        if isinstance(d, dict) and d.get(SECRET_SIG) == SECRET_VALUE:
            d = d["value"]
    d[path[-1]] = value


def mutate(run: ProgramRun, typ: str, name: Optional[str], path: tuple[str, ...], value: Any) -> list[Registration]:
    """The stack's registrations with one prop of the first matching resource changed (inputs and outputs)."""
    out, done = [], False
    for reg in run.registrations:
        if not done and reg.type == typ and (name is None or reg.name == name):
            reg = copy.deepcopy(reg)
            _set(reg.inputs, path, value)
            if reg.custom and path[0] in reg.outputs:
                _set(reg.outputs, path, value)
            done = True
        out.append(reg)
    assert done, f"no {typ} {name}"
    return out


def without(run: ProgramRun, typ: str, name: str) -> list[Registration]:
    regs = [r for r in run.registrations if not (r.type == typ and r.name == name)]
    assert len(regs) == len(run.registrations) - 1
    return regs


def first_crb_subjects(run: ProgramRun) -> tuple[str, list[Any]]:
    reg = next(r for r in run.of_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding")
               if r.plain_inputs.get("subjects"))
    return reg.name, list(reg.plain_inputs["subjects"]) + [{"kind": "Group", "name": "system:unauthenticated",
                                                             "apiGroup": "rbac.authorization.k8s.io"}]


def extra(hosts: list[str], port: Any, sources: list[str]) -> dict[str, Any]:
    return {"firewallExtraRules": [{"hosts": hosts, "port": port, "protocol": "tcp", "sources": sources,
                                    "purpose": "broken variant"}]}


Variant = tuple[str, Callable[[], list[Registration]], set[str], str]

VARIANTS: list[Variant] = [
    ("etcd-client-to-dmz",
     lambda: run_program("dev", extra(["master-1"], 2379, ["203.0.113.0/24"])).registrations,
     {"zone-matrix", "etcd-ports-members-only", "host-firewall-ruleset"}, "mandatory"),
    ("dmz-to-rancher-8080",
     lambda: run_program("dev", extra(["rancher"], 8080, ["203.0.113.21/32"])).registrations,
     {"zone-matrix"}, "mandatory"),
    ("etcd-peer-from-rancher",
     lambda: run_program("dev", extra(["etcd"], 2380, ["198.51.100.10/32"])).registrations,
     {"etcd-ports-members-only"}, "mandatory"),
    ("any-source-on-inside",
     lambda: run_program("dev", extra(["rancher-1"], 8443, ["0.0.0.0/0"])).registrations,
     {"no-any-source-inside", "zone-matrix", "host-firewall-ruleset"}, "mandatory"),
    ("firewall-default-accept",
     lambda: mutate(stack("dev"), FW, "worker-1-firewall", ("defaultPolicy",), "accept"),
     {"every-host-firewalled"}, "mandatory"),
    ("host-without-firewall",
     lambda: without(stack("dev"), FW, "worker-2-firewall"),
     {"every-host-firewalled"}, "mandatory"),
    ("worker-insecure-registry",
     lambda: mutate(stack("dev"), "containercloud:k8s:WorkerNode", None, ("insecureRegistries",), ["harbor-1:5000"]),
     {"registry-https-only"}, "mandatory"),
    ("short-random-password",
     lambda: mutate(stack("dev"), "random:index/randomPassword:RandomPassword", None, ("length",), 8.0),
     {"no-default-credentials"}, "mandatory"),
    ("harbor-default-admin-password",
     lambda: mutate(stack("dev"), "containercloud:registry:Harbor", None, ("harborConfig", "harbor_admin_password"),
                    "Harbor12345"),
     {"no-default-credentials"}, "mandatory"),
    ("rsa-1024",
     lambda: mutate(stack("dev"), "tls:index/privateKey:PrivateKey", None, ("rsaBits",), 1024.0),
     {"pki-strength"}, "mandatory"),
    ("ca-for-20-years",
     lambda: mutate(stack("dev"), "tls:index/selfSignedCert:SelfSignedCert", None, ("validityPeriodHours",),
                    175200.0),
     {"pki-strength"}, "mandatory"),
    ("team-as-system-masters",
     lambda: mutate(stack("ha"), "containercloud:k8s:TeamAccess", None, ("organization",), "system:masters"),
     {"pki-strength"}, "mandatory"),
    ("leaf-for-3-years",
     lambda: run_program("dev", {"certValidityHours": 26280}).registrations,
     {"leaf-validity"}, "advisory"),
    ("bind-unauthenticated",
     lambda: mutate(stack("dev"), "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
                    first_crb_subjects(stack("dev"))[0], ("subjects",), first_crb_subjects(stack("dev"))[1]),
     {"rbac-no-anonymous"}, "mandatory"),
]


# Resources analysed one by one per variant: the types any of the variants touch (the full stacks go
# through every resource above); the stack policy always sees the whole stack.
VARIANT_TYPES = {
    FW, "containercloud:k8s:ControlPlane", "containercloud:k8s:WorkerNode", "containercloud:registry:Harbor",
    "containercloud:k8s:TeamAccess", "random:index/randomPassword:RandomPassword",
    "tls:index/privateKey:PrivateKey", "tls:index/selfSignedCert:SelfSignedCert",
    "tls:index/locallySignedCert:LocallySignedCert", "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
}


@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_broken_variant_is_refused(analyzer: PolicyAnalyzer, variant: Variant) -> None:
    _, build, expected, level = variant
    regs = build()
    found: list[Violation] = []
    for reg in regs:
        if reg.type in VARIANT_TYPES:
            found += analyzer.analyze_resource(reg)
    found += analyzer.analyze_stack(regs)
    violations = [v for v in found if v.level == level]
    assert {v.policy for v in violations} == expected, "\n".join(f"{v.policy}: {v.message}" for v in violations)
