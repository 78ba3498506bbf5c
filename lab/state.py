"""The engine's state for the lab: the last applied inputs per URN, kept in memory only (secrets
included: never written to disk), and the diff a `pulumi up` computes from it.

Diff rules, as the pulumi-command provider and the engine apply them (reference §3):
  * a resource absent from the state is created;
  * a change of `triggers` replaces it (`replace_on_changes=["triggers[*]"]`): the new create runs,
    then, in the delete phase, the OLD delete with the old command and connection;
  * any other input change is an update: `update` when set, else `create` again;
  * a resource in the state but no longer in the program is deleted;
  * otherwise nothing runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi

from offline.engine.mocks import unwrap

COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
REMOTE_TYPES = (COMMAND, COPY)


@dataclass(frozen=True)
class Resource:
    """One resource as the engine keeps it: plain (unwrapped) inputs, in memory only."""

    urn: str
    type: str
    name: str
    parent: str
    dependencies: tuple[str, ...]
    inputs: dict[str, Any] = field(hash=False, compare=False)

    @property
    def remote(self) -> bool:
        return self.type in REMOTE_TYPES

    @property
    def host(self) -> str:
        conn = self.inputs.get("connection") or {}
        return str(conn.get("host", ""))


def from_registrations(registrations: list[Any]) -> list[Resource]:
    """Custom resources of a ProgramRun (components are not deployed: their children are)."""
    out = []
    for reg in registrations:
        if not reg.custom:
            continue
        deps = list(reg.dependencies)
        for urns in reg.property_dependencies.values():
            deps += [u for u in urns if u not in deps]
        out.append(Resource(reg.urn, reg.type, reg.name, reg.parent, tuple(deps), unwrap(reg.inputs)))
    return out


@dataclass(frozen=True)
class Change:
    op: str  # create | update | replace | delete | same
    new: Optional[Resource]
    old: Optional[Resource]

    @property
    def resource(self) -> Resource:
        res = self.new or self.old
        assert res is not None
        return res


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def diff(old: dict[str, Resource], new: list[Resource]) -> list[Change]:
    changes = []
    for res in new:
        prev = old.get(res.urn)
        if prev is None:
            changes.append(Change("create", res, None))
        elif _canon(prev.inputs.get("triggers")) != _canon(res.inputs.get("triggers")):
            changes.append(Change("replace", res, prev))
        elif _canon(prev.inputs) != _canon(res.inputs):
            changes.append(Change("update", res, prev))
        else:
            changes.append(Change("same", res, prev))
    names = {r.urn for r in new}
    changes += [Change("delete", None, prev) for urn, prev in old.items() if urn not in names]
    return changes


class State:
    """URN -> last applied Resource, plus the outputs (stdout/stderr) of each command."""

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self.outputs: dict[str, tuple[str, str]] = {}
        # old sides of replacements whose delete has not run yet (the engine keeps them as
        # `delete: true` entries in its state and deletes them in a later update)
        self.pending_deletes: list[Resource] = []

    def record(self, res: Resource, stdout: str = "", stderr: str = "") -> None:
        self.resources[res.urn] = res
        self.outputs[res.urn] = (stdout, stderr)

    def forget(self, urn: str) -> None:
        self.resources.pop(urn, None)
        self.outputs.pop(urn, None)


class ReplayMocks(pulumi.runtime.Mocks):
    """Mocks that keep provider outputs the way the engine's state does: a resource whose inputs are
    unchanged since the last run gets its previous outputs back (the same certificates, keys and
    passwords), instead of new ones. Without this, every program run would mint new certificates and
    every step holding one would be replaced. Wraps the high-fidelity mocks; one instance per lab."""

    def __init__(self, inner: Any = None) -> None:
        from offline.engine.mocks import HighFidelityMocks

        self.inner = inner or HighFidelityMocks()
        self._kept: dict[tuple[str, str], tuple[str, Any, dict[str, Any]]] = {}

    def new_resource(self, args: Any) -> tuple[Any, dict[str, Any]]:
        key = (args.typ, args.name)
        inputs = _canon(args.inputs)
        kept = self._kept.get(key)
        if kept is not None and kept[0] == inputs:
            return kept[1], dict(kept[2])
        rid, state = self.inner.new_resource(args)
        self._kept[key] = (inputs, rid, dict(state))
        return rid, state

    def call(self, args: Any) -> Any:
        return self.inner.call(args)

    def outputs(self, typ: str, name: str) -> dict[str, Any]:
        """The outputs last given to resource (typ, name): certificates and keys the lab itself needs."""
        kept = self._kept.get((typ, name))
        if kept is None:
            raise KeyError(f"no outputs kept for {typ} {name}")
        return unwrap(kept[2])
