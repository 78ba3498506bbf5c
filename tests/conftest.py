"""Shared fixtures: the dev and ha stacks, each run once per test session under the harness.

Tests read these runs and never change them (mutating tests deep-copy a registration first)."""

from __future__ import annotations

import pytest

from tests.harness import ProgramRun, run_program


def _run(stack: str) -> ProgramRun:
    run = run_program(stack)
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="session")
def dev() -> ProgramRun:
    return _run("dev")


@pytest.fixture(scope="session")
def ha() -> ProgramRun:
    return _run("ha")
