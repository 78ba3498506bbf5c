"""The support matrix (components/support_matrix.yaml): which Kubernetes minors each pinned component
version supports, with the upstream source of each entry. `faults(settings)` lists every pinned version
the table does not know and every version whose range does not hold the stack's kubernetesVersion, as
(stack key, message) pairs, before any resource is registered."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from components import artifacts, docker_engine
from components.config import Settings

MATRIX_FILE = Path(__file__).resolve().with_name("support_matrix.yaml")


@dataclass(frozen=True)
class Pin:
    component: str
    version: str
    setting: Optional[str]  # the stack key choosing the version; None when pinned in code


@functools.lru_cache(maxsize=2)
def load(path: Path = MATRIX_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def _tag(image: str) -> str:
    return image.rsplit(":", 1)[1]


def pins(s: Settings) -> list[Pin]:
    """Every component version the stack runs, with the key that chooses it."""
    out = [
        Pin("rancher", s.rancher_version, "rancherVersion"),
        Pin("harbor", s.registry_version, "registryVersion"),
        Pin("containerd", artifacts.CONTAINERD_VERSION, None),
        Pin("etcd", artifacts.ETCD_VERSION, None),
        Pin("flannel", _tag(artifacts.FLANNEL_IMAGE), None),
        Pin("coredns", _tag(artifacts.COREDNS_IMAGE), None),
        Pin("docker", docker_engine.DOCKER_VERSION, None),
    ]
    if s.rancher_mode == "helm":
        out.append(Pin("ingress-nginx", artifacts.INGRESS_NGINX_VERSION, None))
    return out


def minor(version: str) -> tuple[int, int]:
    major, minor_, *_ = version.lstrip("v").split(".")
    return int(major), int(minor_)


def _where(pin: Pin) -> str:
    return pin.setting or f"kubernetesVersion ({pin.component} {pin.version} is pinned in components/artifacts.py)"


def _source_head(entry: dict[str, Any]) -> str:
    """The source's first clause (the file read), without the detail kept in the matrix."""
    text = " ".join(str(entry["source"]).split())
    return re.split(r" \(|; ", text, maxsplit=1)[0]


def _fault(pin: Pin, s: Settings, entry: dict[str, Any]) -> Optional[tuple[str, str]]:
    supported = entry["kubernetes"]
    if supported == "any":
        return None
    low, high = (minor(v) for v in supported)
    if low <= minor(s.kubernetes_version) <= high:
        return None
    key = pin.setting or "kubernetesVersion"
    return key, (f"{pin.component} {pin.version} supports Kubernetes {supported[0]} to {supported[1]}, "
                 f"not kubernetesVersion {s.kubernetes_version} (source: {_source_head(entry)}; the whole source is "
                 f"in components/{MATRIX_FILE.name})")


def faults(s: Settings) -> list[tuple[str, str]]:
    """Every version outside the matrix, as (stack key, message); empty when all fit together."""
    table = load()
    out: list[tuple[str, str]] = []
    for pin in pins(s):
        versions = (table.get(pin.component) or {}).get("versions") or {}
        entry = versions.get(pin.version)
        if entry is None:
            out.append((pin.setting or "kubernetesVersion",
                        f"{pin.version} is not in {MATRIX_FILE.name} for {pin.component} (known: "
                        f"{', '.join(map(str, versions)) or 'none'}); add its supported Kubernetes range and "
                        f"its upstream source there first ({_where(pin)})"))
            continue
        fault = _fault(pin, s, entry)
        if fault:
            out.append(fault)
    return out
