"""Each lab host gets its own cgroup subtree in every hierarchy the machine mounts (this machine is hybrid:
cgroup v1 controllers plus cgroup2 at /sys/fs/cgroup/unified), under `<caller's cgroup>/cclab-<id>/<host>`.
Container runtimes in a host create their cgroups inside it; teardown removes the whole subtree."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Hierarchy:
    mountpoint: Path
    fstype: str      # "cgroup" | "cgroup2"
    options: str     # mount data for a fresh mount of the same hierarchy
    name: str        # directory under /sys/fs/cgroup in a host
    own_path: str    # this process's cgroup in it


FLAGS = {"clone_children", "noprefix", "xattr", "nsdelegate", "cpuset_v2_mode", "favordynmods", "memory_recursiveprot"}


def hierarchies() -> list[Hierarchy]:
    mine: dict[frozenset[str], str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        mine[frozenset(names.split(",")) if names else frozenset()] = path
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, post = line.split(" - ", 1)
        fstype, _, super_opts = post.split()
        mountpoint = Path(pre.split()[4])
        if fstype not in ("cgroup", "cgroup2") or mountpoint.parent != Path("/sys/fs/cgroup"):
            continue
        if fstype == "cgroup2":
            out.append(Hierarchy(mountpoint, fstype, "", mountpoint.name, mine.get(frozenset(), "/")))
            continue
        opts = [o for o in super_opts.split(",") if o not in ("rw", "ro") and o not in FLAGS
                and not o.startswith("release_agent=")]
        controllers = [o for o in opts if "=" not in o]
        named = [o for o in opts if o.startswith("name=")]
        data = ",".join(controllers + named) if controllers else ",".join(["none"] + named)
        own = mine.get(frozenset(controllers + named), "/")
        out.append(Hierarchy(mountpoint, fstype, data, mountpoint.name, own))
    return out


def _copy_cpuset(path: Path) -> None:
    for f in ("cpuset.cpus", "cpuset.mems"):
        src, dst = path.parent / f, path / f
        if dst.exists() and not dst.read_text().strip():
            dst.write_text(src.read_text())


def path_of(h: Hierarchy, *parts: str) -> Path:
    return h.mountpoint.joinpath(h.own_path.lstrip("/"), *parts)


def make(h: Hierarchy, *parts: str) -> Path:
    path = path_of(h)
    for part in parts:
        path = path / part
        if not path.exists():
            path.mkdir()
            if "cpuset" in h.options.split(","):
                _copy_cpuset(path)
    return path


def remove(top: Path, timeout: float = 10.0) -> None:
    """rmdir the subtree bottom-up, waiting for exiting tasks (EBUSY) up to `timeout`."""
    deadline = time.monotonic() + timeout
    while top.exists():
        dirs = sorted((Path(d) for d, _, _ in os.walk(top)), key=lambda p: len(p.parts), reverse=True)
        busy = False
        for d in dirs:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                busy = True
        if busy and time.monotonic() > deadline:
            raise RuntimeError(f"cgroup {top} still busy after {timeout}s")
        if busy:
            time.sleep(0.05)
