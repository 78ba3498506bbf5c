"""Strict lab stand-ins for the Kubernetes binaries no registry we reach ships (see standin.py and
docs/lab-standins.md). `build(name)` returns the self-contained executable the mirror puts in the upstream
archive: standin.py with the binary's flag list and the known config fields embedded."""

from __future__ import annotations

import json
from pathlib import Path

from lab.standins.standin import load_data

HERE = Path(__file__).resolve().parent
NAMES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
DATA_LINE = "DATA: Optional[dict[str, Any]] = None  # replaced by the mirror builder"
VERSION_LINE = 'KUBERNETES_VERSION = "1.35.4"  # replaced by the mirror builder'


def build(name: str, kubernetes_version: str) -> bytes:
    """The stand-in executable for `name` (a python3 script, stdlib + python3-yaml)."""
    if name not in NAMES:
        raise ValueError(f"no stand-in for {name}")
    source = (HERE / "standin.py").read_text()
    for line in (DATA_LINE, VERSION_LINE):
        if line not in source:
            raise RuntimeError(f"standin.py lost its marker line {line!r}")
    data = load_data(name)
    embedded = json.dumps(data, sort_keys=True)
    source = source.replace(DATA_LINE, f"DATA: Optional[dict[str, Any]] = json.loads({embedded!r})")
    source = source.replace(VERSION_LINE, f"KUBERNETES_VERSION = {kubernetes_version!r}")
    return source.encode()
