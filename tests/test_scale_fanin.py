"""SSH fan-in: no host receives more than 10 sessions at once in one `up`, at any cluster size (issue 16),
measured from the dependency graph (benchmarks/fanin.py)."""

from __future__ import annotations

import pytest

from benchmarks.fanin import _width, is_removal_record, sessions_at_once
from benchmarks.preview import overrides
from offline.engine import ProgramRun, run_program

LIMIT = 10  # OpenSSH's MaxStartups 10:30:100 starts dropping unauthenticated connections beyond 10


@pytest.fixture(scope="module")
def sized() -> dict[int, ProgramRun]:
    runs = {}
    for n in (3, 20, 200):
        run = run_program("dev", overrides=overrides(n))
        assert run.error is None, run.error
        runs[n] = run
    return runs


def test_the_width_is_the_largest_set_of_unordered_steps() -> None:
    twelve = list(range(12))
    assert _width(twelve, lambda u, v: False) == 12  # nothing ordered: all at once
    assert _width(twelve, lambda u, v: u < v) == 1  # a chain: one at a time
    assert _width(twelve, lambda u, v: u % 3 == v % 3 and u < v) == 3  # three chains side by side


def test_no_host_receives_more_than_ten_sessions_at_once(sized: dict[int, ProgramRun], capsys) -> None:
    """On an `up` that creates or updates everything, and on one where every node leaves (their removal
    records' deletes drain them, one per batch at a time). A whole `pulumi destroy` is printed, not bounded:
    it is not an `up`, and the drain host's own steps go at the same time as the last removals."""
    for n, run in sized.items():
        ups = sessions_at_once(run)
        leaving = sessions_at_once(run, "delete", is_removal_record)
        destroy = sessions_at_once(run, "delete")
        with capsys.disabled():
            print(f"\n[{n} workers] most sessions at once on one host: up {max(ups.values())} "
                  f"({max(ups, key=ups.__getitem__)}), every node leaving {max(leaving.values())}, "
                  f"destroy {max(destroy.values())}")
        assert max(ups.values()) <= LIMIT, sorted(ups.items(), key=lambda kv: -kv[1])[:3]
        assert max(leaving.values()) <= LIMIT, sorted(leaving.items(), key=lambda kv: -kv[1])[:3]


def test_the_fan_in_does_not_grow_with_the_cluster(sized: dict[int, ProgramRun]) -> None:
    assert max(sessions_at_once(sized[20]).values()) == max(sessions_at_once(sized[200]).values())
