"""How the program runs in the process `pulumi up` / `pulumi preview` start for it (one process per run)."""

from __future__ import annotations

import gc


def collector_off() -> None:
    """Python's cyclic garbage collector off for the rest of the run.

    A run keeps every resource, output and future to its end, while the SDK makes many short-lived reference
    cycles; with the default thresholds the collector walks the growing heap of survivors again and again:
    30-50% of the run at 100-1000 workers (README, Benchmark: the measurements per mode). Off, the cyclic
    garbage waits for the end of the process (5-10% more peak memory). The offline engine runs programs in its
    own process, one after the other: it restores the collector after each run and collects what the run left
    (offline/engine/runner.py `collector_paused`).
    """
    gc.disable()
