"""The strict stand-ins' DATA (lab/standins/flags/*.flags, fields.json) hold Kubernetes v1.35.4's flags and
config fields, as re-checked at the tag (docs/lab-standins.md "Sources of the flag lists and config fields"):
each case below is a difference between v1.35.4 and the version a list was first written from, judged by the
stand-in's own parser and field checker."""

from __future__ import annotations

from typing import Any

import pytest

from lab.standins import standin

BINARIES = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"]


def flags_of(name: str) -> dict[str, str]:
    return standin.load_data(name)["flags"]


def field_faults(kind: str, obj: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    standin.check_fields(obj, standin.load_data("kubelet")["fields"][kind], "cfg", problems)
    return problems


@pytest.mark.parametrize("name", BINARIES)
def test_every_flag_list_names_its_source_and_the_pinned_version(name: str) -> None:
    path = standin.Path(standin.__file__).resolve().parent / "flags" / f"{name}.flags"
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert "1.35.4" in header[0] and any("Source:" in line for line in header)
    assert flags_of(name), name


@pytest.mark.parametrize(("name", "flag", "known"), [
    ("kube-scheduler", "tls-curve-preferences", False),    # apiserver serving options: first at kubernetes-1.36.0
    ("kube-scheduler", "min-compatibility-version", True),  # added in 1.35.0 (#133980)
    ("kube-controller-manager", "min-compatibility-version", True),
    ("kube-controller-manager", "node-sync-period", True),  # deprecated, hidden, still registered at 1.35.4
    ("kubelet", "pod-infra-container-image", False),        # removed in 1.35.0 (#133779)
    ("kube-proxy", "healthz-port", True),                   # deprecated, hidden, still registered
    ("kube-proxy", "metrics-port", True),
    ("kube-apiserver", "default-watch-cache-size", True),   # deprecated, hidden, still registered at 1.35.4
    ("kube-apiserver", "tls-curve-preferences", False),
])
def test_version_specific_flags(name: str, flag: str, known: bool) -> None:
    assert (flag in flags_of(name)) is known
    if not known:
        _, problems = standin.parse_args([f"--{flag}=x"], flags_of(name))
        assert len(problems) == 1 and f"unknown flag: --{flag}" in problems[0], problems


KUBELET = "kubelet.config.k8s.io/v1beta1/KubeletConfiguration"
PROXY = "kubeproxy.config.k8s.io/v1alpha1/KubeProxyConfiguration"
SCHEDULER = "kubescheduler.config.k8s.io/v1/KubeSchedulerConfiguration"
KUBECONFIG = "v1/Config"


@pytest.mark.parametrize(("kind", "obj", "fault"), [
    (KUBELET, {"failCgroupV1": True, "logging": {"format": "text", "options": {"text": {"splitStream": True}}}}, ""),
    (KUBELET, {"tlsCurvePreferences": ["X25519"]}, "tlsCurvePreferences"),  # not in v1beta1 types at 1.35.4
    (KUBELET, {"logging": {"formats": "json"}}, "formats"),
    (PROXY, {"iptables": {"snatNodeInternalIP": True}}, "snatNodeInternalIP"),
    (SCHEDULER, {"enableProfiling": False, "profiles": [{"schedulerName": "default-scheduler"}]}, ""),
    (SCHEDULER, {"percentageOfPlacementsToScore": 50}, "percentageOfPlacementsToScore"),
    (KUBECONFIG, {"users": [{"name": "a", "user": {"client-certificate-data": "x", "client-key-data": "y"}}]}, ""),
    (KUBECONFIG, {"users": [{"name": "a", "user": {"client-cert-data": "x"}}]}, "client-cert-data"),
])
def test_version_specific_config_fields(kind: str, obj: dict[str, Any], fault: str) -> None:
    problems = field_faults(kind, obj)
    if fault:
        assert len(problems) == 1 and fault in problems[0], problems
    else:
        assert problems == []
