"""The console report: a resource tree like `pulumi preview`, then a summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from offline.checks import Check
from offline.engine import ProgramRun
from offline.hosts import PlacedFile
from offline.policy import PolicyResult


def tree(run: ProgramRun, project: str) -> Iterator[str]:
    urns = {r.urn for r in run.registrations}
    children: dict[str, list] = {}
    for r in run.registrations:
        parent = r.parent if r.parent in urns else ""
        children.setdefault(parent, []).append(r)
    yield f"     {'Type':<60} Name"
    yield f" +   {'pulumi:pulumi:Stack':<60} {project}-{run.stack}"

    def walk(parent: str, depth: int) -> Iterator[str]:
        for r in sorted(children.get(parent, []), key=lambda r: (r.type, r.name)):
            yield f" +   {'   ' * depth + '├─ ' + r.type:<60} {r.name}"
            yield from walk(r.urn, depth + 1)

    yield from walk("", 0)


def summary(run: ProgramRun, files: list[PlacedFile], policy: PolicyResult, checks: list[Check]) -> Iterator[str]:
    yield ""
    yield f"Resources: {len(run.registrations) + 1} to create (offline preview of stack {run.stack})"
    for typ, n in sorted(Counter(r.type for r in run.registrations).items()):
        yield f"    {n:5d} {typ}"
    hosts = Counter(f.host for f in files)
    secret = Counter(f.host for f in files if f.secret)
    yield f"Hosts: {len(hosts)}"
    for host, n in sorted(hosts.items()):
        yield f"    {host}: {n} files ({secret.get(host, 0)} secret)"
    yield f"Policy: {policy.verdict}"
    for v in policy.violations:
        message = v["message"].replace("\n", "\n        ")
        yield f"    [{v['level']}] {v['policy']}: {v['urn']}\n        {message}"
    states = Counter(c.status for c in checks)
    yield (f"Artifact checks: {states.get('ok', 0)} ok, {states.get('failed', 0)} failed, "
           f"{states.get('skipped', 0)} skipped")
    by_name = Counter((c.name, c.status) for c in checks)
    for (name, status), n in sorted(by_name.items()):
        yield f"    {name}: {n} {status}"
    for c in checks:
        if c.status != "ok":
            detail = c.detail.replace("\n", "\n        ")
            yield f"    {c.status.upper()} {c.name} {c.target}\n        {detail}"
