"""Component hardening: rules 5 (kube-apiserver), 6 (kubelet) and 7 (registry over https only).

Reads `containercloud:k8s:ControlPlane` props `apiserverFlags` ({flag-without-dashes: string}) and
`nodePortRange`; `containercloud:k8s:WorkerNode` props `kubeletConfig` (a KubeletConfiguration) and
`insecureRegistries`; `containercloud:registry:Harbor` props `https`; and every string of every
resource for insecure-registry settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Optional

from .common import CONTROL_PLANE, HARBOR, WORKER_NODE, as_int, get, port_bounds, walk, walk_strings

Report = Callable[..., None]

NODE_PORT_LIMITS = (30000, 32767)


def _flag(flags: Any, name: str) -> Optional[str]:
    value = get(flags, name)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _truthy(value: Any) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


# --- 5. kube-apiserver ---------------------------------------------------------------------------------


def _node_port_problem(value: Any, where: str) -> Optional[str]:
    bounds = port_bounds(value)
    if bounds is None:
        return f"{where} {value!r} is not a port range"
    if bounds[0] < NODE_PORT_LIMITS[0] or bounds[1] > NODE_PORT_LIMITS[1] or bounds[0] > bounds[1]:
        return f"{where} {value} leaves 30000-32767 (NodePorts would shadow host services)"
    return None


def apiserver_problems(props: Any) -> list[str]:
    flags = get(props, "apiserverFlags")
    if not isinstance(flags, Mapping):
        return ["ControlPlane props carry no apiserverFlags; the apiserver's hardening cannot be checked"]
    problems = []
    if _flag(flags, "anonymous-auth") != "false":
        problems.append(f"anonymous-auth is {_flag(flags, 'anonymous-auth')!r}; set --anonymous-auth=false")
    modes = [m.strip() for m in (_flag(flags, "authorization-mode") or "").split(",") if m.strip()]
    if "Node" not in modes or "RBAC" not in modes or "AlwaysAllow" in modes:
        problems.append(f"authorization-mode is {','.join(modes) or 'unset'}; use Node,RBAC")
    insecure = _flag(flags, "insecure-port")
    if insecure is not None and insecure != "0":
        problems.append(f"insecure-port is {insecure}; the insecure port must stay off")
    if _flag(flags, "insecure-bind-address") is not None:
        problems.append("insecure-bind-address is set; the insecure port must stay off")
    for flag in ("basic-auth-file", "token-auth-file"):
        if _flag(flags, flag) is not None:
            problems.append(f"{flag} is set; static password and token files are not allowed")
    if not _flag(flags, "encryption-provider-config"):
        problems.append("encryption-provider-config is not set; Secrets must be encrypted at rest in etcd")
    for where, value in (("service-node-port-range", _flag(flags, "service-node-port-range")),
                         ("nodePortRange", get(props, "nodePortRange"))):
        if value is not None and (problem := _node_port_problem(value, where)):
            problems.append(problem)
    return problems


def validate_apiserver(args: Any, report: Report) -> None:
    """kube-apiserver: anonymous auth off, Node,RBAC, no insecure port, no static auth files, NodePorts in range,
    Secrets encrypted at rest."""
    if args.resource_type != CONTROL_PLANE:
        return
    for problem in apiserver_problems(args.props):
        report(f"{args.name}: {problem}")


# --- 6. kubelet -------------------------------------------------------------------------------------------


def kubelet_problems(props: Any) -> list[str]:
    config = get(props, "kubeletConfig")
    if not isinstance(config, Mapping):
        return ["WorkerNode props carry no kubeletConfig; the kubelet's hardening cannot be checked"]
    problems = []
    if _truthy(get(config, "authentication", "anonymous", "enabled")) is not False:
        problems.append("authentication.anonymous.enabled must be false")
    if _truthy(get(config, "authentication", "webhook", "enabled")) is not True:
        problems.append("authentication.webhook.enabled must be true")
    if get(config, "authorization", "mode") != "Webhook":
        problems.append(f"authorization.mode is {get(config, 'authorization', 'mode')!r}; use Webhook")
    read_only = get(config, "readOnlyPort")
    if read_only is not None and as_int(read_only) != 0:
        problems.append(f"readOnlyPort is {read_only}; the unauthenticated read-only port must be 0")
    return problems


def validate_kubelet(args: Any, report: Report) -> None:
    """kubelet: anonymous auth off, webhook authentication and authorization."""
    if args.resource_type != WORKER_NODE:
        return
    for problem in kubelet_problems(args.props):
        report(f"{args.name}: {problem}")


# --- 7. registry over https only ------------------------------------------------------------------------

INSECURE_TEXT = (
    re.compile(r"--insecure-registr(?:y|ies)(?:=|\s+)[\w.-]+[.:][\w.:-]+"),
    re.compile(r"""["']?insecure[-_]registr(?:y|ies)["']?\s*[:=]\s*\[\s*["'\w]""", re.IGNORECASE),
    re.compile(r"insecure[-_]registr(?:y|ies)\s*:\s*\n\s*-\s*\S", re.IGNORECASE),
    re.compile(r"\b(?:insecure_)?skip_verify\s*=\s*true", re.IGNORECASE),
)
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
    if resource_type == HARBOR and _truthy(get(props, "https")) is not True:
        problems.append("Harbor must be served over https (props https is not true)")
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
    return problems


def validate_registry_https(args: Any, report: Report) -> None:
    """No insecure registry anywhere; the registry is served over https."""
    for problem in registry_problems(args.resource_type, args.props):
        report(f"{args.name}: {problem}")
