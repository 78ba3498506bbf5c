"""Run the whole Pulumi program in-process for a stack file, under the high-fidelity mocks.

Config comes from Pulumi.yaml (declared defaults and project values, as the CLI applies them) plus
Pulumi.<stack>.yaml. Secure values cannot be decrypted without the CLI, so each becomes a placeholder
string; so does every declared secret key the stack leaves unset.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import runpy
import sys
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pulumi
import yaml
from pulumi.runtime.settings import SETTINGS
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from offline.engine.mocks import HighFidelityMocks, KeyFactory
from offline.engine.monitor import RecordingMonitor, Registration

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "container-cloud"
PLACEHOLDER_PREFIX = "PLACEHOLDER-SECRET:"
HARNESS_SECRET_KEYS = ("sshPrivateKey", "registryDatabasePassword", "registryRedisPassword")


def placeholder(key: str) -> str:
    return f"{PLACEHOLDER_PREFIX}{key} (a secure value; the real one is decrypted by the Pulumi CLI)"


@dataclass
class StackConfig:
    values: dict[str, str]
    secret_keys: list[str]


def _as_config_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def project_defaults(root: Path = ROOT) -> dict[str, Any]:
    project = yaml.safe_load((root / "Pulumi.yaml").read_text())
    out: dict[str, Any] = {}
    for key, decl in (project.get("config") or {}).items():
        if isinstance(decl, dict) and ("default" in decl or "value" in decl):
            out[key] = decl.get("value", decl.get("default"))
        elif not isinstance(decl, dict):
            out[key] = decl
    return out


def project_secret_keys(root: Path = ROOT) -> list[str]:
    project = yaml.safe_load((root / "Pulumi.yaml").read_text())
    return [k for k, d in (project.get("config") or {}).items() if isinstance(d, dict) and d.get("secret")]


def load_stack_config(stack: str, overrides: Optional[dict[str, Any]] = None, root: Path = ROOT,
                      stack_file: Optional[Path] = None) -> StackConfig:
    """Merge Pulumi.yaml defaults, the stack file and `overrides` (keys without the project prefix;
    a value of None removes the key)."""
    merged: dict[str, Any] = dict(project_defaults(root))
    path = stack_file or root / f"Pulumi.{stack}.yaml"
    stack_doc = yaml.safe_load(path.read_text()) or {}
    secret_keys: set[str] = set()
    for full_key, value in (stack_doc.get("config") or {}).items():
        key = full_key.split(":", 1)[1] if full_key.startswith(f"{PROJECT}:") else full_key
        if isinstance(value, dict) and set(value) == {"secure"}:
            value = placeholder(key)
            secret_keys.add(key)
        merged[key] = value
    for key, value in (overrides or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    for key in set(project_secret_keys(root)) | set(HARNESS_SECRET_KEYS):
        if key not in (overrides or {}) and not merged.get(key):
            merged[key] = placeholder(key)
        secret_keys.add(key)
    values = {f"{PROJECT}:{k}": _as_config_string(v) for k, v in merged.items()}
    return StackConfig(values=values, secret_keys=sorted(f"{PROJECT}:{k}" for k in secret_keys if k in merged))


@dataclass
class ProgramRun:
    stack: str
    registrations: list[Registration]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    error: Optional[BaseException] = None
    config: dict[str, str] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def named(self, name: str, typ: Optional[str] = None) -> Registration:
        found = [r for r in self.registrations if r.name == name and (typ is None or r.type == typ)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r} (type {typ})")
        return found[0]

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.registrations}

    def children_of(self, urn: str) -> list[Registration]:
        return [r for r in self.registrations if r.parent == urn]


def _resolve_outputs() -> tuple[dict[str, Any], set[str]]:
    root = pulumi.runtime.settings.get_root_resource()
    outputs: dict[str, Any] = {}
    secret: set[str] = set()
    for key, value in dict(getattr(root, "outputs", {}) or {}).items():
        out = pulumi.Output.from_input(value)
        outputs[key] = _sync_await(out.future(with_unknowns=True))
        if _sync_await(out.is_secret()):
            secret.add(key)
    return outputs, secret


def _run_path(program: Path) -> Awaitable[None]:
    runpy.run_path(str(program), run_name="__main__")
    return _drain_outputs()


async def _drain_outputs() -> None:
    """Wait for every tracked output at once. The SDK's own final wait re-registers a callback on every
    pending output each time one completes (quadratic in outputs: seconds for a few thousand
    resources); after this drain it finds nothing left to wait for. Errors stay on their tasks, and the
    SDK's wait re-raises them as before."""
    while True:
        with SETTINGS.lock:
            pending = [task for task in SETTINGS.outputs if not task.done()]
        if not pending:
            return
        await asyncio.gather(*pending, return_exceptions=True)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while the program runs (the program's own choice, and why:
    components/evaluation.py), then one collection of what the run allocated, and the collector's state
    restored, also when the program fails: this process runs program after program, where `pulumi up` ends
    its process. `gc.collect(1)` walks the young generations only, which hold everything the run allocated
    (nothing was promoted while the collector was off), not the older heap; the survivors move to the oldest
    generation as usual. When the caller had the collector off, it stays off and nothing is collected.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.collect(1)
            gc.enable()


def run_program(stack: str = "dev", overrides: Optional[dict[str, Any]] = None, preview: bool = False,
                keys: Optional[KeyFactory] = None, stack_file: Optional[Path] = None,
                program: Path = ROOT / "__main__.py", mocks: Optional[pulumi.runtime.Mocks] = None) -> ProgramRun:
    """Run __main__.py for `stack`. A program error is returned in `.error`, never swallowed silently.
    `mocks` replaces the high-fidelity mocks (the host lab passes a wrapper that replays the outputs of
    unchanged resources, as the engine keeps them in its state)."""
    config = load_stack_config(stack, overrides, stack_file=stack_file)
    # As pulumi.runtime.test does: forget the RPCs and tracked outputs of any earlier run in this process
    # (the SDK's final wait walks every tracked output; leftovers make later runs slower and slower).
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()
    pulumi.runtime.set_all_config(config.values, config.secret_keys)
    monitor = RecordingMonitor(mocks or HighFidelityMocks(keys))
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    root = pulumi.runtime.settings.get_root_resource()
    if root is not None and getattr(root, "outputs", None) is not None:
        root.outputs.clear()  # type: ignore[attr-defined]
    if root is not None:
        # a real `pulumi up` runs the program once per process; here the root stack is reused, so forget the
        # stack transformations an earlier run registered (they would apply to this run's resources too)
        root._transformations = []
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    error: Optional[BaseException] = None
    cwd = os.getcwd()
    os.chdir(ROOT)
    with collector_paused():
        try:
            _sync_await(run_pulumi_func(lambda: _run_path(program)))
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            error = exc
        finally:
            os.chdir(cwd)
        outputs, secret = _resolve_outputs() if error is None else ({}, set())
    return ProgramRun(stack, list(monitor.registrations), outputs, secret, error, config.values)
