"""WorkerNode and ClusterAddons under the harness: kubelet/containerd configuration from the rendered
files, registry trust, the /etc/hosts block (run for real in a private mount namespace), the drain on
delete, parallelism (3 vs 100 workers) and the add-ons."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tomllib

import pytest
import yaml

from components.cluster_hosts import etc_hosts_script, etc_hosts_undo, host_entries, hosts_entries, worker_only
from components.config import parse_settings
from offline.engine.runner import ProgramRun, load_stack_config, run_program
from tests.k8s_support import (
    COMMAND,
    command_graph,
    files_by_host,
    inner_script,
    k8s_steps,
    longest_chain,
    short,
    step,
    unit_exec,
)


def _settings(stack: str, overrides=None):
    cfg = load_stack_config(stack, overrides)
    return parse_settings({k.split(":", 1)[1]: v for k, v in cfg.values.items()})


@pytest.fixture(scope="module", params=["dev", "ha"])
def stack(request) -> tuple[ProgramRun, object]:
    run = run_program(request.param)
    assert run.error is None, run.error
    return run, _settings(request.param)


def _openssl_text(pem: str) -> str:
    return subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName"], input=pem.encode(),
                          capture_output=True, check=True).stdout.decode()


def test_kubelet_configuration_from_the_rendered_file(stack):
    run, s = stack
    files = files_by_host(run)
    for w in s.worker_hosts:
        f = files[w.name]
        _, flags = unit_exec(f["/etc/systemd/system/kubelet.service"])
        cfg = yaml.safe_load(f[flags["config"]])
        assert cfg["kind"] == "KubeletConfiguration"
        assert cfg["authentication"]["anonymous"]["enabled"] is False
        assert cfg["authentication"]["webhook"]["enabled"] is True
        assert cfg["authorization"]["mode"] == "Webhook"
        assert cfg["readOnlyPort"] == 0
        assert cfg["clusterDNS"] == [s.cluster_dns_ip] == ["10.96.0.10"]
        assert cfg["cgroupDriver"] == "systemd"
        assert flags["hostname-override"] == w.name and flags["node-ip"] == w.address
        # the serving certificate is ours, for this node
        serving = _openssl_text(f[cfg["tlsCertFile"]])
        assert f"system:node:{w.name}" in serving and f"IP Address:{w.address}" in serving
        assert cfg["tlsPrivateKeyFile"] in f
        assert f[cfg["authentication"]["x509"]["clientCAFile"]] == run.outputs["kubernetesCaCertificate"]
        kubeconfig = yaml.safe_load(f[flags["kubeconfig"]])
        assert kubeconfig["clusters"][0]["cluster"]["server"] == s.api_endpoint
        # one certificate per node: the kubeconfig's client identity is the serving certificate
        user = kubeconfig["users"][0]["user"]
        assert base64.b64decode(user["client-certificate-data"]).decode() == f[cfg["tlsCertFile"]]
        props = run.named(w.name, "containercloud:k8s:WorkerNode").plain_inputs
        assert props["kubeletConfig"] == cfg
        assert props == {"host": w.name, "zone": w.zone, "address": w.address, "kubeletConfig": cfg,
                         "registryHostname": s.registry_hostname, "insecureRegistries": []}


def test_containerd_trusts_the_registry_through_our_ca(stack):
    run, s = stack
    files = files_by_host(run)
    for w in s.worker_hosts:
        f = files[w.name]
        cfg = tomllib.loads(f["/etc/containerd/config.toml"])
        images = cfg["plugins"]["io.containerd.cri.v1.images"]
        assert images["pinned_images"]["sandbox"] == f"{s.registry_hostname}/system/pause:3.10.1"
        assert images["registry"]["config_path"] == "/etc/containerd/certs.d"
        runc = cfg["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]
        assert runc["options"]["SystemdCgroup"] is True
        hosts = tomllib.loads(f[f"/etc/containerd/certs.d/{s.registry_hostname}/hosts.toml"])
        entry = hosts["host"][f"https://{s.registry_hostname}"]
        assert f[entry["ca"]] == run.outputs["kubernetesCaCertificate"]
        assert "skip_verify" not in entry
        proxy_cfg = yaml.safe_load(f["/var/lib/kube-proxy/config.yaml"])
        assert proxy_cfg["clusterCIDR"] == s.pod_cidr


@pytest.mark.skipif(not shutil.which("unshare"), reason="unshare missing")
def test_etc_hosts_block_is_managed_idempotently(stack, tmp_path):
    """Runs the real step body twice and its undo on a copy of /etc/hosts bind-mounted in a private
    mount namespace."""
    run, s = stack
    w = s.control_plane_hosts[0]  # its own step; workers run the same block inside their runtime step
    st = step(run, f"{w.name}-etc-hosts")
    block = etc_hosts_script(s, w)
    assert block in inner_script(st.command["create"])
    for worker in s.worker_hosts:
        if not (worker.has("etcd") or worker.has("control-plane")):
            runtime = step(run, f"{worker.name}-runtime")
            assert etc_hosts_script(s, worker) in inner_script(runtime.command["create"])
            assert etc_hosts_undo() in inner_script(runtime.command["delete"])
    create, delete = inner_script(st.command["create"]), inner_script(st.command["delete"])
    # the body without the marker bookkeeping (that writes under /var/lib): cut at the marker lines
    body = create.split("install -d -m 0700 /var/lib/containercloud/steps")[0]
    undo = delete.split("marker=")[1].split("\nfi\n", 1)[1].split('rm -f "$marker"')[0]
    hosts = tmp_path / "hosts"
    original = "127.0.0.1 localhost\n10.0.0.1 other\n"
    hosts.write_text(original)
    (tmp_path / "create.sh").write_text(body)
    (tmp_path / "undo.sh").write_text("set -euo pipefail\n" + undo)
    script = (f"mount --bind {hosts} /etc/hosts && bash {tmp_path}/create.sh && cp /etc/hosts {tmp_path}/one "
              f"&& bash {tmp_path}/create.sh && cp /etc/hosts {tmp_path}/two && bash {tmp_path}/undo.sh "
              f"&& cp /etc/hosts {tmp_path}/three")
    r = subprocess.run(["unshare", "-m", "bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    one = (tmp_path / "one").read_text()
    assert one == (tmp_path / "two").read_text()
    assert one.startswith(original) and one.count("# BEGIN containercloud") == 1
    for address, name in host_entries(s, w):
        assert f"{address} {name}\n" in one
    for h in s.hosts:  # the platform hosts, never a worker-only node (their names grow with the cluster)
        assert (f"{h.address} {h.name}\n" in one) == (not worker_only(h) or h.name == w.name)
    if s.api_load_balancer_name:
        assert "198.51.100.100 api.k8s.corp.example\n" in one
        assert "203.0.113.100 harbor.corp.example\n" in one
    assert (tmp_path / "three").read_text() == original


def test_removing_a_worker_drains_it_from_the_first_control_plane_host(stack):
    run, s = stack
    cp = s.control_plane_hosts[0]
    for w in s.worker_hosts:
        # the node's removal record: no create (no SSH session on an up), a delete on the drain host
        node = run.named(f"{w.name}-node", COMMAND).plain_inputs
        node_deps = run.named(f"{w.name}-node", COMMAND).dependencies
        kubelet = step(run, f"{w.name}-kubelet")
        runtime = step(run, f"{w.name}-runtime")
        assert not node.get("create") and node["connection"]["host"] == cp.address
        undo = node["delete"]
        assert undo.index("cordon") < undo.index("drain") < undo.index("delete node")
        assert "--kubeconfig=/etc/kubernetes/admin.conf" in undo
        # reverse dependency order on delete: drain, then stop kubelet/kube-proxy, then containerd
        assert kubelet.command_urn in node_deps and runtime.command_urn in kubelet.dependencies
        assert "disable --now kubelet.service kube-proxy.service" in kubelet.command["delete"]
        assert "systemctl stop containerd.service" in runtime.command["delete"]
        assert kubelet.command["connection"]["host"] == w.address
        if s.ssh_bastion:
            assert kubelet.command["connection"]["proxy"]["host"] == s.ssh_bastion


def test_workers_never_depend_on_each_other(stack):
    run, s = stack
    names = {w.name for w in s.worker_hosts}
    for st in k8s_steps(run):
        owner = st.name.rsplit("-", 1)[0] if st.name.endswith(("-runtime", "-kubelet", "-node")) else None
        if owner not in names:
            continue
        for dep in st.dependencies:
            dep_name = short(dep)
            for other in names - {owner}:
                assert not dep_name.startswith(f"{other}-"), (st.name, dep_name)


def test_addons_flannel_and_coredns(stack):
    run, s = stack
    cm = run.named("configmap-kube-flannel-kube-flannel-cfg").plain_inputs
    net = json.loads(cm["data"]["net-conf.json"])
    assert net["Network"] == s.pod_cidr
    assert net["Backend"] == {"Type": "vxlan", "Port": s.flannel_vxlan_port}
    svc = run.named("service-kube-system-kube-dns").plain_inputs
    assert svc["spec"]["clusterIP"] == s.cluster_dns_ip
    images = []
    addons_urn = run.of_type("containercloud:k8s:ClusterAddons")[0].urn
    for typ in ("kubernetes:apps/v1:DaemonSet", "kubernetes:apps/v1:Deployment"):
        for reg in run.of_type(typ):
            if reg.parent != addons_urn:  # e.g. ingress-nginx in helm mode (tests/test_ingress.py)
                continue
            pod = reg.plain_inputs["spec"]["template"]["spec"]
            images += [c["image"] for c in pod.get("initContainers", []) + pod["containers"]]
    assert sorted(images) == sorted([
        f"{s.registry_hostname}/system/flannel-cni-plugin:v1.6.2-flannel1",
        f"{s.registry_hostname}/system/flannel:v0.26.7", f"{s.registry_hostname}/system/flannel:v0.26.7",
        f"{s.registry_hostname}/system/coredns:v1.12.4"])
    addons = run.of_type("containercloud:k8s:ClusterAddons")[0]
    nodes = {st.command_urn for st in k8s_steps(run) if re.fullmatch(r".+-batch-\d+-node", st.name)}
    assert nodes <= set(addons.dependencies)
    provider = run.of_type("pulumi:providers:kubernetes")[0]
    assert provider.input_is_secret("kubeconfig")
    assert step(run, f"{s.control_plane_hosts[0].name}-api-ready").command_urn in provider.dependencies
    for name in ("configmap-kube-flannel-kube-flannel-cfg", "service-kube-system-kube-dns",
                 "daemonset-kube-flannel-kube-flannel-ds", "deployment-kube-system-coredns"):
        assert run.named(name).parent == addons.urn


def _worker_hosts(n: int) -> list[dict]:
    base = [
        {"name": "rancher-1", "address": "198.51.100.10", "zone": "inside", "roles": ["rancher"]},
        {"name": "master-1", "address": "198.51.100.11", "zone": "inside", "roles": ["etcd", "control-plane"]},
        {"name": "harbor-1", "address": "203.0.113.10", "zone": "dmz", "roles": ["registry"]},
    ]
    return base + [{"name": f"worker-{i}", "address": f"203.0.113.{20 + i}", "zone": "dmz", "roles": ["worker"]}
                   for i in range(1, n + 1)]


def test_remote_commands_per_worker_and_chain_length_do_not_grow_with_workers(capsys):
    report = {}
    for n in (3, 100):
        run = run_program("dev", overrides={"hosts": _worker_hosts(n), "nodeNetworks": []})
        assert run.error is None, run.error
        per_worker: dict[str, list[str]] = {}
        copies: dict[str, int] = {}
        for i in (1, n):
            # every remote.Command named for this worker (steps are prefixed with their host's name),
            # whichever component made it; CopyToRemote uploads are reported separately
            per_worker[f"worker-{i}"] = [short(r.urn) for r in run.of_type(COMMAND)
                                         if short(r.urn).startswith(f"worker-{i}-")]
            copies[f"worker-{i}"] = len([r for r in run.of_type("command:remote:CopyToRemote")
                                         if short(r.urn).startswith(f"worker-{i}-")])
        chain = longest_chain(command_graph(run))
        report[n] = (per_worker, [short(u) for u in chain], copies)
        for commands in per_worker.values():
            assert 1 <= len(commands) <= 6, commands
    with capsys.disabled():
        for n, (per_worker, chain, copies) in report.items():
            print(f"\n[{n} workers] remote commands per worker: "
                  + ", ".join(f"{w}={len(c)} ({' '.join(c)})" for w, c in per_worker.items())
                  + "; CopyToRemote uploads per worker (artifactsDirectory mode): "
                  + ", ".join(f"{w}={c}" for w, c in copies.items()))
            print(f"[{n} workers] longest chain of remote commands ({len(chain)}): {' -> '.join(chain)}")
    assert len(report[3][1]) == len(report[100][1])


def test_pods_resolve_the_platform_names_through_coredns(dev: ProgramRun) -> None:
    (cm,) = [r for r in dev.of_type("kubernetes:core/v1:ConfigMap") if r.name == "configmap-kube-system-coredns"]
    corefile = cm.plain_inputs["data"]["Corefile"]
    block = corefile.split("hosts {", 1)[1].split("}", 1)[0]
    lines = {tuple(line.split()) for line in block.strip().splitlines()}
    assert ("203.0.113.10", "harbor.corp.example") in lines  # the registry, for pulls and the mirror
    assert ("198.51.100.10", "rancher.corp.example") in lines  # Rancher in docker mode, for the agents
    assert ("fallthrough",) in lines  # everything else still goes to the site's DNS


def test_a_worker_resolves_only_what_it_uses(stack):
    """A worker's /etc/hosts block holds its own name, the API endpoint's and the registry's, and no other
    node: adding a worker changes no other host's block. Pods still resolve every inventory name (CoreDNS)."""
    run, s = stack
    workers = [h for h in s.hosts if worker_only(h)]
    for worker in workers:
        names = {name for _, name in host_entries(s, worker)}
        assert worker.name in names and s.registry_hostname in names
        assert s.api_host in names or s.api_host not in {n for _, n in hosts_entries(s)}  # an address needs none
        assert not names & {w.name for w in workers if w.name != worker.name}
        runtime = inner_script(step(run, f"{worker.name}-runtime").command["create"])
        for other in workers:
            assert (f"{other.address} {other.name}\n" in runtime) == (other.name == worker.name)
    assert {name for _, name in hosts_entries(s)} >= {h.name for h in s.hosts}
