"""A mock monitor that records every registration (parent, dependencies, inputs, secrecy) and applies
`additional_secret_outputs` the way the engine does, so secrecy assertions mean something."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import struct_pb2
from pulumi.runtime.mocks import MockMonitor, MockResourceArgs, _resolve_callbacks
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.sync_await import _ensure_event_loop

from offline.engine.mocks import SECRET_SIG, SECRET_VALUE, unwrap


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    inputs: dict[str, Any]  # secret values still wrapped: see is_secret_path / plain_inputs
    outputs: dict[str, Any] = field(default_factory=dict)
    additional_secret_outputs: list[str] = field(default_factory=list)
    replace_on_changes: list[str] = field(default_factory=list)
    delete_before_replace: bool = False
    # the URNs the engine would look this resource up by in an existing stack's state (its `aliases`, and
    # those it inherits from its parent's), computed as pulumi's step generator does (alias_urns below)
    aliases: list[str] = field(default_factory=list)

    @property
    def plain_inputs(self) -> dict[str, Any]:
        return unwrap(self.inputs)

    def input_is_secret(self, key: str) -> bool:
        value = self.inputs.get(key)
        return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE

    def output_is_secret(self, key: str) -> bool:
        value = self.outputs.get(key)
        return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def _secret(value: Any) -> dict[str, Any]:
    return {SECRET_SIG: SECRET_VALUE, "value": value}


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: Any):
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self._lock = threading.Lock()
        self._aliases: dict[str, list[str]] = {}  # by URN: a parent registers before its children

    def RegisterResource(self, request: Any) -> Any:
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            return resource_pb2.RegisterResourceResponse(urn=urn)
        _ensure_event_loop()
        raw_inputs = _keep_secrets(request.object)
        resource_args = MockResourceArgs(
            typ=request.type,
            name=request.name,
            inputs=raw_inputs,
            provider=request.provider,
            resource_id=request.importId,
            custom=request.custom or False,
            transforms=_resolve_callbacks(request.transforms),
        )
        rid, state = self.mocks.new_resource(resource_args)
        secret_outputs = list(request.additionalSecretOutputs)
        state = {k: (_secret(v) if k in secret_outputs else v) for k, v in state.items()}
        # inputs that were secret stay secret in the outputs, as the engine does
        state = {k: (_secret(unwrap(v)) if _is_wrapped(raw_inputs.get(k)) else v) for k, v in state.items()}
        obj_proto = _struct(state)
        self.resources[urn] = MockMonitor.ResourceRegistration(urn, rid or "", state)
        reg = Registration(
            urn=urn,
            type=request.type,
            name=request.name,
            custom=bool(request.custom),
            parent=request.parent,
            dependencies=list(request.dependencies),
            property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
            inputs=raw_inputs,
            outputs=state,
            additional_secret_outputs=secret_outputs,
            replace_on_changes=list(request.replaceOnChanges),
            delete_before_replace=bool(request.deleteBeforeReplace),
            aliases=alias_urns(request, self._aliases.get(request.parent, [])),
        )
        with self._lock:
            self._aliases[urn] = reg.aliases
            self.registrations.append(reg)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=rid or "", object=obj_proto)


def alias_urns(request: Any, parent_aliases: list[str]) -> list[str]:
    """pulumi/pulumi `pkg/resource/deploy/step_generator.go` (generateAliases, collapseAliasToUrn,
    inheritedChildAlias): each alias spec with unset fields taken from the resource itself, then each of the
    parent's aliases multiplied into the child's (its name re-prefixed when it starts with the parent's
    name). An alias's parent URN contributes its whole qualified type, as in the engine's URNs."""
    own = list(request.aliasURNs)
    for alias in request.aliases:
        if alias.urn:
            own.append(alias.urn)
            continue
        spec = alias.spec
        parent = "" if spec.noParent else (spec.parentUrn or request.parent)
        own.append(_urn(spec.name or request.name, spec.type or request.type, parent, spec.project, spec.stack))
    out = list(own)
    parent_name = request.parent.rsplit("::", 1)[-1] if request.parent else ""
    for parent_alias in parent_aliases:
        for child in [f"::{request.type}::{request.name}", *own]:
            child_type, child_name = child.split("::")[-2].split("$")[-1], child.rsplit("::", 1)[-1]
            if child_name.startswith(parent_name):
                child_name = parent_alias.rsplit("::", 1)[-1] + child_name[len(parent_name):]
            out.append(_urn(child_name, child_type, parent_alias, "", ""))
    return list(dict.fromkeys(out))


def _urn(name: str, typ: str, parent: str, project: str, stack: str) -> str:
    from pulumi.runtime.settings import get_project, get_stack

    # the engine never puts the root stack into a type chain (the stock mock monitor's URNs do)
    parent_type = parent.split("::")[2].removeprefix("pulumi:pulumi:Stack$") if parent else ""
    if parent_type == "pulumi:pulumi:Stack":
        parent_type = ""
    qualified = f"{parent_type}${typ}" if parent_type else typ
    return f"urn:pulumi:{stack or get_stack()}::{project or get_project()}::{qualified}::{name}"


def _is_wrapped(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def _keep_secrets(struct: Any) -> dict[str, Any]:
    """Deserialize a protobuf Struct keeping secret markers as {sig: secret, value: ...} dicts."""
    from google.protobuf import json_format

    return json_format.MessageToDict(struct)


def _struct(state: dict[str, Any]) -> struct_pb2.Struct:
    """The outputs as the engine sends them. They are plain JSON-like data (the mocks' values, secrets as
    signature dicts), so a Struct is built directly instead of through the SDK's async serializer."""
    out = struct_pb2.Struct()
    out.update(state)
    return out
