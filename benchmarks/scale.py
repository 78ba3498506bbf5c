"""`python -m benchmarks`: issue 16's measurements on generated stacks (3, 20, 100, 200 and 1000 workers).

Per size: the program's evaluation time under the offline engine, the seconds of it spent in Python's cyclic
collector, the resources registered and the resources each added worker brings, the longest chain of remote
commands (the deployment's critical path), the most SSH sessions one host can receive at once in an `up`
(benchmarks/fanin.py) and what the deployer pushes (benchmarks/pushed.py). Then the targets: t(1000) < 30 s,
t(1000) / t(100) <= 11, the same chain at every size, at most 10 sessions at once on any host, the deployer's
uploads the same at every size (artifactsDirectory mode, the generated stacks' default), and the blast radius
of adding one worker to 200 (at most 30 existing resources change, no step on another DMZ host replaced).
`--check` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from benchmarks.fanin import sessions_at_once
from benchmarks.preview import blast_radius, command_chain, commands_per_host, overrides, print_blast
from benchmarks.pushed import Pushed, pushed
from offline.engine import ProgramRun, run_program
from offline.engine.runner import ROOT

SIZES = (3, 20, 100, 200, 1000)
TARGET_SECONDS = 30.0  # for the largest size measured, 1000 workers by default
TARGET_RATIO = 11.0  # t(1000) / t(100): linear, with 10% of slack
MAX_SESSIONS_AT_ONCE = 10  # OpenSSH's MaxStartups 10:30:100 drops unauthenticated connections beyond 10
MAX_BLAST_CHANGED = 30


@dataclass
class Result:
    workers: int
    seconds: float  # CPU seconds of the program run (the machine is shared: wall-clock time is noisy)
    wall: float
    collector_seconds: float  # of `seconds`, in the cyclic garbage collector during the run (gc.callbacks)
    resources: int
    chain: int
    at_once: int
    pushed: Pushed
    worker_commands: str  # remote commands on each worker: the distinct counts, "5" or "5/6"
    per_worker: float = 0.0  # resources one more worker adds (the slope to the neighbouring size)
    policy_seconds: Optional[float] = None
    exit_seconds: float = 0.0  # of `seconds`, the process's exit (finalization, its collection included)

    @property
    def bytes_text(self) -> str:
        size = self.pushed.bytes()
        return "unknown" if size is None else f"{size / 2**20:.1f} MiB"


class CollectorClock:
    """CPU seconds spent in the cyclic garbage collector while it is installed (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.process_time()
        else:
            self.seconds += time.process_time() - self._start

    def __enter__(self) -> CollectorClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def measure(workers: int, policy: bool) -> Result:
    """The size in a process of its own, as `pulumi up` runs the program: CPU seconds from the program's start
    to the end of its process, the exit included (CPython's final collection runs there: components/evaluation.py).
    The graph's figures (chain, sessions, uploads, policy) are computed in the same process, between the run
    and its exit, and not counted."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.pickle"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        argv = [sys.executable, "-m", "benchmarks", "--child", str(workers), str(out)]
        done = subprocess.run(argv + (["--policy"] if policy else []), cwd=ROOT, env=_child_env(), check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0 or not out.exists():
            raise SystemExit(f"the benchmark's process for {workers} workers failed (exit {done.returncode})")
        result, reported = pickle.loads(out.read_bytes())
    total = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result.exit_seconds = max(0.0, total - reported)
    result.seconds += result.exit_seconds
    return result


def _child_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def child(workers: int, out: Path, policy: bool) -> None:
    """In the size's own process: a warm-up (imports, template compilation), then the run with the collector
    off from its start, as the program turns it off in `pulumi up` (the engine's pause then collects nothing
    after the run: the process's exit does what is left). Writes the result and the CPU seconds used up to the
    end of the figures; the parent adds what the exit took."""
    run_program("dev")
    gc.collect()
    gc.disable()
    with CollectorClock() as clock:
        start, cpu = time.perf_counter(), time.process_time()
        run = run_program("dev", overrides=overrides(workers))
        seconds, wall = time.process_time() - cpu, time.perf_counter() - start
    if run.error is not None:
        raise SystemExit(f"the program failed for {workers} workers: {run.error}")
    result = Result(workers, seconds, wall, clock.seconds, len(run.registrations), command_chain(run),
                    max(sessions_at_once(run).values()), pushed(run), _worker_commands(run, workers))
    if policy:
        result.policy_seconds = _policy_seconds(run)
    out.write_bytes(pickle.dumps((result, time.process_time())))


def _worker_commands(run: ProgramRun, workers: int) -> str:
    per_host = commands_per_host(run)
    return "/".join(map(str, sorted({per_host.get(f"worker-{i}", 0) for i in range(1, workers + 1)})))


def _policy_seconds(run: ProgramRun) -> Optional[float]:
    from offline.policy import run_policy

    start = time.perf_counter()
    verdict = run_policy(ROOT / "policy", run.registrations)
    return time.perf_counter() - start if verdict.ran else None


def _slopes(results: list[Result]) -> None:
    for i, r in enumerate(results):
        other = results[i - 1] if i else (results[1] if len(results) > 1 else None)
        if other is not None and other.workers != r.workers:
            r.per_worker = (r.resources - other.resources) / (r.workers - other.workers)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--policy", action="store_true", help="also time the policy pack's analysis")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--blast", type=int, default=200, metavar="N",
                        help="measure adding one worker to N workers (0: skip)")
    parser.add_argument("--child", nargs=2, metavar=("WORKERS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(int(args.child[0]), Path(args.child[1]), args.policy)
        return 0
    results = [measure(n, args.policy) for n in sorted(set(args.sizes))]
    _slopes(results)
    print_table(results, args.policy)
    print_uploads(results)
    missed = verdicts(results)
    if args.blast:
        print()
        missed += blast_verdict(args.blast)
    print(f"\ntargets missed: {', '.join(missed) if missed else 'none'}")
    return 1 if args.check and missed else 0


def print_table(results: list[Result], policy: bool) -> None:
    print(f"{'workers':>8} {'seconds':>8} {'wall':>7} {'in gc':>6} {'exit':>6} {'resources':>10} {'per worker':>10} "
          f"{'chain':>6} {'sessions':>8} {'cmds/wkr':>8} {'uploads':>8} {'to hosts':>8} {'bytes pushed':>13} "
          f"{'stdin KiB':>10}"
          + ("  policy s" if policy else ""))
    for r in results:
        pol = "" if not policy else (f"  {r.policy_seconds:8.2f}" if r.policy_seconds is not None else "  not run")
        print(f"{r.workers:8d} {r.seconds:8.2f} {r.wall:7.2f} {r.collector_seconds:6.2f} {r.exit_seconds:6.2f} "
              f"{r.resources:10d} "
              f"{r.per_worker:10.1f} "
              f"{r.chain:6d} {r.at_once:8d} {r.worker_commands:>8} {r.pushed.files:8d} {len(r.pushed.hosts):8d} "
              f"{r.bytes_text:>13} {r.pushed.stdin_bytes / 1024:10.0f}" + pol)
    print("  seconds: CPU seconds of the program's process from the run's start to the process's end, each size in\n"
          "  a process of its own (the machine is shared; wall: elapsed, the run only); in gc: of them, in the cyclic\n"
          "  collector during the run; exit: of them, the process's exit; sessions: the most SSH sessions one host\n"
          "  can receive at once in an `up`; cmds/wkr: remote commands on each worker; uploads:\n"
          "  CopyToRemote of a file on the deployer (artifactsDirectory mode); stdin: Command stdin to all hosts\n"
          "  (not in the upload criterion)")


def print_uploads(results: list[Result]) -> None:
    """Uploads of each artifact per size: bytes pushed = sum of (uploads x the file's size)."""
    artifacts = sorted({a for r in results for a in r.pushed.per_artifact()})
    print(f"\n{'uploads from the deployer per artifact':<40}" + "".join(f"{r.workers:>7}" for r in results))
    for a in artifacts:
        print(f"  {a:<38}" + "".join(f"{r.pushed.per_artifact().get(a, 0):>7}" for r in results))
    if any(r.pushed.bytes() is None for r in results):
        print("  bytes: unknown here (the artifacts are not on this machine and no size is assumed); equal uploads"
              " at every size push equal bytes")


def verdicts(results: list[Result]) -> list[str]:
    by_size = {r.workers: r for r in results}
    largest = results[-1]
    missed: list[str] = []
    print()
    ok = largest.seconds < TARGET_SECONDS
    missed += [] if ok else [f"t({largest.workers})"]
    print(f"t({largest.workers} workers): {largest.seconds:.2f} s (target < {TARGET_SECONDS:.0f} s at 1000) "
          f"{_ok(ok)}")
    if 1000 in by_size and 100 in by_size:
        ratio = by_size[1000].seconds / by_size[100].seconds
        ok = ratio <= TARGET_RATIO
        missed += [] if ok else ["t(1000)/t(100)"]
        print(f"t(1000) / t(100): {ratio:.2f} (target <= {TARGET_RATIO:.0f}) {_ok(ok)}")
    else:
        print("t(1000) / t(100): not measured (needs sizes 100 and 1000)")
    ok = len({r.chain for r in results}) == 1
    missed += [] if ok else ["chain"]
    print(f"longest remote-command chain: {', '.join(f'{r.workers}: {r.chain}' for r in results)} "
          f"({'the same at every size' if ok else 'GROWS WITH SIZE'})")
    at_once = max(r.at_once for r in results)
    ok = at_once <= MAX_SESSIONS_AT_ONCE
    missed += [] if ok else ["sessions"]
    print(f"most SSH sessions one host receives at once: {at_once} (target <= {MAX_SESSIONS_AT_ONCE}) {_ok(ok)}")
    ok = len({frozenset(r.pushed.uploads.items()) for r in results}) == 1
    missed += [] if ok else ["bytes pushed"]
    print(f"uploads from the deployer: {', '.join(f'{r.workers}: {r.pushed.files}' for r in results)} "
          f"({'the same files at every size: bytes pushed constant' if ok else 'GROW WITH SIZE'}) {_ok(ok)}")
    return missed


def blast_verdict(workers: int) -> list[str]:
    b = blast_radius(workers)
    print_blast(b)
    ok = len(b.changed) <= MAX_BLAST_CHANGED and not b.dmz_replaced
    print(f"adding one worker to {workers}: {len(b.changed)} existing resources change (target <= "
          f"{MAX_BLAST_CHANGED}), {len(b.dmz_replaced)} steps replaced on other DMZ hosts (target 0) {_ok(ok)}")
    return [] if ok else ["blast radius"]


def _ok(ok: bool) -> str:
    return "ok" if ok else "MISSED"
