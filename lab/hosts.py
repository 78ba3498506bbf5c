"""A stack's inventory stood up as real hosts on this machine (reference §7).

Every host is a network namespace at its stack address, on its zone's bridge in a router namespace, with a
private root (overlay over the machine's `/`), its own mount/UTS/PID/cgroup namespaces and cgroup subtree,
and a real sshd with a host key generated for this lab run. The deployer is a bare network namespace at
the first `sshAllowedFrom` address: commands there use the machine's filesystem (its ssh client).

    specs = plan_hosts(settings)
    with Lab(specs, settings.zones, workdir, users=plan_users(settings)) as lab:
        lab.deployer(["ssh", "-F", str(lab.ssh_config_path), "root@198.51.100.11", "true"])
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import uuid
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import bare, debrepo, hosts_cgroups, hosts_net, rootfs

if TYPE_CHECKING:
    from components.config import Settings

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_ENV = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "USER": "root", "LOGNAME": "root"}
OUTSIDE = "outside"  # zone of a planned host whose address lies in no stack zone


@dataclass(frozen=True)
class HostSpec:
    name: str
    address: str
    zone: str          # "inside" | "dmz" (zone whose bridge it sits on)
    kind: str          # "inventory" | "deployer" | "bastion" | "lb" | "extra"
    ssh_port: int = 22


@dataclass
class LabHost:
    name: str
    address: str
    zone: str
    kind: str
    netns: str
    upper: Path
    host_key: str = ""             # "ssh-ed25519 AAAA…" (empty for the deployer: no sshd)
    pid: int = 0                   # the host's PID 1 as seen from the machine (0 for the deployer)
    ssh_port: int = 22
    dir: Path = field(default_factory=Path)
    cgroups: list[Path] = field(default_factory=list)
    launcher: subprocess.Popen[bytes] | None = None


class LabCommandError(subprocess.CalledProcessError):
    def __init__(self, host: str, done: subprocess.CompletedProcess[bytes]):
        super().__init__(done.returncode, done.args, done.stdout, done.stderr)
        self.host = host

    def __str__(self) -> str:
        err = (self.stderr or b"").decode(errors="replace").strip()[-2000:]
        return f"{self.host}: {shlex.join(map(str, self.cmd[-1:]))}... exited {self.returncode}: {err}"


# --- planning -------------------------------------------------------------------------------------------


def _zone_of(address: str, zones: dict[str, str]) -> str:
    ip = ipaddress.ip_address(address)
    return next((z for z, net in zones.items() if ip in ipaddress.ip_network(net)), OUTSIDE)


def _deployer_address(settings: Settings, taken: set[str]) -> str:
    """The first `sshAllowedFrom` address; else (SSH only through the bastion) `.5` of the bastion's zone —
    where dev's sshAllowedFrom puts it — or the next free address after it."""
    if settings.ssh_allowed_from:
        net = ipaddress.ip_network(settings.ssh_allowed_from[0], strict=False)
        if net.num_addresses == 1:
            return str(net.network_address)
    else:
        zone = _zone_of(settings.ssh_bastion, settings.zones) if settings.ssh_bastion else OUTSIDE
        net = ipaddress.ip_network(settings.zones.get(zone) or next(iter(settings.zones.values())))
    return next(str(a) for a in list(net.hosts())[4:] if str(a) not in taken)


def plan_hosts(settings: Settings, extra: Sequence[HostSpec] = ()) -> list[HostSpec]:
    """The inventory, the deployer, the bastion and load balancers of the stack, then `extra`."""
    specs = [HostSpec(h.name, h.address, h.zone, "inventory", settings.ssh_port_for(h)) for h in settings.hosts]
    taken = {s.address for s in specs} | {s.address for s in extra} | {settings.ssh_bastion}
    dep = _deployer_address(settings, taken)
    specs.append(HostSpec("deployer", dep, _zone_of(dep, settings.zones), "deployer"))
    if settings.ssh_bastion:
        specs.append(HostSpec("bastion", settings.ssh_bastion, _zone_of(settings.ssh_bastion, settings.zones),
                              "bastion", settings.ssh_bastion_port))
    for name, addr in (("api-lb", settings.api_load_balancer_address),
                       ("registry-lb", settings.registry_load_balancer_address)):
        if addr:
            specs.append(HostSpec(name, addr, _zone_of(addr, settings.zones), "lb"))
    specs += list(extra)
    _check_unique(specs)
    return specs


def plan_users(settings: Settings) -> list[tuple[str, str]]:
    """Login users besides root: the bastion user, and any inventory host's non-root SSH user."""
    users = [(h.name, settings.ssh_user_for(h)) for h in settings.hosts if settings.ssh_user_for(h) != "root"]
    if settings.ssh_bastion and settings.ssh_bastion_user and settings.ssh_bastion_user != "root":
        users.append(("bastion", settings.ssh_bastion_user))
    return users


def _check_unique(specs: Sequence[HostSpec]) -> None:
    for attr in ("name", "address"):
        seen: dict[str, str] = {}
        for s in specs:
            value = getattr(s, attr)
            if value in seen:
                raise ValueError(f"lab hosts {seen[value]!r} and {s.name!r} share the {attr} {value}")
            seen[value] = s.name


# --- the lab ------------------------------------------------------------------------------------------

_LIVE: weakref.WeakSet[Lab] = weakref.WeakSet()


@atexit.register
def _down_all() -> None:
    for lab in list(_LIVE):
        with contextlib.suppress(Exception):
            lab.down()


class Lab:
    """Context manager: `__enter__` = up(), `__exit__` = down()."""

    def __init__(self, specs: list[HostSpec], zones: dict[str, str], workdir: Path,
                 hide: bool | Iterable[str] = True, users: Sequence[tuple[str, str]] = (),
                 apt_mirror: str = "", cgroup_v2: bool = False, keep: Sequence[str] = ()):
        """`apt_mirror`: the URL of the lab's Debian repository (lab/debrepo.py): each host's apt sources
        are that repository only, and its dpkg status lacks the hidden packages."""
        _check_unique(specs)
        self.apt_mirror = apt_mirror
        self.cgroup_v2 = cgroup_v2  # the hosts see only the unified hierarchy, at /sys/fs/cgroup
        self.keep = list(keep)  # machine paths under /tmp or /run the hosts still see (read-only)
        self.hidden_packages = sorted({h.package for h in bare.HIDDEN if h.group in bare.groups(hide)})
        self.specs = list(specs)
        self.zones = self._all_zones(specs, zones)
        self.workdir = Path(workdir).resolve()
        self.hidden = bare.hidden_paths(hide)
        self.users = list(users)
        for host, user in self.users:
            if host not in {s.name for s in specs} or not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user):
                raise ValueError(f"lab user {user!r} on {host!r}: unknown host or not a valid user name")
        self.id = uuid.uuid4().hex[:6]
        self.router = f"cc{self.id}-router"
        self.hosts: dict[str, LabHost] = {}
        self.ssh_private_key = ""
        self.ssh_key_path = self.workdir / "deployer" / "id_ed25519"
        self.known_hosts_path = self.workdir / "known_hosts"
        self.ssh_config_path = self.workdir / "ssh_config"
        self.cgroup_tops: list[Path] = []
        self.timings: dict[str, float] = {}
        self._hierarchies: list[hosts_cgroups.Hierarchy] = []
        self._netns: list[str] = []

    @staticmethod
    def _all_zones(specs: Sequence[HostSpec], zones: dict[str, str]) -> dict[str, str]:
        out = dict(zones)
        for s in specs:
            if s.zone not in out:  # e.g. a deployer outside every stack zone: a /24 of its own
                out[s.zone] = str(ipaddress.ip_network(f"{s.address}/24", strict=False))
            if ipaddress.ip_address(s.address) not in ipaddress.ip_network(out[s.zone]):
                raise ValueError(f"lab host {s.name!r}: {s.address} is not in zone {s.zone} ({out[s.zone]})")
            if s.address == str(ipaddress.ip_network(out[s.zone])[1]):
                raise ValueError(f"lab host {s.name!r}: {s.address} is the gateway of zone {s.zone}")
        return out

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()

    # --- up -------------------------------------------------------------------------------------------

    def up(self) -> None:
        _preflight(self.workdir)
        down_stale(self.workdir)
        started = time.monotonic()
        _LIVE.add(self)
        self._hierarchies = hosts_cgroups.hierarchies()
        self.cgroup_tops = [hosts_cgroups.path_of(h, f"cclab-{self.id}") for h in self._hierarchies]
        self._netns = [self.router] + [f"cc{self.id}-{s.name}" for s in self.specs]
        _write_state(self.workdir, {"id": self.id, "creator": _identity(os.getpid()), "netns": self._netns,
                                    "cgroup_tops": [str(p) for p in self.cgroup_tops]})
        try:
            self._make_dirs_and_keys()
            self._make_network()
            self._start_hosts()
            self._add_users()
            self._write_client_files()
        except BaseException:
            self.down()
            raise
        self.timings["up"] = time.monotonic() - started

    def _make_dirs_and_keys(self) -> None:
        for sub in ("hosts", "deployer"):
            rootfs.remove_tree(self.workdir / sub)
        self.ssh_key_path.parent.mkdir(parents=True)
        _keygen(self.ssh_key_path, "deployer@lab")
        self.ssh_private_key = self.ssh_key_path.read_text()
        for s in self.specs:
            hdir = self.workdir / "hosts" / s.name
            host = LabHost(s.name, s.address, s.zone, s.kind, f"cc{self.id}-{s.name}", hdir / "upper",
                           ssh_port=s.ssh_port, dir=hdir)
            if s.kind != "deployer":
                for sub in ("upper", "work", "root", *(f"state/{Path(d).name}" for d in rootfs.STATE_DIRS)):
                    (hdir / sub).mkdir(parents=True)
                _keygen(hdir / "ssh_host_ed25519_key", s.name)
                host.host_key = " ".join((hdir / "ssh_host_ed25519_key.pub").read_text().split()[:2])
            else:
                hdir.mkdir(parents=True)
            self.hosts[s.name] = host

    def _make_network(self) -> None:
        zones = {z: hosts_net.Zone(z, net, f"z{i}") for i, (z, net) in enumerate(self.zones.items())}
        attach = [hosts_net.Attachment(h.netns, h.address, zones[h.zone], f"h{i}")
                  for i, h in enumerate(self.hosts.values())]
        hosts_net.create(self.router, list(zones.values()), attach)

    def _start_hosts(self) -> None:
        for h in self._hierarchies:
            hosts_cgroups.make(h, f"cclab-{self.id}")
        authorized = self.ssh_key_path.with_suffix(".pub").read_text()
        cgroups = [(h.fstype, h.options, h.name) for h in self._hierarchies]
        for host in self._full_hosts():
            rootfs.prepare_upper(host.upper, name=host.name, address=host.address, port=host.ssh_port,
                                 host_key=host.dir / "ssh_host_ed25519_key", authorized=authorized,
                                 hidden=[h.path for h in self.hidden])
            if self.apt_mirror:
                self._bare_apt(host.upper)
            host.cgroups = [hosts_cgroups.make(h, f"cclab-{self.id}", host.name) for h in self._hierarchies]
            cfg = rootfs.init_config(root=host.dir / "root", upper=host.upper, work=host.dir / "work",
                                     state=host.dir / "state", name=host.name, cgroups=cgroups,
                                     hide=[str(self.workdir)], cgroup_v2=self.cgroup_v2, keep=self.keep)
            argv = ["nsenter", f"--net=/run/netns/{host.netns}", "--",
                    "unshare", "--mount", "--uts", "--pid", "--cgroup", "--fork", "--kill-child",
                    "--propagation", "private", "--", "/usr/bin/python3", "-I", "-B", str(rootfs.INIT), cfg]
            with open(host.dir / "log", "wb") as log:
                host.launcher = subprocess.Popen(self._in_cgroups(host, argv), stdin=subprocess.DEVNULL,
                                                 stdout=log, stderr=subprocess.STDOUT, env=HOST_ENV,
                                                 start_new_session=True)
        self._wait_listening(self._full_hosts(), timeout=30)

    def _bare_apt(self, upper: Path) -> None:
        """The host's dpkg status without the hidden packages; its apt sources: the lab's repository only."""
        status, _ = debrepo.bare_status(debrepo.DPKG_STATUS.read_text(), self.hidden_packages)
        rootfs.put(upper, str(debrepo.DPKG_STATUS), status.encode(), 0o644)
        rootfs.put(upper, "/etc/apt/sources.list", debrepo.sources_list(self.apt_mirror).encode(), 0o644)
        for path in debrepo.machine_apt_files():
            rootfs.whiteout(upper, path)
        # man-db rebuilds its index after every install while this file exists (its dpkg trigger): the lab's
        # hosts skip it, as Debian's container images do (a minute of CPU on this machine, no effect on a step)
        if Path(debrepo.MANDB_AUTO_UPDATE).exists():
            rootfs.whiteout(upper, debrepo.MANDB_AUTO_UPDATE)

    def _full_hosts(self) -> list[LabHost]:
        return [h for h in self.hosts.values() if h.kind != "deployer"]

    @staticmethod
    def _in_cgroups(host: LabHost, argv: list[str]) -> list[str]:
        """argv run by a shell that first moves itself into the host's cgroups (then execs)."""
        joins = "; ".join(f"echo 0 > {shlex.quote(str(c / 'cgroup.procs'))}" for c in host.cgroups)
        return ["/bin/sh", "-ec", f'{joins}; exec "$@"', "sh", *argv]

    def _wait_listening(self, hosts: Sequence[LabHost], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(hosts)
        while pending:
            for host in list(pending):
                if host.launcher is not None and host.launcher.poll() is not None:
                    raise RuntimeError(f"lab host {host.name} exited: {(host.dir / 'log').read_text()[-2000:]}")
                if not host.pid:
                    host.pid = _first_child(host.launcher.pid) if host.launcher else 0
                if host.pid and _listening(host.pid, host.ssh_port):
                    pending.remove(host)
            if pending and time.monotonic() > deadline:
                names = ", ".join(h.name for h in pending)
                raise RuntimeError(f"sshd did not listen within {timeout}s on: {names}")
            if pending:
                time.sleep(0.02)

    def _add_users(self) -> None:
        pub = self.ssh_key_path.with_suffix(".pub").read_bytes()
        for host, user in self.users:
            script = (f"id -u {user} >/dev/null 2>&1 || useradd -m -s /bin/bash -p '*' {user}\n"
                      f"install -d -m 0700 -o {user} -g {user} ~{user}/.ssh\n"
                      f"cat > ~{user}/.ssh/authorized_keys\n"
                      f"chown {user}:{user} ~{user}/.ssh/authorized_keys; chmod 0600 ~{user}/.ssh/authorized_keys\n")
            self.run(host, ["/bin/bash", "-euc", script], input=pub)

    def _write_client_files(self) -> None:
        lines = []
        for h in self._full_hosts():
            target = h.address if h.ssh_port == 22 else f"[{h.address}]:{h.ssh_port}"
            lines.append(f"{target} {h.host_key}\n")
        self.known_hosts_path.write_text("".join(lines))
        self.ssh_config_path.write_text(
            "Host *\n"
            f"  IdentityFile {self.ssh_key_path}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.known_hosts_path}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n"
            "  BatchMode yes\n"
            "  ConnectTimeout 5\n"
        )

    # --- down -----------------------------------------------------------------------------------------

    def down(self) -> None:
        """Idempotent. Leaves no namespace, mount, process, cgroup, nft rule or veth behind; the files
        under the workdir (upper dirs, keys, logs) stay for inspection and are removed by the next up()."""
        started = time.monotonic()
        for host in self._full_hosts():
            self._kill_host(host)
        _kill_netns_processes([f"/run/netns/{n}" for n in self._netns])
        hosts_net.destroy(self._netns)
        for top in self.cgroup_tops:
            hosts_cgroups.remove(top)
        with contextlib.suppress(FileNotFoundError):
            (self.workdir / STATE_FILE).unlink()
        _LIVE.discard(self)
        self.timings["down"] = time.monotonic() - started

    def _kill_host(self, host: LabHost) -> None:
        if host.launcher is None:
            return
        if host.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(host.pid, signal.SIGKILL)  # PID 1: the kernel ends the host's whole PID namespace
        else:
            host.launcher.kill()  # not started yet: unshare --kill-child takes its child along
        try:
            host.launcher.wait(timeout=10)
        except subprocess.TimeoutExpired:
            host.launcher.kill()
            host.launcher.wait()
        host.launcher = None

    # --- using hosts ----------------------------------------------------------------------------------

    def _host(self, name: str) -> LabHost:
        host = self.hosts[name]
        if host.kind == "deployer":
            raise ValueError(f"{name} is the deployer: it has no root of its own; use Lab.deployer()")
        if not host.pid:
            raise RuntimeError(f"lab host {name} is not running")
        return host

    def run(self, host: str, argv: list[str], input: bytes | None = None, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """argv inside the host (its net, mount, UTS, PID and cgroup namespaces, its cgroups, its root), as root."""
        h = self._host(host)
        cmd = self._in_cgroups(h, ["nsenter", "-t", str(h.pid), "--net", "--mount", "--uts", "--pid",
                                   "--cgroup", "--root", "--wd", "--", *argv])
        done = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, env=HOST_ENV)
        if check and done.returncode != 0:
            raise LabCommandError(host, done)
        return done

    def spawn(self, host: str, argv: list[str], log: str = "/dev/null") -> int:
        """Start a long-running process inside the host, detached (its own session, reaped by the host's
        PID 1, killed with the host); output appended to `log` (a path inside the host). Returns its pid as
        the host sees it."""
        script = 'setsid "$@" >>"$LOG" 2>&1 </dev/null & echo $!'
        done = self.run(host, ["/usr/bin/env", f"LOG={log}", "/bin/sh", "-c", script, "sh", *argv])
        return int(done.stdout.decode().strip())

    def deployer(self, argv: list[str], input: bytes | None = None, timeout: float = 600,
                 check: bool = False) -> subprocess.CompletedProcess[bytes]:
        """argv in the deployer's network namespace, on the machine's filesystem (its ssh client)."""
        dep = next((h for h in self.hosts.values() if h.kind == "deployer"), None)
        if dep is None:
            raise ValueError("this lab has no host of kind 'deployer'")
        done = subprocess.run(["nsenter", f"--net=/run/netns/{dep.netns}", "--", *argv], input=input,
                              capture_output=True, timeout=timeout)
        if check and done.returncode != 0:
            raise LabCommandError(dep.name, done)
        return done

    def stop_sshd(self, host: str) -> None:
        """Kill the host's sshd listener (sessions and the host live on)."""
        h = self._host(host)
        pidfile = Path(f"/proc/{h.pid}/root/run/sshd.pid")
        if _listening(h.pid, h.ssh_port) and pidfile.exists():
            self.run(host, ["kill", "-TERM", pidfile.read_text().strip()])
        _wait(lambda: not _listening(h.pid, h.ssh_port), 10, f"sshd of {host} still listening")

    def start_sshd(self, host: str) -> None:
        h = self._host(host)
        if not _listening(h.pid, h.ssh_port):
            self.run(host, ["/usr/sbin/sshd", "-f", rootfs.SSHD_CONFIG])
        _wait(lambda: _listening(h.pid, h.ssh_port), 10, f"sshd of {host} did not listen")

    def snapshot(self, host: str) -> dict[str, tuple[int, int, str]]:
        """Upper-dir entries plus the bind-mounted state dirs: relpath -> (mtime_ns, size, sha256)."""
        h = self.hosts[host]
        out = rootfs.snapshot_tree(h.upper, lower=Path("/"))
        for d in rootfs.STATE_DIRS:
            out.update(rootfs.snapshot_tree(h.dir / "state" / Path(d).name, prefix=d.lstrip("/") + "/"))
        return out


# --- a lab left up by a process that died -----------------------------------------------------------

STATE_FILE = "lab-state.json"


def _identity(pid: int) -> str:
    """pid plus its start time: a pid reused by another process does not match."""
    try:
        return f"{pid}:{Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return f"{pid}:gone"


def _write_state(workdir: Path, state: dict[str, Any]) -> None:
    (workdir / STATE_FILE).write_text(json.dumps(state, indent=1))


def down_stale(workdir: Path) -> bool:
    """Take down a lab whose process died without down() (its state file is in `workdir`): SIGKILL what
    runs in its namespaces, delete them, remove its cgroups. True if there was one. A lab whose process
    is still alive is refused."""
    path = Path(workdir) / STATE_FILE
    if not path.exists():
        return False
    state = json.loads(path.read_text())
    pid = int(state["creator"].split(":")[0])
    if pid != os.getpid() and _identity(pid) == state["creator"]:
        raise RuntimeError(f"lab {state['id']} in {workdir} is still up, held by process {pid}")
    _kill_netns_processes([f"/run/netns/{n}" for n in state["netns"]])
    hosts_net.destroy(state["netns"])
    for top in state["cgroup_tops"]:
        hosts_cgroups.remove(Path(top))
    path.unlink()
    return True


# --- helpers ------------------------------------------------------------------------------------------


def unavailable_reason() -> str | None:
    """Why the lab cannot run here (None when it can): tests print it when they skip."""
    if os.geteuid() != 0:
        return "the host lab needs root"
    for tool in ("ip", "nsenter", "unshare", "ssh", "ssh-keygen", "nft", "/usr/sbin/sshd", "/usr/bin/python3"):
        if not shutil.which(tool):
            return f"{tool} missing"
    name = f"cc-check-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"network namespaces unavailable: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _preflight(workdir: Path) -> None:
    if os.geteuid() != 0:
        raise PermissionError("the host lab needs root (network, mount and PID namespaces)")
    workdir.mkdir(parents=True, exist_ok=True)
    fstype = subprocess.run(["stat", "-f", "-c", "%T", str(workdir)], capture_output=True, text=True).stdout.strip()
    if fstype in ("overlayfs", "overlay"):
        raise RuntimeError(f"lab workdir {workdir} is on overlayfs: overlay refuses an upper dir there")


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)


def _first_child(pid: int) -> int:
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
    return 0


def _listening(pid: int, port: int) -> bool:
    """A TCP socket in LISTEN on `port` in the network namespace of `pid` (read from its /proc/net/tcp)."""
    try:
        rows = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(r.split()[3] == "0A" and int(r.split()[1].rsplit(":", 1)[1], 16) == port for r in rows)


def _wait(predicate: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(message)
        time.sleep(0.02)


def _kill_netns_processes(paths: Sequence[str]) -> None:
    """SIGKILL what still runs in the lab's namespaces (a deployer ssh left running, say): those processes
    were started by this lab; without them the namespaces would outlive `ip netns del`."""
    inodes = set()
    for p in paths:
        with contextlib.suppress(OSError):
            st = os.stat(p)
            inodes.add((st.st_dev, st.st_ino))
    if not inodes:
        return
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            st = os.stat(entry / "ns" / "net")
            if (st.st_dev, st.st_ino) in inodes:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(entry)
    with contextlib.suppress(RuntimeError):  # a zombie whose parent is slow to reap holds no namespace
        _wait(lambda: not any(p.exists() for p in killed), 5, "killed processes still present")
