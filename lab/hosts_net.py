"""The lab's network: a router namespace with one Linux bridge per zone (gateway `.1`, ip_forward on) and one
namespace per host with a veth into its zone's bridge. Every link is created directly inside the lab's
namespaces (`ip -n ... link add ... peer ... netns ...`): nothing is ever added to the root namespace."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Zone:
    name: str
    network: str
    bridge: str  # name inside the router namespace

    @property
    def gateway(self) -> str:
        return str(ipaddress.ip_network(self.network)[1])

    @property
    def prefix(self) -> int:
        return ipaddress.ip_network(self.network).prefixlen


@dataclass(frozen=True)
class Attachment:
    netns: str
    address: str
    zone: Zone
    router_port: str  # the veth's name on the router side


def _batch(lines: Sequence[str], netns: str | None = None) -> None:
    if not lines:
        return
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    done = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}\n" + "\n".join(lines))


def create(router: str, zones: Sequence[Zone], hosts: Sequence[Attachment]) -> None:
    _batch([f"netns add {router}"] + [f"netns add {h.netns}" for h in hosts])
    lines = ["link set lo up"]
    for z in zones:
        lines += [f"link add {z.bridge} type bridge", f"addr add {z.gateway}/{z.prefix} dev {z.bridge}",
                  f"link set {z.bridge} up"]
    for h in hosts:
        lines += [f"link add {h.router_port} type veth peer name eth0 netns {h.netns}",
                  f"link set {h.router_port} master {h.zone.bridge}", f"link set {h.router_port} up"]
    _batch(lines, router)
    subprocess.run(["nsenter", f"--net=/run/netns/{router}", "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                   check=True, capture_output=True)
    for h in hosts:
        _batch(["link set lo up", f"addr add {h.address}/{h.zone.prefix} dev eth0", "link set eth0 up",
                f"route add default via {h.zone.gateway}"], h.netns)


def destroy(names: Sequence[str]) -> None:
    """Delete the named namespaces that exist (their veths and bridges go with them)."""
    existing = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    _batch([f"netns del {n}" for n in names if n in existing])
