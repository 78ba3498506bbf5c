"""A lab host's private root: what goes into its overlay upper dir before it starts, the JSON its PID 1
(lab/rootfs_init.py) builds the root from, and the snapshot that shows what the host wrote since.

Files are written into the upper dir only while the overlay is not mounted (overlayfs leaves changes to
its layers under a live mount undefined); parents are created with the owner and mode of the machine's
directory of the same path, so the merged view keeps `/etc`, `/root`, `/usr/bin` as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

STATE_DIRS = ("/var/lib/containerd", "/var/lib/docker", "/var/lib/containers")
SSHD_CONFIG = "/etc/ssh/lab_sshd_config"
HOST_KEY = "/etc/ssh/lab_host_ed25519_key"
INIT = Path(__file__).with_name("rootfs_init.py")
CACHE = Path(os.environ.get("CONTAINER_CLOUD_LAB_CACHE", "/var/cache/container-cloud-lab"))

MODPROBE = b"""#!/bin/sh
# lab stand-in: this machine has no /lib/modules; overlay and br_netfilter are built into its kernel
exit 0
"""


def sshd_config(address: str, port: int) -> str:
    return "\n".join([
        f"Port {port}",
        f"ListenAddress {address}",
        f"HostKey {HOST_KEY}",
        "PidFile /run/sshd.pid",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "AllowTcpForwarding yes",
        "X11Forwarding no",
        "PrintMotd no",
        "MaxStartups 200",
        "MaxSessions 100",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
        "",
    ])


def systemctl_standin() -> Path:
    """Debian's `systemctl` package (a Python re-implementation), extracted once into the cache with
    `apt-get download systemctl && dpkg-deb -x` — never installed on the machine (it would remove systemd)."""
    target = CACHE / "systemctl" / "usr" / "bin" / "systemctl"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    debs = sorted(CACHE.glob("systemctl_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", "systemctl"], cwd=CACHE, check=True, capture_output=True)
        debs = sorted(CACHE.glob("systemctl_*.deb"))
    staging = Path(tempfile.mkdtemp(dir=CACHE, prefix="systemctl."))
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(staging)], check=True)
    try:
        staging.rename(CACHE / "systemctl")  # atomic: a concurrent lab sees all of it or none
    except OSError:
        shutil.rmtree(staging)  # another lab got there first
    return target


def _real(path: str) -> Path:
    """The machine path a whiteout or file must sit at: parents resolved (/sbin -> /usr/sbin)."""
    p = Path(path)
    return Path(os.path.realpath(p.parent)) / p.name


def _make_parents(upper: Path, path: Path) -> None:
    current = upper
    for part in path.parent.parts[1:]:
        current = current / part
        lower = Path("/") / current.relative_to(upper)
        if current.is_dir():
            continue
        current.mkdir()
        if lower.is_dir():
            st = lower.stat()
            os.chown(current, st.st_uid, st.st_gid)
            current.chmod(stat.S_IMODE(st.st_mode))


def put(upper: Path, path: str, content: bytes, mode: int) -> None:
    target = _real(path)
    _make_parents(upper, target)
    dest = upper / target.relative_to("/")
    dest.write_bytes(content)
    dest.chmod(mode)


def whiteout(upper: Path, path: str) -> None:
    target = _real(path)
    _make_parents(upper, target)
    dest = upper / target.relative_to("/")
    if not dest.exists():
        os.mknod(dest, stat.S_IFCHR, os.makedev(0, 0))


SYSTEMCTL_REAL = "/usr/lib/containercloud-lab/systemctl"
# Debian's systemctl re-implementation runs services but knows no timer units. In front of it, this
# wrapper answers for `.timer` units only: enable/disable manage the `WantedBy=` link as systemd does;
# start/restart/stop/is-active keep a state file under /run. The lab never fires a timer (the steps start
# the timer's service themselves when they need a run now). Every other unit goes to Debian's systemctl.
SYSTEMCTL_TIMERS = b"""#!/bin/bash
set -euo pipefail
real=/usr/lib/containercloud-lab/systemctl
state=/run/containercloud-lab/timers
verb="" opts=() timers=() others=()
for a in "$@"; do
  case $a in
    -*) opts+=("$a") ;;
    *.timer) [[ -n $verb ]] && timers+=("$a") || verb=$a ;;
    *) if [[ -z $verb ]]; then verb=$a; else others+=("$a"); fi ;;
  esac
done
if (( ${#timers[@]} == 0 )); then exec "$real" "$@"; fi
unit_file() {
  local d
  for d in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
    [[ -f $d/$1 ]] && { echo "$d/$1"; return 0; }
  done
  echo "systemctl (lab): unit $1 not found" >&2
  return 1
}
now=false
for o in "${opts[@]}"; do [[ $o == --now ]] && now=true; done
rc=0
for t in "${timers[@]}"; do
  case $verb in
    enable|disable)
      f=$(unit_file "$t")
      target=$(sed -n 's/^WantedBy=//p' "$f" | head -n1)
      link=/etc/systemd/system/${target:-timers.target}.wants/$t
      if [[ $verb == enable ]]; then
        [[ -L $link ]] || { install -d "$(dirname "$link")"; ln -s "$f" "$link"; }
        $now && { install -d "$state"; touch "$state/$t"; }
      else
        rm -f "$link"; rmdir "$(dirname "$link")" 2>/dev/null || true
        $now && rm -f "$state/$t"
      fi ;;
    start|restart) unit_file "$t" >/dev/null; install -d "$state"; touch "$state/$t" ;;
    stop) rm -f "$state/$t" ;;
    is-active) if [[ -f $state/$t ]]; then echo active; else echo inactive; rc=3; fi ;;
    is-enabled)
      if compgen -G "/etc/systemd/system/*.wants/$t" >/dev/null; then echo enabled; else echo disabled; rc=1; fi ;;
    *) echo "systemctl (lab): '$verb' is not supported for timer units" >&2; exit 1 ;;
  esac
done
if (( ${#others[@]} )); then "$real" "${opts[@]}" "$verb" "${others[@]}" || rc=$?; fi
exit "$rc"
"""


def prepare_upper(upper: Path, *, name: str, address: str, port: int, host_key: Path,
                  authorized: str, hidden: Iterable[str]) -> None:
    put(upper, SSHD_CONFIG, sshd_config(address, port).encode(), 0o644)
    put(upper, HOST_KEY, host_key.read_bytes(), 0o600)
    put(upper, HOST_KEY + ".pub", host_key.with_suffix(".pub").read_bytes(), 0o644)
    put(upper, "/etc/hostname", f"{name}\n".encode(), 0o644)
    put(upper, "/root/.ssh/authorized_keys", authorized.encode(), 0o600)
    (upper / "root" / ".ssh").chmod(0o700)
    put(upper, SYSTEMCTL_REAL, systemctl_standin().read_bytes(), 0o755)
    put(upper, "/usr/bin/systemctl", SYSTEMCTL_TIMERS, 0o755)
    put(upper, "/usr/sbin/modprobe", MODPROBE, 0o755)
    for path, stock in ROOT_DOTFILES.items():  # root's shell starts as on a fresh Debian
        put(upper, path, Path(stock).read_bytes(), 0o644)
    for path in [*hidden, *(p for p in MACHINE_HOME if os.path.lexists(p))]:
        whiteout(upper, path)


# A fresh Debian root's .bashrc and .profile (base-files installs them for root). This machine's own run
# `pyenv init` at every SSH login, whose shim rehash waits up to 60 s for a lock when logins race: a lab step
# then took 60 s for nothing a real host does.
ROOT_DOTFILES = {"/root/.bashrc": "/usr/share/base-files/dot.bashrc",
                 "/root/.profile": "/usr/share/base-files/dot.profile"}
# What this machine's root home holds that a fresh host does not (its tools' settings). Not ~/.pyenv: the
# lab's own python (the checkout's .venv) runs from it inside the hosts for the registry proof.
MACHINE_HOME = ("/root/.kube", "/root/.cargo", "/root/.rustup", "/root/.npm", "/root/.npmrc", "/root/.m2",
                "/root/.config", "/root/.gitconfig")


def init_config(*, root: Path, upper: Path, work: Path, state: Path, name: str,
                cgroups: list[tuple[str, str, str]], hide: list[str], cgroup_v2: bool = False,
                keep: Sequence[str] = ()) -> str:
    binds = [[str(state / Path(d).name), d] for d in STATE_DIRS]
    return json.dumps({
        "root": str(root), "upper": str(upper), "work": str(work), "binds": binds,
        "cgroups": [list(c) for c in cgroups], "hide": hide, "hostname": name, "sshd_config": SSHD_CONFIG,
        "cgroup_v2": cgroup_v2, "keep": list(keep),
    })


def _digest(path: Path, st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "symlink:" + os.readlink(path)
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return "whiteout"
    if not stat.S_ISREG(st.st_mode):
        return f"special:{stat.S_IFMT(st.st_mode):o}"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque") == b"y"
    except OSError:
        return False


def snapshot_tree(top: Path, prefix: str = "", lower: Path | None = None) -> dict[str, tuple[int, int, str]]:
    """relpath -> (mtime_ns, size, sha256) for every non-directory under `top`. A directory is recorded as
    (0, 0, "dir") — present or not; its mtime changes with every temp file and says nothing — except,
    for an overlay upper dir (`lower` given), one the lower layer has too: overlayfs copies a directory up
    when anything below it changes and keeps it after an undo, which is no trace of the host's own."""
    out: dict[str, tuple[int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        base = Path(dirpath)
        for d in dirnames:
            path = base / d
            rel = str(path.relative_to(top))
            if path.is_symlink():
                continue
            if lower is not None and (lower / rel).is_dir() and not (lower / rel).is_symlink():
                if _opaque(path):
                    out[prefix + rel] = (0, 0, "dir:opaque")
                continue
            out[prefix + rel] = (0, 0, "dir")
        for f in filenames + [d for d in dirnames if (base / d).is_symlink()]:
            p = base / f
            st = p.lstat()
            out[prefix + str(p.relative_to(top))] = (st.st_mtime_ns, st.st_size, _digest(p, st))
    return out


def remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
