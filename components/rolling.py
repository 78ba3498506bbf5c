"""Rolling upgrades of the nodes: a FIXED number of batches, set by `maxUnavailableWorkers` (a percentage),
never by the number of nodes, so the longest chain of waiting steps is the same for 3 and 200 workers.

Design (docs/upgrade.md): per batch ONE drain step on the drain host (the first control-plane host, INSIDE,
where the admin credential is), chained only among the drain steps, and ONE uncordon step after the batch's
kubelet steps; each node's runtime step depends on its batch's drain step. The drain host gets O(batches)
SSH sessions, whatever the number of nodes, and each batch step carries only its batch's nodes. On a fresh
cluster no node is registered, so every drain step returns at once and the first `up` stays parallel; on an
upgrade a drain step waits (via the API) until the earlier batches' nodes carry their new fingerprint and
are schedulable, then drains its own nodes that must roll.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_command as command

from components.config import Host, Settings
from components.host_step import HostFile, HostStep, HostStepArgs, host_connection, needs_sudo
from components.templating import render


def batch_count(percent: int) -> int:
    """How many batches: 100 / percent rounded up (10 % -> 10 batches, 30 % -> 4, 100 % -> 1)."""
    return math.ceil(100 / percent)


def batches(nodes: list[Host], percent: int) -> list[list[Host]]:
    """`batch_count(percent)` batches, node i of the inventory in batch `count - 1 - i % count` (round robin
    from the last batch): no batch holds more than `percent` of the nodes rounded up; appending a node to the
    inventory changes only its own batch; with fewer nodes than batches the FIRST batches stay empty, so the
    last batch always holds a node and the longest chain (every gate, then that node's steps) is the same for
    any number of nodes."""
    count = batch_count(percent)
    out: list[list[Host]] = [[] for _ in range(count)]
    for i, node in enumerate(nodes):
        out[count - 1 - i % count].append(node)
    return out


DIGEST_DIR = "/var/lib/containercloud/rollout"
APPLIED_ANNOTATION = "containercloud.io/applied"


@dataclass(frozen=True)
class Parts:
    """A node step before it is created: its fingerprint is needed first (the drain depends on it)."""

    script: str
    delete: str
    files: list[HostFile]
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


@dataclass(frozen=True)
class Member:
    """A node as its batch's steps on the drain host see it: name, fingerprint, labels to set."""

    name: str
    fingerprint: pulumi.Output[str]
    labels: dict[str, str]


def batch_path(k: int, kind: str) -> str:
    """`drain`: the batch's `node fingerprint` lines as its drain step wrote them (later batches' drain steps
    read them); `uncordon`: the same lines for the uncordon step (a node's removal record reads them)."""
    return f"{DIGEST_DIR}/batch-{k}.{kind}"


def listing(members: list[Member]) -> pulumi.Output[str]:
    return pulumi.Output.all(*[m.fingerprint for m in members]).apply(
        lambda ds: "".join(f"{m.name} {d}\n" for m, d in zip(members, ds, strict=True)))


@dataclass(frozen=True)
class NodeRolloutArgs:
    settings: Settings
    ssh_private_key: pulumi.Input[str]
    drain_host: Host  # INSIDE: holds the admin kubeconfig
    api_ready: pulumi.Resource


class NodeRollout(pulumi.ComponentResource):
    """`containercloud:k8s:NodeRollout`: per batch, ONE drain step (the gate, chained only among the drain
    steps) and ONE uncordon step, both on the drain host: O(batches) SSH sessions there, whatever the
    number of nodes."""

    def __init__(self, name: str, args: NodeRolloutArgs, opts: Optional[pulumi.ResourceOptions] = None):
        s = args.settings
        super().__init__("containercloud:k8s:NodeRollout", name, {
            "maxUnavailableWorkers": s.max_unavailable_workers,
            "batches": batch_count(s.max_unavailable_workers),
        }, opts)
        self.args = args
        self.gates: list[HostStep] = []
        self.uncordons: list[HostStep] = []
        self.register_outputs({})

    def _on_drain_host(self, name: str, script: str, delete: str, files: list[HostFile],
                       depends_on: list[pulumi.Resource]) -> HostStep:
        s, host = self.args.settings, self.args.drain_host
        return HostStep(
            f"{host.name}-{name}",
            HostStepArgs(host=host.name, connection=host_connection(s, host, self.args.ssh_private_key),
                         script=script, delete_script=delete, files=files, use_sudo=needs_sudo(s, host)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on))

    def drain(self, members: list[Member]) -> HostStep:
        """Batch k's gate and drain, one SSH session: wait until every node of the EARLIER batches (their
        lists on this host) that already ran a rollout carries its fingerprint and is schedulable again
        (fresh nodes carry no annotation: a first `up` passes at once); then cordon and drain this batch's
        registered nodes that do not carry their fingerprint yet, one after the other."""
        k = len(self.gates)
        own = batch_path(k, "drain")
        script = render("node/gate.sh.j2", batch=k, earlier=[batch_path(i, "drain") for i in range(k)],
                        annotation=APPLIED_ANNOTATION) + render("node/cordon_drain.sh.j2", batch_file=own)
        step = self._on_drain_host(f"rollout-batch-{k}", script, f"rm -f {own}", [HostFile(own, listing(members))],
                                   [self.gates[-1].command if self.gates else self.args.api_ready])
        self.gates.append(step)
        return step

    def uncordon(self, members: list[Member], after: pulumi.Resource) -> HostStep:
        """After the batch's kubelet steps (`after`: the last of the batch's removal records, which wait for
        their node's kubelet step and for each other; one edge, not one per node, so the SDK's cycle check
        walks the batch once, not once per node) and the previous batch's uncordon step (one at a time on the
        drain host, which an upgrade's gates impose anyway): each node registered, labelled, Ready before it is
        uncordoned (if its drain cordoned it), annotated with its fingerprint. Removing a node is its own
        record's delete (`removal`), which reads the lists these steps leave on the host."""
        k = len(self.gates) - 1
        own = batch_path(k, "uncordon")
        script = render("node/register.sh.j2", batch_file=own, nodes=[(m.name, m.labels) for m in members])
        step = self._on_drain_host(f"batch-{k}-node", script, f"rm -f {own}", [HostFile(own, listing(members))],
                                   [after, *(u.command for u in self.uncordons[-1:])])
        self.uncordons.append(step)
        return step


def removal(s: Settings, node: str, drain_host: Host, private_key: pulumi.Input[str],
            opts: pulumi.ResourceOptions) -> command.remote.Command:
    """`<node>-node` on the drain host: no `create` (pulumi-command runs nothing and opens no session on an
    `up`), only a `delete` that cordons, drains and deletes the Node when the node leaves the stack."""
    script = render("node/drain.sh.j2", node=node, lists_glob=f"{DIGEST_DIR}/batch-*.uncordon")
    delete = render("host_step/wrapper.sh.j2", script=script, sudo="sudo -n " if needs_sudo(s, drain_host) else "")
    return command.remote.Command(f"{node}-node", connection=host_connection(s, drain_host, private_key),
                                  delete=delete, add_previous_output_in_env=False, opts=opts)
