"""Growing and shrinking etcd on lab hosts (issue 15): the program's OWN etcd steps for variant inventories
of the stack, applied the way the engine applies a change (a changed step is replaced: new create, then the
old delete; a step gone from the stack runs its delete), on real etcd (Debian's 3.4 under the pinned name).

Stages (the etcd role on the first control-plane hosts only): 1 member -> 2 -> 3 (each joins the running
cluster: `member add`, state `existing`) -> 2 (the third leaves with `member remove` behind its quorum
guard). Between stages the cluster is checked for real: `etcdctl endpoint health --cluster`, `member list`
= the stage's members (all started), and a key written at the first stage is read back through the newest
member. Only the etcd steps and what they depend on (prerequisites, /etc/hosts, the binary upload) are
applied: apiservers, nodes and backups of the variant stacks are left out to keep the lab short.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from lab.apply import Engine, Report
from lab.proofs_issue12 import ProofFailed
from lab.state import COMMAND, Resource

PKI = "/etc/etcd/pki"
MARKER = ("containercloud-lab/before-growth", "kept")
NOTE = ("only the etcd steps and their prerequisites of each variant stack were applied (apiservers, nodes and "
        "backups left out to keep the lab short)")


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


def variant_hosts(hosts: Sequence[dict[str, Any]], etcd_on: Sequence[str], etcd_names: Sequence[str]
                  ) -> list[dict[str, Any]]:
    """The stack's inventory with the etcd role only on `etcd_on` among the etcd hosts `etcd_names`."""
    out = []
    for host in hosts:
        host = dict(host)
        if host["name"] in etcd_names:
            roles = [r for r in host["roles"] if r != "etcd"]
            host["roles"] = (["etcd"] if host["name"] in etcd_on else []) + roles
        out.append(host)
    return out


def is_etcd_step(res: Resource) -> bool:
    """`<host>-etcd`, the member's step (not its binary upload `<host>-etcd-upload-etcd`)."""
    return res.type == COMMAND and res.name.endswith("-etcd")


def etcd_closure(resources: Sequence[Resource]) -> list[Resource]:
    """Every `<host>-etcd` step and everything it depends on (transitively), in the program's order."""
    by_urn = {r.urn: r for r in resources}
    todo = [r for r in resources if is_etcd_step(r)]
    keep: set[str] = set()
    while todo:
        res = todo.pop()
        if res.urn not in keep:
            keep.add(res.urn)
            todo += [by_urn[d] for d in res.dependencies if d in by_urn]
    return [r for r in resources if r.urn in keep]


def stages(names: Sequence[str]) -> list[list[str]]:
    """1 -> 2 -> 3 members, then the third removed."""
    if len(names) < 3:
        raise ProofFailed(f"etcd growth needs 3 etcd hosts in the stack, it has {list(names)}")
    return [list(names[:1]), list(names[:2]), list(names[:3]), list(names[:2])]


def shrink_keeps(applied: Sequence[Resource], wanted: Sequence[Resource]) -> list[Resource]:
    """A shrink only takes the etcd role away: the host's other steps (prerequisites, /etc/hosts, its binary
    upload) stay in the stack, so they stay in this partial apply too; only its etcd step goes."""
    names = {r.name for r in wanted}
    return list(wanted) + [r for r in applied if r.name not in names and not is_etcd_step(r)]


def _etcdctl(lab: Any, on: str, endpoints: str, *args: str) -> Any:
    tls = [f"--cacert={PKI}/ca.crt", f"--cert={PKI}/healthcheck-client.crt", f"--key={PKI}/healthcheck-client.key"]
    return lab.run(on, ["env", "ETCDCTL_API=3", "etcdctl", f"--endpoints={endpoints}", *tls,
                        "--command-timeout=10s", *args], check=False, timeout=60)


def check_health(lab: Any, settings: Any, members: Sequence[str]) -> str:
    """The cluster of `members` is healthy: every member answers (`endpoint health --cluster`), the member
    list is exactly them, all started, and the key written at the first stage reads back via the newest one."""
    hosts = {h.name: h for h in settings.hosts}
    first, newest = hosts[members[0]], hosts[members[-1]]
    urls = [f"https://{hosts[m].address}:2379" for m in members]
    health = _etcdctl(lab, first.name, urls[0], "endpoint", "health", "--cluster")
    out = _text(health.stdout) + _text(health.stderr)
    unhealthy = [u for u in urls if f"{u} is healthy" not in out]
    if health.returncode != 0 or unhealthy:
        raise ProofFailed(f"{list(members)}: endpoint health --cluster: {out.strip()[-400:]}")
    listed = _etcdctl(lab, first.name, urls[0], "member", "list", "-w", "json")
    if listed.returncode != 0:
        raise ProofFailed(f"member list failed: {_text(listed.stderr)[-300:]}")
    got = json.loads(_text(listed.stdout)).get("members", [])
    names = sorted(m.get("name", "") for m in got)
    if names != sorted(members):
        raise ProofFailed(f"member list {names} (an empty name is an unstarted member) != {sorted(members)}")
    value = _etcdctl(lab, newest.name, urls[-1], "get", MARKER[0], "--print-value-only")
    if value.returncode != 0 or _text(value.stdout).strip() != MARKER[1]:
        raise ProofFailed(f"{MARKER[0]} read via {newest.name}: {_text(value.stdout).strip()!r} "
                          f"({_text(value.stderr).strip()[-200:]})")
    return f"{len(members)} healthy (--cluster), member list = {list(members)}, key read via {newest.name}"


def _gone(lab: Any, settings: Any, host: str, members: Sequence[str]) -> None:
    """The removed host's etcd no longer answers (asked from a remaining member: the removal also took the
    host's etcdctl and certificates away) and its data is gone; `member list` not listing it is check_health's."""
    addr = next(h.address for h in settings.hosts if h.name == host)
    answer = _etcdctl(lab, members[0], f"https://{addr}:2379", "endpoint", "health")
    if answer.returncode == 0:
        raise ProofFailed(f"etcd on {host} still answers after its removal")
    data = lab.run(host, ["test", "-e", "/var/lib/etcd/member"], check=False)
    if data.returncode == 0:
        raise ProofFailed(f"{host} still holds /var/lib/etcd/member after its removal")


def _etcd_lines(report: Report) -> list[str]:
    return [f"    {r.status} {r.op} {r.name}" + (f" (exit {r.exit_code})" if r.exit_code else "")
            for r in report.results if r.name.endswith("-etcd") and "-upload-" not in r.name and r.status != "not-run"]


def membership_proof(ctx: Any, destroyed: Callable[[Report], str]) -> str:
    """Run on clean hosts (after the stack's destroy), with an engine state of its own; `destroyed` checks
    that its destroy leaves the hosts as clean as the stack's destroy did."""
    lab, s = ctx.lab, ctx.settings
    names = [h.name for h in s.etcd_hosts]
    engine = Engine(ctx.engine.executor, log=lambda line: None)
    print(f"etcd membership: {NOTE}")
    lines = []
    applied: list[Resource] = []
    try:
        for i, members in enumerate(stages(names)):
            wanted = etcd_closure(ctx.resources(changes={"hosts": variant_hosts(ctx.raw["hosts"], members, names)}))
            if i and len(members) < len(stages(names)[i - 1]):
                wanted = shrink_keeps(applied, wanted)
            report = engine.up(wanted)
            print(f"  stage {i + 1}: etcd on {members}: {report.summary()}\n" + "\n".join(_etcd_lines(report)))
            if not report.ok:
                raise ProofFailed(f"stage {i + 1} ({members}): failed {report.failures()}")
            applied = wanted
            if i == 0:
                put = _etcdctl(lab, members[0], f"https://{s.etcd_hosts[0].address}:2379", "put", *MARKER)
                if put.returncode != 0:
                    raise ProofFailed(f"cannot write {MARKER[0]}: {_text(put.stderr)[-200:]}")
            line = check_health(lab, s, members)
            removed = [n for n in names if n not in members and any(n in st for st in stages(names)[:i])]
            for host in removed:
                _gone(lab, s, host, members)
                line += f"; {host} left (member removed, etcd stopped, data gone)"
            print(f"  stage {i + 1} health: {line}")
            lines.append(f"{len(members)}")
    finally:
        gone = engine.destroy()
        print(f"  destroy of the membership steps: {gone.summary()}")
    clean = destroyed(gone)
    return (f"etcd grown {' -> '.join(lines)} members on {names} with the program's etcd steps (member add, "
            f"state existing; member remove behind the quorum guard), healthy between every stage "
            f"(endpoint health --cluster, member list, a key written at 1 member read after each); {clean}; "
            f"NOTE: {NOTE}")
