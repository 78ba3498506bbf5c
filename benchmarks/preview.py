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

from offline.engine import ProgramRun, run_program
from offline.engine.runner import ROOT

COMMAND = "command:remote:Command"
HOST_STEP = "containercloud:host:HostStep"
ZONES = {"inside": "198.51.100.0/24", "dmz": "100.64.0.0/16"}
KEEP_ROLES = ("rancher", "etcd", "control-plane", "registry")
TARGET_SECONDS_200 = 15.0
TARGET_RATIO = 12.0


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
        kept.append({"name": f"worker-{i}", "address": str(dmz[256 + i]), "zone": "dmz", "roles": ["worker"]})
    return kept


def overrides(workers: int) -> dict[str, Any]:
    return {"zones": ZONES, "hosts": generated_hosts(workers)}


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
    policy_seconds: Optional[float] = None


def measure(workers: int, policy: bool) -> Result:
    start = time.perf_counter()
    run = run_program("dev", overrides=overrides(workers))
    seconds = time.perf_counter() - start
    if run.error is not None:
        raise SystemExit(f"the program failed for {workers} workers: {run.error}")
    per_host = commands_per_host(run)
    per_worker = sorted({per_host.get(f"worker-{i}", 0) for i in range(1, workers + 1)})
    result = Result(workers, seconds, len(run.registrations), sum(per_host.values()), command_chain(run), per_worker)
    if policy:
        from offline.policy import run_policy

        start = time.perf_counter()
        verdict = run_policy(ROOT / "policy", run.registrations)
        result.policy_seconds = time.perf_counter() - start if verdict.ran else None
    return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 20, 200])
    parser.add_argument("--policy", action="store_true", help="also time the policy pack's analysis")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    run_program("dev")  # warm-up: imports and template compilation are not what we measure
    results = [measure(n, args.policy) for n in args.sizes]
    print(f"{'workers':>8} {'seconds':>8} {'resources':>10} {'commands':>9} {'chain':>6} "
          f"{'cmds run on each worker':>23}"
          + ("  policy s" if args.policy else ""))
    for r in results:
        pol = f"  {r.policy_seconds:8.2f}" if r.policy_seconds is not None else ("  not run" if args.policy else "")
        print(f"{r.workers:8d} {r.seconds:8.2f} {r.resources:10d} {r.commands:9d} {r.chain:6d} "
              f"{'/'.join(map(str, r.per_worker)):>23}" + pol)
    return _verdict(results, args.check)


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
