"""ControlPlane under the harness (dev and ha stacks): services per role, flags from the rendered units,
secrets never on a command, the admin kubeconfig, shellcheck and systemd-analyze on everything rendered,
and a real etcd started with the rendered flags and the harness-generated certificates."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from components.config import parse_settings
from components.control_plane import etcd_remove_script
from offline.engine.runner import ProgramRun, load_stack_config, run_program
from tests.k8s_support import (
    COMMAND,
    command_graph,
    files_by_host,
    inner_script,
    k8s_steps,
    reaches,
    secret_strings,
    short,
    step,
    step_of,
    unit_exec,
)

NODE_UNITS = {"containerd.service", "kubelet.service", "kube-proxy.service"}
# Control-plane hosts are Kubernetes nodes too (tainted NoSchedule): the API server must reach pods.
ROLE_UNITS = {
    "etcd": {"etcd.service"},
    "control-plane": {"kube-apiserver.service", "kube-controller-manager.service", "kube-scheduler.service"}
    | NODE_UNITS,
    "worker": NODE_UNITS,
}
K8S_UNITS = set().union(*ROLE_UNITS.values())


def _settings(stack: str):
    cfg = load_stack_config(stack)
    raw = {k.split(":", 1)[1]: v for k, v in cfg.values.items()}
    return parse_settings(raw)


@pytest.fixture(scope="module", params=["dev", "ha"])
def stack(request) -> tuple[ProgramRun, object]:
    run = run_program(request.param)
    assert run.error is None, run.error
    return run, _settings(request.param)


def test_each_host_gets_exactly_the_services_of_its_roles(stack):
    run, s = stack
    files = files_by_host(run)
    for host in s.hosts:
        units = {Path(p).name for p in files.get(host.name, {}) if p.startswith("/etc/systemd/system/")}
        expected = set().union(*(ROLE_UNITS.get(r, set()) for r in host.roles))
        assert units & K8S_UNITS == expected, host.name


def test_no_secret_in_any_command_text_or_environment(stack):
    run, _ = stack
    secrets = secret_strings(run)
    assert any("PRIVATE KEY" in v for v in secrets) and len(secrets) > 20
    commands = run.of_type(COMMAND)
    assert commands
    for cmd in commands:
        inputs = cmd.plain_inputs
        texts = [inputs.get("create") or "", inputs.get("update") or "", inputs.get("delete") or "",
                 json.dumps(inputs.get("environment") or {})]
        for text in texts:
            assert "PRIVATE KEY" not in text, cmd.name
            for secret in secrets:
                assert secret not in text, cmd.name
        step = step_of(cmd)
        if step is not None and any(f["secret"] for f in step["files"]):
            assert cmd.input_is_secret("stdin"), cmd.name
        if inputs.get("stdin") and not cmd.input_is_secret("stdin"):  # only files made from outputs
            assert step is not None, cmd.name
            for f in step["files"]:
                assert not f["secret"] and "PRIVATE KEY" not in f["content"], (cmd.name, f["path"])
                assert not [x for x in secrets if x in f["content"]], (cmd.name, f["path"])
        assert cmd.input_is_secret("connection"), cmd.name


def test_secret_files_travel_on_stdin_as_0600(stack):
    run, _ = stack
    for st in k8s_steps(run):
        for path in st.files:
            if path.startswith(("/etc/kubernetes/", "/etc/etcd/")) and path.endswith((".key", ".conf")):
                assert path in st.secret_paths and st.modes[path] == "0600", (st.name, path)
        for path in st.secret_paths:  # its content from the stdin's line for it, never in the command text
            assert re.search(rf"^{re.escape(path)} ", st.command["stdin"], re.MULTILINE), (st.name, path)
            assert st.files[path] and st.files[path] not in st.command["create"], (st.name, path)


def test_admin_kubeconfig_is_accepted_by_kubectl(stack, tmp_path):
    run, s = stack
    assert "adminKubeconfig" in run.secret_outputs
    path = tmp_path / "admin.conf"
    path.write_text(run.outputs["adminKubeconfig"])
    view = subprocess.run(["kubectl", "config", "view", "--raw", "-o", "json", "--kubeconfig", str(path)],
                          capture_output=True, text=True, check=True)
    doc = json.loads(view.stdout)
    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"] == f"https://{s.api_host}:6443"
    if s.api_load_balancer_name:
        assert s.api_host == "api.k8s.corp.example"
    else:
        assert s.api_host == s.control_plane_hosts[0].address
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    assert ca == run.outputs["kubernetesCaCertificate"]
    assert doc["current-context"] == doc["contexts"][0]["name"]
    cert = base64.b64decode(doc["users"][0]["user"]["client-certificate-data"])
    subject = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=cert, capture_output=True,
                             check=True).stdout.decode()
    assert "kubernetes-admin" in subject and "system:masters" in subject


def test_apiserver_flags_from_the_rendered_unit(stack):
    run, s = stack
    files = files_by_host(run)
    component = run.of_type("containercloud:k8s:ControlPlane")[0].plain_inputs
    for i, host in enumerate(s.control_plane_hosts):
        unit = files[host.name]["/etc/systemd/system/kube-apiserver.service"]
        binary, flags = unit_exec(unit)
        assert binary == "/usr/local/bin/kube-apiserver"
        assert flags["anonymous-auth"] == "false"
        assert flags["authorization-mode"] == "Node,RBAC"
        assert "NodeRestriction" in flags["enable-admission-plugins"].split(",")
        assert flags["profiling"] == "false"
        assert flags["service-node-port-range"] == "30000-32767"
        assert flags["service-cluster-ip-range"] == s.service_cidr
        assert flags["advertise-address"] == host.address
        assert flags["etcd-servers"] == ",".join(f"https://{h.address}:2379" for h in s.etcd_hosts)
        assert flags["service-account-issuer"] == f"https://kubernetes.default.svc.{s.cluster_domain}"
        assert flags["requestheader-allowed-names"] == "front-proxy-client"
        for gone in ("insecure-port", "insecure-bind-address", "basic-auth-file", "token-auth-file"):
            assert gone not in flags
        # every file a flag names is delivered to this host by the program
        for key, value in flags.items():
            if key.endswith(("-file", "-cafile", "-certfile", "-keyfile", "-certificate-authority",
                             "-client-certificate", "-client-key")):
                assert value in files[host.name], (host.name, key, value)
        audit = yaml.safe_load(files[host.name][flags["audit-policy-file"]])
        assert audit["kind"] == "Policy" and audit["rules"]
        assert flags["audit-log-path"].startswith("/var/log/kubernetes/")
        if i == 0:
            assert component["apiserverFlags"] == flags
    assert component["hosts"] == [h.name for h in s.control_plane_hosts]
    assert component["etcdHosts"] == [h.name for h in s.etcd_hosts]
    assert component["nodePortRange"] == "30000-32767"


def test_controller_manager_and_scheduler_bind_localhost_with_their_own_kubeconfigs(stack):
    run, s = stack
    files = files_by_host(run)
    host = s.control_plane_hosts[0].name
    cm_bin, cm = unit_exec(files[host]["/etc/systemd/system/kube-controller-manager.service"])
    _, sched = unit_exec(files[host]["/etc/systemd/system/kube-scheduler.service"])
    assert cm["bind-address"] == sched["bind-address"] == "127.0.0.1"
    assert cm["profiling"] == "false"
    assert cm["cluster-cidr"] == s.pod_cidr and cm["allocate-node-cidrs"] == "true"
    sched_cfg = yaml.safe_load(files[host][sched["config"]])
    assert sched_cfg["enableProfiling"] is False
    for conf, user in ((cm["kubeconfig"], "system:kube-controller-manager"),
                       (sched_cfg["clientConnection"]["kubeconfig"], "system:kube-scheduler")):
        doc = yaml.safe_load(files[host][conf])
        assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
        cert = base64.b64decode(doc["users"][0]["user"]["client-certificate-data"])
        subject = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=cert, capture_output=True,
                                 check=True).stdout.decode()
        assert f"CN = {user}" in subject


def test_etcd_flags_from_the_rendered_unit(stack):
    run, s = stack
    files = files_by_host(run)
    for host in s.etcd_hosts:
        _, flags = unit_exec(files[host.name]["/etc/systemd/system/etcd.service"])
        assert flags["client-cert-auth"] == "true" and flags["peer-client-cert-auth"] == "true"
        assert flags["auto-tls"] == "false" and flags["peer-auto-tls"] == "false"
        # membership is decided at step time (tests/test_day_two_etcd_join.py): a fresh cluster gets the
        # inventory's members, state new, through the unit's EnvironmentFile
        assert "initial-cluster" not in flags and "initial-cluster-state" not in flags
        assert "EnvironmentFile=-/etc/etcd/cluster.env" in files[host.name]["/etc/systemd/system/etcd.service"]
        members = ",".join(f"{h.name}=https://{h.address}:2380" for h in s.etcd_hosts)
        assert f"cluster={members}" in step(run, f"{host.name}-etcd").command["create"]
        assert flags["data-dir"] == "/var/lib/etcd"
        assert all(u.startswith("https://") for u in flags["listen-client-urls"].split(","))
        for key in ("trusted-ca-file", "cert-file", "key-file", "peer-trusted-ca-file", "peer-cert-file",
                    "peer-key-file"):
            assert flags[key] in files[host.name]
        body = step(run, f"{host.name}-etcd").command["create"]
        assert "endpoint health" in body and "healthcheck-client.crt" in body


def test_order_certificates_etcd_apiserver_controllers_then_workers(stack):
    run, s = stack
    by_name = {st.name: st for st in k8s_steps(run)}
    urn = {n: st.command_urn for n, st in by_name.items()}
    etcd = {urn[f"{h.name}-etcd"] for h in s.etcd_hosts}
    for h in s.control_plane_hosts:
        api = by_name[f"{h.name}-kube-apiserver"]
        assert etcd <= set(api.dependencies)
        assert urn[f"{h.name}-kube-apiserver"] in by_name[f"{h.name}-controllers"].dependencies
        certs = [short(d) for d in api.dependencies if "tls:index/locallySignedCert:LocallySignedCert::" in d]
        assert any(c.startswith("kube-apiserver") for c in certs), certs  # its serving certificate first
    ready = by_name[f"{s.control_plane_hosts[0].name}-api-ready"]
    for h in s.control_plane_hosts:
        assert urn[f"{h.name}-controllers"] in ready.dependencies
    graph = command_graph(run)  # a node's steps wait for the API through their batch's drain step
    for w in s.worker_hosts:
        assert reaches(graph, urn[f"{w.name}-runtime"], ready.command_urn)
        assert reaches(graph, urn[f"{w.name}-kubelet"], ready.command_urn)


def test_every_rendered_script_passes_shellcheck(stack, tmp_path):
    run, _ = stack
    checked = 0
    for st in k8s_steps(run):
        for kind in ("create", "delete"):
            wrapper = tmp_path / f"{st.name}-{kind}.sh"
            inner = tmp_path / f"{st.name}-{kind}-inner.sh"
            wrapper.write_text(st.command[kind])
            inner.write_text(inner_script(st.command[kind]))
            for shell, path in (("sh", wrapper), ("bash", inner)):
                r = subprocess.run(["shellcheck", "-s", shell, str(path)], capture_output=True, text=True)
                assert r.returncode == 0, f"{path.name}:\n{r.stdout}"
                checked += 1
    assert checked >= 4 * 10


@pytest.mark.skipif(not shutil.which("unshare"), reason="unshare missing")
def test_every_unit_passes_systemd_analyze_verify(stack, tmp_path):
    """Units are verified unchanged; their ExecStart binaries exist as stubs on a private tmpfs mounted
    over /usr/local/bin (a mount namespace of this test only)."""
    run, _ = stack
    units: dict[str, str] = {}
    for host, files in files_by_host(run).items():
        for path, content in files.items():
            if path.startswith("/etc/systemd/system/") and Path(path).name in K8S_UNITS:
                units[f"{host}/{Path(path).name}"] = content
    binaries = set()
    for i, (key, content) in enumerate(sorted(units.items())):
        d = tmp_path / str(i)
        d.mkdir()
        (d / Path(key).name).write_text(content)
        binaries.add(unit_exec(content)[0])
    assert all(b.startswith("/usr/local/bin/") for b in binaries)
    stubs = " && ".join(f"printf '#!/bin/sh\\n' > {b} && chmod +x {b}" for b in sorted(binaries))
    paths = " ".join(str(p) for p in sorted(tmp_path.glob("*/*.service")))
    script = f"mount -t tmpfs tmpfs /usr/local/bin && {stubs} && systemd-analyze verify {paths}"
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), r.stdout + r.stderr
    assert len(units) >= 4


# --- etcd, for real ------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _other_ca_client(d: Path) -> tuple[Path, Path, Path]:
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "o-ca.key"), "-out",
        str(d / "o-ca.crt"), "-subj", "/CN=other-ca", "-days", "2")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "o.key"), "-out", str(d / "o.csr"),
        "-subj", "/CN=kube-etcd-healthcheck-client")
    ext = d / "ext.cnf"
    ext.write_text("extendedKeyUsage=clientAuth\n")
    ssl("x509", "-req", "-in", str(d / "o.csr"), "-CA", str(d / "o-ca.crt"), "-CAkey", str(d / "o-ca.key"),
        "-CAcreateserial", "-out", str(d / "o.crt"), "-days", "2", "-extfile", str(ext))
    return d / "o-ca.crt", d / "o.crt", d / "o.key"


@pytest.mark.skipif(not shutil.which("etcd") or not shutil.which("etcdctl"), reason="etcd not installed")
def test_real_etcd_with_rendered_flags_accepts_only_our_client_certs(dev):
    s = _settings("dev")
    host = s.etcd_hosts[0]
    files = files_by_host(dev)[host.name]
    _, flags = unit_exec(files["/etc/systemd/system/etcd.service"])
    work = Path(tempfile.mkdtemp(prefix="h1-etcd-"))
    pki = work / "pki"
    pki.mkdir()
    for path, content in files.items():
        if path.startswith("/etc/etcd/pki/"):
            target = pki / Path(path).name
            target.write_text(content)
            target.chmod(0o600)
    client, peer, metrics = _free_port(), _free_port(), _free_port()
    adapted = {}
    for key, value in flags.items():
        value = value.replace("/etc/etcd/pki", str(pki)).replace("/var/lib/etcd", str(work / "data"))
        value = value.replace(f"{host.address}:2379", f"127.0.0.1:{client}").replace(":2379", f":{client}")
        value = value.replace(f"{host.address}:2380", f"127.0.0.1:{peer}").replace(":2381", f":{metrics}")
        adapted[key] = value
    # the rendered listen-client-urls holds the host address and loopback: both map to one loopback URL
    adapted["listen-client-urls"] = f"https://127.0.0.1:{client}"
    adapted["initial-cluster"] = f"{host.name}=https://127.0.0.1:{peer}"  # what the join step writes, here
    args = ["etcd"] + [f"--{k}={v}" for k, v in adapted.items()]
    log = open(work / "etcd.log", "w")  # noqa: SIM115 - closed in finally, after the process
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def health(ca: Path, cert: Path, key: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["etcdctl", f"--endpoints=https://127.0.0.1:{client}", f"--cacert={ca}", f"--cert={cert}",
             f"--key={key}", "--command-timeout=3s", "--dial-timeout=3s", "endpoint", "health"],
            capture_output=True, text=True, timeout=20, env={**os.environ, "ETCDCTL_API": "3"})

    try:
        ok = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (work / "etcd.log").read_text()[-3000:]
            ok = health(pki / "ca.crt", pki / "healthcheck-client.crt", pki / "healthcheck-client.key")
            if ok.returncode == 0:
                break
            time.sleep(0.5)
        assert ok is not None and ok.returncode == 0, (ok.stderr if ok else "", (work / "etcd.log").read_text())
        assert "is healthy" in ok.stdout + ok.stderr
        other_ca, other_cert, other_key = _other_ca_client(work)
        bad = health(pki / "ca.crt", other_cert, other_key)
        assert bad.returncode != 0
        log_text = (work / "etcd.log").read_text()
        assert "failed to verify client certificate" in log_text and "unknown authority" in log_text
        # the server's certificate does not verify against a foreign CA either
        assert health(other_ca, other_cert, other_key).returncode != 0
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


# --- etcd member removal ---------------------------------------------------------------------------

FAKE_ETCDCTL = """#!/bin/bash
echo "$*" >> "$FAKE_LOG"
case "$*" in
  *"member list"*) printf '%s\\n' "1a, started, cp-1, https://198.51.100.11:2380, https://198.51.100.11:2379, false" \
     "2b, started, cp-2, https://198.51.100.12:2380, https://198.51.100.12:2379, false" \
     "3c, started, cp-3, https://198.51.100.13:2380, https://198.51.100.13:2379, false" ;;
  *"endpoint health"*) [[ " $HEALTHY " == *" ${1#--endpoints=} "* ]] ;;
  *) exit 0 ;;
esac
"""


def _run_remove(tmp_path: Path, healthy: str) -> tuple[subprocess.CompletedProcess[str], str]:
    s = _settings("ha")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "etcdctl").write_text(FAKE_ETCDCTL)
    (bin_dir / "systemctl").write_text("#!/bin/sh\necho systemctl \"$*\" >> \"$FAKE_LOG\"\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    pki = tmp_path / "pki"
    pki.mkdir(exist_ok=True)
    (pki / "healthcheck-client.key").write_text("k")
    data, etc, unit = tmp_path / "data", tmp_path / "etc", tmp_path / "etcd.service"
    for p in (data, etc):
        p.mkdir(exist_ok=True)
    unit.write_text("x")
    script = "set -euo pipefail\n" + etcd_remove_script(s, s.etcd_hosts[0], str(pki), str(data), str(etc), str(unit))
    log = tmp_path / "log"
    log.write_text("")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log), "HEALTHY": healthy}
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    return r, log.read_text()


def test_etcd_member_removal_refuses_when_quorum_would_break(tmp_path):
    r, log = _run_remove(tmp_path, healthy="https://198.51.100.12:2379")
    assert r.returncode != 0 and "refusing to remove etcd member cp-1" in r.stderr
    assert "member remove" not in log and "systemctl" not in log
    assert (tmp_path / "data").exists()


def test_etcd_member_removal_leaves_the_cluster_before_stopping(tmp_path):
    r, log = _run_remove(tmp_path, healthy="https://198.51.100.12:2379 https://198.51.100.13:2379")
    assert r.returncode == 0, r.stderr
    lines = log.splitlines()
    remove = next(i for i, ln in enumerate(lines) if "member remove 1a" in ln)
    stop = next(i for i, ln in enumerate(lines) if "systemctl stop etcd" in ln)
    assert remove < stop
    assert not (tmp_path / "data").exists() and not (tmp_path / "etcd.service").exists()


def test_secrets_are_encrypted_at_rest_with_a_generated_key(dev: ProgramRun) -> None:
    import yaml as _yaml

    from offline.engine.mocks import unwrap

    api = step(dev, "master-1-kube-apiserver")
    path = "/etc/kubernetes/encryption-config.yaml"
    assert path in api.secret_paths and api.modes[path] == "0600"
    config = _yaml.safe_load(api.files[path])
    assert config["kind"] == "EncryptionConfiguration"
    (rule,) = config["resources"]
    assert rule["resources"] == ["secrets"]
    key = rule["providers"][0]["secretbox"]["keys"][0]["secret"]
    (generated,) = dev.of_type("random:index/randomBytes:RandomBytes")
    assert key == unwrap(generated.outputs["base64"]) and len(base64.b64decode(key)) == 32
    assert generated.output_is_secret("base64")
    assert rule["providers"][-1] == {"identity": {}}
    unit_text = api.files["/etc/systemd/system/kube-apiserver.service"]
    assert f"--encryption-provider-config={path}" in unit_text
    cmd = dev.named("master-1-kube-apiserver", "command:remote:Command")
    assert key not in cmd.plain_inputs["create"] and cmd.input_is_secret("stdin")
