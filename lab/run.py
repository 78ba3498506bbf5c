"""The lab's phases for one stack: mirror, hosts, up, second up, idempotency, change, fault, destroy.

Every phase prints what ran and asserts its proof; `run(stack)` returns the LabResult (timings, the
steps not run and why, the proofs) and raises LabFailure at the first broken proof.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from lab import bare, debrepo, probes, proofs_day_two, proofs_issue12, proofs_membership, proofs_upgrade
from lab import mirror as lab_mirror
from lab import registry as lab_registry
from lab.apply import Engine, Executor, Report
from lab.hosts import HostSpec, Lab, plan_hosts, plan_users
from lab.state import ReplayMocks, Resource, diff, from_registrations

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "container-cloud"
# What a host's upper dir may still hold after destroy, beyond what it held when the lab came up:
# package caches and logs, and the lab's own session traces. Anything else is a leftover of ours.
ALLOWED_AFTER_DESTROY = (
    "var/lib/apt/", "var/cache/", "var/log/", "root/.ssh/", "root/.cache/", "var/tmp/systemd-",
    "etc/ld.so.cache", "var/lib/dpkg/", "var/lib/systemd/", "run/", "tmp/",
    "etc/group-", "etc/gshadow-", "etc/passwd-", "etc/shadow-",  # shadow-utils' backups of the last edit
    "var/backups/etcd",  # etcd snapshots are data: kept on purpose when the backup step goes (docs/restore.md)
)
# What running daemons write by themselves (not a step rewriting a file): left out of the idempotency check.
RUNTIME_DATA = ("var/log/", "var/lib/etcd/member/", "var/lib/containerd/", "var/lib/docker/", "run/", "tmp/")
BINARY_DIRS = ("usr/local/bin/", "usr/local/sbin/", "usr/bin/", "usr/sbin/", "opt/")
NEW_WORKER: dict[str, Any] = {"name": "worker-4", "address": "203.0.113.24", "zone": "dmz", "roles": ["worker"]}


class LabFailure(AssertionError):
    pass


@dataclass
class LabResult:
    stack: str
    timings: dict[str, float] = field(default_factory=dict)
    not_run: list[tuple[str, str, str]] = field(default_factory=list)  # (host, step, reason)
    proofs: dict[str, str] = field(default_factory=dict)
    reports: dict[str, Report] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def check(cond: bool, message: str) -> None:
    if not cond:
        raise LabFailure(message)


@contextmanager
def phase(result: LabResult, name: str) -> Iterator[None]:
    print(f"\n=== {result.stack}: {name} ===", flush=True)
    start = time.monotonic()
    yield
    result.timings[name] = time.monotonic() - start
    print(f"=== {name}: {result.timings[name]:.1f}s", flush=True)


# --- the stack, as the lab deploys it ------------------------------------------------------------
def stack_raw(stack: str, overrides: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The stack's settings (Pulumi.yaml defaults + stack file + overrides), keys without prefix."""
    from offline.engine import load_stack_config

    cfg = load_stack_config(stack, overrides)
    out: dict[str, Any] = {}
    for key, value in cfg.values.items():
        name = key.split(":", 1)[1]
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out


def lab_overrides(raw: dict[str, Any], lab: Any, mirror_url: str, extra_hosts: Sequence[dict[str, Any]] = (),
                  install: bool = True) -> dict[str, Any]:
    """The stack config as the lab deploys it: its mirror, its SSH key, each host's real host key, and
    `installHostPackages` (the hosts' apt sources are the lab's internal Debian mirror)."""
    hosts = []
    for host in list(raw["hosts"]) + list(extra_hosts):
        key = lab.hosts[host["name"]].host_key
        ssh = dict(host.get("ssh") or {}) | {"hostKey": key}
        hosts.append(dict(host) | {"ssh": ssh})
    out = {"hosts": hosts, "artifactsMirrorUrl": mirror_url, "sshPrivateKey": lab.ssh_private_key,
           "installHostPackages": install}
    if "bastion" in lab.hosts:  # the bastion's real host key: the executor checks it strictly
        out["sshBastionHostKey"] = lab.hosts["bastion"].host_key
    return out


def host_packages(settings: Any) -> list[str]:
    """Every Debian package the program's prerequisites step checks on some host of the stack."""
    from components import prerequisites

    return sorted({p.name for h in settings.hosts for p in prerequisites.packages(settings, h)})


def build_apt_repo(settings: Any, root: Path, hide: Any) -> list[str]:
    """The internal Debian mirror (lab/debrepo.py) under `root`: what a bare host needs for those packages."""
    hidden = {h.package for h in bare.HIDDEN if h.group in bare.groups(hide)}
    status, _ = debrepo.bare_status(debrepo.DPKG_STATUS.read_text(), hidden)
    return debrepo.build_repo(root, lab_mirror.CACHE / "debs-apt", debrepo.needed_debs(host_packages(settings), status))


def program_resources(stack: str, overrides: dict[str, Any], mocks: Optional[ReplayMocks] = None) -> list[Resource]:
    """The program's resources for the lab's config. Pass the lab's ReplayMocks so unchanged resources keep
    their outputs from one program run to the next, as in the engine's state."""
    from offline.engine import run_program

    run = run_program(stack, overrides, mocks=mocks)
    if run.error is not None:
        raise LabFailure(f"the program failed for the lab's {stack} config: {run.error}")
    return from_registrations(run.registrations)


# --- proofs ------------------------------------------------------------------------------------
def units_main_pids(lab: Any, host: str) -> dict[str, str]:
    """MainPID of every unit our steps installed on `host`."""
    unit_dir = lab.hosts[host].upper / "etc/systemd/system"
    units = sorted(p.name for p in unit_dir.glob("*.service")) if unit_dir.is_dir() else []
    pids = {}
    for unit in units:
        proc = lab.run(host, ["systemctl", "show", "-p", "MainPID", unit], check=False)
        pids[unit] = proc.stdout.decode().strip() if isinstance(proc.stdout, bytes) else str(proc.stdout).strip()
    return pids


def host_names(lab: Any) -> list[str]:
    """Hosts with a root of their own (every lab host but the deployer)."""
    return [name for name, h in lab.hosts.items() if h.kind != "deployer"]


def snapshot_all(lab: Any) -> dict[str, dict[str, Any]]:
    return {name: lab.snapshot(name) for name in host_names(lab)}


def changed_files(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for host, files in after.items():
        old = before.get(host, {})
        out += [f"{host}:{path}" for path, meta in files.items() if old.get(path) != meta]
        out += [f"{host}:{path} (removed)" for path in old if path not in files]
    return sorted(out)


def leftovers(baseline: dict[str, Any], after: dict[str, Any], lower: Path = Path("/")) -> list[str]:
    """What a host's upper dir holds after destroy that it did not hold when the lab came up: new or
    changed entries, except the allowed caches and a copied-up file or directory identical to the
    machine's (the lower layer), e.g. /etc/hosts after its block was removed again."""
    out = []
    for path, meta in after.items():
        if baseline.get(path) == meta or path.startswith(ALLOWED_AFTER_DESTROY):
            continue
        if meta[2] == "whiteout":
            # a removal, not something left behind: a path hidden at the start (lab/bare.py) made and removed
            # again, or a file of the machine (the lower layer) that a step's undo removed, e.g. a marker a
            # local test run of a step script left on this machine
            continue
        below = lower / path
        if meta[2] == "dir" and below.is_dir() and not below.is_symlink():
            continue
        if meta[2] != "dir" and below.is_file() and _sha256(below) == meta[2]:
            continue
        out.append(path + ("/" if meta[2] == "dir" else ""))
    return sorted(out)


def _sha256(path: Path) -> str:
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def etcd_proof(lab: Any, settings: Any) -> str:
    members = [h for h in settings.etcd_hosts]
    host = members[0]
    pki = "/etc/etcd/pki"
    tls = [f"--cacert={pki}/ca.crt", f"--cert={pki}/healthcheck-client.crt", f"--key={pki}/healthcheck-client.key"]
    endpoints = ",".join(f"https://{h.address}:2379" for h in members)
    health = lab.run(host.name, ["etcdctl", f"--endpoints={endpoints}", *tls, "endpoint", "health"], check=False)
    check(health.returncode == 0, f"etcd health over mTLS failed: {_text(health.stderr)}")
    listed = lab.run(host.name, ["etcdctl", f"--endpoints=https://{host.address}:2379", *tls,
                                 "member", "list", "-w", "json"], check=False)
    check(listed.returncode == 0, f"etcdctl member list failed: {_text(listed.stderr)}")
    names = sorted(m.get("name", "") for m in json.loads(_text(listed.stdout)).get("members", []))
    want = sorted(h.name for h in members)
    check(names == want, f"etcd members {names} != inventory {want}")
    return f"{len(names)} members healthy over mTLS, member list = inventory {want}"


def zone_matrix_intent(lab: Any, settings: Any) -> dict[tuple[str, str, int], str]:
    """(src host, dst address, port) -> the result the firewall intends: DMZ -> INSIDE control plane
    2379, 2380, 10250, 10257, 10259 and 22 dropped, 6443 open; SSH to every inventory host open only from
    the bastion (when one is set) or the deployer, dropped from the other one."""
    cp = settings.control_plane_hosts[0]
    dmz = next(h.name for h in settings.hosts if h.zone != "inside")
    want = {(dmz, cp.address, port): "dropped" for port in (2379, 2380, 10250, 10257, 10259, 22)}
    want[(dmz, cp.address, 6443)] = "open"
    kinds = {h.kind: name for name, h in lab.hosts.items()}
    ssh_from = kinds["bastion"] if settings.ssh_bastion else kinds["deployer"]
    for host in settings.hosts:
        want[(ssh_from, host.address, settings.ssh_port_for(host))] = "open"
        if settings.ssh_bastion:
            want[(kinds["deployer"], host.address, settings.ssh_port_for(host))] = "dropped"
    return want


def zone_matrix_proof(lab: Any, settings: Any) -> str:
    want = zone_matrix_intent(lab, settings)
    got = probes.probe_matrix(lab, list(want))
    print(probes.format_matrix(got, probes.address_names(lab)))
    bad = [(s, d, p, r) for s, d, p, r in got if want[(s, d, p)] != r]
    check(not bad, f"zone matrix differs from the firewall's intent: {bad}")
    return f"{len(got)} probes as intended (DMZ -> control plane, SSH only from the deployer or bastion)"


def docker_proof(lab: Any, settings: Any) -> str:
    from components.prerequisites import runs_docker

    hosts = [h.name for h in settings.hosts if runs_docker(settings, h)]
    check(bool(hosts), "the stack has no docker host")
    for host in hosts:
        info = lab.run(host, ["docker", "--host", "unix:///run/docker.sock", "info", "--format",
                              "{{.ServerVersion}} {{.Driver}}"], check=False)
        check(info.returncode == 0, f"docker info on {host}: {_text(info.stderr)}")
    return f"dockerd answers on {hosts}"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


def serve_mirror(lab: Any, root: Path, serve_command: Callable[[Path, str, int], list[str]]
                 ) -> tuple[subprocess.Popen[bytes], str]:
    """The mirror host serves `root` over HTTP: a server on the machine's filesystem, in the mirror
    host's network namespace (as the deployer's ssh client is)."""
    host = lab.hosts["mirror"]
    argv = ["nsenter", f"--net=/run/netns/{host.netns}", "--", *serve_command(root, host.address, 80)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://{host.address}"
    probe = ["curl", "-fsS", "-o", "/dev/null", "--retry", "20", "--retry-connrefused", "--retry-delay", "0",
             f"{url}/MANIFEST.json"]
    done = lab.deployer(probe, timeout=30)
    check(done.returncode == 0, f"the mirror does not answer at {url}: {_text(done.stderr)}")
    return server, url


def mini_run(lab: Any, step: Resource) -> Report:
    """One step applied on its own (a fresh engine state): for the proofs that change one setting."""
    executor = Executor(transport=lambda argv, data, timeout: lab.deployer(argv, input=data, timeout=timeout))
    try:
        return Engine(executor, log=print).up([step])
    finally:
        executor.close()


def start_api_balancer(lab: Any, settings: Any) -> Optional[subprocess.Popen[bytes]]:
    """The site's TCP balancer at `apiLoadBalancerAddress` (the program expects one and does not deploy it):
    lab/tcplb.py in the LB host's network namespace, to every control-plane host's API port."""
    if not settings.api_load_balancer_address:
        return None
    host = lab.hosts["api-lb"]
    port = settings.api_server_port
    backends = [f"{h.address}:{port}" for h in settings.control_plane_hosts]
    argv = ["nsenter", f"--net=/run/netns/{host.netns}", "--", sys.executable, "-m", "lab.tcplb", host.address,
            str(port), *backends]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wrong_digest_proof(lab: Any, stack: str, raw: dict[str, Any], url: str, checksums: Path) -> str:
    """A separate mini-run: one digest of the lab checksums pointed at a wrong value; the fetch step of
    one worker must refuse the file (exit non-zero, digest mismatch) and install nothing."""
    doc = yaml.safe_load(checksums.read_text())
    file = next(iter(doc["containerd"].values()))
    name = next(iter(file))
    file[name] = "sha256:" + "0" * 64
    wrong = checksums.with_name("lab-checksums-wrong.yaml")
    wrong.write_text(yaml.safe_dump(doc))
    host = "worker-1"
    with lab_mirror.lab_checksums(wrong):
        step = next(r for r in program_resources(stack, lab_overrides(raw, lab, url)) if r.name == f"{host}-runtime")
    before = lab.snapshot(host)
    report = mini_run(lab, step)
    failed = report.by_status("failed")
    check(len(failed) == 1 and "digest mismatch" in failed[0].stderr,
          f"the fetch step did not refuse a wrong digest: {[r.line() for r in report.results]}")
    after = lab.snapshot(host)
    written = [p for p in changed_files({host: before}, {host: after})
               if after.get(p.split(":", 1)[1], ("",))[-1] != "dir"]
    installed = [p for p in written if p.split(":", 1)[1].startswith(BINARY_DIRS)]
    check(not installed, f"the refused fetch installed binaries on {host}: {installed}")
    check(not written, f"the refused fetch left files on {host} (written before the digest check?): {written}")
    return (f"{host}-runtime refused {name} (wrong sha256): '{_tail_line(failed[0].stderr)}'; "
            f"no binary installed, no file written")


def missing_packages_proof(ctx: Ctx) -> str:
    """A mini-run before `up`: with `installHostPackages: false`, the prerequisites step of a bare worker
    fails with one message naming the host and every package it lacks (and installs nothing)."""
    from components import prerequisites

    host = ctx.settings.worker_hosts[0]
    bare_status = (ctx.lab.hosts[host.name].upper / str(debrepo.DPKG_STATUS).lstrip("/")).read_text()
    have = {p for p, st in debrepo.statuses(bare_status).items() if st == "install ok installed"}
    lacks = [p.name for p in prerequisites.packages(ctx.settings, host) if p.name not in have]
    check(bool(lacks), f"{host.name} lacks none of its packages: the host is not bare")
    overrides = lab_overrides(ctx.raw, ctx.lab, ctx.url, install=False)
    step = next(r for r in program_resources(ctx.stack, overrides) if r.name == f"{host.name}-prerequisites")
    report = mini_run(ctx.lab, step)
    failed = report.by_status("failed")
    check(len(failed) == 1, f"the prerequisites step passed on a bare host: {[r.line() for r in report.results]}")
    lines = [line.strip() for line in failed[0].stderr.splitlines() if "missing packages:" in line]
    check(f"{host.name} does not meet the prerequisites" in failed[0].stderr and len(lines) == 1
          and all(f" {p}" in lines[0].split("(")[0] for p in lacks),
          f"the refusal does not name {host.name} and every missing package {lacks}: {failed[0].stderr!r}")
    return f"installHostPackages false: {host.name}-prerequisites refused: '{lines[0].split(' (')[0]}'"


def bastion_key_proof(ctx: Ctx) -> str:
    """sshBastionHostKey reaches every connection's proxy (pulumi-command ProxyConnectionArgs.host_key) and is
    checked: with another host's key in its place, a step fails before reaching its host."""
    lab, host = ctx.lab, ctx.settings.hosts[0]
    res = ctx.resources()
    proxies = {str((r.inputs.get("connection") or {}).get("proxy", {}).get("hostKey")) for r in res
               if r.remote and r.type == "command:remote:Command"}
    check(proxies == {lab.hosts["bastion"].host_key}, f"bastion host keys in the connections: {proxies}")
    overrides = lab_overrides(ctx.raw, lab, ctx.url) | {"sshBastionHostKey": lab.hosts[host.name].host_key}
    step = next(r for r in program_resources(ctx.stack, overrides) if r.name == f"{host.name}-prerequisites")
    report = mini_run(lab, step)
    failed = report.by_status("failed")
    check(len(failed) == 1 and "Host key verification failed" in failed[0].stderr,
          f"a wrong bastion host key was not refused: {[r.line() for r in report.results]}")
    return (f"every connection's proxy carries the bastion's key; with {host.name}'s key in its place: "
            f"'{_tail_line(failed[0].stderr)}'")


def packages_proof(ctx: Ctx) -> str:
    """installHostPackages true: every host has every package the step checks, installed by the step with
    apt-get from the lab's internal mirror (the hosts' only apt source), and the tools run."""
    from components import prerequisites

    installed: dict[str, list[str]] = {}
    for host in ctx.settings.hosts:
        names = [p.name for p in prerequisites.packages(ctx.settings, host)]
        got = ctx.lab.run(host.name, ["dpkg-query", "-W", "-f=${Package} ${Status}\\n", *names], check=False)
        ok = sorted(line.split()[0] for line in _text(got.stdout).splitlines() if line.endswith("install ok installed"))
        check(ok == sorted(names), f"{host.name}: packages {sorted(set(names) - set(ok))} are not installed")
        tools = ctx.lab.run(host.name, ["sh", "-c", "curl --version && iptables --version"
                                        + (" && jq --version" if "jq" in names else "")], check=False)
        check(tools.returncode == 0, f"{host.name}: the installed tools do not run: {_text(tools.stderr)}")
        upper = ctx.lab.hosts[host.name].upper
        installed[host.name] = sorted(p.name[:-5] for p in (upper / "var/lib/dpkg/info").glob("*.list")
                                      if p.name[:-5].split(":")[0] in names)
    return "installed by the prerequisites step from the lab mirror: " + "; ".join(
        f"{h}: {' '.join(p)}" for h, p in installed.items())


def _tail_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


# --- the run -----------------------------------------------------------------------------------
def _print_report(title: str, report: Report) -> None:
    print(f"--- {title}: {report.summary()}")
    for r in report.results:
        if r.status != "not-run":
            print("  " + r.line().replace("\n", "\n  "))


def _reran(report: Report) -> list[str]:
    return [f"{r.op} {r.host} {r.name}" for r in report.ran()]


def _require_ok(report: Report, what: str) -> None:
    check(not report.by_status("failed") and not report.by_status("skipped"),
          f"{what}: failed {report.failures()}, skipped {[r.name for r in report.by_status('skipped')]}")


def run(stack: str = "dev", workdir: Optional[Path] = None, log: Callable[[str], None] = print,
        hide: Any = True) -> LabResult:
    """`hide`: the lab/bare.py groups of tools hidden in the hosts (True: all, as on a fresh Debian)."""
    from components.config import parse_settings

    result = LabResult(stack)
    workdir = workdir or ROOT / "build" / "lab" / stack
    workdir.mkdir(parents=True, exist_ok=True)
    raw = stack_raw(stack)
    settings = parse_settings({k: v for k, v in raw.items()})
    inside = ipaddress.ip_network(settings.zones["inside"])
    mirror_spec = HostSpec("mirror", str(inside[250]), "inside", "extra")
    extra = [mirror_spec]
    if stack == "dev":
        extra.append(HostSpec(str(NEW_WORKER["name"]), str(NEW_WORKER["address"]), str(NEW_WORKER["zone"]), "extra"))
    specs = plan_hosts(settings, extra)
    with phase(result, "mirror"):
        mirror = lab_mirror.build_mirror(settings)
        debs = build_apt_repo(settings, mirror.root, hide)
        print(f"apt repository {debrepo.REPO_DIR}/: {', '.join(debs) or 'nothing a bare host lacks'}")
    lab = Lab(specs, dict(settings.zones), workdir / "hosts", hide=hide, users=plan_users(settings),
              apt_mirror=f"http://{mirror_spec.address}", cgroup_v2=True,
              # every host mounts a fresh /tmp and /run: a checkout there stays visible (the registry proof
              # reads lab/ and build/lab-cache/ from it inside a host)
              keep=[str(ROOT)] if ROOT.is_relative_to("/tmp") or ROOT.is_relative_to("/run") else [])
    server: Optional[subprocess.Popen[bytes]] = None
    balancer: Optional[subprocess.Popen[bytes]] = None
    try:
        with phase(result, "hosts up"):
            lab.up()
            server, url = serve_mirror(lab, mirror.root, lab_mirror.serve_command)
            balancer = start_api_balancer(lab, settings)
        baseline = snapshot_all(lab)
        executor = Executor(transport=lambda argv, data, timeout: lab.deployer(argv, input=data, timeout=timeout))
        engine = Engine(executor, log=log)
        try:
            with lab_mirror.lab_checksums(mirror.checksums):
                ctx = Ctx(result, lab, engine, stack, raw, settings, url, mirror_root=mirror.root)
                _phases(ctx, baseline)
                if stack == "dev":
                    ctx.soft("wrong digest", lambda: wrong_digest_proof(lab, stack, raw, url, mirror.checksums))
        finally:
            executor.close()
    finally:
        for proc in (server, balancer):
            if proc is not None:
                proc.kill()
                proc.wait()
        with phase(result, "hosts down"):
            lab.down()
    if result.problems:
        print_summary(result)
        raise LabFailure("\n  ".join(["the lab found problems:"] + result.problems))
    return result


@dataclass
class Ctx:
    """One lab run: what every phase needs."""

    result: LabResult
    lab: Any
    engine: Engine
    stack: str
    raw: dict[str, Any]
    settings: Any
    url: str
    mocks: ReplayMocks = field(default_factory=ReplayMocks)
    excluded: set[str] = field(default_factory=set)  # step names left out after they failed in `up`
    mirror_root: Optional[Path] = None  # the directory the lab's mirror serves

    def resources(self, extra_hosts: Sequence[dict[str, Any]] = (),
                  changes: Optional[dict[str, Any]] = None) -> list[Resource]:
        """The program's resources for the lab's config; `changes`: stack settings changed (a variant stack)."""
        raw = self.raw | (changes or {})
        overrides = lab_overrides(raw, self.lab, self.url, extra_hosts) | {
            k: v for k, v in (changes or {}).items() if k != "hosts"}
        res = program_resources(self.stack, overrides, self.mocks)
        return [r for r in res if r.name not in self.excluded]

    def soft(self, name: str, proof: Callable[[], str]) -> None:
        """Run a proof; a broken one is recorded (the lab fails at the end) and the next phases go on."""
        try:
            self.result.proofs[name] = proof()
            print(f"proof {name}: {self.result.proofs[name]}")
        except LabFailure as err:
            self.result.problems.append(f"{name}: {err}")
            print(f"PROOF FAILED {name}: {err}")


def _phases(ctx: Ctx, baseline: dict[str, Any]) -> None:
    result, lab, engine = ctx.result, ctx.lab, ctx.engine
    resources = ctx.resources()
    ctx.soft("missing packages", lambda: missing_packages_proof(ctx))
    if ctx.settings.ssh_bastion:
        ctx.soft("bastion host key", lambda: bastion_key_proof(ctx))
    with phase(result, "up"):
        # the prerequisites first (as `pulumi up --target` would): the packages they install stay by design
        # (other software may use them), so the clean-host baseline of `destroy` is taken after them
        first = engine.up([r for r in resources if "prerequisites" in r.name])
        baseline.clear()
        baseline.update(snapshot_all(lab))
        report = result.reports["up"] = engine.up(resources)
        report.results[:0] = first.results
    _print_report("up", report)
    result.not_run = [(r.host, r.name, r.reason) for r in report.by_status("not-run")]
    broken = report.by_status("failed") + report.by_status("skipped")
    if broken:
        ctx.excluded = {r.name for r in broken}
        result.problems.append(f"up: failed {report.failures()}, so not run: "
                               f"{sorted(r.name for r in report.by_status('skipped'))}")
        print(f"UP FAILED: {result.problems[-1]}\nthese steps are left out of the next phases: {sorted(ctx.excluded)}")
        resources = ctx.resources()
        engine.state.pending_deletes = []

    with phase(result, "second up"):
        second = result.reports["second up"] = engine.up(resources)
    ctx.soft("second up", lambda: _nothing_ran(second, "second up"))

    with phase(result, "idempotency"):
        before, pids = snapshot_all(lab), {h: units_main_pids(lab, h) for h in host_names(lab)}
        again = result.reports["idempotency"] = engine.up(resources, rerun_all=True)
        after, pids_after = snapshot_all(lab), {h: units_main_pids(lab, h) for h in host_names(lab)}
    ctx.soft("idempotency", lambda: _idempotent(again, before, after, pids, pids_after))

    ctx.soft("host packages", lambda: packages_proof(ctx))
    ctx.soft("etcd", lambda: etcd_proof(lab, ctx.settings))
    ctx.soft("etcd backup", lambda: proofs_issue12.guarded(proofs_day_two.backup_restore_proof, lab, ctx.settings))
    ctx.soft("zone matrix", lambda: zone_matrix_proof(lab, ctx.settings))
    ctx.soft("docker", lambda: docker_proof(lab, ctx.settings))
    ctx.soft("registry trust", lambda: registry_proof(ctx))
    proofs_issue12.run_all(ctx)
    if ctx.stack == "dev":
        ctx.soft("change and fault", lambda: _change_and_fault(ctx))
    with phase(result, "upgrade"):  # on the stack as it stands (dev: with worker-4 added by the change)
        extra = [NEW_WORKER] if ctx.stack == "dev" else []  # ha: three apiservers, one at a time
        ctx.soft("upgrade order", lambda: _guarded(lambda: proofs_upgrade.upgrade_order_proof(ctx, extra)))

    with phase(result, "destroy"):
        gone = result.reports["destroy"] = engine.destroy()
    _print_report("destroy", gone)
    for r in gone.results:
        if r.status == "ok" and "nothing to undo" in r.stdout:
            print(f"  note: {r.host} {r.name}: {_tail_line(r.stdout)}")
    ctx.soft("destroy", lambda: _destroyed(lab, gone, baseline))
    if len(ctx.settings.etcd_hosts) >= 3:
        # on the hosts the destroy left clean, with an engine state of its own
        with phase(result, "etcd membership"):
            ctx.soft("etcd membership", lambda: _guarded(
                lambda: proofs_membership.membership_proof(ctx, lambda done: _destroyed(lab, done, baseline))))


REGISTRY_IMAGE = ("library/lab-busybox", "1")


def registry_proof(ctx: Ctx) -> str:
    """containerd on a worker pulls the lab's test image from a real registry (distribution, serving TLS
    with the program's registry certificate) through the program's hosts.toml, trusting only our CA; the
    same pull fails while the CA file is away."""
    lab, s = ctx.lab, ctx.settings
    worker = s.worker_hosts[0]
    # the registry name resolves to the registry LB when the stack has one (ha): the lab's registry then
    # runs in the LB's host, which answers at that address (the lab has no TCP balancing in front of it)
    reg = next((h for h in lab.hosts.values() if h.address == s.registry_load_balancer_address),
               lab.hosts[s.registry_hosts[0].name])
    cert = ctx.mocks.outputs("tls:index/locallySignedCert:LocallySignedCert", "registry-cert")["certPem"]
    key = ctx.mocks.outputs("tls:index/privateKey:PrivateKey", "registry-key")["privateKeyPem"]
    ca_file = "/etc/kubernetes/pki/ca.crt"
    lab_registry.test_image()  # build it on the machine first: the hosts see the cache read-only
    for path, (data, mode) in lab_registry.registry_files(cert, key, reg.address).items():
        lab.run(reg.name, ["install", "-D", "-m", f"{mode:o}", "/dev/stdin", path], input=data)
    lab.run(reg.name, ["install", "-d", "-m", "0700", lab_registry.DATA_DIR])
    pid = lab.spawn(reg.name, lab_registry.start_command(), log="/var/log/lab-registry.log")
    image = f"{s.registry_hostname}/{REGISTRY_IMAGE[0]}:{REGISTRY_IMAGE[1]}"
    pull = ["ctr", "-n", "k8s.io", "images", "pull", "--hosts-dir", "/etc/containerd/certs.d", image]
    try:
        code = ("import sys; from lab.registry import push_test_image; "
                f"print(push_test_image({s.registry_hostname!r}, {reg.address!r}, open({ca_file!r}).read(), "
                f"{REGISTRY_IMAGE[0]!r}, {REGISTRY_IMAGE[1]!r}))")
        pushed = None
        for _ in range(20):
            pushed = lab.run(worker.name, ["env", f"PYTHONPATH={ROOT}", "PYTHONDONTWRITEBYTECODE=1", sys.executable,
                                           "-c", code], check=False)
            if pushed.returncode == 0:
                break
            time.sleep(0.5)
        assert pushed is not None
        check(pushed.returncode == 0, f"push to the lab registry failed: {_tail_line(_text(pushed.stderr))}")
        ok = lab.run(worker.name, pull, check=False, timeout=120)
        check(ok.returncode == 0, f"containerd on {worker.name} could not pull {image}: {_text(ok.stderr)[-500:]}")
        lab.run(worker.name, ["ctr", "-n", "k8s.io", "images", "rm", image], check=False)
        lab.run(worker.name, ["mv", ca_file, ca_file + ".lab-away"])
        try:
            refused = lab.run(worker.name, pull, check=False, timeout=120)
            other_ca = ctx.mocks.outputs("tls:index/selfSignedCert:SelfSignedCert", "etcd-ca-cert")["certPem"]
            lab.run(worker.name, ["install", "-m", "0644", "/dev/stdin", ca_file], input=other_ca.encode())
            untrusted = lab.run(worker.name, pull, check=False, timeout=120)
        finally:
            lab.run(worker.name, ["mv", "-f", ca_file + ".lab-away", ca_file])
        check(refused.returncode != 0, f"{worker.name} pulled {image} without our CA file")
        check(untrusted.returncode != 0 and b"x509" in untrusted.stderr,
              f"{worker.name} pulled {image} trusting another CA: {_text(untrusted.stderr)[-300:]}")
        lab.run(worker.name, ["ctr", "-n", "k8s.io", "images", "rm", image], check=False)
    finally:
        lab.run(reg.name, ["kill", str(pid)], check=False)
        lab.run(reg.name, ["rm", "-rf", lab_registry.BINARY, lab_registry.CONFIG_DIR, lab_registry.DATA_DIR,
                           "/var/log/lab-registry.log", "/etc/containercloud-lab", "/var/lib/containercloud-lab"],
                check=False)
    return (f"{worker.name} pulled {image} from {reg.name} over TLS via hosts.toml with our CA "
            f"(digest {_text(pushed.stdout).strip()[:19]}…); without the CA file: "
            f"'{_tail_line(_text(refused.stderr))[-90:]}'; with another CA in its place: "
            f"'{_tail_line(_text(untrusted.stderr))[-90:]}'")


def _guarded(proof: Callable[[], str]) -> str:
    """A proof's own failure (a refused assertion, a host command that failed, the program refusing the
    proof's stack change) as the lab's LabFailure: recorded, and the next phases (destroy) still run."""
    try:
        return proof()
    except Exception as err:  # noqa: BLE001 - any crash of a proof is that proof's failure
        raise LabFailure(f"{type(err).__name__}: {err}") from err


def _nothing_ran(report: Report, what: str) -> str:
    check(report.ran() == [], f"{what} ran {_reran(report)}")
    return "nothing ran"


def _idempotent(again: Report, before: dict[str, Any], after: dict[str, Any], pids: dict[str, Any],
                pids_after: dict[str, Any]) -> str:
    _require_ok(again, "idempotency run")
    changed = [c for c in changed_files(before, after) if not c.split(":", 1)[1].startswith(RUNTIME_DATA)]
    check(not changed, f"the idempotency run rewrote files: {changed[:20]}")
    restarted = {h: (pids[h], p) for h, p in pids_after.items() if p != pids.get(h)}
    check(not restarted, f"the idempotency run restarted services: {restarted}")
    units = sum(len(p) for p in pids.values())
    return f"{len(again.ran())} creates re-run: no file rewritten, none of {units} units restarted"


def package_files(upper: Path, baseline: dict[str, Any]) -> set[str]:
    """The files of the packages dpkg installed in a host after the baseline (the prerequisites step's
    installs stay by design: other software may use them), and the alternatives links they made."""
    out: set[str] = set()
    for listing in (upper / "var/lib/dpkg/info").glob("*.list"):
        rel = str(listing.relative_to(upper))
        if rel in baseline:
            continue
        out |= {line.lstrip("/") for line in listing.read_text().splitlines() if line.strip()}
    return out


def _alternative(path: Path) -> bool:
    """A link update-alternatives made for an installed package (iptables -> /etc/alternatives/iptables)."""
    return path.is_symlink() and os.readlink(path).startswith("/etc/alternatives/")


def _destroyed(lab: Any, gone: Report, baseline: dict[str, Any]) -> str:
    _require_ok(gone, "destroy")
    after = snapshot_all(lab)
    left = {}
    for h in host_names(lab):
        keep = package_files(lab.hosts[h].upper, baseline.get(h, {}))
        upper = lab.hosts[h].upper
        lo = [p for p in leftovers(baseline.get(h, {}), after[h])
              if p.rstrip("/") not in keep and not p.startswith("etc/alternatives/")
              and not _alternative(upper / p)]
        if lo:
            left[h] = lo
    check(not left, f"destroy left files behind: {left}")
    return f"{len(gone.ran())} deletes in reverse order; upper dirs hold nothing new but {ALLOWED_AFTER_DESTROY}"


def predicted_elsewhere(before: list[Resource], after: list[Resource], new_host: str) -> dict[str, tuple[str, str]]:
    """URN -> (host, step) of the remote steps the diff of `after` against `before` runs on hosts other than
    `new_host`: what the benchmark's blast radius (benchmarks/preview.py) counts, from the same diff."""
    old = {r.urn: r for r in before}
    return {c.resource.urn: (c.resource.host, c.resource.name) for c in diff(old, after)
            if c.op in ("create", "update", "replace") and c.resource.remote and c.resource.host != new_host}


def acted_elsewhere(reports: Sequence[Report], new_host: str, unapplied: set[str]) -> dict[tuple[str, str], str]:
    """(host, step) -> status of the remote steps the engine ran (or had to leave not-run) on hosts other than
    `new_host`; the old sides of replacements (delete-replaced) are part of their replacement. `unapplied`:
    URNs of the stack before the change that the lab never applied (they need a real API server): every `up`
    lists them as creates, the change or not, so they are outside the comparison."""
    out: dict[tuple[str, str], str] = {}
    for report in reports:
        for r in report.results:
            if (r.host != new_host and r.op in ("create", "update", "replace") and "command:remote:" in r.urn
                    and r.urn not in unapplied):
                out[(r.host, r.name)] = r.status  # the last apply's status: a step skipped first ran after
    return out


def _add_worker_proof(ctx: Ctx, before: list[Resource], after: list[Resource], reports: Sequence[Report],
                      pids: dict[str, dict[str, str]], applied: set[str]) -> str:
    """What re-ran on the other hosts equals the blast-radius prediction, and no unit restarted there."""
    new_host = str(NEW_WORKER["address"])
    by_urn = predicted_elsewhere(before, after, new_host)
    predicted = set(by_urn.values())
    # steps the lab never applied (they need a real API server) are listed by every `up`: compared only when
    # the diff predicts them
    acted = acted_elsewhere(reports, new_host, {r.urn for r in before} - applied - set(by_urn))
    check(set(acted) == predicted, f"add-a-worker: ran elsewhere {sorted(acted)}, predicted {sorted(predicted)}")
    restarted = {h: sorted(k for k in p if units_main_pids(ctx.lab, h).get(k) != p[k]) for h, p in pids.items()}
    restarted = {h: units for h, units in restarted.items() if units}
    check(not restarted, f"add-a-worker restarted units on other hosts: {restarted}")
    shown = ", ".join(f"{host} {name} ({acted[(host, name)]})" for host, name in sorted(predicted)) or "nothing"
    return (f"on other hosts the engine took exactly the {len(predicted)} remote step(s) the blast-radius diff "
            f"predicts: {shown}; no step the lab had applied there re-ran; no unit restarted on the {len(pids)} "
            "other hosts")


def _change_and_fault(ctx: Ctx) -> str:
    """Add worker-4 and stop its sshd in the middle of that apply (after other steps have run, just before
    one of its steps starts): the failure is reported by host and step; start sshd, apply again: it
    completes. What re-ran is printed, and what re-ran on the other hosts is checked against the
    blast-radius prediction (the same diff)."""
    result, lab, engine = ctx.result, ctx.lab, ctx.engine
    current = ctx.resources()
    applied = set(engine.state.resources)  # what the lab's engine has applied before the change
    resources = ctx.resources([NEW_WORKER])
    victim = str(NEW_WORKER["name"])  # with nodeNetworks no step of another DMZ worker re-runs: fault the new one
    others = [h for h in host_names(lab) if h != victim]
    pids = {h: units_main_pids(lab, h) for h in others}
    stopped: list[int] = []

    def stop_mid_apply(res: Resource, report: Report) -> None:
        done = len(report.ran())
        if not stopped and res.host == lab.hosts[victim].address and done:
            lab.stop_sshd(victim)
            stopped.append(done)
            print(f"fault: {victim}'s sshd stopped mid-apply, {done} step(s) done, as {res.name} starts")

    with phase(result, "change"):
        engine.before_start = stop_mid_apply
        try:
            first = result.reports["change (sshd down)"] = engine.up(resources)
        finally:
            engine.before_start = None
            lab.start_sshd(victim)
        second = result.reports["change (sshd back)"] = engine.up(resources)
    print(f"change, with {victim}'s sshd stopped — re-ran:\n  " + "\n  ".join(_reran(first)))
    failed_hosts = {r.host for r in first.by_status("failed")}
    check(bool(stopped), f"no step of {victim} started after another step had run: the fault was not injected")
    check(bool(first.by_status("failed")), f"stopping {victim}'s sshd made no step fail")
    check(failed_hosts <= {lab.hosts[victim].address}, f"failures on other hosts: {first.failures()}")
    print("fault reported: " + "; ".join(first.failures()))
    print("change, sshd started again — re-ran:\n  " + "\n  ".join(_reran(second)))
    _require_ok(second, "change after sshd restart")
    _nothing_ran(engine.up(resources), "an up after the change")
    result.proofs["fault"] = (f"{victim}'s sshd stopped mid-apply ({stopped[0]} step(s) done); reported "
                              f"{first.failures()}; completed after sshd restart")
    ctx.soft("add-a-worker", lambda: _add_worker_proof(ctx, current, resources, [first, second], pids, applied))
    return f"{len(first.ran()) + len(second.ran())} steps ran for worker-4 (listed above)"


def print_summary(result: LabResult) -> None:
    print(f"\n=== lab {result.stack}: summary")
    for name, seconds in result.timings.items():
        print(f"  {name:20} {seconds:6.1f}s")
    print("  steps NOT RUN (cannot run on this machine):")
    for host, name, reason in result.not_run:
        print(f"    {host or '-':15} {name}: {reason}")
    for name, proof in result.proofs.items():
        print(f"  proof {name}: {proof}")
    for problem in result.problems:
        print(f"  PROBLEM {problem}")
