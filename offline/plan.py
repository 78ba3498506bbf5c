"""plan.json: every registered resource with its inputs, and the stack outputs; secrets redacted."""

from __future__ import annotations

from typing import Any

from offline.engine import ProgramRun
from offline.engine.mocks import SECRET_SIG, SECRET_VALUE

REDACTED = "[secret]"
PRIVATE_MARKERS = ("PRIVATE KEY-----",)


def redact(value: Any) -> Any:
    """Replace every secret-wrapped value, at any depth, by "[secret]"."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            return REDACTED
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def leaked_private_keys(value: Any, path: str = "") -> list[str]:
    """Paths of plain (non-secret) strings that hold a private key: a secrecy bug in the program."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaked_private_keys(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in leaked_private_keys(v, f"{path}[{i}]")]
    if isinstance(value, str) and any(m in value for m in PRIVATE_MARKERS):
        return [path]
    return []


def scrub(value: Any) -> Any:
    """Last line of defence: never write a private key to disk, even when the program leaked one."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str) and any(m in value for m in PRIVATE_MARKERS):
        return REDACTED
    return value


def build_plan(run: ProgramRun, project: str) -> dict[str, Any]:
    resources = [
        {
            "urn": r.urn,
            "type": r.type,
            "name": r.name,
            "custom": r.custom,
            "parent": r.parent,
            "dependencies": r.dependencies,
            "inputs": redact(r.inputs),
        }
        for r in sorted(run.registrations, key=lambda r: r.urn)
    ]
    outputs = {k: (REDACTED if k in run.secret_outputs else redact(v)) for k, v in run.outputs.items()}
    return {"project": project, "stack": run.stack, "resources": resources, "outputs": outputs}
