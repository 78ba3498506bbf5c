"""The host lab's host layer: real namespaces, a private root per host, a real sshd, bare-host whiteouts,
TCP probes, and a teardown that leaves nothing. Planning is checked against the dev and ha stacks.

Addresses are the documentation ranges of the stacks (198.51.100.0/24, 203.0.113.0/24); they live only
inside the namespaces the lab creates. Skipped, with the reason, when not root or without namespaces.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.config import Settings, parse_settings
from lab import bare
from lab.hosts import HostSpec, Lab, plan_hosts, plan_users, unavailable_reason
from lab.probes import address_names, format_matrix, probe_matrix, tcp_probe
from offline.engine import load_stack_config
from offline.engine.runner import PROJECT

ZONES = {"inside": "198.51.100.0/24", "dmz": "203.0.113.0/24"}
SMALL = [
    HostSpec("cp-1", "198.51.100.11", "inside", "inventory"),
    HostSpec("rancher-1", "198.51.100.21", "inside", "inventory"),
    HostSpec("worker-1", "203.0.113.21", "dmz", "inventory"),
    HostSpec("deployer", "198.51.100.5", "inside", "deployer"),
    HostSpec("bastion", "198.51.100.4", "inside", "bastion"),
]


SKIP = unavailable_reason()
needs_lab = pytest.mark.skipif(SKIP is not None, reason=f"host lab unavailable: {SKIP}")


def settings_of(stack: str) -> Settings:
    values = load_stack_config(stack).values
    return parse_settings({k.split(":", 1)[1]: v for k, v in values.items() if k.startswith(f"{PROJECT}:")})


def ssh_argv(lab: Lab, known_hosts: Path, *args: str) -> list[str]:
    return ["ssh", "-F", "/dev/null", "-i", str(lab.ssh_key_path), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", *args]


def known_hosts(lab: Lab, path: Path, names: list[str] | None = None) -> Path:
    hosts = [lab.hosts[n] for n in names] if names else [h for h in lab.hosts.values() if h.host_key]
    path.write_text("".join(f"{h.address} {h.host_key}\n" for h in hosts))
    return path


# --- planning against the real stacks ------------------------------------------------------------------


def test_plan_dev_stack() -> None:
    specs = plan_hosts(settings_of("dev"))
    inventory = [s for s in specs if s.kind == "inventory"]
    assert [s.name for s in inventory] == ["rancher-1", "master-1", "harbor-1", "worker-1", "worker-2", "worker-3"]
    assert {s.zone for s in inventory if s.address.startswith("203.0.113.")} == {"dmz"}
    others = {(s.kind, s.name, s.address, s.zone) for s in specs if s.kind != "inventory"}
    assert others == {("deployer", "deployer", "198.51.100.5", "inside")}
    assert plan_users(settings_of("dev")) == []


def test_plan_ha_stack() -> None:
    settings = settings_of("ha")
    specs = plan_hosts(settings, extra=[HostSpec("mirror", "198.51.100.200", "inside", "extra")])
    assert len([s for s in specs if s.kind == "inventory"]) == 13
    others = {(s.kind, s.name, s.address, s.zone) for s in specs if s.kind != "inventory"}
    assert others == {
        ("deployer", "deployer", "198.51.100.5", "inside"),
        ("bastion", "bastion", "198.51.100.4", "inside"),
        ("lb", "api-lb", "198.51.100.100", "inside"),
        ("lb", "registry-lb", "203.0.113.100", "dmz"),
        ("extra", "mirror", "198.51.100.200", "inside"),
    }
    assert plan_users(settings) == [("bastion", "jump")]


def test_plan_refuses_a_clash() -> None:
    with pytest.raises(ValueError, match="share the address 198.51.100.11"):
        plan_hosts(settings_of("dev"), extra=[HostSpec("mirror", "198.51.100.11", "inside", "extra")])
    with pytest.raises(ValueError, match="gateway of zone inside"):
        Lab([HostSpec("gw", "198.51.100.1", "inside", "extra")], ZONES, Path("/nonexistent"))


def test_bare_groups() -> None:
    assert bare.groups(True) == frozenset(bare.GROUPS) and bare.groups(False) == frozenset()
    with pytest.raises(ValueError, match="unknown hide group"):
        bare.groups(["kubernetes", "nope"])
    assert all(h.package and h.reason for h in bare.HIDDEN)
    present = {"/usr/bin/kubectl", "/usr/bin/jq", "/usr/sbin/iptables"}
    chosen = bare.hidden_paths(["kubernetes", "network"], exists=lambda p: p in present)
    assert {h.path for h in chosen} == {"/usr/bin/kubectl", "/usr/sbin/iptables"}
    # what the program installs itself is hidden by default
    default = {h.path for h in bare.hidden_paths(True, exists=lambda p: True)}
    for path in ("/usr/bin/etcd", "/usr/bin/etcdctl", "/usr/bin/kubectl", "/usr/bin/containerd",
                 "/usr/sbin/runc", "/usr/sbin/dockerd", "/usr/bin/docker", "/usr/local/bin/docker"):
        assert path in default


# --- a small topology ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if SKIP:
        pytest.skip(f"host lab unavailable: {SKIP}")
    with Lab(SMALL, ZONES, tmp_path_factory.mktemp("lab"), users=[("bastion", "jump")]) as up:
        print(f"\nlab up: {len(SMALL)} hosts in {up.timings['up']:.2f}s")
        yield up


@needs_lab
def test_up_is_fast(lab: Lab) -> None:
    assert lab.timings["up"] < 10
    assert set(lab.hosts) == {s.name for s in SMALL}
    assert all(h.pid > 1 and h.host_key.startswith("ssh-ed25519 ") for h in lab.hosts.values()
               if h.kind != "deployer")


@needs_lab
def test_ssh_as_root_with_strict_host_keys(lab: Lab, tmp_path: Path) -> None:
    good = known_hosts(lab, tmp_path / "good", ["cp-1"])
    done = lab.deployer(ssh_argv(lab, good, "root@198.51.100.11", "hostname; id -u"), timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split() == ["cp-1", "0"]
    # the key is this run's: another host's key under cp-1's address is refused
    wrong = tmp_path / "wrong"
    wrong.write_text(f"198.51.100.11 {lab.hosts['rancher-1'].host_key}\n")
    refused = lab.deployer(ssh_argv(lab, wrong, "root@198.51.100.11", "true"), timeout=30)
    assert refused.returncode == 255 and b"HOST IDENTIFICATION HAS CHANGED" in refused.stderr


@needs_lab
def test_ssh_through_the_bastion(lab: Lab, tmp_path: Path) -> None:
    kh = known_hosts(lab, tmp_path / "kh")
    conf = tmp_path / "ssh_config"
    conf.write_text(f"Host *\n  IdentityFile {lab.ssh_key_path}\n  IdentitiesOnly yes\n  BatchMode yes\n"
                    f"  StrictHostKeyChecking yes\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n")
    done = lab.deployer(["ssh", "-F", str(conf), "-J", "jump@198.51.100.4", "root@203.0.113.21", "hostname"],
                        timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == "worker-1"
    shell = lab.run("bastion", ["getent", "passwd", "jump"]).stdout.decode().strip()
    assert shell.endswith(":/bin/bash")
    # the lab's own client files do the same
    done = lab.deployer(["ssh", "-F", str(lab.ssh_config_path), "-J", "jump@198.51.100.4", "root@198.51.100.21",
                         "hostname"], timeout=30)
    assert done.stdout.decode().strip() == "rancher-1", done.stderr


@needs_lab
def test_a_host_is_its_own_machine(lab: Lab) -> None:
    out = lab.run("cp-1", ["sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
                           "cat /proc/self/cgroup; ip -4 -o addr show dev eth0; cat /proc/self/mountinfo"])
    text = out.stdout.decode()
    lines = text.splitlines()
    assert lines[0] == "cp-1"
    assert "rootfs_init.py" in lines[1]                        # PID 1 is the lab's init, in its own PID namespace
    assert "0::/" in lines and "4:memory:/" in lines          # cgroup namespace rooted at the host's subtree
    assert "198.51.100.11/24" in text
    mounts = {ln.split()[4]: ln.split(" - ")[1].split()[0] for ln in lines if " - " in ln}
    assert mounts["/"] == "overlay"
    assert mounts["/var/lib/docker"] == mounts["/var/lib/containerd"] == mounts["/var/lib/containers"] == "ext4"
    assert mounts["/sys/fs/cgroup/unified"] == "cgroup2" and mounts["/sys/fs/cgroup/memory"] == "cgroup"
    assert mounts["/proc"] == "proc" and mounts["/run"] == mounts["/tmp"] == "tmpfs"
    # per-namespace sysctls are the host's; kernel-wide ones stay the machine's
    lab.run("cp-1", ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    assert lab.run("cp-1", ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout == b"1\n"
    assert lab.run("cp-1", ["sysctl", "-qw", "kernel.domainname=lab"], check=False).returncode != 0
    host = lab.hosts["cp-1"]
    procs = {int(p) for c in host.cgroups for p in (c / "cgroup.procs").read_text().split()}
    assert host.pid in procs


@needs_lab
def test_hosts_do_not_see_each_other(lab: Lab) -> None:
    lab.run("cp-1", ["sh", "-c", "echo mine > /root/only-cp-1"])
    assert (lab.hosts["cp-1"].upper / "root" / "only-cp-1").read_text() == "mine\n"
    assert lab.run("rancher-1", ["test", "-e", "/root/only-cp-1"], check=False).returncode == 1
    assert not Path("/root/only-cp-1").exists()
    # nor the lab's workdir (every host's upper dir) through the lower layer
    assert lab.run("rancher-1", ["ls", "-A", str(lab.workdir)], check=False).stdout == b""


@needs_lab
def test_whiteouts_hide_what_a_fresh_host_lacks(lab: Lab) -> None:
    hidden = [h.path for h in lab.hidden]
    assert hidden, "nothing to hide on this machine? (expected etcd, etcdctl, kubectl at least)"
    for path in hidden:
        assert os.path.lexists(path)
        assert lab.run("cp-1", ["test", "-e", path], check=False).returncode == 1, path
    if shutil.which("etcd"):
        assert lab.run("cp-1", ["sh", "-c", "command -v etcd"], check=False).returncode != 0
        st = (lab.hosts["cp-1"].upper / "usr/bin/etcd").lstat()
        assert st.st_rdev == 0 and (st.st_mode & 0o170000) == 0o020000
    # installing over a whiteout works as on a real host
    lab.run("rancher-1", ["sh", "-c", "printf '#!/bin/sh\\necho v3\\n' > /usr/bin/etcd; chmod 755 /usr/bin/etcd"])
    assert lab.run("rancher-1", ["etcd"]).stdout == b"v3\n"


@needs_lab
def test_systemctl_and_modprobe_stand_ins(lab: Lab) -> None:
    assert lab.run("cp-1", ["modprobe", "br_netfilter"]).returncode == 0
    unit = b"[Unit]\nDescription=lab test\n[Service]\nExecStart=/bin/sleep 600\n[Install]\nWantedBy=multi-user.target\n"
    lab.run("cp-1", ["sh", "-c", "cat > /etc/systemd/system/labtest.service"], input=unit)
    lab.run("cp-1", ["systemctl", "daemon-reload"])
    lab.run("cp-1", ["systemctl", "enable", "--now", "labtest.service"], timeout=60)
    state = lab.run("cp-1", ["systemctl", "is-active", "labtest.service"], check=False).stdout.decode().strip()
    assert state == "active"
    lab.run("cp-1", ["systemctl", "stop", "labtest.service"], timeout=60)
    # the hosts' systemctl: the lab's timer-aware wrapper in front of Debian's python re-implementation
    from lab.rootfs import SYSTEMCTL_REAL

    assert lab.run("cp-1", ["head", "-1", "/usr/bin/systemctl"]).stdout == b"#!/bin/bash\n"
    assert lab.run("cp-1", ["head", "-1", SYSTEMCTL_REAL]).stdout == b"#! /usr/bin/python3\n"
    assert Path("/usr/bin/systemctl").resolve().read_bytes()[:2] != b"#!"  # the machine keeps its systemd


@needs_lab
def test_snapshot_sees_a_file_written_over_ssh(lab: Lab, tmp_path: Path) -> None:
    kh = known_hosts(lab, tmp_path / "kh")
    before = lab.snapshot("worker-1")
    done = lab.deployer(ssh_argv(lab, kh, "root@203.0.113.21", "cat > /etc/lab-marker"), input=b"x\n", timeout=30)
    assert done.returncode == 0, done.stderr
    after = lab.snapshot("worker-1")
    assert set(after) - set(before) == {"etc/lab-marker"}
    assert after["etc/lab-marker"][1:] == (2, hashlib.sha256(b"x\n").hexdigest())
    # rewriting the same content is seen (mtime), and nothing else moved
    time.sleep(0.01)
    lab.deployer(ssh_argv(lab, kh, "root@203.0.113.21", "cat > /etc/lab-marker"), input=b"x\n", timeout=30)
    again = lab.snapshot("worker-1")
    assert [k for k in again if again[k] != after[k]] == ["etc/lab-marker"]
    # an undo leaves no trace: the copied-up /etc is no change, a new directory is
    lab.run("worker-1", ["sh", "-c", "rm /etc/lab-marker; mkdir -p /etc/lab-new/sub"])
    undone = lab.snapshot("worker-1")
    assert set(undone) - set(before) == {"etc/lab-new", "etc/lab-new/sub"}
    lab.run("worker-1", ["rm", "-r", "/etc/lab-new"])
    assert lab.snapshot("worker-1") == before
    # the container state dirs count too
    lab.run("worker-1", ["sh", "-c", "echo s > /var/lib/containerd/state"])
    assert "var/lib/containerd/state" in lab.snapshot("worker-1")


@needs_lab
def test_nft_in_a_host_drops_what_it_should(lab: Lab) -> None:
    ruleset = b"""table inet labtest {
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iif lo accept
    tcp dport 22 accept
    ip saddr 198.51.100.0/24 accept
  }
}
"""
    lab.run("cp-1", ["nft", "-f", "-"], input=ruleset)
    try:
        probes = [("worker-1", "198.51.100.11", 6443),   # dmz -> filtered host, closed port: dropped
                  ("worker-1", "198.51.100.11", 22),     # dmz -> filtered host, allowed port: open
                  ("worker-1", "198.51.100.21", 6443),   # dmz -> unfiltered host, closed port: RST = open
                  ("rancher-1", "198.51.100.11", 6443),  # inside -> filtered host, allowed source: RST = open
                  ("deployer", "198.51.100.11", 2379)]   # the deployer is inside too
        started = time.monotonic()
        results = probe_matrix(lab, probes)
        elapsed = time.monotonic() - started
        table = format_matrix(results, address_names(lab))
        print("\n" + table + f"({len(probes)} probes in {elapsed:.2f}s)")
        assert table.splitlines()[1].split() == ["worker-1", "cp-1", "(198.51.100.11)", "6443", "dropped"]
        assert [r[3] for r in results] == ["dropped", "open", "open", "open", "open"]
        assert elapsed < 2.5, "probes run concurrently, one timeout for the lot"
        assert tcp_probe(lab, "worker-1", "198.51.100.11", 10250, timeout=0.3) == "dropped"
    finally:
        lab.run("cp-1", ["nft", "delete", "table", "inet", "labtest"])
    assert tcp_probe(lab, "worker-1", "198.51.100.11", 6443) == "open"
    # an address no zone holds: the router answers with an ICMP error
    assert tcp_probe(lab, "worker-1", "192.0.2.1", 443) == "unreachable"


@needs_lab
def test_stop_and_start_sshd(lab: Lab, tmp_path: Path) -> None:
    kh = known_hosts(lab, tmp_path / "kh")
    pid = lab.hosts["rancher-1"].pid
    lab.stop_sshd("rancher-1")
    down = lab.deployer(ssh_argv(lab, kh, "root@198.51.100.21", "true"), timeout=30)
    assert down.returncode == 255 and b"Connection refused" in down.stderr
    assert lab.run("rancher-1", ["hostname"]).stdout == b"rancher-1\n" and lab.hosts["rancher-1"].pid == pid
    lab.start_sshd("rancher-1")
    back = lab.deployer(ssh_argv(lab, kh, "root@198.51.100.21", "hostname"), timeout=30)
    assert back.stdout == b"rancher-1\n", back.stderr


# --- teardown -------------------------------------------------------------------------------------------


def _root_veths() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True).stdout
    return {ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines()}


def _pids_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@needs_lab
def test_down_leaves_nothing(tmp_path: Path) -> None:
    veths_before = _root_veths()
    tables_before = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    specs = [SMALL[0], SMALL[2], SMALL[3]]
    lab = Lab(specs, ZONES, tmp_path / "lab")
    lab.up()
    host = lab.hosts["cp-1"]
    marker = f"{time.time() % 1000 + 7000:.3f}"
    inner = lab.spawn("cp-1", ["sleep", marker])
    assert lab.run("cp-1", ["cat", f"/proc/{inner}/cmdline"]).stdout == f"sleep\0{marker}\0".encode()
    lab.run("cp-1", ["mkdir", "-p", "/sys/fs/cgroup/memory/runtime/pod1", "/sys/fs/cgroup/unified/inner"])
    lab.run("cp-1", ["nft", "add", "table", "inet", "leftover"])
    lab.deployer(["sh", "-c", f"setsid sleep {marker}1 >/dev/null 2>&1 < /dev/null &"])
    deadline = time.monotonic() + 5  # the deployer's sleeper is started in the background: wait for its exec
    while len(sleepers := _pids_with(f"sleep\0{marker}")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sleepers) == 2, "a sleeper in the host and one in the deployer namespace"
    assert (host.cgroups[0].parent).is_dir()
    lab.down()
    print(f"\ndown: {lab.timings['down']:.2f}s")
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"cc{lab.id}-" not in netns
    assert str(lab.workdir) not in Path("/proc/self/mountinfo").read_text()
    for pid in [host.pid, *sleepers]:
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} survived"
    assert not [p for p in lab.cgroup_tops if p.exists()]
    assert not {v for v in _root_veths() - veths_before if re.fullmatch(r"h\d+|eth0|z\d+", v)}
    assert subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout == tables_before
    lab.down()  # idempotent


@needs_lab
def test_the_ha_stack_stands_up(tmp_path: Path) -> None:
    settings = settings_of("ha")
    specs = plan_hosts(settings)
    with Lab(specs, settings.zones, tmp_path / "ha", users=plan_users(settings)) as lab:
        servers = [h for h in lab.hosts.values() if h.kind != "deployer"]
        results = probe_matrix(lab, [("deployer", h.address, h.ssh_port) for h in servers])
        assert {r[3] for r in results} == {"open"}
        done = lab.deployer(["ssh", "-F", str(lab.ssh_config_path), "-J", "jump@198.51.100.4",
                             "root@203.0.113.25", "hostname"], timeout=30)
        assert done.stdout == b"worker-5\n", done.stderr
        up = lab.timings["up"]
    print(f"\nha lab: {len(specs)} hosts up in {up:.2f}s, down in {lab.timings['down']:.2f}s")
    assert up < 15


@needs_lab
def test_a_lab_whose_process_died_is_taken_down_by_the_next_up(tmp_path: Path) -> None:
    workdir = tmp_path / "lab"
    crash = ("import os, sys; from pathlib import Path; from lab.hosts import HostSpec, Lab\n"
             "lab = Lab([HostSpec('cp-1', '198.51.100.11', 'inside', 'inventory')], "
             "{'inside': '198.51.100.0/24'}, Path(sys.argv[1])); lab.up()\n"
             "print(lab.id, lab.hosts['cp-1'].pid, flush=True); os._exit(0)  # no down(), no atexit\n")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", crash, str(workdir)], capture_output=True, text=True,
                         cwd=root, timeout=60, env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    old_id, old_pid = out.stdout.split()
    assert f"cc{old_id}-cp-1" in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert Path(f"/proc/{old_pid}").exists()
    with Lab([SMALL[0], SMALL[3]], ZONES, workdir) as lab:
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"cc{old_id}-" not in netns and f"cc{lab.id}-cp-1" in netns
        assert not Path(f"/proc/{old_pid}").exists()
        assert not list(Path("/sys/fs/cgroup/pids").rglob(f"cclab-{old_id}"))
        assert lab.run("cp-1", ["hostname"]).stdout == b"cp-1\n"
    assert not (workdir / "lab-state.json").exists()


# --- a container runtime inside a host ------------------------------------------------------------------


def _cached_deb(package: str) -> Path:
    """A Debian package in the lab's cache (apt-get download; never installed on the machine)."""
    cache = Path(os.environ.get("CONTAINER_CLOUD_LAB_CACHE", "/var/cache/container-cloud-lab"))
    found = sorted(cache.glob(f"{package}_*.deb"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        got = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True)
        found = sorted(cache.glob(f"{package}_*.deb"))
        if not found:
            pytest.skip(f"apt-get download {package} failed: {got.stderr.strip()[-300:]}")
    return found[-1]


def _busybox_oci_image(busybox: bytes, name: str) -> bytes:
    """An OCI image layout tar holding one layer: a static busybox (for `ctr images import`)."""

    def digest(b: bytes) -> str:
        return "sha256:" + hashlib.sha256(b).hexdigest()

    def tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as t:
            for info, data in entries:
                t.addfile(info, io.BytesIO(data) if data is not None else None)
        return out.getvalue()

    def entry(path: str, data: bytes | None = None, link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
        info = tarfile.TarInfo(path)
        info.mode = 0o755
        if link:
            info.type, info.linkname = tarfile.SYMTYPE, link
        elif data is None:
            info.type = tarfile.DIRTYPE
        else:
            info.size = len(data)
        return info, data

    layer_tar = tar([entry(d) for d in ("bin", "proc", "sys", "dev", "tmp", "etc")]
                    + [entry("bin/busybox", busybox)] + [entry(f"bin/{n}", link="busybox") for n in ("sh", "cat")])
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(layer),
                    "size": len(layer)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest),
        "size": len(manifest), "annotations": {"io.containerd.image.name": name,
                                               "org.opencontainers.image.ref.name": name}}]}).encode()
    blobs = [(f"blobs/sha256/{digest(b)[7:]}", b) for b in (config, manifest, layer)]
    files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index), *blobs]
    return tar([entry(p, d) for p, d in files])


@needs_lab
def test_containerd_runs_a_container_inside_a_host(tmp_path: Path) -> None:
    """Debian's containerd 1.6 + runc, dpkg -i'd inside one host (never on the machine), import a local
    image and run it: the host's cgroup mounts, /dev, /proc and state bind mounts are what a runtime needs;
    its cgroups land in the host's subtree and go with the host."""
    debs = [_cached_deb(p) for p in ("runc", "containerd", "busybox-static")]
    busybox = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(debs[2])], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(busybox)) as t:
        member = t.extractfile("./bin/busybox")
        assert member is not None
        image = _busybox_oci_image(member.read(), "docker.io/library/labtest:1")
    machine_had = Path("/usr/bin/containerd").exists()
    lab = Lab([SMALL[0], SMALL[3]], ZONES, tmp_path / "lab")
    with lab:
        for deb in debs[:2]:
            lab.run("cp-1", ["sh", "-c", "cat > /tmp/p.deb && dpkg -i /tmp/p.deb"], input=deb.read_bytes(),
                    timeout=180)
        assert lab.run("cp-1", ["sh", "-c", "command -v containerd"]).stdout == b"/usr/bin/containerd\n"
        assert Path("/usr/bin/containerd").exists() == machine_had, "dpkg -i in a host changed the machine"
        lab.run("cp-1", ["sh", "-c", "setsid containerd >/var/log/containerd.log 2>&1 </dev/null &"])
        for _ in range(100):
            if lab.run("cp-1", ["ctr", "version"], check=False).returncode == 0:
                break
            time.sleep(0.1)
        lab.run("cp-1", ["ctr", "images", "import", "-"], input=image, timeout=60)
        done = lab.run("cp-1", ["ctr", "run", "--rm", "docker.io/library/labtest:1", "t1", "/bin/sh", "-c",
                                "echo hello; cat /proc/self/cgroup"], timeout=60)
        out = done.stdout.decode().splitlines()
        assert out[0] == "hello" and "4:memory:/default/t1" in out
        memory = next(c for c in lab.hosts["cp-1"].cgroups if "/memory/" in str(c))
        assert (memory / "default").is_dir()  # containerd's cgroup, inside the host's subtree
        assert (lab.hosts["cp-1"].dir / "state/containerd/io.containerd.content.v1.content").is_dir()
    assert not [p for p in lab.cgroup_tops if p.exists()]
