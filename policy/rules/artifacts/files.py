"""The files of a step (policy/rules/artifacts/steps.py decodes them from its Command), as the analyzer receives
them (secrets unwrapped, unknowns as None)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from pulumi_policy.proxy import UnknownValueError

SECRET_SIG = "4dabf18193072939515e22adb298388d"


@dataclass(frozen=True)
class HostFile:
    host: str
    path: str
    mode: str
    secret: bool
    content: Optional[str]  # None when unknown at preview


def unwrapped(value: Any) -> Any:
    """A value with a Pulumi secret wrapper removed (the SDK usually unwraps them already)."""
    try:
        if isinstance(value, Mapping) and SECRET_SIG in value:
            return value.get("value")
    except UnknownValueError:
        return None
    return value


def _field(entry: Any, key: str) -> Any:
    try:
        return unwrapped(entry[key]) if key in entry else None
    except UnknownValueError:
        return None


def host_files(props: Any) -> list[HostFile]:
    """Every file a step places (`step_props`), with its content when known."""
    try:
        host = unwrapped(props["host"]) if "host" in props else ""
        files = unwrapped(props["files"]) if "files" in props else []
    except UnknownValueError:
        return []
    if not isinstance(files, Sequence) or isinstance(files, str):
        return []
    out = []
    for i in range(len(files)):
        try:
            entry = unwrapped(files[i])
        except UnknownValueError:
            continue
        if not isinstance(entry, Mapping):
            continue
        path, content = _field(entry, "path"), _field(entry, "content")
        mode = _field(entry, "mode")
        if not isinstance(path, str):
            continue
        out.append(HostFile(str(host or ""), path, str(mode or "0644"), _field(entry, "secret") is True,
                            content if isinstance(content, str) else None))
    return out


PRIVATE_KEY_MARK = "PRIVATE KEY-----"
KUBECONFIG_CREDENTIALS = ("client-key-data:", "token:", "password:")


def holds_credentials(text: str) -> Optional[str]:
    """What kind of credential a text holds, or None."""
    if PRIVATE_KEY_MARK in text:
        return "a private key"
    if "kind: Config" in text and any(k in text for k in KUBECONFIG_CREDENTIALS):
        return "a kubeconfig with credentials"
    return None
