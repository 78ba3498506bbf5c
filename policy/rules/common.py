"""Helpers shared by the policies: tolerant readers for props that went through protobuf Struct
(numbers become floats), unknown values at preview, and network arithmetic."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Optional, Union

from pulumi_policy.proxy import UnknownValueError

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

HOST_FIREWALL = "containercloud:net:HostFirewall"
CONTROL_PLANE = "containercloud:k8s:ControlPlane"
WORKER_NODE = "containercloud:k8s:WorkerNode"
HARBOR = "containercloud:registry:Harbor"
CLUSTER_PKI = "containercloud:pki:ClusterPki"
TEAM_ACCESS = "containercloud:k8s:TeamAccess"
REMOTE_COMMAND = "command:remote:Command"


def get(props: Any, *path: Any, default: Any = None) -> Any:
    """props[path...] or `default` when missing or unknown at preview."""
    value = props
    for key in path:
        try:
            if isinstance(value, Mapping):
                if key not in value:
                    return default
                value = value[key]
            elif isinstance(value, Sequence) and not isinstance(value, str) and isinstance(key, int):
                value = value[key]
            else:
                return default
        except (UnknownValueError, IndexError, KeyError):
            return default
    return value


def items(value: Any) -> list[Any]:
    """The known elements of a list prop (unknown elements skipped)."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    out = []
    for i in range(len(value)):
        try:
            out.append(value[i])
        except UnknownValueError:
            continue
    return out


def as_int(value: Any) -> Optional[int]:
    """22, 22.0 and "22" are 22; anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and float(value).is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def port_bounds(value: Any) -> Optional[tuple[int, int]]:
    """A port (int, float, "22") or range ("30000-32767") as (low, high)."""
    single = as_int(value)
    if single is not None:
        return single, single
    if isinstance(value, str) and "-" in value:
        low, _, high = value.partition("-")
        lo, hi = as_int(low), as_int(high)
        if lo is not None and hi is not None:
            return lo, hi
    return None


def covers(value: Any, port: int) -> bool:
    bounds = port_bounds(value)
    return bounds is not None and bounds[0] <= port <= bounds[1]


def network(value: Any) -> Optional[Network]:
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None


def overlaps(a: Network, b: Network) -> bool:
    return a.version == b.version and a.overlaps(b)


def is_any(net: Network) -> bool:
    return net.prefixlen == 0


def walk_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, string) for every known string in a props tree; unknown values are skipped."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key in list(value):
            try:
                child = value[key]
            except UnknownValueError:
                continue
            yield from walk_strings(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, Sequence):
        for i in range(len(value)):
            try:
                child = value[i]
            except UnknownValueError:
                continue
            yield from walk_strings(child, f"{path}[{i}]")


def walk(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) for every known keyed value in a props tree."""
    if isinstance(value, Mapping):
        for key in list(value):
            try:
                child = value[key]
            except UnknownValueError:
                continue
            child_path = f"{path}.{key}" if path else str(key)
            yield child_path, str(key), child
            yield from walk(child, child_path)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for i in range(len(value)):
            try:
                child = value[i]
            except UnknownValueError:
                continue
            yield from walk(child, f"{path}[{i}]")
