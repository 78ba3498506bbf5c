"""Registry over https only, in every text of every resource: no insecure-registry setting, no plain-http
registry URL, no `skip_verify`, no curl without certificate verification. The apiserver, kubelet and Harbor
themselves are judged from the files their hosts receive (policy/rules/host_artifacts.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .common import WORKER_NODE, get, walk, walk_strings

Report = Callable[..., None]


# --- 7. registry over https only ------------------------------------------------------------------------

INSECURE_TEXT = (
    re.compile(r"--insecure-registr(?:y|ies)(?:=|\s+)[\w.-]+[.:][\w.:-]+"),
    re.compile(r"""["']?insecure[-_]registr(?:y|ies)["']?\s*[:=]\s*\[\s*["'\w]""", re.IGNORECASE),
    re.compile(r"insecure[-_]registr(?:y|ies)\s*:\s*\n\s*-\s*\S", re.IGNORECASE),
    re.compile(r"\b(?:insecure_)?skip_verify\s*=\s*true", re.IGNORECASE),
)
# curl without certificate verification (-k, --insecure, or -k among short flags) in a host script: hosts
# fetch binaries from the registry or the mirror and talk to Harbor's API through our CA, never around it.
# A probe of the host's own loopback (kube-controller-manager's and kube-scheduler's self-signed /healthz)
# crosses no network and is allowed.
TLS_BYPASS = re.compile(r"\bcurl\b(?:[^\n]|\\\n)*?\s(?:--insecure\b|-[A-Za-jl-z]*k[A-Za-z]*(?=\s))")
LOOPBACK_URL = re.compile(r"https://(?:127\.0\.0\.1|localhost|\[::1\])[:/]")


def tls_bypass(text: str) -> str:
    """The first curl command in `text` that skips certificate verification for a non-loopback URL, or ""."""
    for match in TLS_BYPASS.finditer(text):
        end = re.search(r"(?<!\\)\n", text[match.end():])
        command = text[match.start():match.end() + (end.start() if end else len(text))]
        if not LOOPBACK_URL.search(command):
            return match.group(0).strip()
    return ""
INSECURE_KEY = re.compile(r"insecure[-_]?registr", re.IGNORECASE)
REGISTRY_KEY = re.compile(r"registr", re.IGNORECASE)


def _non_empty(value: Any) -> bool:
    try:
        return len(value) > 0
    except TypeError:
        return bool(value)


def registry_problems(resource_type: str, props: Any) -> list[str]:
    problems = []
    if resource_type == WORKER_NODE and _non_empty(get(props, "insecureRegistries", default=[])):
        problems.append("insecureRegistries is not empty; nodes trust the registry through our CA")
    for path, key, value in walk(props):
        if INSECURE_KEY.search(key) and _non_empty(value) and not isinstance(value, bool):
            problems.append(f"{path} lists insecure registries")
        elif REGISTRY_KEY.search(key) and isinstance(value, str) and value.lower().startswith("http://"):
            problems.append(f"{path} points at a registry over plain http ({value})")
    for path, text in walk_strings(props):
        for pattern in INSECURE_TEXT:
            match = pattern.search(text)
            if match:
                problems.append(f"{path or 'value'} configures an insecure registry ({match.group(0).strip()!r})")
                break
        bypass = tls_bypass(text)
        if bypass:
            problems.append(f"{path or 'value'} runs curl without certificate verification ({bypass[-40:]!r})")
    return problems


def validate_registry_https(args: Any, report: Report) -> None:
    """No insecure registry anywhere: no insecure-registries list, plain-http registry URL or skip_verify in any
    resource's props or texts (scripts and files included)."""
    for problem in registry_problems(args.resource_type, args.props):
        report(f"{args.name}: {problem}")
