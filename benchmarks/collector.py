"""`python -m benchmarks.collector [--sizes 100 200 1000] [--modes ...]`: the program run under each setting of
Python's cyclic garbage collector, each (mode, size) in a fresh process after a warm-up run: CPU seconds, the
collector's share of them (gc.callbacks) and the process's peak RSS. The README's Benchmark section holds the
table and the choice (`paused`: components/evaluation.py in the program, offline/engine/runner.py collector_paused
around every in-process run)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import resource
import subprocess
import sys
import time
from typing import Any, Optional

from offline.engine.runner import ROOT

MODES = ("default", "freeze", "threshold", "paused")


def _set_mode(mode: str) -> None:
    """Every mode but `paused` replaces the program's and the engine's own setting with the one measured."""
    from components import evaluation
    from offline.engine import runner

    if mode != "paused":
        runner.collector_paused = contextlib.nullcontext  # type: ignore[assignment]
        evaluation.collector_off = lambda: None  # the program would turn the collector off itself
    if mode == "freeze":
        gc.freeze()  # after the warm-up: imports, templates and the key pool are out of the collector's walks
    if mode == "threshold":
        gc.set_threshold(100_000, 10, 10)


def one(mode: str, workers: int) -> dict[str, Any]:
    from benchmarks.preview import overrides
    from benchmarks.scale import CollectorClock
    from offline.engine import run_program

    run_program("dev")  # warm-up
    _set_mode(mode)
    with CollectorClock() as clock:
        cpu = time.process_time()
        run = run_program("dev", overrides=overrides(workers))
        seconds = time.process_time() - cpu
    if run.error is not None:
        raise SystemExit(f"{mode} {workers}: {run.error}")
    return {"mode": mode, "workers": workers, "seconds": round(seconds, 2), "collector": round(clock.seconds, 2),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.collector", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 1000])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--one", nargs=2, metavar=("MODE", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return 0
    print(f"{'workers':>8} " + "".join(f"{m:>28}" for m in args.modes))
    for n in args.sizes:
        cells = []
        for mode in args.modes:
            out = subprocess.run([sys.executable, "-m", "benchmarks.collector", "--one", mode, str(n)],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            cells.append(f"{r['seconds']:.2f} s (gc {r['collector']:.2f}) {r['peak_rss_mb']} MB")
        print(f"{n:>8} " + "".join(f"{c:>28}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
