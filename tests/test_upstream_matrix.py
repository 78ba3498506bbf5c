"""Issue 12.2: the pinned versions are inside each other's supported ranges (components/support_matrix.yaml),
and a stack outside the matrix is refused before any resource, naming the key, the versions and the range."""

from __future__ import annotations

import pytest
import yaml

from components import artifacts, docker_engine, support_matrix
from components.config import parse_settings
from offline.engine import run_program
from offline.engine.runner import ROOT, load_stack_config

FIELDS = {"rancherVersion": "rancher_version", "kubernetesVersion": "kubernetes_version"}


def settings_of(stack: str, helm: bool = False, **overrides: str):  # type: ignore[no-untyped-def]
    """The stack's settings with versions swapped in afterwards: parse_settings itself refuses a stack
    outside the matrix, and these tests call the matrix check directly."""
    cfg = load_stack_config(stack)
    s = parse_settings({k.split(":", 1)[1]: v for k, v in cfg.values.items()})
    update: dict[str, object] = {FIELDS[k]: v for k, v in overrides.items()}
    if helm:
        update["rancher_mode"] = "helm"
    return s.model_copy(update=update)


def test_rancher_chart_range_excludes_the_old_pin_and_holds_the_new() -> None:
    # rancher/rancher chart/Chart.yaml: v2.12.3 says kubeVersion < 1.34.0-0, v2.14.4 says < 1.36.0-0
    table = support_matrix.load()["rancher"]["versions"]
    assert table["v2.12.3"]["kubernetes"][1] == "1.33"
    assert table["v2.14.4"]["kubernetes"][1] == "1.35"
    defaults = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    assert support_matrix.minor(defaults["kubernetesVersion"]["default"]) <= support_matrix.minor(
        table[defaults["rancherVersion"]["default"]]["kubernetes"][1])


@pytest.mark.parametrize("stack", ["dev", "ha"])
def test_the_pinned_versions_fit_together(stack: str) -> None:
    assert support_matrix.faults(settings_of(stack)) == []
    assert support_matrix.faults(settings_of(stack, helm=True)) == []


def test_every_pinned_component_has_a_sourced_entry() -> None:
    table = support_matrix.load()
    pins = support_matrix.pins(settings_of("dev", helm=True))
    assert {p.component for p in pins} >= {"rancher", "containerd", "etcd", "flannel", "coredns", "ingress-nginx",
                                            "harbor", "docker"}
    for p in pins:
        entry = table[p.component]["versions"][p.version]
        assert entry["source"] and isinstance(entry["verified"], bool)
    assert docker_engine.DOCKER_VERSION in table["docker"]["versions"]
    assert artifacts.CONTAINERD_VERSION in table["containerd"]["versions"]


def test_old_rancher_with_kubernetes_1_35_names_key_versions_and_range() -> None:
    faults = support_matrix.faults(settings_of("dev", rancherVersion="v2.12.3"))
    assert len(faults) == 1
    key, message = faults[0]
    assert key == "rancherVersion"
    assert "rancher v2.12.3" in message and "1.30 to 1.33" in message and "1.35.4" in message
    assert "chart/Chart.yaml" in message


def test_kubernetes_outside_every_range_is_reported_for_each_component() -> None:
    faults = dict(support_matrix.faults(settings_of("dev", kubernetesVersion="1.37.0", helm=True)))
    assert "rancherVersion" in faults and "1.32 to 1.35" in faults["rancherVersion"]
    assert "kubernetesVersion" in faults  # containerd, etcd, ingress-nginx, ... pinned in code


def test_an_unknown_version_is_refused_with_the_known_ones() -> None:
    faults = support_matrix.faults(settings_of("dev", rancherVersion="v2.99.0"))
    assert faults and faults[0][0] == "rancherVersion" and "v2.14.4" in faults[0][1]


def test_the_program_refuses_the_combination_before_any_resource() -> None:
    run = run_program("dev", {"rancherVersion": "v2.12.3"})
    assert run.error is not None and run.registrations == []
    assert any(line.strip().startswith("container-cloud:rancherVersion:") and "1.30 to 1.33" in line
               for line in str(run.error).splitlines()), str(run.error)
