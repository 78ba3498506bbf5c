"""The offline test harness: high-fidelity mocks, a recording monitor and a whole-program runner.
Shared by the tests and by `python -m offline preview`."""

from tests.harness.runner import ProgramRun, load_stack_config, run_program

__all__ = ["ProgramRun", "load_stack_config", "run_program"]
