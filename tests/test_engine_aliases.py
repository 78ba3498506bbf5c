"""The recording monitor's alias URNs follow pulumi's step generator (pkg/resource/deploy/step_generator.go:
collapseAliasToUrn, generateAliases, inheritedChildAlias): unset spec fields come from the resource, a parent
URN contributes its whole type chain (never the root stack), and a parent's aliases are multiplied into its
children's, re-prefixing a child name that starts with the parent's name."""

from __future__ import annotations

from types import SimpleNamespace

from pulumi.runtime.proto import alias_pb2

from offline.engine.monitor import alias_urns

STACK_URN = "urn:pulumi:dev::container-cloud::pulumi:pulumi:Stack::container-cloud-dev"
P = "urn:pulumi:dev::container-cloud::"


def request(typ: str, name: str, parent: str, *aliases: alias_pb2.Alias) -> SimpleNamespace:
    return SimpleNamespace(type=typ, name=name, parent=parent, aliases=list(aliases), aliasURNs=[])


def spec(**fields: object) -> alias_pb2.Alias:
    return alias_pb2.Alias(spec=alias_pb2.Alias.Spec(**fields))  # type: ignore[arg-type]


def test_spec_fields_default_to_the_resource_and_a_parent_brings_its_type_chain(monkeypatch) -> None:
    monkeypatch.setattr("pulumi.runtime.settings.get_stack", lambda: "dev")
    monkeypatch.setattr("pulumi.runtime.settings.get_project", lambda: "container-cloud")
    old_parent = P + "a:b:Outer$a:b:Wrapper::w"
    assert alias_urns(request("a:b:Step", "s", STACK_URN, spec(parentUrn=old_parent)), []) == \
        [P + "a:b:Outer$a:b:Wrapper$a:b:Step::s"]
    assert alias_urns(request("a:b:Step", "s", STACK_URN, spec(name="old")), []) == [P + "a:b:Step::old"]
    assert alias_urns(request("a:b:Step", "s", P + "a:b:Comp::c", spec(noParent=True)), []) == [P + "a:b:Step::s"]
    assert alias_urns(request("a:b:Step", "s", STACK_URN, alias_pb2.Alias(urn="urn:x")), []) == ["urn:x"]


def test_children_inherit_their_parents_aliases(monkeypatch) -> None:
    monkeypatch.setattr("pulumi.runtime.settings.get_stack", lambda: "dev")
    monkeypatch.setattr("pulumi.runtime.settings.get_project", lambda: "container-cloud")
    parent = P + "a:b:Comp::newapp"
    parent_alias = P + "a:b:Old$a:b:Comp::app"
    got = alias_urns(request("c:d:Res", "newapp-function", parent), [parent_alias])
    assert got == [P + "a:b:Old$a:b:Comp$c:d:Res::app-function"]  # the engine's own example, re-prefixed
    got = alias_urns(request("c:d:Res", "other", parent, spec(name="older")), [parent_alias])
    assert got == [P + "a:b:Comp$c:d:Res::older", P + "a:b:Old$a:b:Comp$c:d:Res::other",
                   P + "a:b:Old$a:b:Comp$c:d:Res::older"]
