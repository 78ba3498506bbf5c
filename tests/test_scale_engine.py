"""Issue 16 (evaluation speed): the offline engine runs a program with Python's cyclic garbage collector off,
collects once after, and leaves the collector as it found it, also when the program fails
(offline/engine/runner.py: collector_paused; the measurements are in the README's Benchmark section)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from offline.engine import run_program

ROOT = Path(__file__).resolve().parents[1]

# The probe program's cyclic garbage, seen from here: the program appends a weak reference to it.
PROBES: list[weakref.ref[object]] = []

PROGRAM = """
import gc
import sys

import pulumi


class Node:
    pass


a, b = Node(), Node()
a.other, b.other = b, a  # a cycle: only the cyclic collector frees it
sys.modules["tests.test_scale_engine"].PROBES.append(__import__("weakref").ref(a))
del a, b
pulumi.export("collector", gc.isenabled())
"""


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "__main__.py"
    path.write_text(PROGRAM)
    PROBES.clear()
    return path


def test_the_collector_is_off_during_the_run_and_on_after(program: Path) -> None:
    assert gc.isenabled()
    run = run_program("dev", program=program)
    assert run.error is None, run.error
    assert run.outputs["collector"] is False
    assert gc.isenabled()
    assert len(PROBES) == 1 and PROBES[0]() is None, "the run's cyclic garbage outlived the run"


def test_the_collector_is_restored_when_the_program_fails(program: Path) -> None:
    program.write_text(PROGRAM + "\nraise RuntimeError('the program failed')\n")
    run = run_program("dev", program=program)
    assert isinstance(run.error, RuntimeError)
    assert gc.isenabled()


def test_a_caller_that_turned_the_collector_off_keeps_it_off(program: Path) -> None:
    gc.disable()
    try:
        run = run_program("dev", program=program)
        assert run.outputs["collector"] is False
        assert not gc.isenabled()
        assert PROBES[0]() is not None, "collected although the caller had the collector off"
    finally:
        gc.enable()


def test_the_program_itself_turns_the_collector_off_for_its_run() -> None:
    """`pulumi up` runs __main__.py in a process of its own, without the engine's pause: the program makes the
    same choice (components/evaluation.py), so the benchmark's figures are those of a real run. And the process's
    exit handlers freeze the heap, so CPython's final collection at exit walks none of what the run allocated."""
    probe = ("import atexit, contextlib, gc\n"
             "from offline.engine import runner\n"
             "runner.collector_paused = contextlib.nullcontext  # as the language host runs it: no pause around\n"
             "assert gc.isenabled()\n"
             "run = runner.run_program('dev')\n"
             "assert run.error is None, run.error\n"
             "print('collector enabled after the program:', gc.isenabled())\n"
             "tracked = len(gc.get_objects())\n"
             "print('frozen before exit:', gc.get_freeze_count())\n"
             "atexit._run_exitfuncs()  # what sys.exit runs before the interpreter's final collection\n"
             "print('frozen at exit:', gc.get_freeze_count() >= tracked, tracked)\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "collector enabled after the program: False" in out.stdout
    assert "frozen before exit: 0" in out.stdout
    assert "frozen at exit: True" in out.stdout
