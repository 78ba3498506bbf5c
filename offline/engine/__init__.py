"""The offline engine: high-fidelity mocks, a recording monitor, a whole-program runner and a policy client.
Product code: used by `python -m offline preview`, the host lab and the benchmark; tests import it from here."""

from offline.engine.runner import ProgramRun, load_stack_config, run_program

__all__ = ["ProgramRun", "load_stack_config", "run_program"]
