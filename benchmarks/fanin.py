"""SSH fan-in from the graph: how many sessions a host can receive at once in one `up`.

Pulumi runs every resource whose dependencies are done, with no bound by default (`pulumi up --parallel`
is unbounded), so the sessions a host can receive at once are its remote steps that no dependency path
orders: the largest antichain of the host's steps in the dependency order. By Dilworth's theorem that is the
number of steps minus a maximum matching in the "u must finish before v" bipartite graph (a minimum chain
cover). A remote.Command without a `create` (a node's removal record) opens no session on an `up`; a
CopyToRemote opens one (SFTP). Deletes are measured on the reverse order the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from offline.engine import ProgramRun
from offline.engine.monitor import Registration

COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"


def _host(reg: Registration) -> str:
    return str(reg.plain_inputs["connection"]["host"])


def _ancestors(run: ProgramRun, steps: list[Registration]) -> dict[str, int]:
    """URN -> bitset of the steps (by index in `steps`) it waits for, through any resource in between."""
    by_urn = run.by_urn()
    index = {r.urn: i for i, r in enumerate(steps)}
    memo: dict[str, int] = {}
    for reg in run.registrations:  # registration order: a resource's dependencies were registered before it
        bits = 0
        for dep in reg.dependencies:
            if dep != reg.urn and dep in by_urn:
                bits |= memo.get(dep, 0) | (1 << index[dep] if dep in index else 0)
        memo[reg.urn] = bits
    return memo


def _width(members: list[int], before: Callable[[int, int], bool]) -> int:
    """Largest antichain of `members` under `before` (a partial order): members minus a maximum matching."""
    match: dict[int, int] = {}

    def augment(u: int, seen: set[int]) -> bool:
        for v in members:
            if v in seen or not before(u, v):
                continue
            seen.add(v)
            if v not in match or augment(match[v], seen):
                match[v] = u
                return True
        return False

    return len(members) - sum(augment(u, set()) for u in members)


def sessions_at_once(run: ProgramRun, field: str = "create",
                     select: Callable[[Registration], bool] = lambda r: True) -> dict[str, int]:
    """Host -> the most SSH sessions it can receive at once: `create` on an `up`, `delete` when the
    `select`ed steps go (all of them: a destroy; the removal records: nodes leaving in an `up`, whose deletes
    run after every create and update)."""
    steps = [r for r in run.registrations if select(r) and
             (r.type == COPY and field == "create" or r.type == COMMAND and r.plain_inputs.get(field))]
    ancestors = _ancestors(run, steps)
    waits = [ancestors[r.urn] for r in steps]
    by_host: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(steps):
        by_host[_host(r)].append(i)
    return {host: _width(members, lambda u, v: bool(waits[v] >> u & 1)) for host, members in by_host.items()}


def is_removal_record(reg: Registration) -> bool:
    """A node's record on the drain host: no create, a delete that drains and deletes the Node."""
    return reg.type == COMMAND and not reg.plain_inputs.get("create") and bool(reg.plain_inputs.get("delete"))
