"""The single validation pass: every fault of a stack file at once, before any resource exists.

1. Each setting is type-checked on its own (pydantic, one adapter per key), so a type error in one
   setting hides nothing else; an unknown key gets "did you mean".
2. Every check in FAULT_SOURCES runs on the settings. A check that reads a setting with a type error is
   skipped (its answer would be about a value we do not have), so no fault is invented.
3. VERSION_SOURCES (the bill of materials; the version support matrix plugs in here) report a key only
   when the rules have not already faulted it.
4. WARNING_SOURCES: legal but unwise settings, printed by load_settings with pulumi.log.warn.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from pydantic import TypeAdapter, ValidationError

from components import artifacts, config_cross, config_rules, support_matrix
from components.config import SECRET_KEYS, Fault, Settings
from components.config_messages import aliases, suggestion, type_faults
from components.config_rules import Check

FAULT_SOURCES: tuple[Check, ...] = (*config_rules.CHECKS, *config_cross.CHECKS)
VERSION_SOURCES: tuple[Check, ...] = (artifacts.check_bill_of_materials, support_matrix.faults)
WARNING_SOURCES: tuple[Check, ...] = config_cross.WARNINGS

_BY_ALIAS = {f.alias or n: n for n, f in Settings.model_fields.items()}
_STR_KEYS = {a for a, n in _BY_ALIAS.items() if Settings.model_fields[n].annotation is str}


@dataclass
class Validation:
    settings: Optional[Settings]  # None when there is any error
    errors: list[Fault] = field(default_factory=list)
    warnings: list[Fault] = field(default_factory=list)


_SEEN: set[str] = set()


class _Watched(Settings):
    """The settings as the checks see them: records which fields a check reads (settings with a type error
    are None here, and a check that reads one is skipped)."""

    def __getattribute__(self, name: str) -> Any:
        if name in _BY_ALIAS.values():
            _SEEN.add(name)
        return super().__getattribute__(name)


@functools.cache
def _adapter(name: str) -> TypeAdapter[Any]:
    annotation: Any = Settings.model_fields[name].annotation
    return TypeAdapter(annotation)


def _decode(key: str, value: Any) -> Any:
    """Config values arrive as strings; objects, arrays, numbers and booleans are JSON."""
    if isinstance(value, str) and key not in _STR_KEYS:
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(value)
    return value


def _typed(raw: dict[str, Any]) -> tuple[dict[str, Any], set[str], list[Fault]]:
    """(valid values by field name, fields with a fault, faults) — every key checked on its own."""
    values: dict[str, Any] = {}
    broken: set[str] = set()
    faults: list[Fault] = []
    known = aliases(Settings) + list(SECRET_KEYS)
    for key in sorted(set(raw) - set(known)):
        faults.append((key, "unknown setting" + suggestion(key, known)))
    for key, name in _BY_ALIAS.items():
        if key not in raw:
            faults.append((key, "missing (declare it in the stack file)"))
            broken.add(name)
            continue
        try:
            values[name] = _adapter(name).validate_python(_decode(key, raw[key]), strict=True)
        except ValidationError as err:
            faults += type_faults(err.errors(), (key,))
            broken.add(name)
    return values, broken, faults


def _run(sources: Sequence[Check], s: Settings, broken: set[str]) -> tuple[list[Fault], Optional[Exception]]:
    faults: list[Fault] = []
    failure: Optional[Exception] = None
    for check in sources:
        _SEEN.clear()
        try:
            found = list(check(s))
        except Exception as exc:  # noqa: BLE001 - re-raised by validate() unless another fault explains it
            failure = failure or exc
            continue
        if not _SEEN & broken:
            faults += found
    return faults, failure


def validate(raw: dict[str, Any]) -> Validation:
    """Check `{key: value}` (keys without the project prefix; secrets are ignored here)."""
    raw = {k: v for k, v in raw.items() if k not in SECRET_KEYS}
    values, broken, errors = _typed(raw)
    watched = _Watched.model_construct(**values, **{name: None for name in broken})
    rules, failure = _run(FAULT_SOURCES, watched, broken)
    errors += rules
    faulted = {key for key, _ in errors}
    versions, version_failure = _run(VERSION_SOURCES, watched, broken)
    errors += [f for f in versions if f[0] not in faulted]
    warnings, warning_failure = _run(WARNING_SOURCES, watched, broken)
    failure = failure or version_failure or warning_failure
    if failure is not None and not errors:
        raise failure  # a check failed on settings with no fault: a bug, not a stack-file mistake
    if errors:
        return Validation(None, errors, warnings)
    return Validation(Settings.model_validate({Settings.model_fields[n].alias or n: v for n, v in values.items()}),
                      [], warnings)
