"""Issue 7: team access — namespaces, RBAC and a kubeconfig per team, checked with kubectl and openssl."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from components.config import parse_settings
from offline.engine import ProgramRun, run_program
from offline.engine.runner import ROOT, load_stack_config

PROGRAM = ROOT / "__main__.py"
TEAM_TYPE = "containercloud:k8s:TeamAccess"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
CLUSTER_ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
NAMESPACE = "kubernetes:core/v1:Namespace"
QUOTA = "kubernetes:core/v1:ResourceQuota"
ANONYMOUS = {"system:anonymous", "system:unauthenticated"}


def _dev_settings():
    cfg = load_stack_config("dev")
    prefix = "container-cloud:"
    return parse_settings({k[len(prefix):]: v for k, v in cfg.values.items()})


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    run = run_program("dev", program=PROGRAM)
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="module")
def one_team() -> ProgramRun:
    raw = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["container-cloud:teams"]
    run = run_program("dev", overrides={"teams": [raw[0]]}, program=PROGRAM)
    assert run.error is None, run.error
    return run


def _team(run: ProgramRun, name: str):
    return run.named(name, TEAM_TYPE)


def _descendants(run: ProgramRun, urn: str) -> list[Any]:
    out = []
    for child in run.children_of(urn):
        out.append(child)
        out.extend(_descendants(run, child.urn))
    return out


def _kubectl_view(doc: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "kubeconfig"
        path.write_text(doc)
        os.chmod(path, 0o600)
        done = subprocess.run(["kubectl", "config", "view", "--kubeconfig", str(path), "-o", "json", "--raw"],
                              capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_team_has_a_component_with_the_policy_contract(dev: ProgramRun) -> None:
    settings = _dev_settings()
    assert {r.name for r in dev.of_type(TEAM_TYPE)} == {t.name for t in settings.teams}
    for t in settings.teams:
        props = _team(dev, t.name).plain_inputs
        assert props == {
            "team": t.name,
            "namespaces": t.namespaces,
            "role": t.role,
            "clusterRead": t.cluster_read,
            "organization": f"team:{t.name}",
            "commonName": f"team-{t.name}",
            "validityHours": float(t.cert_validity_hours or settings.cert_validity_hours),
        }


def test_rolebindings_only_in_the_teams_namespaces(dev: ProgramRun) -> None:
    settings = _dev_settings()
    for t in settings.teams:
        children = _descendants(dev, _team(dev, t.name).urn)
        namespaces = {r.plain_inputs["metadata"]["name"] for r in children if r.type == NAMESPACE}
        assert namespaces == set(t.namespaces)
        bindings = [r.plain_inputs for r in children if r.type == ROLE_BINDING]
        assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(t.namespaces)
        for b in bindings:
            assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": t.role}
            assert b["subjects"] == [{"kind": "Group", "name": f"team:{t.name}",
                                      "apiGroup": "rbac.authorization.k8s.io"}]
        cluster = [r.plain_inputs for r in children if r.type == CLUSTER_ROLE_BINDING]
        if t.cluster_read:
            assert [c["roleRef"]["name"] for c in cluster] == ["view"]
        else:
            assert cluster == []
        quotas = [r.plain_inputs for r in children if r.type == QUOTA]
        if t.quota:
            assert sorted(q["metadata"]["namespace"] for q in quotas) == sorted(t.namespaces)
            assert quotas[0]["spec"]["hard"]["pods"] == str(t.quota.pods)
        else:
            assert quotas == []
    # no RoleBinding anywhere in the stack names a namespace of another team than its owner
    owners = {ns: t.name for t in settings.teams for ns in t.namespaces}
    for r in dev.of_type(ROLE_BINDING):
        ns = r.plain_inputs["metadata"]["namespace"]
        if ns in owners:
            assert all(s["name"] == f"team:{owners[ns]}" for s in r.plain_inputs["subjects"])


def test_nothing_is_bound_to_anonymous_users(dev: ProgramRun) -> None:
    for r in dev.of_type(ROLE_BINDING) + dev.of_type(CLUSTER_ROLE_BINDING):
        names = {s["name"] for s in r.plain_inputs.get("subjects", [])}
        assert not names & ANONYMOUS, r.urn
    for team in dev.of_type(TEAM_TYPE):
        for r in _descendants(dev, team.urn):
            if r.type in (ROLE_BINDING, CLUSTER_ROLE_BINDING):
                assert r.plain_inputs["roleRef"]["name"] in ("view", "edit", "admin"), r.urn


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubeconfigs_are_accepted_by_kubectl(dev: ProgramRun) -> None:
    settings = _dev_settings()
    ca = dev.outputs["kubernetesCaCertificate"]
    assert "kubeconfigs" in dev.secret_outputs
    kubeconfigs = dev.outputs["kubeconfigs"]
    assert set(kubeconfigs) == {t.name for t in settings.teams}
    for t in settings.teams:
        view = _kubectl_view(kubeconfigs[t.name])
        current = next(c for c in view["contexts"] if c["name"] == view["current-context"])["context"]
        cluster = next(c for c in view["clusters"] if c["name"] == current["cluster"])["cluster"]
        assert cluster["server"] == settings.api_endpoint
        assert base64.b64decode(cluster["certificate-authority-data"]).decode() == ca
        assert current["namespace"] == t.namespaces[0]
        user = next(u for u in view["users"] if u["name"] == current["user"])["user"]
        assert "client-key-data" in user


def test_client_certificates_verify_against_the_kubernetes_ca(dev: ProgramRun, tmp_path: Path) -> None:
    settings = _dev_settings()
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(dev.outputs["kubernetesCaCertificate"])
    for t in settings.teams:
        doc = yaml.safe_load(dev.outputs["kubeconfigs"][t.name])
        pem = base64.b64decode(doc["users"][0]["user"]["client-certificate-data"])
        cert_file = tmp_path / f"{t.name}.crt"
        cert_file.write_bytes(pem)
        done = subprocess.run(["openssl", "verify", "-CAfile", str(ca_file), "-purpose", "sslclient",
                               str(cert_file)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        cert = x509.load_pem_x509_certificate(pem)
        orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        assert orgs == [f"team:{t.name}"]
        assert "system:masters" not in orgs
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"team-{t.name}"


def test_removing_a_team_removes_its_bindings_and_kubeconfig(dev: ProgramRun, one_team: ProgramRun) -> None:
    kept, removed = "payments", "analytics"
    assert set(dev.outputs["kubeconfigs"]) == {kept, removed}
    assert set(one_team.outputs["kubeconfigs"]) == {kept}
    assert "kubeconfigs" in one_team.secret_outputs
    assert [r.name for r in one_team.of_type(TEAM_TYPE)] == [kept]
    bindings = one_team.of_type(ROLE_BINDING) + one_team.of_type(CLUSTER_ROLE_BINDING)
    subjects = {s["name"] for r in bindings for s in r.plain_inputs["subjects"]}
    assert f"team:{removed}" not in subjects
    namespaces = {r.plain_inputs["metadata"]["name"] for r in one_team.of_type(NAMESPACE)}
    assert "analytics" not in namespaces
    # the kept team's resources are the same in both runs (same URNs: no replacement)
    before = {r.urn for r in _descendants(dev, _team(dev, kept).urn)}
    after = {r.urn for r in _descendants(one_team, _team(one_team, kept).urn)}
    assert before == after
