"""Time the offline preview's program run for generated stacks of 3, 20 and 200 workers, and measure the
longest chain of remote commands (the deployment's critical path) and the remote commands per worker.

Targets: 200 workers in under 15 s; time(200) / time(20) <= 12 (linear in hosts); the same chain length
for every size (hosts are configured in parallel, never one after another).
"""

from __future__ import annotations

import argparse
import ipaddress
import time
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Optional

import yaml

from benchmarks.fanin import sessions_at_once
from offline.engine import ProgramRun, run_program
from offline.engine.runner import ROOT

COMMAND = "command:remote:Command"
HOST_STEP = "containercloud:host:HostStep"
ZONES = {"inside": "198.51.100.0/24", "dmz": "100.64.0.0/16"}
WORKER_NETWORK = "100.64.4.0/22"  # the generated workers' node network: up to 1023 workers
KEEP_ROLES = ("rancher", "etcd", "control-plane", "registry")
TARGET_SECONDS_200 = 15.0
TARGET_RATIO = 12.0
MAX_SESSIONS_AT_ONCE = 10


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
    """The generated stack: its hosts, and node networks that hold its nodes and nothing else (the INSIDE
    control-plane hosts one by one, the workers' /22 of the DMZ), so adding a worker leaves the other hosts'
    firewalls as they are."""
    hosts = generated_hosts(workers)
    inside = [f"{h['address']}/32" for h in hosts
              if h["zone"] != "dmz" and set(h["roles"]) & {"worker", "control-plane"}]
    return {"zones": ZONES, "hosts": hosts, "nodeNetworks": inside + [WORKER_NETWORK]}


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
    by_urn = run.by_urn()
    counts: Counter[str] = Counter()
    for r in run.registrations:
        if not r.type.startswith(COMMAND):
            continue
        parent = by_urn.get(r.parent)
        while parent is not None and parent.type != HOST_STEP:
            parent = by_urn.get(parent.parent)
        counts[parent.plain_inputs["host"] if parent else "(no host step)"] += 1
    return counts


@dataclass
class Result:
    workers: int
    seconds: float
    resources: int
    commands: int
    chain: int
    per_worker: list[int]
    at_once: int = 0  # the most SSH sessions one host can receive at once in an `up` (benchmarks/fanin.py)
    policy_seconds: Optional[float] = None


def measure(workers: int, policy: bool) -> Result:
    start = time.perf_counter()
    run = run_program("dev", overrides=overrides(workers))
    seconds = time.perf_counter() - start
    if run.error is not None:
        raise SystemExit(f"the program failed for {workers} workers: {run.error}")
    per_host = commands_per_host(run)
    per_worker = sorted({per_host.get(f"worker-{i}", 0) for i in range(1, workers + 1)})
    result = Result(workers, seconds, len(run.registrations), sum(per_host.values()), command_chain(run), per_worker,
                    max(sessions_at_once(run).values()))
    if policy:
        from offline.policy import run_policy

        start = time.perf_counter()
        verdict = run_policy(ROOT / "policy", run.registrations)
        result.policy_seconds = time.perf_counter() - start if verdict.ran else None
    return result


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


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 20, 200])
    parser.add_argument("--policy", action="store_true", help="also time the policy pack's analysis")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--blast", type=int, default=200, metavar="N",
                        help="measure adding one worker to N workers (0: skip)")
    args = parser.parse_args(argv)
    run_program("dev")  # warm-up: imports and template compilation are not what we measure
    results = [measure(n, args.policy) for n in args.sizes]
    print(f"{'workers':>8} {'seconds':>8} {'resources':>10} {'commands':>9} {'chain':>6} {'at once':>7} "
          f"{'cmds run on each worker':>23}"
          + ("  policy s" if args.policy else ""))
    for r in results:
        pol = f"  {r.policy_seconds:8.2f}" if r.policy_seconds is not None else ("  not run" if args.policy else "")
        print(f"{r.workers:8d} {r.seconds:8.2f} {r.resources:10d} {r.commands:9d} {r.chain:6d} {r.at_once:7d} "
              f"{'/'.join(map(str, r.per_worker)):>23}" + pol)
    if args.blast:
        print()
        print_blast(blast_radius(args.blast))
    return _verdict(results, args.check)


def print_blast(b: BlastRadius) -> None:
    ops = Counter(op for op, _, _ in b.changed)
    kinds = Counter(name.rsplit("-", 1)[-1] if name.startswith("worker-") else name for name in b.commands)
    print(f"adding one worker to {b.workers}: {len(b.changed)} of {b.resources} existing resources change "
          f"({', '.join(f'{n} {op}' for op, n in sorted(ops.items()))}); {len(b.commands)} remote commands "
          f"re-run on {len(b.hosts)} other hosts; {len(b.dmz_replaced)} steps replaced on other DMZ hosts")
    top = ", ".join(f"{name} x{n}" for name, n in kinds.most_common(8))
    print(f"  re-run commands by name: {top}")


def _verdict(results: list[Result], check: bool) -> int:
    by_size = {r.workers: r for r in results}
    missed = []
    print()
    if 200 in by_size:
        t200 = by_size[200].seconds
        ok = t200 < TARGET_SECONDS_200
        missed += [] if ok else ["time(200)"]
        verdict = "ok" if ok else "MISSED"
        print(f"time(200 workers):        {t200:.2f} s (target < {TARGET_SECONDS_200:.0f} s) {verdict}")
    if 200 in by_size and 20 in by_size:
        ratio = by_size[200].seconds / by_size[20].seconds
        ok = ratio <= TARGET_RATIO
        missed += [] if ok else ["ratio"]
        print(f"time(200) / time(20):     {ratio:.2f} (target <= {TARGET_RATIO:.0f}) {'ok' if ok else 'MISSED'}")
    chains = sorted({r.chain for r in results})
    ok = len(chains) == 1
    missed += [] if ok else ["chain"]
    print(f"longest remote-command chain: {', '.join(f'{r.workers} workers: {r.chain}' for r in results)} "
          f"({'the same for every size' if ok else 'GROWS WITH SIZE'})")
    at_once = max(r.at_once for r in results)
    ok = at_once <= MAX_SESSIONS_AT_ONCE
    missed += [] if ok else ["sessions"]
    print(f"most SSH sessions one host receives at once: {at_once} (target <= {MAX_SESSIONS_AT_ONCE}, OpenSSH's "
          f"MaxStartups 10) {'ok' if ok else 'MISSED'}")
    return 1 if check and missed else 0


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
