"""How the program runs in the process `pulumi up` / `pulumi preview` start for it (one process per run)."""

from __future__ import annotations

import atexit
import gc

_FROZEN_AT_EXIT = False


def collector_off() -> None:
    """Python's cyclic garbage collector off for the rest of the run, and nothing left for it at exit.

    A run keeps every resource, output and future to its end, while the SDK makes many short-lived reference
    cycles; with the default thresholds the collector walks the growing heap of survivors again and again:
    30-50% of the run at 100-1000 workers (README, Benchmark: the measurements per mode). Off, the cyclic
    garbage waits for the end of the process (5-10% more peak memory).

    At the end, the language host's `pulumi-language-python-exec` calls `sys.exit`, and CPython's finalization
    runs one full collection, even with the collector off, over everything the run allocated: 10-14 s at
    1000 workers, to free memory the process is about to return anyway. `gc.freeze()` as an exit handler
    (exit handlers run before that collection) moves the heap to the permanent generation, which the
    collection skips (docs/upstream.md, the `gc` row; the benchmark measures each size's process to its exit).

    The offline engine runs programs in its own process, one after the other: it restores the collector after
    each run and collects what the run left (offline/engine/runner.py `collector_paused`).
    """
    global _FROZEN_AT_EXIT
    gc.disable()
    if not _FROZEN_AT_EXIT:
        atexit.register(gc.freeze)
        _FROZEN_AT_EXIT = True
