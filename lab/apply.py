"""Apply the program's registrations as `pulumi up` with pulumi-command would, over real SSH.

Each `command:remote:Command` runs its `create` string as the remote command with `stdin` piped, over
the OpenSSH client (run through a `Transport`: in the lab, the deployer's network namespace), with the
connection's host, user, port and private key, the host key checked strictly against
`connection.hostKey`, and through `connection.proxy` (the bastion) when set. Each
`command:remote:CopyToRemote` uploads its asset or archive to `remotePath` with SFTP.

Ordering follows the dependency graph (a resource waits for every URN in its `dependencies` and
property dependencies, as the engine does); independent resources run in parallel with a bound, and
never more than `per_host` sessions to one host. Deletes (removed resources, and the old side of a
replacement) run after every create, in reverse dependency order of the old state.

Values, secrets included, stay in memory: the private key and known_hosts go to 0600 temp files that
are removed when the run ends.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from lab.state import COMMAND, COPY, Change, Resource, State, diff

ROOT = Path(__file__).resolve().parents[1]

# (argv, stdin, timeout) -> completed process; in the lab: Lab.deployer
Transport = Callable[[list[str], Optional[bytes], float], "subprocess.CompletedProcess[bytes]"]


def local_transport(argv: list[str], stdin: Optional[bytes], timeout: float) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(argv), input=stdin if stdin is not None else b"", capture_output=True,
                          timeout=timeout, check=False)


# Steps that cannot run on this machine, and why. Matched on the resource name (fnmatch) or type.
NOT_RUNNABLE: tuple[tuple[str, str], ...] = (
    ("type:kubernetes:*", "needs a real Kubernetes API server (no kube-apiserver binary can be installed here)"),
    ("type:pulumi:providers:kubernetes", "a Kubernetes provider needs a real API server"),
    ("*-batch-*-node", "labels its batch's nodes, waits until they are Ready and uncordons them through a real "
                       "API server"),
    ("*-node", "a node's removal record: no create; its delete drains and deletes the Node through a real API "
               "server"),
    ("*-harbor", "Harbor's install.sh needs Harbor's images and docker compose on a real docker"),
    ("*-harbor-projects", "calls Harbor's API, which needs a running Harbor"),
    ("*-harbor-images", "pushes the image mirror into a running Harbor"),
    ("*-rancher", "runs the Rancher server image, which cannot be fetched here"),
    ("*-rancher-import", "imports the cluster into a running Rancher through a real API server"),
    ("*-registry-storage", "mounts the shared NFS export (registrySharedStorage); the lab runs no NFS server"),
)


# Steps that need a real API server too, but whose script does nothing on a cluster with no registered
# node (no kubelet runs in the lab, so no node ever registers): a batch's gate and drain
# (components/rolling.py, templates/node/gate.sh.j2, cordon_drain.sh.j2) skip a node that is not
# registered. They are reported NOT RUN, and their dependents go on as they would on a first `up`.
PASS_THROUGH: tuple[tuple[str, str], ...] = (
    ("*-rollout-batch-*", "a batch's gate and drain ask a real API server for the earlier batches' nodes and "
                          "cordon/drain its own; with no node registered they return at once, so the batch's "
                          "runtime and kubelet steps go on"),
)


def not_runnable_reason(res: Resource, patterns: Iterable[tuple[str, str]] = NOT_RUNNABLE) -> Optional[str]:
    for pattern, reason in patterns:
        if pattern.startswith("type:"):
            if fnmatch.fnmatchcase(res.type, pattern[5:]):
                return reason
        elif res.remote and fnmatch.fnmatchcase(res.name, pattern):
            return reason
    return None


@dataclass
class StepResult:
    op: str  # create | update | replace | delete | delete-replaced
    name: str
    host: str
    urn: str
    status: str  # ok | failed | skipped | not-run
    exit_code: Optional[int] = None
    duration: float = 0.0
    stdout: str = ""
    stderr: str = ""
    reason: str = ""

    def line(self) -> str:
        head = f"{self.status:8} {self.op:15} {self.host or '-':15} {self.name}"
        if self.status in ("ok", "failed"):
            head += f"  exit={self.exit_code} {self.duration:.1f}s"
        if self.reason:
            head += f"  ({self.reason})"
        if self.status == "failed":
            head += "\n" + _indent(_tail(_quiet(self.stderr) or _quiet(self.stdout), 12))
        return head


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# Noise of the lab's systemctl stand-in (Debian's `systemctl` re-implementation) reading the machine's
# own unit files: left out of failure excerpts, kept in the recorded output.
_NOISE = ("Executable path is not absolute", "a .service file without [Service] section")


def _quiet(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not any(n in line for n in _NOISE))


def _indent(text: str) -> str:
    return "\n".join("    | " + line for line in text.splitlines())


@dataclass
class Report:
    results: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    def by_status(self, status: str) -> list[StepResult]:
        return [r for r in self.results if r.status == status]

    @property
    def ok(self) -> bool:
        return not self.by_status("failed") and not self.by_status("skipped")

    def ran(self) -> list[StepResult]:
        return [r for r in self.results if r.status in ("ok", "failed")]

    def failures(self) -> list[str]:
        return [f"{r.host}: {r.name} (exit {r.exit_code})" for r in self.by_status("failed")]

    def summary(self) -> str:
        counts = {s: len(self.by_status(s)) for s in ("ok", "failed", "skipped", "not-run")}
        return f"{counts} in {self.seconds:.1f}s"


class Secrets:
    """The 0600 temp files a run needs (private keys, known_hosts), removed on close."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="lab-apply-"))
        os.chmod(self.dir, 0o700)
        self._files: dict[str, Path] = {}
        self._lock = threading.Lock()

    def file(self, content: str) -> Path:
        with self._lock:
            path = self._files.get(content)
            if path is None:
                fd, name = tempfile.mkstemp(dir=self.dir)
                with os.fdopen(fd, "w") as fh:
                    fh.write(content if content.endswith("\n") else content + "\n")
                os.chmod(name, 0o600)
                path = self._files[content] = Path(name)
            return path

    def close(self) -> None:
        for path in self.dir.iterdir():
            path.unlink()
        self.dir.rmdir()


def _known_host(host: str, port: int, key: str) -> str:
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {key.strip()}\n"


def _port(conn: dict[str, Any]) -> int:
    return int(conn.get("port") or 22)


def ssh_options(conn: dict[str, Any], secrets: Secrets) -> list[str]:
    """OpenSSH options for a pulumi-command connection: key, strict host key, bastion, timeouts."""
    opts = ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
            "-o", f"ConnectTimeout={int(conn.get('perDialTimeout') or 15)}",
            "-o", f"ConnectionAttempts={max(1, min(3, int(conn.get('dialErrorLimit') or 10)))}",
            "-p", str(_port(conn)), "-l", str(conn.get("user") or "root")]
    opts += _identity(conn, secrets) + _host_key_opts(conn, secrets)
    proxy = conn.get("proxy")
    if proxy:
        inner = ["ssh"] + _identity(proxy, secrets) + _host_key_opts(proxy, secrets) + [
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
            "-p", str(_port(proxy)), "-l", str(proxy.get("user") or "root"), "-W", "%h:%p", str(proxy["host"])]
        opts += ["-o", "ProxyCommand=" + shlex.join(inner)]
    return opts


def _identity(conn: dict[str, Any], secrets: Secrets) -> list[str]:
    key = conn.get("privateKey")
    return ["-i", str(secrets.file(key))] if key else []


def _host_key_opts(conn: dict[str, Any], secrets: Secrets) -> list[str]:
    key = conn.get("hostKey")
    if not key:
        # pulumi-command without hostKey accepts any host key (ssh.InsecureIgnoreHostKey)
        return ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    known = secrets.file(_known_host(str(conn["host"]), _port(conn), key))
    return ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "CheckHostIP=no"]


def _env_opts(env: dict[str, str]) -> list[str]:
    # pulumi-command sends `environment` with SSH Setenv: the server drops it without AcceptEnv
    return [arg for k, v in env.items() for arg in ("-o", f"SetEnv={k}={_quote_env(v)}")]


def _quote_env(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Executor:
    """Runs the remote side of resources: one SSH session per Command, SFTP per CopyToRemote."""

    def __init__(self, transport: Transport = local_transport, asset_root: Path = ROOT, timeout: float = 600):
        self.transport = transport
        self.asset_root = asset_root
        self.timeout = timeout
        self.secrets = Secrets()

    def close(self) -> None:
        self.secrets.close()

    def command(self, res: Resource, script: str, stdin: Optional[str] = None,
                env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess[bytes]:
        conn = res.inputs["connection"]
        env = dict(res.inputs.get("environment") or {}) | dict(env or {})
        argv = ["ssh", *ssh_options(conn, self.secrets), *_env_opts(env), str(conn["host"]), script]
        data = stdin.encode() if stdin is not None else None
        return self.transport(argv, data, self.timeout)

    def copy(self, res: Resource) -> subprocess.CompletedProcess[bytes]:
        conn = res.inputs["connection"]
        local, recursive, cleanup = self._source(res.inputs["source"])
        try:
            remote = str(res.inputs["remotePath"])
            put = f"put {'-R ' if recursive else ''}{_sftp_quote(str(local))} {_sftp_quote(remote)}\n"
            opts = _sftp_opts(ssh_options(conn, self.secrets))
            argv = ["sftp", *opts, "-b", "-", str(conn["host"])]
            return self.transport(argv, put.encode(), self.timeout)
        finally:
            if cleanup:
                cleanup.unlink()

    def _source(self, source: dict[str, Any]) -> tuple[Path, bool, Optional[Path]]:
        """A FileAsset / FileArchive (`path`) or a StringAsset (`text`) as recorded in the inputs."""
        if "text" in source:
            path = self.secrets.file(str(source["text"]))
            return path, False, None
        path = Path(str(source["path"]))
        if not path.is_absolute():
            path = self.asset_root / path
        return path, path.is_dir(), None


def _sftp_opts(ssh_opts: list[str]) -> list[str]:
    """sftp takes ssh's -o/-i options but -P for the port and no -l (user goes in -o User=)."""
    out: list[str] = []
    it = iter(ssh_opts)
    for opt in it:
        value = next(it)
        if opt == "-p":
            out += ["-P", value]
        elif opt == "-l":
            out += ["-o", f"User={value}"]
        else:
            out += [opt, value]
    return out


def _sftp_quote(path: str) -> str:
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Engine:
    """`pulumi up` / `pulumi destroy` over a State, with a bounded parallel walk of the graph."""

    def __init__(self, executor: Executor, state: Optional[State] = None, parallel: int = 8, per_host: int = 3,
                 not_runnable: Sequence[tuple[str, str]] = NOT_RUNNABLE, log: Callable[[str], None] = print):
        self.executor = executor
        self.state = state or State()
        self.parallel = parallel
        self.per_host = per_host
        self.not_runnable = not_runnable
        self.log = log
        self._host_slots: dict[str, threading.Semaphore] = {}
        self._lock = threading.Lock()
        # Called with each remote step and the results so far, just before the step starts (the lab's
        # fault: a host's sshd stopped in the middle of an apply).
        self.before_start: Optional[Callable[[Resource, Report], None]] = None

    # --- public -------------------------------------------------------------------------------
    def up(self, resources: list[Resource], rerun_all: bool = False) -> Report:
        """Apply `resources`; `rerun_all` runs every create again (the idempotency check)."""
        start = time.monotonic()
        changes = diff(self.state.resources, resources)
        if rerun_all:
            changes = [Change("update", c.new, c.old) if c.op == "same" else c for c in changes]
        report = Report()
        forward = [c for c in changes if c.op != "delete"]
        blocked = self._walk(forward, report, reverse=False)
        deletes = [c for c in changes if c.op == "delete"]
        replaced = [c.old for c in changes if c.op == "replace" and c.old is not None and c.new is not None
                    and c.new.urn not in blocked] + self.state.pending_deletes
        self.state.pending_deletes = []
        if report.by_status("failed"):
            self.state.pending_deletes = replaced
            for c in deletes + [Change("delete-replaced", None, old) for old in replaced]:
                report.results.append(self._result(c, "skipped", reason="the update had failures; retried next up"))
        else:
            self._walk_replaced(replaced, report)
            self._walk(deletes, report, reverse=True)
        report.seconds = time.monotonic() - start
        return report

    def _walk_replaced(self, replaced: list[Resource], report: Report) -> None:
        """The old sides of replacements, in reverse dependency order; one URN may be pending twice
        (an earlier failed update's and this one's): each is its own delete."""
        while replaced:
            batch: list[Resource] = []
            rest: list[Resource] = []
            seen: set[str] = set()
            for old in replaced:
                (rest if old.urn in seen else batch).append(old)
                seen.add(old.urn)
            self._walk([Change("delete-replaced", None, old) for old in batch], report, reverse=True)
            replaced = rest

    def destroy(self) -> Report:
        start = time.monotonic()
        report = Report()
        self._walk([Change("delete", None, r) for r in self.state.resources.values()], report, reverse=True)
        report.seconds = time.monotonic() - start
        return report

    # --- the walk -----------------------------------------------------------------------------
    def _walk(self, changes: list[Change], report: Report, reverse: bool) -> set[str]:
        """Run `changes` in graph order (reverse: dependents first). Returns the URNs that did not
        complete (failed, skipped or not run)."""
        by_urn = {c.resource.urn: c for c in changes}
        waits = _edges(by_urn, reverse)
        done: set[str] = set()
        blocked: dict[str, str] = {}
        running: dict[Future[StepResult], str] = {}
        pending = set(by_urn)
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            while pending or running:
                progress = True
                while progress:  # steps settled at once (no remote side) can unblock others: scan again
                    progress = False
                    for urn in sorted(pending):
                        bad = [d for d in waits[urn] if d in blocked]
                        settled = all(d in done or d in blocked for d in waits[urn])
                        if bad and settled:  # reported where the engine reaches it: after its other waits
                            pending.discard(urn)
                            self._block(by_urn[urn], blocked, bad[0], report)
                            progress = True
                        elif all(d in done for d in waits[urn]):
                            pending.discard(urn)
                            self._start(by_urn[urn], pool, running, done, blocked, report)
                            progress = True
                if not running:
                    if pending:  # a cycle or a wait on something outside the run: cannot happen
                        raise RuntimeError(f"no step can start: {sorted(pending)[:3]}")
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    urn = running.pop(fut)
                    result = fut.result()
                    report.results.append(result)
                    self.log(result.line())
                    if result.status == "ok":
                        done.add(urn)
                    else:
                        blocked[urn] = f"{result.host}: {result.name} failed"
        return set(blocked)

    def _start(self, change: Change, pool: ThreadPoolExecutor, running: dict[Future[StepResult], str],
               done: set[str], blocked: dict[str, str], report: Report) -> None:
        res = change.resource
        passed = not_runnable_reason(res, PASS_THROUGH)
        if passed:
            report.results.append(self._result(change, "not-run", reason=passed))
            self._settle(change)
            done.add(res.urn)
            return
        reason = not_runnable_reason(res, self.not_runnable)
        if reason:
            result = self._result(change, "not-run", reason=reason)
            report.results.append(result)
            blocked[res.urn] = f"{res.name} is not run"
            return
        if change.op == "same" or not res.remote:
            self._settle(change)
            done.add(res.urn)
            return
        if self.before_start:
            self.before_start(res, report)
        running[pool.submit(self._run, change)] = res.urn

    def _block(self, change: Change, blocked: dict[str, str], cause_urn: str, report: Report) -> None:
        res = change.resource
        cause = blocked[cause_urn]
        not_run = cause.endswith("is not run")
        status = "not-run" if not_run else "skipped"
        blocked[res.urn] = cause if not_run else f"{res.name} skipped"
        if res.remote or not_run:
            report.results.append(self._result(change, status, reason=f"depends on {cause.split(' is ')[0]}"
                                               if not_run else f"after failure: {cause}"))

    # --- one step -------------------------------------------------------------------------------
    def _run(self, change: Change) -> StepResult:
        res = change.resource
        with self._slot(res.host):
            start = time.monotonic()
            try:
                proc = self._remote(change)
            except subprocess.TimeoutExpired as exc:
                proc = subprocess.CompletedProcess(exc.cmd, 124, b"", f"timed out after {exc.timeout}s".encode())
            elapsed = time.monotonic() - start
        out = proc.stdout.decode(errors="replace") if isinstance(proc.stdout, bytes) else str(proc.stdout or "")
        err = proc.stderr.decode(errors="replace") if isinstance(proc.stderr, bytes) else str(proc.stderr or "")
        status = "ok" if proc.returncode == 0 else "failed"
        if status == "ok":
            self._settle(change, out, err)
        return StepResult(change.op, res.name, res.host, res.urn, status, proc.returncode, elapsed,
                          _tail(out, 200), _tail(err, 200))

    def _remote(self, change: Change) -> subprocess.CompletedProcess[bytes]:
        res = change.resource
        if res.type == COPY:
            if change.op in ("delete", "delete-replaced"):
                return subprocess.CompletedProcess([], 0, b"", b"")  # CopyToRemote has no delete
            return self.executor.copy(res)
        assert res.type == COMMAND
        if change.op in ("delete", "delete-replaced"):
            delete = res.inputs.get("delete")
            if not delete:
                return subprocess.CompletedProcess([], 0, b"", b"")
            env = {}
            if res.inputs.get("addPreviousOutputInEnv", True) is not False:
                stdout, stderr = self.state.outputs.get(res.urn, ("", ""))
                env = {"PULUMI_COMMAND_STDOUT": stdout, "PULUMI_COMMAND_STDERR": stderr}
            return self.executor.command(res, delete, None, env)
        script = res.inputs.get("create")
        if change.op == "update" and res.inputs.get("update"):
            script = res.inputs["update"]
        if not script:
            return subprocess.CompletedProcess([], 0, b"", b"")
        return self.executor.command(res, script, res.inputs.get("stdin"))

    def _settle(self, change: Change, stdout: str = "", stderr: str = "") -> None:
        with self._lock:
            if change.op == "delete":
                self.state.forget(change.resource.urn)
            elif change.op == "delete-replaced":
                pass  # the new resource already holds the URN
            else:
                assert change.new is not None
                self.state.record(change.new, stdout, stderr)

    def _slot(self, host: str) -> threading.Semaphore:
        with self._lock:
            return self._host_slots.setdefault(host, threading.Semaphore(self.per_host))

    @staticmethod
    def _result(change: Change, status: str, reason: str = "") -> StepResult:
        res = change.resource
        return StepResult(change.op, res.name, res.host, res.urn, status, reason=reason)


def _edges(by_urn: dict[str, Change], reverse: bool) -> dict[str, set[str]]:
    """urn -> the URNs (within this run) it waits for. Forward: its dependencies. Reverse (deletes):
    the resources that depend on it."""
    waits: dict[str, set[str]] = {urn: set() for urn in by_urn}
    for urn, change in by_urn.items():
        for dep in change.resource.dependencies:
            if dep not in by_urn or dep == urn:
                continue
            if reverse:
                waits[dep].add(urn)
            else:
                waits[urn].add(dep)
    return waits
