"""Every Kubernetes object the program applies passes kubernetes-validate --strict for the pinned Kubernetes
version (kubernetes-validate 1.37.0 bundles the schemas of 1.35): one more real-tool check of `make preview`."""

from __future__ import annotations

import copy

import pytest

from offline.checks import KUBERNETES_VALIDATE, applied_objects, check_kubernetes_object, check_kubernetes_objects
from offline.engine import ProgramRun

kv = pytest.importorskip("kubernetes_validate")


@pytest.mark.parametrize("stack", ["dev", "ha", "dev_helm"])
def test_every_applied_object_passes_strict_validation(stack: str, request: pytest.FixtureRequest) -> None:
    run: ProgramRun = request.getfixturevalue(stack)
    checks = check_kubernetes_objects(run)
    objects = [r for r in run.registrations if r.type.startswith("kubernetes:")
               and not r.type.startswith(("kubernetes:helm.sh/", "pulumi:providers:"))]
    assert len(checks) == len(objects) > 0
    assert [c for c in checks if c.status != "ok"] == []
    assert all(c.name == KUBERNETES_VALIDATE and "1.35.4" in c.detail for c in checks)
    kinds = {c.target.split("/")[1] for c in checks}
    assert {"Namespace", "DaemonSet", "Deployment", "ConfigMap", "ClusterRole"} <= kinds


def test_strict_validation_catches_an_unknown_field_and_a_wrong_type(dev: ProgramRun) -> None:
    target, doc = next((t, d) for t, d in applied_objects(dev) if d["kind"] == "Deployment")
    typo = copy.deepcopy(doc)
    typo["spec"]["replicaz"] = 2
    bad = check_kubernetes_object(kv, target, typo, "1.35.4")
    assert bad.status == "failed" and "replicaz" in bad.detail
    wrong = copy.deepcopy(doc)
    wrong["spec"]["replicas"] = "two"
    assert check_kubernetes_object(kv, target, wrong, "1.35.4").status == "failed"
    assert check_kubernetes_object(kv, target, doc, "1.35.4").status == "ok"


def test_an_api_version_the_pinned_release_does_not_serve_fails(dev: ProgramRun) -> None:
    target, doc = next((t, d) for t, d in applied_objects(dev) if d["kind"] == "Deployment")
    old = dict(copy.deepcopy(doc), apiVersion="extensions/v1beta1")
    assert check_kubernetes_object(kv, target, old, "1.35.4").status == "failed"
