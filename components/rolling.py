"""Rolling upgrades of the nodes: a FIXED number of batches, set by `maxUnavailableWorkers` (a percentage),
never by the number of nodes, so the longest chain of waiting steps is the same for 3 and 200 workers.

Design (docs/upgrade.md): one batch gate step per batch, chained only among themselves; each node's
disruptive steps depend on its batch's gate. On a fresh cluster no node of the previous batch is
registered, so a gate returns at once and the first `up` stays parallel; on an upgrade a gate waits (via
the API, from the first control-plane host, INSIDE) until the previous batch's nodes run the target
kubelet version and are Ready.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Optional

import pulumi

from components.config import PROJECT, Host, Settings
from components.host_step import HostFile, HostStep, HostStepArgs, host_connection, needs_sudo
from components.templating import render


def check_settings(s: Settings) -> list[str]:
    if not 1 <= s.max_unavailable_workers <= 100:
        return [f"{PROJECT}:maxUnavailableWorkers: {s.max_unavailable_workers} is not a percentage between 1 "
                "and 100"]
    return []


def batch_count(percent: int) -> int:
    """How many batches: 100 / percent rounded up (10 % -> 10 batches, 30 % -> 4, 100 % -> 1)."""
    return math.ceil(100 / percent)


def batches(nodes: list[Host], percent: int) -> list[list[Host]]:
    """`batch_count(percent)` batches in inventory order, none larger than `percent` of the nodes rounded
    up. With fewer nodes than batches the FIRST batches stay empty: the last batch always holds a node, so
    the longest chain (every gate, then that node's steps) is the same for any number of nodes."""
    count = batch_count(percent)
    out: list[list[Host]] = [[] for _ in range(count)]
    n = len(nodes)
    for i, node in enumerate(nodes):
        out[count - 1 - (n - 1 - i) * count // n].append(node)
    return out


DIGEST_DIR = "/var/lib/containercloud/rollout"
APPLIED_ANNOTATION = "containercloud.io/applied"


@dataclass(frozen=True)
class Parts:
    """A node step before it is created: its fingerprint is needed first (the drain depends on it)."""

    script: str
    delete: str
    files: list[HostFile]
    uploads: list[pulumi.Resource] = field(default_factory=list)
    prelude: str = ""  # runs before any file is written (the verified artifact fetch)


def fingerprint(parts: list[Parts], extra: list[pulumi.Input[str]]) -> pulumi.Output[str]:
    """sha256 of what the node's disruptive steps install: scripts, non-secret files and `extra` (the
    certificates inside the secret kubeconfigs). Secret contents are left out, so the value is not secret."""
    plain = [f for p in parts for f in p.files if not f.secret]
    head = [p.prelude + p.script for p in parts] + [f"{f.path}:{f.mode}" for p in parts for f in p.files]

    def digest(contents: list[str]) -> str:
        h = hashlib.sha256()
        for part in head + contents:
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()

    return pulumi.Output.all(*[f.content for f in plain], *extra).apply(digest)


def digest_path(node: str) -> str:
    return f"{DIGEST_DIR}/{node}"


def digest_file(node: str, digest: pulumi.Input[str]) -> HostFile:
    return HostFile(digest_path(node), pulumi.Output.from_input(digest).apply(lambda d: f"{d}\n"))


@dataclass(frozen=True)
class NodeRolloutArgs:
    settings: Settings
    ssh_private_key: pulumi.Input[str]
    drain_host: Host  # INSIDE: holds the admin kubeconfig
    api_ready: pulumi.Resource


class NodeRollout(pulumi.ComponentResource):
    """`containercloud:k8s:NodeRollout`: the batch gates, chained only among themselves."""

    def __init__(self, name: str, args: NodeRolloutArgs, opts: Optional[pulumi.ResourceOptions] = None):
        s = args.settings
        super().__init__("containercloud:k8s:NodeRollout", name, {
            "maxUnavailableWorkers": s.max_unavailable_workers,
            "batches": batch_count(s.max_unavailable_workers),
        }, opts)
        self.args = args
        self.gates: list[HostStep] = []
        self.register_outputs({})

    def gate(self, previous: list[tuple[str, pulumi.Output[str]]]) -> HostStep:
        """The next batch's gate: waits until every node of the previous batch that already ran an earlier
        rollout (it carries the annotation) is annotated with this rollout's fingerprint and schedulable
        again. Fresh nodes carry no annotation: on a first `up` a gate returns at once."""
        s, host = self.args.settings, self.args.drain_host
        k = len(self.gates)
        expected = pulumi.Output.all(*[d for _, d in previous]).apply(
            lambda ds: "".join(f"{n} {d}\n" for (n, _), d in zip(previous, ds, strict=True)))
        expected_file = f"{DIGEST_DIR}/batch-{k}.expected"
        step = HostStep(
            f"{host.name}-rollout-batch-{k}",
            HostStepArgs(host=host.name, connection=host_connection(s, host, self.args.ssh_private_key),
                         script=render("node/gate.sh.j2", batch=k, expected_file=expected_file,
                                       annotation=APPLIED_ANNOTATION),
                         delete_script=f"rm -f {expected_file}", files=[HostFile(expected_file, expected)],
                         use_sudo=needs_sudo(s, host)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.gates[-1].command if self.gates
                                                                 else self.args.api_ready]))
        self.gates.append(step)
        return step
