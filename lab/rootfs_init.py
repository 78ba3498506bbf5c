"""PID 1 of a lab host: build the host's private root, chroot into it, run sshd and reap orphans.

Run by the machine's /usr/bin/python3 (standard library only) as the first process of a fresh mount, UTS,
PID and cgroup namespace (`unshare --mount --uts --pid --cgroup --fork --kill-child --propagation private`)
inside the host's network namespace; its one argument is a JSON document written by lab.rootfs:
  root, upper, work: the overlay (lower = the machine's `/`)
  binds: [[source, target], ...] plain ext4 dirs for the container runtimes' state
  cgroups: [[fstype, options, name], ...] the machine's cgroup hierarchies, mounted under /sys/fs/cgroup
  cgroup_v2: true: only the unified hierarchy, at /sys/fs/cgroup itself (as a fresh Debian 12 boots)
  keep: machine paths under /tmp or /run to bind (read-only) over the host's fresh ones (a checkout there)
  hide: absolute paths to cover with an empty read-only tmpfs (the lab's own workdir)
  hostname, sshd_config
sshd is a child, not PID 1, so the lab can kill and restart the listener without ending the host.
"""

import ctypes
import json
import os
import socket
import sys
import time

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384

_libc = ctypes.CDLL(None, use_errno=True)


def mount(source: str, target: str, fstype: str = "", flags: int = 0, data: str = "") -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode() or None, flags, data.encode() or None):
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} {source} on {target} ({data}): {os.strerror(err)}")


def build_root(cfg: dict) -> None:  # type: ignore[type-arg]
    root = cfg["root"]
    mount("overlay", root, "overlay", 0, f"lowerdir=/,upperdir={cfg['upper']},workdir={cfg['work']}")
    for source, target in cfg["binds"]:
        os.makedirs(root + target, exist_ok=True)
        mount(source, root + target, flags=MS_BIND)
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # kernel-wide sysctls belong to the machine: /proc/sys read-only, /proc/sys/net (per namespace) writable
    mount(root + "/proc/sys/net", root + "/proc/sys/net", flags=MS_BIND)
    mount(root + "/proc/sys", root + "/proc/sys", flags=MS_BIND | MS_REC)
    mount("none", root + "/proc/sys", flags=MS_BIND | MS_REMOUNT | MS_RDONLY)
    mount("sysfs", root + "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    cg = root + "/sys/fs/cgroup"
    unified = [c for c in cfg["cgroups"] if c[0] == "cgroup2"]
    if unified and cfg.get("cgroup_v2"):
        # a fresh Debian 12 boots cgroup v2 only (and kubelet 1.35 refuses v1): the host sees the machine's
        # unified hierarchy (its own subtree, by the cgroup namespace) at /sys/fs/cgroup, as on a real host
        mount("cgroup2", cg, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, unified[0][1])
        return _rest(cfg, root)
    mount("cgroup", cg, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")
    for fstype, options, name in cfg["cgroups"]:
        os.makedirs(f"{cg}/{name}", exist_ok=True)
        mount(fstype, f"{cg}/{name}", fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, options)
    _rest(cfg, root)


def _rest(cfg: dict, root: str) -> None:  # type: ignore[type-arg]
    mount("/dev", root + "/dev", flags=MS_BIND | MS_REC)
    mount("tmpfs", root + "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    os.makedirs(root + "/run/sshd", mode=0o755)
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for path in cfg.get("keep", []):  # machine paths under the fresh /tmp or /run the host still sees (read-only)
        os.makedirs(root + path, exist_ok=True)
        mount(path, root + path, flags=MS_BIND | MS_REC)
        mount("none", root + path, flags=MS_BIND | MS_REMOUNT | MS_RDONLY)
    for path in cfg["hide"]:
        if os.path.isdir(root + path):
            mount("tmpfs", root + path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=000,size=4k")


def reap_forever() -> None:
    while True:
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(0.2)
        except InterruptedError:
            pass


def main() -> None:
    cfg = json.loads(sys.argv[1])
    build_root(cfg)
    socket.sethostname(cfg["hostname"])
    os.chroot(cfg["root"])
    os.chdir("/")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    os.spawnve(os.P_NOWAIT, "/usr/sbin/sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", cfg["sshd_config"]], env)
    print("lab-init: up", flush=True)
    reap_forever()


if __name__ == "__main__":
    main()
