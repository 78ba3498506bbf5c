"""Type faults in the stack file's own terms: pydantic's errors turned into `key: what was given, what is
valid`, with "did you mean" for a near-miss key (top level, or inside a host, team, quota, ssh or rule)."""

from __future__ import annotations

import difflib
import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from components.config import Fault, FirewallRule, Host, HostSsh, Quota, Settings, Team

# The model an entry of each list/mapping setting is checked against (by the key that holds it).
NESTED: dict[str, type[BaseModel]] = {
    "hosts": Host, "ssh": HostSsh, "teams": Team, "quota": Quota, "firewallExtraRules": FirewallRule,
}
# What one entry looks like, for "missing" and "not a mapping" messages.
EXAMPLES: dict[str, str] = {
    "hosts": "{name: worker-1, address: 10.20.0.21, zone: dmz, roles: [worker]}",
    "ssh": "{user: admin, port: 22}",
    "teams": "{name: payments, namespaces: [payments], role: edit}",
    "quota": "{cpu: \"8\", memory: 16Gi, pods: 100}",
    "firewallExtraRules": "{hosts: [worker], port: 9100, sources: [10.0.0.0/8], purpose: node exporter}",
    "zones": "{inside: 10.10.0.0/24, dmz: 10.20.0.0/24}",
}
_UNION_TAGS = {"int", "str", "bool", "float"}


def key_of(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def show(value: Any) -> str:
    """A value as the user wrote it in YAML: 'text', 42, true, null; a list or mapping by its kind."""
    if value is None:
        return "an empty value (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return f"'{text}'"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def aliases(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def suggestion(key: str, candidates: list[str]) -> str:
    """` (did you mean `x`?)` for a near miss, else ""."""
    lowered = {c.lower(): c for c in candidates}
    if key.lower() in lowered:
        return f"; did you mean `{lowered[key.lower()]}`?"
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def _container(loc: tuple[Any, ...]) -> str:
    """The setting that holds the entry at `loc` (`hosts` for hosts[3].zone, `ssh` for hosts[3].ssh.port)."""
    names = [p for p in loc[:-1] if isinstance(p, str)]
    return names[-1] if names else ""


def _model_for(loc: tuple[Any, ...]) -> type[BaseModel]:
    return NESTED.get(_container(loc), Settings)


def unknown_key(loc: tuple[Any, ...]) -> Fault:
    model = _model_for(loc)
    where = f"key in a {_container(loc).rstrip('s')} entry" if model is not Settings else "setting"
    known = aliases(model)
    hint = suggestion(str(loc[-1]), known)
    if not hint and model is not Settings:
        hint = f"; an entry has {', '.join(known)}"
    return key_of(loc), f"unknown {where}{hint}"


def missing_key(loc: tuple[Any, ...]) -> Fault:
    container = _container(loc)
    example = EXAMPLES.get(container)
    if example:
        return key_of(loc), f"missing; every entry of {container} needs it, like {example}"
    return key_of(loc), "missing (declare it in the stack file)"


_EXPECTED = {
    "int_parsing": "a whole number", "int_type": "a whole number", "int_from_float": "a whole number",
    "bool_parsing": "true or false", "bool_type": "true or false",
    "string_type": "text", "list_type": "a list ([a, b] or one `- item` per line)",
    "dict_type": "a mapping (key: value)", "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
}


def _expected(err: ErrorDetails, loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    if kind == "literal_error":
        return "one of " + str((err.get("ctx") or {}).get("expected", "")).replace("'", "")
    if loc and loc[-1] == "port" and _container(loc) == "firewallExtraRules":
        return "a port number or a range like 8080-8090"
    expected = _EXPECTED.get(kind, "valid here")
    container = str(loc[-1]) if loc and isinstance(loc[-1], str) else _container(loc + ("",))
    if kind in ("dict_type", "model_type", "model_attributes_type") and container in EXAMPLES:
        expected += f" like {EXAMPLES[container]}"
    return expected


def type_faults(errors: list[ErrorDetails], prefix: tuple[Any, ...] = ()) -> list[Fault]:
    """pydantic errors (for one setting, its key in `prefix`) as stack-file faults, one per key."""
    faults: list[Fault] = []
    seen: set[str] = set()
    for err in _without_misspelt_missing(errors, prefix):
        loc = prefix + tuple(err["loc"])
        if loc and loc[-1] in _UNION_TAGS and len(loc) > 1:
            loc = loc[:-1]
        if err["type"] == "extra_forbidden":
            fault = unknown_key(loc)
        elif err["type"] == "missing":
            fault = missing_key(loc)
        else:
            fault = (key_of(loc), f"{show(err['input'])} is not {_expected(err, loc)}")
        if fault[0] not in seen:
            seen.add(fault[0])
            faults.append(fault)
    return faults


def _without_misspelt_missing(errors: list[ErrorDetails], prefix: tuple[Any, ...]) -> list[ErrorDetails]:
    """`zones: dmz` in a host is one fault (did you mean `zone`?), not also `zone: missing`."""
    misspelt: set[tuple[Any, ...]] = set()
    for err in errors:
        loc = prefix + tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            hint = suggestion(str(loc[-1]), aliases(_model_for(loc)))
            if hint:
                misspelt.add(loc[:-1] + (hint.split("`")[1],))
    return [e for e in errors if not (e["type"] == "missing" and prefix + tuple(e["loc"]) in misspelt)]
