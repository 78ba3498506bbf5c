"""Issue 12's host proofs in the lab (items 3, 5 and 6), each printed as a table and asserted.

  3  iptables where kube-proxy and dockerd need it: `iptables --version` on every node and Docker host
     (installed by the program's prerequisites step: the hosts hide the machine's tools), kube-proxy
     active on every node, dockerd answering on every Docker host; and the kube-proxy binary the program
     installed, started without iptables on its PATH, refuses with upstream's message.
  5  a pod on a control-plane node reaches the apiserver through the `kubernetes` Service: a pod network
     namespace inside the host (veth, an address from podCidr, the host side as its gateway), a DNAT of
     ClusterIP:443 to the host's own :6443 standing in for kube-proxy's rule, a TLS /readyz through it
     with the program's ruleset loaded, etcd 2379 dropped from the pod; the same ruleset without the
     pods -> apiServerPort flow (the ruleset before commit 170a934) drops the Service connection.
  6  Docker-published ports obey the host firewall: a container from the lab's busybox image published on
     the registry host's 443; an inventory host connects, a stranger in the DMZ (not in 443's allow-list)
     is dropped; without our forward chain the stranger gets through Docker's DNAT.

Each proof returns a one-line result and raises ProofFailed (an AssertionError) when the hosts disagree;
`run_all(ctx)` runs them as lab proofs (a broken one is recorded, the lab goes on): dev and ha alike.
"""

from __future__ import annotations

import functools
import io
import ipaddress
import json
import subprocess
import tarfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from components.firewall import MEMBERS_PATH, RULESET_PATH
from lab import registry as lab_registry
from policy.rules.artifacts import expand_includes, parse_sets

DOCKER = ["docker", "--host", "unix:///run/docker.sock"]
POD_NETNS = "cclab-pod"
POD_VETH = "cclabpod0"
DNAT_TABLE = "cclab_kube_proxy"
CONTAINER = "cclab-published"
IMAGE = "cclab-busybox:1"
PROBE_TIMEOUT = 1.5
PKI = "/etc/kubernetes/pki"
KUBE_PROXY = "/usr/local/bin/kube-proxy"
Probe = tuple[str, str, str, int, list[str], str]  # (what, mode, address, port, extra args, wanted result)


class ProofFailed(AssertionError):
    pass


def check(cond: bool, message: str) -> None:
    if not cond:
        raise ProofFailed(message)


def guarded(proof: Callable[[Any, Any], str], lab: Any, settings: Any) -> str:
    """Run `proof`; any failure (a refused assertion, a host command that failed) as the lab's LabFailure."""
    from lab.run import LabFailure

    try:
        return proof(lab, settings)
    except (ProofFailed, subprocess.SubprocessError, OSError) as err:
        raise LabFailure(f"{type(err).__name__}: {err}") from err


def run_all(ctx: Any) -> None:
    not_run = {name: reason for _, name, reason in ctx.result.not_run}
    for name, proof in PROOFS:
        start = time.monotonic()
        if proof is iptables_proof:
            proof = functools.partial(iptables_proof, not_run=not_run)
        ctx.soft(name, lambda proof=proof: guarded(proof, ctx.lab, ctx.settings))
        print(f"  ({name}: {time.monotonic() - start:.1f}s)")


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    table = [list(header)] + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in table)


# --- a TCP / TLS / HTTP probe run by python3 in some network namespace ---------------------------------

PROBE = r"""
import json, socket, ssl, sys
mode, addr, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
try:
    sock = socket.create_connection((addr, port), timeout=timeout)
except TimeoutError:
    print(json.dumps({"result": "dropped"})); sys.exit(0)
except ConnectionRefusedError:
    print(json.dumps({"result": "refused"})); sys.exit(0)
except OSError as err:
    print(json.dumps({"result": "unreachable", "detail": str(err)})); sys.exit(0)
sock.settimeout(5)
if mode == "tls":
    ca, cert, key, name, path = sys.argv[5:10]
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    with ctx.wrap_socket(sock, server_hostname=name) as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    print(json.dumps({"result": "answered", "status": head.split(b"\r\n")[0].decode(),
                      "body": body.decode(errors="replace")[:80], "tls": tls.version()}))
elif mode == "http":
    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = sock.recv(200)
    print(json.dumps({"result": "answered", "status": data.split(b"\r\n")[0].decode(errors="replace")}))
else:
    print(json.dumps({"result": "open"}))
sock.close()
"""


def probe_argv(mode: str, addr: str, port: int, *extra: str, timeout: float = PROBE_TIMEOUT) -> list[str]:
    return ["python3", "-c", PROBE, mode, addr, str(port), str(timeout), *extra]


def parse_probe(done: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    """The probe's JSON answer, or {"result": "error", ...} when python3 itself failed (TLS alert, ...)."""
    if done.returncode != 0:
        return {"result": "error", "detail": _text(done.stderr).strip().splitlines()[-1:] or ["?"]}
    parsed: dict[str, Any] = json.loads(_text(done.stdout).strip().splitlines()[-1])
    return parsed


def show(answer: dict[str, Any]) -> str:
    parts = [answer["result"]] + [str(answer[k]).strip() for k in ("status", "tls") if answer.get(k)]
    body = str(answer.get("body") or "").strip()
    return " ".join(parts) + (f" body={body!r}" if body else "")


# --- 3. iptables where kube-proxy and dockerd need it ---------------------------------------------------

def iptables_proof(lab: Any, settings: Any, not_run: Optional[dict[str, str]] = None) -> str:
    """`not_run`: step name -> why the lab could not run it. kube-proxy is installed by `<node>-kubelet`; where
    that step was NOT RUN, the table says so and kube-proxy is not asked for (iptables and dockerd still are)."""
    from components.firewall import runs_docker

    not_run = not_run or {}
    nodes = {h.name for h in settings.node_hosts}
    docker = {h.name for h in settings.hosts if runs_docker(h, settings.rancher_mode)}
    ran = sorted(n for n in nodes if f"{n}-kubelet" not in not_run)
    rows, bad = [], []
    for host in sorted(nodes | docker):
        ipt = lab.run(host, ["iptables", "--version"], check=False)
        version = _text(ipt.stdout).strip() if ipt.returncode == 0 else f"MISSING ({_text(ipt.stderr).strip()[-60:]})"
        proxy = "-" if host not in nodes else _unit_state(lab, host, "kube-proxy.service") if host in ran else "NOT RUN"
        dockerd = _docker_state(lab, host) if host in docker else "-"
        rows.append((host, version, proxy, dockerd))
        if ipt.returncode != 0 or proxy not in ("active", "-", "NOT RUN") or dockerd not in ("answers", "-"):
            bad.append(host)
    print(format_table(("host", "iptables --version", "kube-proxy", "dockerd"), rows))
    skipped = sorted(set(nodes) - set(ran))
    if skipped:
        step = f"{skipped[0]}-kubelet"
        print(f"  kube-proxy NOT RUN on {skipped} (e.g. {step}: {not_run[step]})")
    check(not bad, f"iptables, kube-proxy or dockerd missing on {bad}")
    if not ran:
        return (f"iptables on {len(rows)} hosts, dockerd on {sorted(docker)}; kube-proxy NOT RUN on every node "
                "(its refusal without iptables: tests/test_lab_standins.py)")
    refusal = kube_proxy_refuses_without_iptables(lab, ran[0])
    print(f"  kube-proxy on {ran[0]} with iptables off its PATH: {refusal}")
    check("iptables is not available on this host" in refusal, f"kube-proxy started without iptables: {refusal}")
    return (f"iptables on {len(rows)} hosts, kube-proxy active on {ran}, dockerd on {sorted(docker)}; "
            f"without iptables kube-proxy refuses: '{refusal}'")


def _unit_state(lab: Any, host: str, unit: str) -> str:
    if lab.run(host, ["test", "-e", f"/etc/systemd/system/{unit}"], check=False).returncode != 0:
        return "not installed"
    done = lab.run(host, ["systemctl", "is-active", unit], check=False)
    return _text(done.stdout).strip() or "unknown"


def _docker_state(lab: Any, host: str) -> str:
    done = lab.run(host, [*DOCKER, "info", "--format", "{{.ServerVersion}}"], check=False)
    return "answers" if done.returncode == 0 else f"down ({_text(done.stderr).strip()[-60:]})"


def kube_proxy_refuses_without_iptables(lab: Any, host: str) -> str:
    """Start the installed kube-proxy once with its unit's config but a PATH without iptables (a second
    instance: its ports clash only after the platform check, which comes first)."""
    if lab.run(host, ["test", "-x", KUBE_PROXY], check=False).returncode != 0:
        return f"{KUBE_PROXY} not installed"
    argv = ["env", "PATH=/nonexistent", "/usr/bin/python3", KUBE_PROXY,
            "--config=/var/lib/kube-proxy/config.yaml", f"--hostname-override={host}"]
    done = lab.run(host, argv, check=False, timeout=30)
    lines = [ln for ln in _text(done.stderr).splitlines() if ln.strip()]
    return f"exit {done.returncode}: {lines[-1] if lines else ''}"


# --- 5. a pod on a control-plane node reaches the apiserver through the kubernetes Service -------------

def pod_addresses(pod_cidr: str) -> tuple[str, str, int]:
    """(gateway, pod, prefix) in the last /24 of podCidr (flannel leases subnets from the start)."""
    cidr = ipaddress.ip_network(pod_cidr)
    net: ipaddress.IPv4Network | ipaddress.IPv6Network = cidr
    if cidr.prefixlen < 24:
        *_, net = cidr.subnets(new_prefix=24)
    return str(net[1]), str(net[2]), net.prefixlen


def dnat_ruleset(cluster_ip: str, port: int, to_addr: str, to_port: int) -> str:
    """kube-proxy's Service rule for `kubernetes` (ClusterIP:443 -> the endpoint), as an nft DNAT."""
    return (f"table ip {DNAT_TABLE} {{\n"
            "  chain prerouting {\n    type nat hook prerouting priority dstnat;\n"
            f"    ip daddr {cluster_ip} tcp dport {port} dnat to {to_addr}:{to_port}\n  }}\n}}\n")


def without_flow(ruleset: str, source: str, port: int | str) -> str:
    """The ruleset (as loaded: its members file included) minus its input rule for `<source>` to tcp `<port>`
    (exactly one): `ip saddr { <source> } ...` or `ip saddr @<set> ...` with a set holding only `<source>`."""
    sets = [name for name, elements in parse_sets(ruleset).items() if elements == [source]]
    needles = [f"saddr {{ {source} }} tcp dport {port} accept"] + [f"saddr @{n} tcp dport {port} accept" for n in sets]
    lines = ruleset.splitlines(keepends=True)
    kept = [ln for ln in lines if not any(needle in ln for needle in needles)]
    if len(lines) - len(kept) != 1:
        raise ValueError(f"expected one rule '{needles[0]}' in the ruleset, found {len(lines) - len(kept)}")
    return "".join(kept)


def pods_proof(lab: Any, settings: Any) -> str:
    host = settings.control_plane_hosts[0]
    gateway, pod, prefix = pod_addresses(settings.pod_cidr)
    cluster_ip, api_port = settings.kubernetes_service_ip, settings.api_server_port
    files = {path: _text(lab.run(host.name, ["cat", path]).stdout) for path in (RULESET_PATH, MEMBERS_PATH)}
    ruleset = expand_includes(files[RULESET_PATH], files)  # as loaded: `nft -f -` reads no include then
    old = without_flow(ruleset, settings.pod_cidr, api_port)
    tls = [f"{PKI}/ca.crt", f"{PKI}/apiserver-kubelet-client.crt", f"{PKI}/apiserver-kubelet-client.key",
           cluster_ip, "/readyz"]
    probes: list[Probe] = [("pod -> kubernetes Service (ClusterIP)", "tls", cluster_ip, 443, tls, "answered"),
              ("pod -> etcd client", "tcp", host.address, 2379, [], "dropped"),
              ("pod -> etcd peer", "tcp", host.address, 2380, [], "dropped")]
    rows, bad = [], []
    _pod_up(lab, host.name, gateway, pod, prefix)
    try:
        lab.run(host.name, ["nft", "-f", "-"], input=dnat_ruleset(cluster_ip, 443, host.address, api_port).encode())
        for label, ruleset_text in (("program's ruleset", ruleset), ("without pods->6443 (before 170a934)", old)):
            lab.run(host.name, ["nft", "-f", "-"], input=ruleset_text.encode())
            with ThreadPoolExecutor(len(probes)) as pool:  # dropped probes wait out their timeout together
                answers = list(pool.map(lambda pr: _probe_in_pod(lab, host.name, pr), probes))
            for (what, mode, addr, port, _, want), got in zip(probes, answers, strict=True):
                if ruleset_text is old:
                    want = "dropped" if mode == "tls" else want
                ok = got["result"] == want and (want != "answered" or got.get("status", "").endswith("200 OK"))
                rows.append((label, what, f"{addr}:{port}", show(got), "ok" if ok else f"WANT {want}"))
                if not ok:
                    bad.append(rows[-1])
    finally:
        lab.run(host.name, ["nft", "-f", "/etc/containercloud/firewall.nft"], check=False)
        lab.run(host.name, ["nft", "delete", "table", "ip", DNAT_TABLE], check=False)
        lab.run(host.name, ["ip", "netns", "del", POD_NETNS], check=False)
    print(f"  {host.name}: pod {pod}/{prefix} (gateway {gateway}); DNAT {cluster_ip}:443 -> {host.address}:{api_port} "
          "stands in for kube-proxy's rule for the kubernetes Service")
    print(format_table(("ruleset", "from the pod", "to", "result", ""), rows))
    check(not bad, f"pod -> apiserver through the Service not as intended: {bad}")
    return (f"a pod on {host.name} reaches the apiserver via {cluster_ip}:443 (TLS /readyz 200) with the program's "
            f"ruleset, etcd dropped; without the pods->{api_port} flow the Service connection is dropped")


def _probe_in_pod(lab: Any, host: str, probe: Probe) -> dict[str, Any]:
    _, mode, addr, port, extra, _ = probe
    argv = ["nsenter", f"--net=/run/netns/{POD_NETNS}", "--", *probe_argv(mode, addr, port, *extra)]
    return parse_probe(lab.run(host, argv, check=False))


def _pod_up(lab: Any, host: str, gateway: str, pod: str, prefix: int) -> None:
    lab.run(host, ["ip", "netns", "del", POD_NETNS], check=False)
    lab.run(host, ["ip", "netns", "add", POD_NETNS])
    inside = ["ip", "-n", POD_NETNS]
    for argv in (["ip", "link", "add", POD_VETH, "type", "veth", "peer", "name", "eth0", "netns", POD_NETNS],
                 ["ip", "addr", "add", f"{gateway}/{prefix}", "dev", POD_VETH],
                 ["ip", "link", "set", POD_VETH, "up"],
                 [*inside, "link", "set", "lo", "up"],
                 [*inside, "addr", "add", f"{pod}/{prefix}", "dev", "eth0"],
                 [*inside, "link", "set", "eth0", "up"],
                 [*inside, "route", "add", "default", "via", gateway]):
        lab.run(host, argv)


# --- 6. Docker-published ports obey the host firewall --------------------------------------------------

def docker_archive(busybox: bytes, tag: str = IMAGE) -> bytes:
    """A `docker save` archive (manifest.json, config, one uncompressed layer) that dockerd 20.10 loads:
    Debian's static busybox as /bin/busybox. (20.10's `docker load` reads manifest.json, not an OCI layout.)"""
    import hashlib

    layer = _layer_tar(busybox)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"],
                                    "Env": ["PATH=/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id.split(":")[1] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": [layer_name]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in (("manifest.json", manifest), (config_name, config), (layer_name, layer)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _layer_tar(busybox: bytes) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for d in ("bin", "www"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        page = b"container-cloud lab: published\n"
        for name, data, mode in (("bin/busybox", busybox, 0o755), ("www/index.html", page, 0o644)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def without_forward(ruleset: str) -> str:
    """The ruleset with its input chain only: the forward and published chains of a Docker host cut off."""
    head, marker, _ = ruleset.partition("\n\t# Docker-published ports")
    if not marker or "chain forward" in head:
        raise ValueError("the ruleset has no Docker forward chain to cut off")
    return head.rstrip() + "\n}\n"


def stranger_address(zone: str, taken: Sequence[str]) -> str:
    """The highest address of `zone` no lab host uses (and not the broadcast)."""
    net = ipaddress.ip_network(zone)
    used = set(taken)
    for offset in range(net.num_addresses - 2, 1, -1):
        if str(net[offset]) not in used:
            return str(net[offset])
    raise ValueError(f"zone {zone} has no free address for a stranger")


def published_proof(lab: Any, settings: Any) -> str:
    reg = settings.registry_hosts[0]
    peers = [h for h in settings.hosts if h.name != reg.name and h.zone == reg.zone]
    allowed = next((h for h in peers if h in settings.node_hosts), peers[0])  # a node pulling images, if any
    zone = next(z for z in lab.zones if z == reg.zone)
    stranger_ip = stranger_address(lab.zones[zone], [h.address for h in lab.hosts.values()])
    stranger = _stranger_up(lab, zone, stranger_ip)
    ruleset_path = "/etc/containercloud/firewall.nft"
    rows, bad = [], []
    try:
        busybox = lab_registry._extracted(lab_registry.BUSYBOX_PACKAGE, "/bin/busybox").read_bytes()
        lab.run(reg.name, [*DOCKER, "load"], input=docker_archive(busybox), timeout=120)
        _run_container(lab, reg.name)
        ruleset = _text(lab.run(reg.name, ["cat", ruleset_path]).stdout)
        no_forward = without_forward(ruleset)
        cases = [("program's ruleset", ruleset, {allowed.name: "answered", "stranger": "dropped"}),
                 ("input chain only (no forward)", no_forward, {"stranger": "answered"})]
        for label, text, wants in cases:
            lab.run(reg.name, ["nft", "-f", "-"], input=text.encode())
            for src, want in wants.items():
                netns = stranger if src == "stranger" else f"/run/netns/{lab.hosts[src].netns}"
                got = _probe_from(netns, reg.address, 443)
                ok = got["result"] == want
                name = f"stranger ({stranger_ip})" if src == "stranger" else f"{src} ({lab.hosts[src].address})"
                rows.append((label, name, f"{reg.address}:443", show(got), "ok" if ok else f"WANT {want}"))
                if not ok:
                    bad.append(rows[-1])
    finally:
        lab.run(reg.name, ["nft", "-f", ruleset_path], check=False)
        lab.run(reg.name, [*DOCKER, "rm", "-f", CONTAINER], check=False)
        lab.run(reg.name, [*DOCKER, "rmi", IMAGE], check=False)
        subprocess.run(["ip", "netns", "del", stranger.rsplit("/", 1)[1]], capture_output=True)
    print(f"  {reg.name}: container {CONTAINER} (busybox httpd :80) published on 443 by dockerd's DNAT; "
          f"443's allow-list: hosts, operators, registry LB; the stranger is in {zone} but not in the inventory")
    print(format_table(("ruleset", "from", "to", "result", ""), rows))
    check(not bad, f"Docker-published port not filtered as intended: {bad}")
    return (f"{reg.name}:443 published by Docker: {allowed.name} answered, a stranger in {zone} dropped; "
            "without our forward chain the stranger got through")


def _run_container(lab: Any, host: str) -> None:
    lab.run(host, [*DOCKER, "rm", "-f", CONTAINER], check=False)
    argv = [*DOCKER, "run", "-d", "--name", CONTAINER, "-p", "443:80", IMAGE]
    for _ in range(20):  # 443 may still be held a moment by the trust proof's registry
        done = lab.run(host, argv, check=False, timeout=60)
        if done.returncode == 0:
            return
        lab.run(host, [*DOCKER, "rm", "-f", CONTAINER], check=False)
        time.sleep(0.5)
    raise ProofFailed(f"docker run -p 443:80 on {host}: {_text(done.stderr).strip()[-300:]}")


def _probe_from(netns_path: str, addr: str, port: int) -> dict[str, Any]:
    done = subprocess.run(["nsenter", f"--net={netns_path}", "--", *probe_argv("http", addr, port)],
                          capture_output=True, timeout=30)
    return parse_probe(done)


def _stranger_up(lab: Any, zone: str, address: str) -> str:
    """A bare network namespace on `zone`'s bridge (not a lab host: no root, no sshd, no inventory entry)."""
    name = f"{lab.router.rsplit('-', 1)[0]}-stranger"
    bridge = f"z{list(lab.zones).index(zone)}"
    net = ipaddress.ip_network(lab.zones[zone])
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    batches = [(None, [f"netns add {name}"]),
               (lab.router, [f"link add hstranger type veth peer name eth0 netns {name}",
                             f"link set hstranger master {bridge}", "link set hstranger up"]),
               (name, ["link set lo up", f"addr add {address}/{net.prefixlen} dev eth0", "link set eth0 up",
                       f"route add default via {net[1]}"])]
    for netns, lines in batches:
        cmd = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
        subprocess.run(cmd, input="\n".join(lines) + "\n", check=True, capture_output=True, text=True)
    return f"/run/netns/{name}"


PROOFS: tuple[tuple[str, Callable[[Any, Any], str]], ...] = (
    ("12.3 iptables", iptables_proof), ("12.5 pod -> apiserver via Service", pods_proof),
    ("12.6 docker-published ports", published_proof))
NAMES = tuple(name for name, _ in PROOFS)
