"""Issue 17: Headlamp — its manifests against kubernetes-validate --strict, no cluster-wide rights, API-only."""

from __future__ import annotations

import pytest

from components import artifacts, headlamp
from components.config import parse_settings
from offline.checks import applied_objects, check_kubernetes_objects
from offline.engine import ProgramRun, run_program
from offline.engine.runner import ROOT, load_stack_config


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    result = run_program("dev", overrides={"headlamp": True}, program=ROOT / "__main__.py")
    assert result.error is None, result.error
    return result


def _headlamp_objects(run: ProgramRun) -> list[dict]:
    return [doc for _, doc in applied_objects(run)
            if doc["metadata"].get("namespace") == headlamp.NAMESPACE or doc["metadata"]["name"] == headlamp.NAMESPACE]


def test_headlamp_objects_pass_kubernetes_validate_strict(run: ProgramRun) -> None:
    checks = [c for c in check_kubernetes_objects(run) if "headlamp" in c.target]
    assert {c.target.split("/")[1] for c in checks} == {"Namespace", "ServiceAccount", "Deployment", "Service"}
    assert all(c.status == "ok" for c in checks), [(c.target, c.detail) for c in checks if c.status != "ok"]


def test_headlamp_runs_the_mirrored_image_without_cluster_wide_rights(run: ProgramRun) -> None:
    s = parse_settings({k.split(":", 1)[1]: v for k, v in
                        load_stack_config("dev", {"headlamp": True}).values.items()})
    objects = _headlamp_objects(run)
    deployment = next(d for d in objects if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"{s.registry_hostname}/system/headlamp:{artifacts.HEADLAMP_VERSION}"
    assert any(i.name == "headlamp" and i.source == artifacts.HEADLAMP_IMAGE for i in artifacts.images(s))
    assert container["args"][0] == "-in-cluster"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    service = next(d for d in objects if d["kind"] == "Service")
    assert service["spec"]["type"] == "ClusterIP"
    for _, doc in applied_objects(run):  # nothing binds Headlamp's ServiceAccount to any role
        for subject in doc.get("subjects") or []:
            assert subject.get("namespace") != headlamp.NAMESPACE, doc["metadata"]["name"]
    assert run.outputs["headlampUrl"].endswith("/api/v1/namespaces/headlamp/services/http:headlamp:http/proxy/")


def test_headlamp_is_off_by_default() -> None:
    result = run_program("dev", program=ROOT / "__main__.py")
    assert result.error is None, result.error
    assert not result.of_type("containercloud:k8s:Headlamp")
    assert result.outputs["headlampUrl"] == ""
