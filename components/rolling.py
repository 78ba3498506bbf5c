"""Rolling upgrades of the nodes: a FIXED number of batches, set by `maxUnavailableWorkers` (a percentage),
never by the number of nodes, so the longest chain of waiting steps is the same for 3 and 200 workers.

Design (docs/upgrade.md): one batch gate step per batch, chained only among themselves; each node's
disruptive steps depend on its batch's gate. On a fresh cluster no node of the previous batch is
registered, so a gate returns at once and the first `up` stays parallel; on an upgrade a gate waits (via
the API, from the first control-plane host, INSIDE) until the previous batch's nodes run the target
kubelet version and are Ready.
"""

from __future__ import annotations

import math

from components.config import PROJECT, Host, Settings


def check_settings(s: Settings) -> list[str]:
    if not 1 <= s.max_unavailable_workers <= 100:
        return [f"{PROJECT}:maxUnavailableWorkers: {s.max_unavailable_workers} is not a percentage between 1 "
                "and 100"]
    return []


def batch_count(percent: int) -> int:
    """How many batches: 100 / percent rounded up (10 % -> 10 batches, 30 % -> 4, 100 % -> 1)."""
    return math.ceil(100 / percent)


def batches(nodes: list[Host], percent: int) -> list[list[Host]]:
    """`batch_count(percent)` batches (some empty when there are fewer nodes than batches), in inventory
    order, none larger than `percent` of the nodes rounded up."""
    count = batch_count(percent)
    out: list[list[Host]] = [[] for _ in range(count)]
    for i, node in enumerate(nodes):
        out[i * count // len(nodes)].append(node)
    return out
