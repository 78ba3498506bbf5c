"""Measurements of the program's graph for generated stacks: the stacks themselves (the dev stack's platform
hosts plus N workers), the longest chain of remote commands (the deployment's critical path), the remote
commands per host and the blast radius of adding one worker. `python -m benchmarks` (benchmarks/scale.py)
prints them with the targets of issue 16.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from offline.engine import ProgramRun, run_program
from offline.engine.runner import ROOT
from policy.rules.artifacts.steps import step_props

COMMAND = "command:remote:Command"
ZONES = {"inside": "198.51.100.0/24", "dmz": "100.64.0.0/16"}
WORKER_NETWORK = "100.64.4.0/22"  # the generated workers' node network: up to 1023 workers
DEFAULT_POD_CIDR = "10.244.0.0/16"  # Pulumi.yaml's podCidr: 256 node ranges of /24
KEEP_ROLES = ("rancher", "etcd", "control-plane", "registry")


def generated_hosts(workers: int, stack_file: Path = ROOT / "Pulumi.dev.yaml") -> list[dict[str, Any]]:
    """The dev stack's rancher, master and harbor hosts plus `workers` workers in a /16 DMZ."""
    hosts = yaml.safe_load(stack_file.read_text())["config"]["container-cloud:hosts"]
    dmz = ipaddress.ip_network(ZONES["dmz"])
    kept: list[dict[str, Any]] = []
    for h in hosts:
        if not set(h["roles"]) & set(KEEP_ROLES):
            continue
        h = dict(h)
        if h["zone"] == "dmz":
            h["address"] = str(dmz[10 + len(kept)])
        kept.append(h)
    for i in range(1, workers + 1):
        kept.append({"name": f"worker-{i}", "address": str(dmz_address(i)), "zone": "dmz", "roles": ["worker"]})
    return kept


def overrides(workers: int) -> dict[str, Any]:
    """The generated stack: its hosts, node networks that hold its nodes and nothing else (the INSIDE
    control-plane hosts one by one, the workers' /22 of the DMZ), so adding a worker leaves the other hosts'
    firewalls as they are, and a pod CIDR that holds a /24 for every host when the default /16 (256 nodes)
    is too small."""
    hosts = generated_hosts(workers)
    inside = [f"{h['address']}/32" for h in hosts
              if h["zone"] != "dmz" and set(h["roles"]) & {"worker", "control-plane"}]
    out = {"zones": ZONES, "hosts": hosts, "nodeNetworks": inside + [WORKER_NETWORK]}
    if len(hosts) > 256:
        prefix = 24 - (len(hosts) - 1).bit_length()
        out["podCidr"] = str(ipaddress.ip_network(DEFAULT_POD_CIDR).supernet(new_prefix=prefix))
    return out


def command_chain(run: ProgramRun) -> int:
    """Longest chain of remote commands that open an SSH session on an `up` (a node's removal record has
    no create) along dependency edges. `dependencies` hold the URNs of custom
    resources (a dependency on a component is expanded to its custom children by the SDK), so the walk
    passes through certificates, namespaces, ... and counts only the commands."""
    by_urn = run.by_urn()

    @cache
    def depth(urn: str) -> int:
        reg = by_urn.get(urn)
        if reg is None:
            return 0
        own = 1 if reg.type.startswith(COMMAND) and reg.plain_inputs.get("create") else 0  # opens a session
        return own + max((depth(d) for d in set(reg.dependencies) if d != urn), default=0)

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(by_urn) + 1000))
    try:
        return max((depth(r.urn) for r in run.registrations if r.type.startswith(COMMAND)), default=0)
    finally:
        sys.setrecursionlimit(limit)


def commands_per_host(run: ProgramRun) -> Counter[str]:
    counts: Counter[str] = Counter()
    for r in run.registrations:
        if not r.type.startswith(COMMAND):
            continue
        step = step_props(r.type, r.plain_inputs, r.name)
        counts[step["host"] if step else "(no host step)"] += 1
    return counts


@dataclass
class BlastRadius:
    """What adding one worker to a stack of `workers` changes in the existing deployment."""

    workers: int
    resources: int  # custom resources of the bigger stack
    changed: list[tuple[str, str, str]]  # (op, type, name) of existing resources that change
    hosts: list[str]  # addresses of the hosts whose remote steps re-run (the new worker excluded)
    dmz_replaced: list[str]  # remote steps replaced on DMZ hosts other than the new worker

    @property
    def commands(self) -> list[str]:
        return [name for _, typ, name in self.changed if typ.startswith("command:remote:")]


def blast_radius(workers: int) -> BlastRadius:
    """Run the program for `workers` and `workers + 1` workers as the engine would see it (unchanged resources
    keep their outputs: certificates, keys), then diff the second run against the first as `pulumi up` does
    (lab/state.py: a trigger change replaces, another input change updates)."""
    from lab.state import ReplayMocks, diff, from_registrations

    mocks = ReplayMocks()
    runs = [run_program("dev", overrides=overrides(n), mocks=mocks) for n in (workers, workers + 1)]
    for n, run in zip((workers, workers + 1), runs, strict=True):
        if run.error is not None:
            raise SystemExit(f"the program failed for {n} workers: {run.error}")
    before = {r.urn: r for r in from_registrations(runs[0].registrations)}
    after = from_registrations(runs[1].registrations)
    new_host = str(dmz_address(workers + 1))
    dmz = ipaddress.ip_network(ZONES["dmz"])
    changes = [c for c in diff(before, after) if c.op in ("update", "replace")]
    remote = [c.resource for c in changes if c.resource.remote and c.resource.host != new_host]
    dmz_replaced = [f"{r.name} ({r.host})" for c, r in ((c, c.resource) for c in changes)
                    if c.op == "replace" and r.remote and r.host != new_host and _in(r.host, dmz)]
    return BlastRadius(workers, len(after), [(c.op, c.resource.type, c.resource.name) for c in changes],
                       sorted({r.host for r in remote}), sorted(dmz_replaced))


def _in(address: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(address) in network
    except ValueError:
        return False


def dmz_address(worker: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Worker `worker` (1..1023) in WORKER_NETWORK, away from Harbor and the other DMZ hosts (100.64.0.x)."""
    return ipaddress.ip_network(WORKER_NETWORK)[worker]


def print_blast(b: BlastRadius) -> None:
    ops = Counter(op for op, _, _ in b.changed)
    kinds = Counter(name.rsplit("-", 1)[-1] if name.startswith("worker-") else name for name in b.commands)
    print(f"adding one worker to {b.workers}: {len(b.changed)} of {b.resources} existing resources change "
          f"({', '.join(f'{n} {op}' for op, n in sorted(ops.items()))}); {len(b.commands)} remote commands "
          f"re-run on {len(b.hosts)} other hosts; {len(b.dmz_replaced)} steps replaced on other DMZ hosts")
    top = ", ".join(f"{name} x{n}" for name, n in kinds.most_common(8))
    print(f"  re-run commands by name: {top}")


def sessions_per_host(run: ProgramRun) -> Counter[str]:
    """SSH sessions one `up` opens on each host (its address): every `command:remote:*` resource that runs
    something on create (a Command with a `create`, a CopyToRemote). A Command with only a `delete` (a
    node's removal record) opens none."""
    counts: Counter[str] = Counter()
    for r in run.registrations:
        if not r.type.startswith("command:remote:"):
            continue
        inputs = r.plain_inputs
        if r.type == COMMAND and not inputs.get("create"):
            continue
        counts[str(inputs["connection"]["host"])] += 1
    return counts
