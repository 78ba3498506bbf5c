"""An upgrade's order from its execution log (issue 15): a `kubernetesVersion` patch bump applied to the
running lab stack by the engine (every changed step replaced: new create, then the old delete), and the
order of what it replaced read back from the engine's log and asserted:

  * control-plane hosts one at a time: each host's kube-apiserver step starts after the previous host's ended;
  * the worker batches' drain steps (on the drain host, INSIDE) in batch order, after the last apiserver;
  * each batch's drain step before its nodes' runtime/kubelet steps, its uncordon step after them.

The drain and uncordon steps need a real API server (no kube-apiserver binary exists here): the log shows
where (host) and in which position they would run, marked NOT RUN. The lab mirror serves the bumped
version too (lab stand-ins built for it, under the lab's own digests), so the bump really replaces binaries.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from lab.proofs_issue12 import ProofFailed

DRAIN = re.compile(r"-rollout-batch-(\d+)$")
UNCORDON = re.compile(r"-batch-(\d+)-node$")
REMOVAL = re.compile(r"-node$")  # a node's removal record (rolling.removal), and the uncordon steps
CONTROL_PLANE = ("kube-apiserver", "controllers")
NODE = ("runtime", "kubelet")


@dataclass(frozen=True)
class Entry:
    """One line of the execution log, in the order the engine logged it."""

    status: str  # ok | failed | not-run | skipped
    op: str
    host: str  # the inventory name of the host the step runs on
    name: str
    reason: str = ""
    end: Optional[float] = None  # monotonic time the step ended (steps that ran)
    duration: float = 0.0

    @property
    def start(self) -> Optional[float]:
        return None if self.end is None else self.end - self.duration


def bumped(version: str) -> str:
    """The next patch version: 1.35.4 -> 1.35.5 (same minor: the skew guard lets it through)."""
    major, minor, patch = version.split(".")
    return f"{major}.{minor}.{int(patch) + 1}"


def _index(log: Sequence[Entry], name: str) -> Optional[int]:
    return next((i for i, e in enumerate(log) if e.name == name), None)


def check_order(log: Sequence[Entry], cp_hosts: Sequence[str], batches: Sequence[Sequence[str]],
                drain_host: str) -> list[str]:
    """Every fault in the upgrade's order, read from the log (empty: the order is right)."""
    faults = []
    api = [(h, _index(log, f"{h}-kube-apiserver")) for h in cp_hosts]
    faults += [f"{h}-kube-apiserver was not replaced" for h, i in api if i is None]
    ran = [(h, log[i]) for h, i in api if i is not None]
    for (prev, a), (host, b) in zip(ran, ran[1:], strict=False):
        if a.end is None or b.start is None or b.start < a.end:
            faults.append(f"{host}-kube-apiserver started before {prev}-kube-apiserver ended")
    last_api = max((i for _, i in api if i is not None), default=-1)
    drains = [(int(m.group(1)), i) for i, e in enumerate(log) if e.host == drain_host and (m := DRAIN.search(e.name))]
    if [k for k, _ in drains] != sorted(k for k, _ in drains):
        faults.append(f"drain steps out of batch order: {[k for k, _ in drains]}")
    faults += [f"batch {k}'s drain step is logged before the last apiserver" for k, i in drains if i < last_api]
    drain_at = dict(drains)
    for k, nodes in enumerate(batches):
        if not nodes:
            continue
        if k not in drain_at:
            faults.append(f"batch {k} ({list(nodes)}) has no drain step in the log")
            continue
        steps = [(f"{n}-{s}", _index(log, f"{n}-{s}")) for n in nodes for s in NODE]
        faults += [f"{n}-kubelet was not replaced" for n in nodes if _index(log, f"{n}-kubelet") is None]
        faults += [f"{name} ran before batch {k}'s drain step" for name, i in steps if i is not None
                   and i < drain_at[k]]
        uncordon = _index(log, f"{drain_host}-batch-{k}-node")
        if uncordon is None:
            faults.append(f"batch {k} has no uncordon step in the log")
            continue
        faults += [f"batch {k}'s uncordon step is logged before {name}" for name, i in steps if i is not None
                   and i > uncordon]
    faults += [f"{e.name} on {e.host} ran: drain/uncordon need a real API server" for e in log
               if (DRAIN.search(e.name) or UNCORDON.search(e.name)) and e.status != "not-run"]
    return faults


def relevant(entry: Entry, cp_hosts: Sequence[str], nodes: Sequence[str]) -> bool:
    """The log lines of the rollout: control-plane and node steps, the batches' drain and uncordon steps."""
    if entry.op.startswith("delete"):
        return False  # the old sides of replacements, after the rollout (their delete is a no-op: marker)
    if DRAIN.search(entry.name) or UNCORDON.search(entry.name):
        return True
    parts = [f"{h}-{s}" for h in cp_hosts for s in CONTROL_PLANE] + [f"{n}-{s}" for n in nodes for s in NODE]
    return entry.name in parts and entry.op in ("replace", "update", "create")


def format_log(log: Sequence[Entry]) -> list[str]:
    out = []
    for i, e in enumerate(log, 1):
        what = "NOT RUN (" + e.reason[:70] + "…)" if e.status == "not-run" else f"{e.status} {e.duration:.1f}s"
        out.append(f"  {i:3}. {e.op:8} {e.host:10} {e.name:28} {what}")
    return out


def with_version(checksums: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """A copy of a checksums table where every entry of version `old` is also there under `new`."""
    out = {c: dict(versions) for c, versions in checksums.items()}
    for versions in out.values():
        for ver in list(versions):
            if ver.lstrip("v") == old:
                versions[ver.replace(old, new)] = dict(versions[ver])
    return out


def serve_bumped(settings: Any, root: Path, version: str) -> Path:
    """The mirror serves `version` too: the lab mirror's files built for it (stand-ins of that version) are
    copied next to the served ones; returns a checksums file holding both versions' lab digests."""
    from components import artifacts
    from lab import mirror as lab_mirror

    out = lab_mirror.CACHE / "upgrade"
    out.mkdir(parents=True, exist_ok=True)
    # the program refuses a version without a digest: while the mirror for `version` is built, its entries
    # carry the current version's (build_mirror computes and writes the real lab digests of what it builds)
    current = yaml.safe_load(artifacts.CHECKSUMS_FILE.read_text())
    placeholder = out / "lab-checksums-placeholder.yaml"
    placeholder.write_text(yaml.safe_dump(with_version(current, settings.kubernetes_version, version)))
    with lab_mirror.lab_checksums(placeholder):
        other = lab_mirror.build_mirror(settings.model_copy(update={"kubernetes_version": version}), out / "mirror")
    for url_path in other.manifest:
        target = root / url_path
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / "mirror" / url_path, target)
    merged = current
    for component, versions in yaml.safe_load(other.checksums.read_text()).items():
        for ver, files in versions.items():
            merged.setdefault(component, {}).setdefault(ver, {}).update(files)
    path = out / "lab-checksums-both.yaml"
    path.write_text("# Host lab digests of both versions (lab/proofs_upgrade.py). Never ship this.\n"
                    + yaml.safe_dump(merged, sort_keys=True))
    return path


def upgrade_order_proof(ctx: Any, extra_hosts: Sequence[dict[str, Any]] = ()) -> str:
    from components import rolling
    from components.config import parse_settings
    from lab import mirror as lab_mirror

    s = ctx.settings
    version = bumped(s.kubernetes_version)
    if ctx.mirror_root is None:
        raise ProofFailed("the lab's mirror root is not known")
    checksums = serve_bumped(s, ctx.mirror_root, version)
    with lab_mirror.lab_checksums(checksums):  # the settings check resolves every digest too
        resources = ctx.resources(extra_hosts, changes={"kubernetesVersion": version})
        new = parse_settings(ctx.raw | {"hosts": list(ctx.raw["hosts"]) + list(extra_hosts),
                                        "kubernetesVersion": version})
    names = {h.address: h.name for h in new.hosts}
    ends: list[float] = []
    engine = ctx.engine
    saved = engine.log, engine.not_runnable
    engine.log = lambda line: ends.append(time.monotonic())
    # a node's removal record (`<node>-node`) has no create: on an `up` pulumi-command runs nothing for it (only
    # its delete needs the API server), so here it settles like any unchanged step and each batch's uncordon
    # step is logged where the engine reaches it: once its nodes' kubelet steps are done
    engine.not_runnable = [(p, r) for p, r in saved[1] if p != "*-node"]
    try:
        report = ctx.result.reports["upgrade"] = engine.up(resources)
    finally:
        engine.log, engine.not_runnable = saved
        # as after every other lab `up`, no removal record is in the state: its delete cannot run here
        for res in resources:
            if res.remote and REMOVAL.search(res.name) and not UNCORDON.search(res.name):
                engine.state.forget(res.urn)
    timed = iter(ends)
    log = [Entry(r.status, r.op, names.get(r.host, r.host), r.name, r.reason,
                 next(timed) if r.status in ("ok", "failed") else None, r.duration) for r in report.results]
    if report.by_status("failed") or report.by_status("skipped"):
        raise ProofFailed(f"the upgrade to {version} failed: {report.failures()}")
    cp = [h.name for h in new.control_plane_hosts]
    nodes = [h.name for h in new.node_hosts]
    batches = [[h.name for h in b] for b in rolling.batches(new.node_hosts, new.max_unavailable_workers)]
    drain_host = cp[0]
    shown = [e for e in log if relevant(e, cp, nodes)]
    print(f"upgrade {s.kubernetes_version} -> {version}: the execution log of the rollout "
          f"({len(report.ran())} steps ran in {report.seconds:.0f}s; the old sides' deletes after them are no-ops):")
    print("\n".join(format_log(shown)))
    faults = check_order(shown, cp, batches, drain_host)
    if faults:
        raise ProofFailed("; ".join(faults))
    filled = [k for k, b in enumerate(batches) if b]
    print(f"  NOT RUN: the drain steps (rollout-batch-k) and uncordon steps (batch-k-node) on {drain_host}: they "
          "need a real API server. In the lab a drain step passes at once, so the batches' kubelet steps overlap "
          "here; on a cluster drain step k+1 first waits until batch k's nodes are Ready with their new fingerprint.")
    kinds = sorted({e.name.rsplit("-", 1)[1] for e in shown if e.host in nodes and e.name.endswith(NODE)})
    return (f"kubernetesVersion {s.kubernetes_version} -> {version} replaced every node's kubelet "
            f"({len(nodes)} nodes) and the control plane ({', '.join(cp)}{' one at a time' if len(cp) > 1 else ''}); "
            f"drain steps on "
            f"{drain_host} in batch order, batches {filled} each drained before its nodes' {'/'.join(kinds)} steps and "
            f"uncordoned after them; the drain and uncordon steps were NOT run (they need a real API server)")
