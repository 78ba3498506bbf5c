"""The zone matrix enforced by the kernel: master-1's rendered ruleset loaded in a network namespace.

Topology (documentation addresses that live only inside these namespaces):
  INSIDE ns  198.51.100.11/24 (master-1)  --veth--  router ns  --veth--  DMZ ns 203.0.113.21/24 (worker-1)
Listeners on 6443, 2379, 2380, 10250 in the INSIDE namespace; bounded TCP probes (1 s) from DMZ.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from offline.engine import run_program

INSIDE_ADDR, DMZ_ADDR = "198.51.100.11", "203.0.113.21"
PORTS = (6443, 2379, 2380, 10250)

LISTENER = """
import socket, sys, threading
socks = []
for port in map(int, sys.argv[1:]):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16); socks.append(s)
def serve(s):
    while True:
        c, _ = s.accept(); c.close()
for s in socks:
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

PROBE = """
import json, socket, sys
host, ports = sys.argv[1], map(int, sys.argv[2:])
out = {}
for port in ports:
    try:
        socket.create_connection((host, port), timeout=1.0).close(); out[port] = "open"
    except socket.timeout:
        out[port] = "timeout"
    except OSError as e:
        out[port] = type(e).__name__
print(json.dumps(out))
"""


def _netns_possible() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip") or not shutil.which("nft"):
        return "ip (iproute2) or nft missing"
    name = f"cc-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


SKIP = _netns_possible()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


def sh(*args: str, ns: str | None = None, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30, **kw)


@contextlib.contextmanager
def zones() -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    ns = {"inside": f"cc-in-{tag}", "dmz": f"cc-dmz-{tag}", "router": f"cc-rt-{tag}"}
    try:
        for name in ns.values():
            sh("ip", "netns", "add", name)
        for zone, addr, gw in (("inside", INSIDE_ADDR, "198.51.100.1"), ("dmz", DMZ_ADDR, "203.0.113.1")):
            here, there = f"{zone[:3]}0", f"rt-{zone[:3]}"
            sh("ip", "link", "add", here, "netns", ns[zone], "type", "veth", "peer", "name", there,
               "netns", ns["router"])
            sh("ip", "addr", "add", f"{addr}/24", "dev", here, ns=ns[zone])
            sh("ip", "link", "set", here, "up", ns=ns[zone])
            sh("ip", "link", "set", "lo", "up", ns=ns[zone])
            sh("ip", "route", "add", "default", "via", gw, ns=ns[zone])
            sh("ip", "addr", "add", f"{gw}/24", "dev", there, ns=ns["router"])
            sh("ip", "link", "set", there, "up", ns=ns["router"])
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ns["router"])
        yield ns
    finally:
        for name in ns.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@contextlib.contextmanager
def listeners(ns: str, ports: tuple[int, ...] = PORTS) -> Iterator[None]:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER, *map(str, ports)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
        yield
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def probe(ns: str, host: str, ports: tuple[int, ...] = PORTS) -> dict[int, str]:
    out = sh(sys.executable, "-c", PROBE, host, *map(str, ports), ns=ns)
    return {int(k): v for k, v in json.loads(out.stdout).items()}


@pytest.fixture(scope="module")
def dev_firewalls() -> dict[str, dict[str, Any]]:
    run = run_program("dev")
    assert run.error is None, run.error
    return {r.plain_inputs["host"]: r.plain_inputs for r in run.of_type("containercloud:net:HostFirewall")}


def test_every_rendered_ruleset_passes_nft_check(dev_firewalls: dict[str, dict[str, Any]], tmp_path: Any) -> None:
    for host, props in dev_firewalls.items():
        path = tmp_path / f"{host}.nft"
        path.write_text(props["ruleset"])
        checked = sh("nft", "-c", "-f", str(path), check=False)
        assert checked.returncode == 0, f"{host}: {checked.stderr}"


def _allowed_by_rules(props: dict[str, Any], source: str) -> set[int]:
    """The probe ports the structured rules (what the policy checks) open to `source`."""
    import ipaddress

    from policy.rules.common import covers

    addr = ipaddress.ip_address(source)
    return {
        port for port in PORTS for rule in props["rules"]
        if rule["protocol"] == "tcp" and covers(rule["port"], port)
        and any(addr in ipaddress.ip_network(s) for s in rule["sources"])
    }


def test_kernel_enforces_the_zone_matrix(dev_firewalls: dict[str, dict[str, Any]], tmp_path: Any) -> None:
    master = dev_firewalls["master-1"]
    assert master["address"] == INSIDE_ADDR and master["zone"] == "inside"
    ruleset = tmp_path / "master-1.nft"
    ruleset.write_text(master["ruleset"])
    with zones() as ns, listeners(ns["inside"]):
        before = probe(ns["dmz"], INSIDE_ADDR)
        assert before == {p: "open" for p in PORTS}, f"routing or listeners broken before the firewall: {before}"

        sh("nft", "-f", str(ruleset), ns=ns["inside"])
        sh("nft", "-f", str(ruleset), ns=ns["inside"])  # a second load replaces the table atomically
        tables = sh("nft", "list", "tables", ns=ns["inside"]).stdout.split("\n")
        assert [t for t in tables if t.strip()] == ["table inet containercloud"]

        after = probe(ns["dmz"], INSIDE_ADDR)
        assert after[6443] == "open"
        for port in (2379, 2380, 10250):
            assert after[port] == "timeout", f"{port} from DMZ: {after[port]} (dropped packets time out)"
        kernel_open = {p for p, state in after.items() if state == "open"}
        assert kernel_open == _allowed_by_rules(master, DMZ_ADDR) == {6443}

        local = probe(ns["inside"], "127.0.0.1")
        assert local == {p: "open" for p in PORTS}, "loopback must stay open (scheduler, controller-manager)"

        sh("nft", "delete", "table", "inet", "containercloud", ns=ns["inside"])
        assert probe(ns["dmz"], INSIDE_ADDR) == {p: "open" for p in PORTS}, "delete must restore the host"


# --- issue 12.5 and 12.6: DNATed traffic, with the rendered rulesets and real nft -------------------------

@contextlib.contextmanager
def namespaces(*names: str) -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    ns = {name: f"cc-{name[:6]}-{tag}" for name in names}
    try:
        for real in ns.values():
            sh("ip", "netns", "add", real)
            sh("ip", "link", "set", "lo", "up", ns=real)
        yield ns
    finally:
        for real in ns.values():
            subprocess.run(["ip", "netns", "del", real], capture_output=True, timeout=30)


def link(a: str, a_addr: str, b: str, b_addr: str) -> None:
    """A veth pair between namespaces a and b, each end with its /24 address."""
    ia, ib = f"v{uuid.uuid4().hex[:8]}", f"v{uuid.uuid4().hex[:8]}"
    sh("ip", "link", "add", ia, "netns", a, "type", "veth", "peer", "name", ib, "netns", b)
    for ns, dev, addr in ((a, ia, a_addr), (b, ib, b_addr)):
        sh("ip", "addr", "add", f"{addr}/24", "dev", dev, ns=ns)
        sh("ip", "link", "set", dev, "up", ns=ns)


def dnat(ns: str, daddr: str, dport: int, to: str) -> None:
    """What Docker (published ports) or kube-proxy (Services) do: DNAT in the nat table, here with nft."""
    sh("nft", "-f", "-", ns=ns, input=(
        "table ip dnatsim {\n chain prerouting {\n  type nat hook prerouting priority dstnat;\n"
        f"  ip daddr {daddr} tcp dport {dport} dnat to {to}\n }}\n}}\n"))


def test_a_pod_on_the_control_plane_reaches_the_apiserver_through_the_service(
        dev_firewalls: dict[str, dict[str, Any]], tmp_path: Any) -> None:
    """kube-proxy DNATs 10.96.0.1:443 to master-1:6443; the packet is local, so input sees the pod address."""
    master = dev_firewalls["master-1"]
    ruleset = tmp_path / "master-1.nft"
    ruleset.write_text(master["ruleset"])
    with namespaces("master", "pod") as ns:
        link(ns["master"], "10.244.0.1", ns["pod"], "10.244.0.5")  # the node's pod bridge (cni0)
        sh("ip", "addr", "add", f"{INSIDE_ADDR}/32", "dev", "lo", ns=ns["master"])
        sh("ip", "route", "add", "default", "via", "10.244.0.1", ns=ns["pod"])
        dnat(ns["master"], "10.96.0.1", 443, f"{INSIDE_ADDR}:6443")
        with listeners(ns["master"], (6443, 2379)):
            sh("nft", "-f", str(ruleset), ns=ns["master"])
            assert probe(ns["pod"], "10.96.0.1", (443,)) == {443: "open"}
            assert probe(ns["pod"], INSIDE_ADDR, (2379,)) == {2379: "timeout"}  # etcd stays closed to pods


HARBOR_ADDR, STRANGER_ADDR, CONTAINER_ADDR = "203.0.113.10", "192.0.2.99", "172.17.0.2"


def test_docker_published_port_obeys_the_allow_list(dev_firewalls: dict[str, dict[str, Any]], tmp_path: Any) -> None:
    """Docker DNATs harbor-1:443 to a container: forward path. An INSIDE host may connect, a stranger may not."""
    harbor = dev_firewalls["harbor-1"]
    assert harbor["address"] == HARBOR_ADDR
    ruleset = tmp_path / "harbor-1.nft"
    ruleset.write_text(harbor["ruleset"])
    with namespaces("router", "harbor", "ctr", "inside", "stranger") as ns:
        for zone, addr, gw in (("harbor", HARBOR_ADDR, "203.0.113.1"), ("inside", INSIDE_ADDR, "198.51.100.1"),
                               ("stranger", STRANGER_ADDR, "192.0.2.1")):
            link(ns[zone], addr, ns["router"], gw)
            sh("ip", "route", "add", "default", "via", gw, ns=ns[zone])
        link(ns["harbor"], "172.17.0.1", ns["ctr"], CONTAINER_ADDR)  # docker0 and the container
        sh("ip", "route", "add", "default", "via", "172.17.0.1", ns=ns["ctr"])
        for name in ("router", "harbor"):
            sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ns[name])
        dnat(ns["harbor"], HARBOR_ADDR, 443, f"{CONTAINER_ADDR}:443")
        with listeners(ns["ctr"], (443,)):
            assert probe(ns["stranger"], HARBOR_ADDR, (443,)) == {443: "open"}, "DNAT path broken before the firewall"
            sh("nft", "-f", str(ruleset), ns=ns["harbor"])
            assert probe(ns["inside"], HARBOR_ADDR, (443,)) == {443: "open"}
            assert probe(ns["stranger"], HARBOR_ADDR, (443,)) == {443: "timeout"}
