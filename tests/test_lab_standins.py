"""The host lab's stand-ins and mirror, run locally against what the program renders for the dev stack.

Each stand-in executable (as the mirror ships it) starts with the program's real flags and files (written into
a temporary root, paths adapted) and answers its health endpoint over TLS with the real certificate; it refuses
a made-up flag, a removed flag, a private key with mode 0644 and a config file with an unknown field. The
apiserver stand-in talks to a real etcd over mTLS and is not ready without it. The mirror's archives hold
exactly the members the rendered fetch scripts extract, and the lab digests the program pins (in-process,
through lab_checksums) are the files' digests."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest
import yaml

from components import artifacts
from components.config import parse_settings
from lab import mirror, standins
from offline.engine.runner import ProgramRun, load_stack_config, run_program
from tests.k8s_support import k8s_steps, unit_exec

VERSION = "1.35.4"
PREFIXES = ("/etc/kubernetes", "/var/lib/kubelet", "/var/lib/kube-proxy", "/var/log/kubernetes", "/etc/etcd")
pytestmark = pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs /usr/bin/python3")


def _settings():
    cfg = load_stack_config("dev")
    return parse_settings({k.split(":", 1)[1]: v for k, v in cfg.values.items()})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Host:
    """One host's rendered files under a temporary root, paths inside adapted to the root."""

    def __init__(self, run: ProgramRun, name: str, root: Path):
        self.name, self.root = name, root
        self.files: dict[str, str] = {}
        self.modes: dict[str, str] = {}
        for step in k8s_steps(run):
            if step.host == name:
                self.files.update(step.files)
                self.modes.update(step.modes)
        for path, content in self.files.items():
            self.write(path, self.adapt(content))

    def adapt(self, text: str) -> str:
        for prefix in PREFIXES:
            text = text.replace(prefix + "/", f"{self.root}{prefix}/")
        return text

    def path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def write(self, path: str, content: str, mode: Optional[str] = None) -> None:
        target = self.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(int(mode or self.modes.get(path, "0644"), 8))

    def flags(self, unit: str) -> dict[str, str]:
        _, flags = unit_exec(self.files[f"/etc/systemd/system/{unit}"])
        return {k: self.adapt(v) for k, v in flags.items()}

    def kubeconfig_identity(self, path: str, out: Path) -> tuple[Path, Path]:
        """The client certificate and key embedded in a rendered kubeconfig, as files."""
        user = yaml.safe_load(self.files[path])["users"][0]["user"]
        cert, key = out / f"{Path(path).stem}.crt", out / f"{Path(path).stem}.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        key.chmod(0o600)
        return cert, key


@pytest.fixture(scope="module")
def bindir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in executables exactly as the mirror ships them."""
    d = tmp_path_factory.mktemp("bin")
    for name in standins.NAMES:
        (d / name).write_bytes(standins.build(name, VERSION))
        (d / name).chmod(0o755)
    return d


@pytest.fixture()
def master(dev: ProgramRun, tmp_path: Path) -> Host:
    return Host(dev, "master-1", tmp_path / "master-1")


@pytest.fixture()
def worker(dev: ProgramRun, tmp_path: Path) -> Host:
    return Host(dev, "worker-1", tmp_path / "worker-1")


def argv(binary: Path, flags: dict[str, str]) -> list[str]:
    return [str(binary)] + [f"--{k}={v}" for k, v in flags.items()]


class Proc:
    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None):
        self.log = log
        self.out = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT, env=env)

    def alive(self) -> None:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.out.close()


@pytest.fixture()
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.stop()


def refused(binary: Path, flags: dict[str, str]) -> str:
    r = subprocess.run(argv(binary, flags), capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    return r.stderr


def get(url: str, ctx: Optional[ssl.SSLContext] = None, timeout: float = 3) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_for(check, proc: Proc, seconds: float = 20):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    last: object = None
    while time.monotonic() < deadline:
        proc.alive()
        try:
            last = check()
            if last:
                return last
        except (OSError, ssl.SSLError) as err:
            last = err
        time.sleep(0.3)
    raise AssertionError(f"not ready: {last}\n{proc.log.read_text()[-3000:]}")


def client_ctx(ca: Path, cert: Optional[Path] = None, key: Optional[Path] = None,
               hostname: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = hostname
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


# --- etcd, for real (Debian etcd 3.4 with the program's certificates and flags) ----------------------------

def start_etcd(master: Host, procs: list[Proc]) -> tuple[str, Proc]:
    _, flags = unit_exec(master.files["/etc/systemd/system/etcd.service"])
    address = next(h.address for h in _settings().hosts if h.name == master.name)
    client, peer, metrics = _free_port(), _free_port(), _free_port()
    adapted = {}
    for key, value in flags.items():
        value = master.adapt(value).replace(f"{master.root}/var/lib/etcd", str(master.root / "etcd-data"))
        value = value.replace("/var/lib/etcd", str(master.root / "etcd-data"))
        value = value.replace(f"{address}:2379", f"127.0.0.1:{client}").replace(":2379", f":{client}")
        value = value.replace(f"{address}:2380", f"127.0.0.1:{peer}").replace(":2381", f":{metrics}")
        adapted[key] = value
    adapted["listen-client-urls"] = f"https://127.0.0.1:{client}"
    proc = Proc(argv(Path(shutil.which("etcd") or "etcd"), adapted), master.root / "etcd.log")
    procs.append(proc)
    return f"https://127.0.0.1:{client}", proc


# --- kube-apiserver -------------------------------------------------------------------------------------

@pytest.mark.skipif(not shutil.which("etcd"), reason="etcd not installed")
def test_apiserver_serves_tls_with_its_cert_refuses_anonymous_and_is_ready_only_with_etcd(master, bindir, procs):
    port, etcd_port = _free_port(), _free_port()
    flags = master.flags("kube-apiserver.service")
    flags.update({"secure-port": str(port), "etcd-servers": f"https://127.0.0.1:{etcd_port}"})
    master.path("/var/log/kubernetes/audit").mkdir(parents=True)
    api = Proc(argv(bindir / "kube-apiserver", flags), master.root / "apiserver.log")
    procs.append(api)
    ca = master.path("/etc/kubernetes/pki/ca.crt")
    admin_cert, admin_key = master.kubeconfig_identity("/etc/kubernetes/admin.conf", master.root)
    admin = client_ctx(ca, admin_cert, admin_key)
    base = f"https://127.0.0.1:{port}"
    # up, with the real serving certificate (verified against the cluster CA, name 127.0.0.1), live, not ready
    assert wait_for(lambda: get(f"{base}/livez", admin)[0] == 200, api)
    code, body = get(f"{base}/readyz", admin)
    assert code == 500 and "etcd failed" in body
    # no client certificate: 401 (--anonymous-auth=false)
    assert get(f"{base}/readyz", client_ctx(ca))[0] == 401
    # a client certificate from another CA does not even complete the handshake
    with pytest.raises((ssl.SSLError, OSError)):
        other = master.root / "other"
        other.mkdir()
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(other / "k"),
                        "-out", str(other / "c"), "-subj", "/CN=kubernetes-admin", "-days", "1"],
                       check=True, capture_output=True)
        get(f"{base}/readyz", client_ctx(ca, other / "c", other / "k"))
    # the real etcd with the program's certs: the apiserver reaches it over mTLS and turns ready
    etcd_flags_url, etcd = start_etcd(master, procs)
    api.stop()
    procs.remove(api)
    flags["etcd-servers"] = etcd_flags_url
    api = Proc(argv(bindir / "kube-apiserver", flags), master.root / "apiserver2.log")
    procs.append(api)
    assert wait_for(lambda: get(f"{base}/readyz", admin) == (200, "ok"), api, 40)
    # what the program's ready step runs: kubectl with the admin kubeconfig, get --raw=/readyz
    r = subprocess.run(["kubectl", f"--kubeconfig={master.path('/etc/kubernetes/admin.conf')}",
                        f"--server={base}", "--request-timeout=5s", "get", "--raw=/readyz"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    # etcd gone: not ready any more, still live
    etcd.stop()
    procs.remove(etcd)
    assert wait_for(lambda: get(f"{base}/readyz", admin)[0] == 500, api, 30)
    assert get(f"{base}/livez", admin) == (200, "ok")


def test_apiserver_refuses_made_up_and_removed_flags_and_bad_values(master, bindir):
    flags = master.flags("kube-apiserver.service")
    err = refused(bindir / "kube-apiserver", {**flags, "made-up-flag": "1"})
    assert "unknown flag: --made-up-flag" in err
    err = refused(bindir / "kube-apiserver", {**flags, "insecure-port": "8080"})
    assert "unknown flag: --insecure-port" in err
    err = refused(bindir / "kube-apiserver", {**flags, "anonymous-auth": "maybe"})
    assert 'invalid argument "maybe" for "--anonymous-auth"' in err


def test_apiserver_refuses_a_private_key_readable_by_others_and_a_missing_file(master, bindir):
    flags = master.flags("kube-apiserver.service")
    master.path("/var/log/kubernetes/audit").mkdir(parents=True)
    master.path("/etc/kubernetes/pki/apiserver.key").chmod(0o644)
    err = refused(bindir / "kube-apiserver", flags)
    assert "apiserver.key has mode 0644" in err and "--tls-private-key-file" in err
    master.path("/etc/kubernetes/pki/apiserver.key").chmod(0o600)
    master.path("/etc/kubernetes/pki/etcd-ca.crt").unlink()
    err = refused(bindir / "kube-apiserver", flags)
    assert "--etcd-cafile" in err and "no such file" in err


def test_apiserver_refuses_unknown_fields_in_encryption_and_audit_config(master, bindir):
    flags = master.flags("kube-apiserver.service")
    master.path("/var/log/kubernetes/audit").mkdir(parents=True)
    enc = yaml.safe_load(master.path("/etc/kubernetes/encryption-config.yaml").read_text())
    enc["resources"][0]["providers"][0]["secretbox"]["keyz"] = []
    master.write("/etc/kubernetes/encryption-config.yaml", yaml.safe_dump(enc))
    policy = master.path("/etc/kubernetes/audit-policy.yaml").read_text() + "rulez: []\n"
    master.write("/etc/kubernetes/audit-policy.yaml", policy)
    err = refused(bindir / "kube-apiserver", flags)
    assert 'resources[0].providers[0].secretbox: unknown field "keyz"' in err
    assert 'audit-policy.yaml: unknown field "rulez"' in err


# --- controller-manager and scheduler -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["kube-controller-manager", "kube-scheduler"])
def test_controllers_start_with_rendered_flags_and_answer_healthz_over_tls(master, bindir, procs, name):
    port = _free_port()
    flags = {**master.flags(f"{name}.service"), "secure-port": str(port)}
    p = Proc(argv(bindir / name, flags), master.root / f"{name}.log")
    procs.append(p)
    insecure = ssl._create_unverified_context()  # what the program's step does: curl -k
    assert wait_for(lambda: get(f"https://127.0.0.1:{port}/healthz", insecure) == (200, "ok"), p)
    with pytest.raises(OSError):  # TLS only
        get(f"http://127.0.0.1:{port}/healthz")


def test_scheduler_refuses_a_kubeconfig_readable_by_others(master, bindir):
    master.path("/etc/kubernetes/scheduler.conf").chmod(0o640)
    err = refused(bindir / "kube-scheduler", master.flags("kube-scheduler.service"))
    assert "scheduler.conf has mode 0640" in err


# --- kubelet and kube-proxy -----------------------------------------------------------------------------

def _kubelet_config(worker: Host, **changes: object) -> dict[str, object]:
    cfg = yaml.safe_load(worker.path("/var/lib/kubelet/config.yaml").read_text())
    cfg.update(changes)
    worker.write("/var/lib/kubelet/config.yaml", yaml.safe_dump(cfg))
    return cfg


def test_kubelet_starts_with_rendered_config_and_serves_healthz_and_tls(dev, worker, master, bindir, procs):
    runtime = socket.socket(socket.AF_UNIX)
    sock = worker.root / "containerd.sock"
    runtime.bind(str(sock))
    runtime.listen(8)
    healthz, port = _free_port(), _free_port()
    _kubelet_config(worker, containerRuntimeEndpoint=f"unix://{sock}", healthzPort=healthz, port=port,
                    address="127.0.0.1")
    p = Proc(argv(bindir / "kubelet", worker.flags("kubelet.service")), worker.root / "kubelet.log")
    procs.append(p)
    try:
        # what the program's kubelet step checks: http on localhost
        assert wait_for(lambda: get(f"http://127.0.0.1:{healthz}/healthz") == (200, "ok"), p)
        ca = worker.path("/etc/kubernetes/pki/ca.crt")
        cert = master.path("/etc/kubernetes/pki/apiserver-kubelet-client.crt")
        key = master.path("/etc/kubernetes/pki/apiserver-kubelet-client.key")
        # 10250: the kubelet's serving certificate (cluster CA), the apiserver's kubelet client certificate
        assert get(f"https://127.0.0.1:{port}/healthz", client_ctx(ca, cert, key, hostname=False)) == (200, "ok")
        assert get(f"https://127.0.0.1:{port}/healthz", client_ctx(ca, hostname=False))[0] == 401
    finally:
        runtime.close()


def test_kubelet_refuses_an_unknown_config_field_and_an_unknown_flag(worker, bindir):
    _kubelet_config(worker, cgroupDriverz="systemd")
    err = refused(bindir / "kubelet", worker.flags("kubelet.service"))
    assert 'config.yaml: unknown field "cgroupDriverz"' in err
    err = refused(bindir / "kubelet", {**worker.flags("kubelet.service"), "network-plugin": "cni"})
    assert "unknown flag: --network-plugin" in err


def test_kube_proxy_starts_with_rendered_config_and_answers_healthz(worker, bindir, procs):
    cfg = yaml.safe_load(worker.path("/var/lib/kube-proxy/config.yaml").read_text())
    healthz, metrics = _free_port(), _free_port()
    cfg.update(healthzBindAddress=f"127.0.0.1:{healthz}", metricsBindAddress=f"127.0.0.1:{metrics}")
    worker.write("/var/lib/kube-proxy/config.yaml", yaml.safe_dump(cfg))
    # iptables mode needs a working iptables (tests/test_lab_proofs.py: without one it refuses): one that
    # answers as `iptables -t nat -S POSTROUTING` does, since this machine may have none
    fake = worker.root / "fake-bin"
    fake.mkdir()
    (fake / "iptables").write_text("#!/bin/sh\necho '-P POSTROUTING ACCEPT'\n")
    (fake / "iptables").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ.get('PATH', '')}")
    p = Proc(argv(bindir / "kube-proxy", worker.flags("kube-proxy.service")), worker.root / "proxy.log", env)
    procs.append(p)
    assert wait_for(lambda: get(f"http://127.0.0.1:{healthz}/healthz") == (200, "ok"), p)
    assert get(f"http://127.0.0.1:{metrics}/metrics")[0] == 200


def test_kube_proxy_without_iptables_refuses_with_upstreams_message(worker, bindir):
    """The shipped stand-in with the program's files and no iptables on PATH (issue 12.3's negative side)."""
    r = subprocess.run([sys.executable, *argv(bindir / "kube-proxy", worker.flags("kube-proxy.service"))],
                       capture_output=True, text=True, timeout=30, env={"PATH": str(worker.root / "no-bin")})
    assert (r.returncode, r.stderr.strip()) == (1, "kube-proxy: error: iptables is not available on this host")


def test_kube_proxy_refuses_a_config_of_another_kind(worker, bindir):
    worker.write("/var/lib/kube-proxy/config.yaml",
                 "apiVersion: kubeproxy.config.k8s.io/v1beta9\nkind: KubeProxyConfiguration\n")
    err = refused(bindir / "kube-proxy", worker.flags("kube-proxy.service"))
    assert "expected kubeproxy.config.k8s.io/v1alpha1/KubeProxyConfiguration" in err


# --- the mirror -----------------------------------------------------------------------------------------

FETCH = re.compile(r"^fetch_artifact (\S+) (sha256|sha512) ([0-9a-f]+) (\S+)$", re.M)
EXTRACT = re.compile(r'^tar -xzf "\$artifacts"/(\S+) -C "\$unpacked" (.+)$', re.M)


@pytest.fixture(scope="module")
def built() -> mirror.MirrorBuild:
    return mirror.build_mirror(_settings())


@pytest.fixture(scope="module")
def lab_run(built: mirror.MirrorBuild) -> ProgramRun:
    with mirror.lab_checksums(built.checksums):
        run = run_program("dev", {"artifactsMirrorUrl": "http://mirror.lab.internal:8080/"})
    assert run.error is None, run.error
    return run


def _scripts(run: ProgramRun) -> list[str]:
    return [s.command["create"] for s in k8s_steps(run)]


def test_mirror_archives_hold_exactly_what_the_fetch_scripts_extract(built, lab_run):
    extracted: dict[str, set[str]] = {}
    for script in _scripts(lab_run):
        for file, members in EXTRACT.findall(script):
            extracted.setdefault(file, set()).update(m.strip("'") for m in members.split())
    assert extracted, "no fetch script extracts anything"
    by_file = {p.name: p for p in built.root.rglob("*") if p.is_file()}
    for file, members in extracted.items():
        with tarfile.open(by_file[file]) as tar:
            files = {m.name for m in tar.getmembers() if m.isfile()}
            assert files == members, file
            for m in tar.getmembers():
                if m.isfile():
                    assert m.mode & 0o111, m.name
    kinds = {}
    with tarfile.open(by_file["kubernetes-server-linux-amd64.tar.gz"]) as tar:
        for name in ("kube-apiserver", "kubectl"):
            f = tar.extractfile(f"kubernetes/server/bin/{name}")
            assert f is not None
            kinds[name] = f.read(4)
    assert kinds["kube-apiserver"] == b"#!/u" and kinds["kubectl"] == b"\x7fELF"


def test_the_program_pins_the_lab_digests_in_process_and_they_match_the_files(built, lab_run):
    pinned = {}
    for script in _scripts(lab_run):
        for _file, algorithm, digest, source in FETCH.findall(script):
            assert algorithm == "sha256" and source.startswith("http://mirror.lab.internal:8080/")
            pinned[source.split(":8080/", 1)[1].strip("'")] = digest
    assert pinned
    for url_path, digest in pinned.items():
        assert hashlib.sha256((built.root / url_path).read_bytes()).hexdigest() == digest, url_path
    # the shipped checksums file is back in place and untouched
    assert artifacts.CHECKSUMS_FILE.name == "artifacts_checksums.yaml"
    assert artifacts.checksum("etcd", "3.6.14", "etcd-v3.6.14-linux-amd64.tar.gz").startswith("sha256:ffe840ff")


def test_staged_files_have_sha256sums_and_the_manifest_names_debian_versions(built):
    for rel in ("docker/28.5.1/docker-28.5.1.tgz", "docker-compose/v2.40.0/docker-compose-linux-x86_64"):
        path = built.root / rel
        sums = (path.parent / "SHA256SUMS").read_text()
        assert sums == f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n"
    with tarfile.open(built.root / "docker/28.5.1/docker-28.5.1.tgz") as tar:
        assert {"docker/dockerd", "docker/docker", "docker/containerd", "docker/runc"} <= set(tar.getnames())
    etcd = built.manifest["etcd/3.6.14/etcd-v3.6.14-linux-amd64.tar.gz"]["members"]
    assert isinstance(etcd, dict) and "Debian etcd-server 3.4.23" in etcd["etcd-v3.6.14-linux-amd64/etcd"]
    assert os.access(built.root / "runc/1.3.6/runc.amd64", os.R_OK)


# --- the lab registry (Debian docker-registry, distribution 2.8) -----------------------------------------

def test_lab_registry_serves_tls_with_the_programs_cert_and_takes_a_locally_built_image(dev, tmp_path, procs):
    from lab import registry
    from offline.hosts import collect

    s = _settings()
    placed = {f.path: f.content for f in collect(dev)[0] if f.host == "harbor-1" and f.content}
    cert, key = placed["/etc/containercloud/registry/tls.crt"], placed["/etc/containercloud/registry/tls.key"]
    ca = placed["/etc/containercloud/registry/ca.crt"]
    conf_dir, data = tmp_path / "conf", tmp_path / "data"
    conf_dir.mkdir()
    port = _free_port()
    files = registry.registry_files(cert, key, "127.0.0.1", port)
    assert files[registry.CONFIG_DIR + "/tls.key"][1] == 0o600
    (conf_dir / "tls.crt").write_text(cert)
    (conf_dir / "tls.key").write_text(key)
    (conf_dir / "tls.key").chmod(0o600)
    (conf_dir / "config.yml").write_text(registry.config_yml("127.0.0.1", port, str(conf_dir), str(data)))
    binary = registry.registry_binary()
    p = Proc(registry.start_command(str(binary), str(conf_dir / "config.yml")), tmp_path / "registry.log")
    procs.append(p)
    trusted = client_ctx_pem(ca)
    wait_for(lambda: _registry_up(s.registry_hostname, port, trusted), p)
    digest = registry.push_test_image(s.registry_hostname, "127.0.0.1", ca, "system/lab-busybox", "1", port=port)
    status, served, manifest = registry.manifest_digest(s.registry_hostname, "127.0.0.1", ca, "system/lab-busybox",
                                                        "1", port=port)
    assert status == 200 and served == digest and manifest["mediaType"] == registry.OCI_MANIFEST
    # a client trusting another CA refuses the registry's certificate
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(other / "k"),
                    "-out", str(other / "c"), "-subj", "/CN=other", "-days", "1"], check=True, capture_output=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        registry.push_test_image(s.registry_hostname, "127.0.0.1", (other / "c").read_text(), port=port)


def client_ctx_pem(ca_pem: str) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_pem)


def _registry_up(hostname: str, port: int, ctx: ssl.SSLContext) -> bool:
    with socket.create_connection(("127.0.0.1", port), 3) as sock, ctx.wrap_socket(sock, server_hostname=hostname):
        return True
