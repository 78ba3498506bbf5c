"""What a fresh Debian 12 / Ubuntu server lacks but this machine has: the paths the lab hides in every host.

The lower layer of a lab host is the live machine, so tools installed here for development (kubectl, etcd,
jq, curl, a docker CLI) would make a host look less bare than a real one. Each path below is hidden by a
whiteout in the host's upper dir (`mknod upper/<path> c 0 0`), so a step that needs one must install it.
Every entry names its Debian package and why a fresh install lacks it (Debian priority `optional`: not
installed by the installer; checked with `apt-cache show <pkg> | grep Priority` on Debian 12, 2026-11-24).
Paths absent on this machine are skipped when the whiteouts are made, so the list can name a package's
usual paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

OPTIONAL = "Debian priority optional: not on a fresh install"


@dataclass(frozen=True)
class Hidden:
    path: str
    package: str
    group: str
    reason: str


# group -> what hiding it proves
GROUPS: dict[str, str] = {
    "kubernetes": "the program installs etcd, etcdctl, kubectl (and would install helm, crictl) itself",
    "containers": "the program installs containerd, runc and the docker engine itself",
    "network": "packet-filter and socket tools a node needs are the program's to install (kube-proxy, flannel)",
    "storage": "the NFS client for shared registry storage is the program's to install",
    "tools": "small utilities a fresh host lacks; a host script using them must install them",
}


def _entries(group: str, package: str, reason: str, *paths: str) -> tuple[Hidden, ...]:
    return tuple(Hidden(p, package, group, reason) for p in paths)


HIDDEN: tuple[Hidden, ...] = (
    *_entries("kubernetes", "kubectl", "from Google's cloud-sdk apt repository on this machine; Debian 12 "
              "ships no kubectl; the program installs its pinned kubectl", "/usr/bin/kubectl"),
    *_entries("kubernetes", "etcd-server", OPTIONAL + "; with it go what its postinst made on this machine: "
              "its data dir and its enable link", "/usr/bin/etcd", "/var/lib/etcd",
              "/etc/systemd/system/multi-user.target.wants/etcd.service"),
    *_entries("kubernetes", "etcd-client", OPTIONAL, "/usr/bin/etcdctl"),
    *_entries("kubernetes", "helm", "not in Debian 12; installed by hand when present",
              "/usr/local/bin/helm", "/usr/bin/helm"),
    *_entries("kubernetes", "cri-tools", "not in Debian 12; installed by hand when present",
              "/usr/local/bin/crictl", "/usr/bin/crictl"),
    *_entries("containers", "containerd", OPTIONAL, "/usr/bin/containerd", "/usr/bin/containerd-shim",
              "/usr/bin/containerd-shim-runc-v2", "/usr/bin/ctr", "/usr/local/bin/containerd",
              "/usr/local/bin/containerd-shim-runc-v2", "/usr/local/bin/ctr"),
    *_entries("containers", "runc", OPTIONAL, "/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"),
    *_entries("containers", "docker.io", OPTIONAL, "/usr/bin/docker", "/usr/sbin/dockerd", "/usr/bin/dockerd",
              "/usr/sbin/docker-proxy", "/usr/bin/docker-proxy"),
    *_entries("containers", "docker-ce-cli", "a static docker CLI installed by hand on this machine "
              "(/usr/local/bin, no package); not on a fresh install", "/usr/local/bin/docker",
              "/usr/local/bin/dockerd"),
    *_entries("network", "iptables", OPTIONAL, "/usr/sbin/iptables", "/usr/sbin/ip6tables",
              "/usr/sbin/iptables-save", "/usr/sbin/iptables-restore", "/usr/sbin/ip6tables-save",
              "/usr/sbin/ip6tables-restore", "/usr/sbin/iptables-legacy", "/usr/sbin/iptables-nft",
              "/usr/sbin/xtables-legacy-multi", "/usr/sbin/xtables-nft-multi"),
    *_entries("network", "conntrack", OPTIONAL, "/usr/sbin/conntrack"),
    *_entries("network", "socat", OPTIONAL, "/usr/bin/socat"),
    *_entries("network", "ebtables", OPTIONAL, "/usr/sbin/ebtables", "/usr/sbin/ebtables-legacy"),
    *_entries("network", "ipset", OPTIONAL, "/usr/sbin/ipset"),
    *_entries("storage", "nfs-common", OPTIONAL, "/usr/sbin/mount.nfs", "/sbin/mount.nfs", "/usr/sbin/mount.nfs4"),
    *_entries("tools", "jq", OPTIONAL, "/usr/bin/jq"),
    *_entries("tools", "curl", OPTIONAL + " (Ubuntu server ships it; Debian's netinst does not)",
              "/usr/bin/curl"),
)

# Kept visible on purpose: python3 (optional in Debian 12) runs the systemctl stand-in inside the hosts;
# nft (nftables, priority important) and wget (standard) are on a fresh Debian.


def groups(hide: bool | Iterable[str]) -> frozenset[str]:
    """`True`: every group; `False`: none; an iterable: those groups (unknown names are an error)."""
    if hide is True:
        return frozenset(GROUPS)
    if hide is False:
        return frozenset()
    chosen = frozenset(hide)  # type: ignore[arg-type]
    unknown = sorted(chosen - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown hide group(s) {unknown}; groups are {sorted(GROUPS)}")
    return chosen


def hidden_paths(hide: bool | Iterable[str], exists: Callable[[str], bool] = os.path.lexists) -> list[Hidden]:
    """The entries of the chosen groups whose path exists on this machine (only those need a whiteout)."""
    chosen = groups(hide)
    return [h for h in HIDDEN if h.group in chosen and exists(h.path)]
