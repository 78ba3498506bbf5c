"""Helpers for the Kubernetes tests: read what the program registered (steps, files, commands)."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from offline.engine.monitor import Registration
from offline.engine.runner import PLACEHOLDER_PREFIX, ProgramRun
from policy.rules.artifacts.steps import step_props

K8S_TYPES = ("containercloud:k8s:ControlPlane", "containercloud:k8s:WorkerNode", "containercloud:k8s:EtcdBackup",
             "containercloud:k8s:NodeRollout")
COMMAND = "command:remote:Command"
_WRAPPED = re.compile(r"<<'CC_STEP_EOF'\n(.*)\nCC_STEP_EOF\n", re.S)


def step_of(reg: Registration) -> dict[str, Any] | None:
    """The step a registration deploys, decoded from its Command's inputs as the policy pack and the offline
    preview read it (policy/rules/artifacts/steps.py); None for any other resource."""
    return step_props(reg.type, reg.plain_inputs, reg.name)


def host_steps(run: ProgramRun) -> list[tuple[Registration, dict[str, Any]]]:
    """Every step's Command with its decoded step, in registration order."""
    out = []
    for reg in run.of_type(COMMAND):
        props = step_of(reg)
        if props is not None:
            out.append((reg, props))
    return out


def host_step(run: ProgramRun, name: str) -> tuple[Registration, dict[str, Any]]:
    """The step named `name` (its Command, and the step decoded from it)."""
    reg = run.named(name, COMMAND)
    props = step_of(reg)
    assert props is not None, f"{name} is not a step's Command"
    return reg, props


@dataclass
class Step:
    name: str
    host: str
    files: dict[str, str]  # path -> content as the host receives it (secrets from stdin)
    secret_paths: set[str]
    modes: dict[str, str]
    command: dict[str, Any]  # plain inputs of the remote.Command
    command_urn: str
    dependencies: list[str]
    script: str  # the step's body
    delete_script: str  # the undo's body


def k8s_steps(run: ProgramRun) -> list[Step]:
    """Every step registered under ControlPlane / WorkerNode / EtcdBackup / NodeRollout."""
    out = []
    for cmd, props in host_steps(run):
        if not any(t in cmd.urn for t in K8S_TYPES):
            continue
        out.append(Step(
            name=cmd.name, host=props["host"],
            files={f["path"]: f["content"] for f in props["files"]},
            secret_paths={f["path"] for f in props["files"] if f["secret"]},
            modes={f["path"]: f["mode"] for f in props["files"]},
            command=cmd.plain_inputs, command_urn=cmd.urn, dependencies=cmd.dependencies,
            script=props["script"], delete_script=props["deleteScript"],
        ))
    return out


def files_by_host(run: ProgramRun) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for step in k8s_steps(run):
        out[step.host].update(step.files)
    return out


def step(run: ProgramRun, name: str) -> Step:
    found = [s for s in k8s_steps(run) if s.name == name]
    assert len(found) == 1, name
    return found[0]


def inner_script(wrapper: str) -> str:
    m = _WRAPPED.search(wrapper)
    assert m, wrapper[:200]
    return m.group(1) + "\n"


def unit_exec(unit: str) -> tuple[str, dict[str, str]]:
    """(binary, {flag: value}) of the unit's ExecStart (continuation lines joined)."""
    text = unit.replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
    words = line[len("ExecStart="):].split()
    flags: dict[str, str] = {}
    for w in words[1:]:
        assert w.startswith("--") and "=" in w, w
        k, v = w[2:].split("=", 1)
        assert k not in flags, f"flag {k} twice"
        flags[k] = v
    return words[0], flags


def secret_strings(run: ProgramRun) -> list[str]:
    """Every private key, generated password and placeholder secret of the run."""
    values: list[str] = []
    for reg in run.registrations:
        out = reg.outputs
        for key in ("privateKeyPem", "privateKeyPemPkcs8", "privateKeyOpenssh", "result"):
            v = out.get(key)
            if isinstance(v, dict):
                v = v.get("value")
            if isinstance(v, str) and v:
                if key == "result" and "random" not in reg.type:
                    continue
                values.append(v)
    values += [v for v in run.config.values() if PLACEHOLDER_PREFIX in v]
    return values


def command_graph(run: ProgramRun) -> dict[str, list[str]]:
    """remote.Command URN -> the remote.Commands it waits for, counting only those that open an SSH session on
    an `up` (they have a `create`); a command without one (a node's removal record) is passed through."""
    commands = {r.urn: r for r in run.of_type(COMMAND)}
    sessions = {u for u, r in commands.items() if r.plain_inputs.get("create")}
    memo: dict[str, set[str]] = {}

    def waits_for(urn: str) -> set[str]:
        if urn not in memo:
            out: set[str] = set()
            for d in commands[urn].dependencies:
                if d in sessions:
                    out.add(d)
                elif d in commands:
                    out |= waits_for(d)
            memo[urn] = out
        return memo[urn]

    return {u: sorted(waits_for(u)) for u in sessions}


def reaches(graph: dict[str, list[str]], start: str, goal: str) -> bool:
    """Whether `start` waits for `goal`, directly or through others (the engine orders by every edge)."""
    seen, todo = set(), [start]
    while todo:
        urn = todo.pop()
        if urn == goal:
            return True
        if urn not in seen:
            seen.add(urn)
            todo += graph[urn]
    return False


def longest_chain(graph: dict[str, list[str]]) -> list[str]:
    memo: dict[str, list[str]] = {}

    def chain(urn: str) -> list[str]:
        if urn not in memo:
            best: list[str] = []
            for dep in graph[urn]:
                c = chain(dep)
                if len(c) > len(best):
                    best = c
            memo[urn] = best + [urn]
        return memo[urn]

    return max((chain(u) for u in graph), key=len, default=[])


def short(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]
