"""WorkerNode: containerd (systemd cgroups) + runc + CNI plugins, kubelet and kube-proxy on one worker,
configured over SSH. Every worker depends on the control plane's readiness, never on another worker.

Steps (remote commands) per worker:
  <w>-runtime     the /etc/hosts block (unless the control plane manages this host already);
                  containerd, runc, CNI plugins, crictl; registry trust (certs.d) and the pause image
  <w>-kubelet     kubelet + kube-proxy (after the API answers)
Before them, the node's batch drain step; after them, its batch uncordon step (rolling.py: both on
the first control-plane host, one per batch, not per node): the batch step waits for the Node, labels,
uncordons and annotates it; it drains and deletes a node gone from the batch, and its delete does that
for every node of the batch, before the kubelet steps stop the services.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from components import artifacts, rolling
from components.cluster_hosts import etc_hosts_script, etc_hosts_undo, step_opts
from components.config import Host, Settings
from components.control_plane import CLUSTER_NAME, skew_guard, unit, version_file
from components.host_step import HostFile, HostStep, HostStepArgs, host_connection, needs_sudo
from components.kubeconfig import kubeconfig
from components.pki import ClusterPki, kubelet_name
from components.templating import render, to_yaml

PKI = "/etc/kubernetes/pki"
CA_FILE = f"{PKI}/ca.crt"
UNITS = "/etc/systemd/system"
BIN = "/usr/local/bin"
SYSCTL_FILE = "/etc/sysctl.d/90-containercloud-kubernetes.conf"
MODULES_FILE = "/etc/modules-load.d/containercloud-kubernetes.conf"
CONTAINERD_SOCKET = "unix:///run/containerd/containerd.sock"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
PROXY_CONFIG = "/var/lib/kube-proxy/config.yaml"


@dataclass(frozen=True)
class WorkerNodeArgs:
    settings: Settings
    host: Host
    pki: ClusterPki
    ssh_private_key: pulumi.Input[str]
    drain_host: Host  # the control-plane host whose admin kubeconfig drains this node
    kube_proxy_kubeconfig: Optional[pulumi.Output[str]] = None  # the same on every node: built once


CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def node_labels(host: Host) -> dict[str, str]:
    """Labels the register step sets with the admin credential (NodeRestriction forbids a kubelet to set
    node-role labels on itself)."""
    labels = {}
    if host.has("control-plane"):
        labels["node-role.kubernetes.io/control-plane"] = ""
    if host.has("worker"):
        labels["node-role.kubernetes.io/worker"] = ""
    if host.has("rancher"):
        labels["node-role.containercloud.io/rancher"] = "true"
    return labels


def kubelet_config(s: Settings, host: Host) -> dict[str, Any]:
    """The KubeletConfiguration (also the component's `kubeletConfig` prop). Control-plane nodes that are
    not also workers register tainted NoSchedule: they run flannel and kube-proxy, not workloads."""
    taints = [CONTROL_PLANE_TAINT] if host.has("control-plane") and not host.has("worker") else []
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True, "cacheTTL": "2m0s"},
            "x509": {"clientCAFile": CA_FILE},
        },
        "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "5m0s",
                                                         "cacheUnauthorizedTTL": "30s"}},
        "tlsCertFile": f"{PKI}/kubelet.crt",
        "tlsPrivateKeyFile": f"{PKI}/kubelet.key",
        "tlsMinVersion": "VersionTLS12",
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "clusterDomain": s.cluster_domain,
        "clusterDNS": [s.cluster_dns_ip],
        "cgroupDriver": "systemd",
        "containerRuntimeEndpoint": CONTAINERD_SOCKET,
        "staticPodPath": "/etc/kubernetes/manifests",
        "makeIPTablesUtilChains": True,
        "eventRecordQPS": 5,
        "protectKernelDefaults": False,
        "registerWithTaints": taints,
    }


def kube_proxy_config(s: Settings) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": "/etc/kubernetes/kube-proxy.conf"},
        "mode": "iptables",
        "clusterCIDR": s.pod_cidr,
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
    }


def kubelet_flags(host: Host) -> dict[str, str]:
    return {
        "config": KUBELET_CONFIG,
        "kubeconfig": "/etc/kubernetes/kubelet.conf",
        "hostname-override": host.name,
        "node-ip": host.address,
    }


def kube_proxy_flags(host: Host) -> dict[str, str]:
    return {"config": PROXY_CONFIG, "hostname-override": host.name}


def sysctls() -> str:
    return ("net.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n"
            "net.ipv4.ip_forward = 1\n")


def props(s: Settings, host: Host) -> dict[str, Any]:
    return {
        "host": host.name,
        "zone": host.zone,
        "address": host.address,
        "kubeletConfig": kubelet_config(s, host),
        "registryHostname": s.registry_hostname,
        "insecureRegistries": [],
    }


class WorkerNode(pulumi.ComponentResource):
    """`containercloud:k8s:WorkerNode`: one Kubernetes node (every worker and control-plane host)."""

    ready: pulumi.Resource  # the Node registered with the API (its batch's uncordon step)

    def __init__(self, name: str, args: WorkerNodeArgs, opts: Optional[pulumi.ResourceOptions] = None):
        """Computes what the node installs and its fingerprint; `configure` creates the steps once the
        batch's drain step (which needs every fingerprint of the batch) exists."""
        super().__init__("containercloud:k8s:WorkerNode", name, props(args.settings, args.host), opts)
        self.args = args
        s, host = args.settings, args.host
        self.connection = host_connection(s, host, args.ssh_private_key)
        self.runtime_parts = self._runtime()
        self.kubelet_parts = self._kubelet()
        # what the node's disruptive steps install: a change re-runs its batch's drain and uncordon steps
        pki = args.pki
        self.fingerprint = rolling.fingerprint([self.runtime_parts, self.kubelet_parts], [
            pki.certs[kubelet_name(host.name)].cert_pem, pki.certs["kube-proxy"].cert_pem])
        self.member = rolling.Member(host.name, self.fingerprint, node_labels(host))

    def configure(self, drain: pulumi.Resource, previous_removal: Optional[pulumi.Resource]) -> pulumi.Resource:
        """The runtime step after the batch's drain step (which waits for the API: the gates start at
        `api_ready`), the kubelet step, and the node's removal record (rolling.removal: no session on an
        `up`), which waits for the kubelet step and the previous node's record. So the batch's removal
        records form a chain: removing many nodes in one `up` drains one node per batch at a time on the
        drain host (deletes run dependents first), never all of them at once; and the chain's last record,
        which this returns, is what the batch's uncordon step waits for (it follows every node of the
        batch through the chain)."""
        s, host = self.args.settings, self.args.host
        runtime = self._parts_step("runtime", self.runtime_parts, [drain])
        kubelet = self._parts_step("kubelet", self.kubelet_parts, [runtime.command])
        removal = rolling.removal(s, host.name, self.args.drain_host, self.args.ssh_private_key,
                                  step_opts(self, [kubelet.command, *([previous_removal] if previous_removal else [])]))
        self.register_outputs({"host": host.name})
        return removal

    def _step(self, name: str, script: str, delete_script: str, files: list[HostFile],
              depends_on: list[pulumi.Resource], prelude: str = "") -> HostStep:
        s, host = self.args.settings, self.args.host
        return HostStep(f"{host.name}-{name}",
                        HostStepArgs(host=host.name, connection=self.connection, script=script,
                                     delete_script=delete_script, files=files, use_sudo=needs_sudo(s, host),
                                     prelude=prelude),
                        opts=step_opts(self, depends_on))

    def _parts_step(self, name: str, parts: rolling.Parts, depends_on: list[pulumi.Resource]) -> HostStep:
        return self._step(name, parts.script, parts.delete, parts.files, depends_on,
                          prelude=parts.prelude)

    def _runtime(self) -> rolling.Parts:
        """containerd, runc, CNI plugins, crictl, registry trust; on hosts the control plane does not
        manage, also the /etc/hosts block (one remote command fewer per worker)."""
        s, host, pki = self.args.settings, self.args.host, self.args.pki
        own_hosts_block = not (host.has("etcd") or host.has("control-plane"))
        bins = [artifacts.containerd(), artifacts.runc(), artifacts.cni_plugins(), artifacts.crictl()]
        registry = s.registry_hostname
        files = [
            HostFile(CA_FILE, pki.cas["kubernetes"].cert_pem),
            HostFile(f"/etc/containerd/certs.d/{registry}/hosts.toml",
                     render("worker/hosts.toml.j2", registry=registry, ca_file=CA_FILE)),
            HostFile("/etc/containerd/config.toml",
                     render("worker/containerd-config.toml.j2", version=artifacts.CONTAINERD_VERSION,
                            registry=registry, sandbox_image=artifacts.image(s, "pause"))),
            HostFile("/etc/crictl.yaml", f"runtime-endpoint: {CONTAINERD_SOCKET}\nimage-endpoint: "
                                         f"{CONTAINERD_SOCKET}\ntimeout: 10\n"),
            HostFile(SYSCTL_FILE, sysctls()),
            HostFile(MODULES_FILE, "overlay\nbr_netfilter\n"),
            HostFile(f"{UNITS}/containerd.service",
                     unit("containerd container runtime", f"{BIN}/containerd", {}, "https://containerd.io",
                          type="notify", pre=["-/sbin/modprobe overlay"],
                          extra=["Delegate=yes", "KillMode=process", "LimitNPROC=infinity", "LimitCORE=infinity",
                                 "TasksMax=infinity", "OOMScoreAdjust=-999"])),
        ]
        step_id = f"{host.name}-runtime"
        files += artifacts.fetch_files(s, step_id, pki.cas["kubernetes"].cert_pem)
        restart_on = ["/etc/containerd/config.toml", f"{UNITS}/containerd.service", f"{BIN}/containerd",
                      f"{BIN}/containerd-shim-runc-v2", "/usr/local/sbin/runc"]
        fetch = artifacts.fetch_script(s, step_id, bins)  # verified before any file is written
        script = (etc_hosts_script(s, host) if own_hosts_block else "") \
            + render("worker/runtime.sh.j2", host=host.name, sysctl_file=SYSCTL_FILE, paths=restart_on)
        delete = render("worker/runtime_undo.sh.j2", sysctl_file=SYSCTL_FILE, modules_file=MODULES_FILE) \
            + artifacts.cleanup_script(s, step_id, bins) + (etc_hosts_undo() if own_hosts_block else "")
        return rolling.Parts(script, delete, files, prelude=fetch)

    def _kubelet(self) -> rolling.Parts:
        s, host, pki = self.args.settings, self.args.host, self.args.pki
        bins = [artifacts.kubernetes_node(s)]
        ca = pki.cas["kubernetes"].cert_pem
        kubelet = pki.certs[kubelet_name(host.name)]  # its client identity and its serving certificate
        proxy = pki.certs["kube-proxy"]
        doc = "https://kubernetes.io/docs/reference/command-line-tools-reference/"
        after = ["network-online.target", "containerd.service"]
        files = [
            HostFile(KUBELET_CONFIG, to_yaml(kubelet_config(s, host))),
            HostFile("/etc/kubernetes/kubelet.conf",
                     kubeconfig(CLUSTER_NAME, s.api_endpoint, ca, f"system:node:{host.name}", kubelet.cert_pem,
                                kubelet.key_pem), "0600", secret=True),
            HostFile(f"{PKI}/kubelet.crt", kubelet.cert_pem),
            HostFile(f"{PKI}/kubelet.key", kubelet.key_pem, "0600", secret=True),
            HostFile(f"{UNITS}/kubelet.service",
                     unit("Kubernetes node agent", f"{BIN}/kubelet", kubelet_flags(host), doc + "kubelet/", after,
                          requires=["containerd.service"])),
            HostFile(PROXY_CONFIG, to_yaml(kube_proxy_config(s))),
            HostFile("/etc/kubernetes/kube-proxy.conf",
                     self.args.kube_proxy_kubeconfig or
                     kubeconfig(CLUSTER_NAME, s.api_endpoint, ca, "system:kube-proxy", proxy.cert_pem,
                                proxy.key_pem), "0600", secret=True),
            HostFile(f"{UNITS}/kube-proxy.service",
                     unit("Kubernetes network proxy", f"{BIN}/kube-proxy", kube_proxy_flags(host),
                          doc + "kube-proxy/")),
        ]
        step_id = f"{host.name}-kubelet"
        files += artifacts.fetch_files(s, step_id, ca)
        kubelet_paths = [KUBELET_CONFIG, "/etc/kubernetes/kubelet.conf", f"{PKI}/kubelet.crt", f"{PKI}/kubelet.key",
                         f"{UNITS}/kubelet.service", f"{BIN}/kubelet"]
        proxy_paths = [PROXY_CONFIG, "/etc/kubernetes/kube-proxy.conf", f"{UNITS}/kube-proxy.service",
                       f"{BIN}/kube-proxy"]
        script = skew_guard(s, host, "kubelet", "/etc/kubernetes/kubelet.conf") \
            + artifacts.fetch_script(s, step_id, bins) + render(
            "worker/kubelet.sh.j2", host=host.name, kubelet_paths=kubelet_paths, proxy_paths=proxy_paths,
            target=s.kubernetes_version, version_file=version_file("kubelet"))
        delete = render("worker/kubelet_undo.sh.j2") + artifacts.cleanup_script(s, step_id, bins)
        return rolling.Parts(script, delete, files)


def worker_nodes(s: Settings, pki: ClusterPki, ssh_private_key: pulumi.Input[str], api_ready: pulumi.Resource,
                 kube_proxy_kubeconfig: Optional[pulumi.Output[str]] = None) -> list[WorkerNode]:
    """Every node, in `maxUnavailableWorkers` batches (rolling.py): per batch one drain step and one uncordon
    step on the drain host, the first control-plane host (INSIDE); batch k's drain step waits until the
    earlier batches' nodes finished. Each node's fingerprint is computed first: its batch's steps carry it."""
    drain_host = s.control_plane_hosts[0]
    rollout = rolling.NodeRollout("node-rollout", rolling.NodeRolloutArgs(s, ssh_private_key, drain_host, api_ready))
    nodes: list[WorkerNode] = []
    for batch in rolling.batches(s.node_hosts, s.max_unavailable_workers):
        members = [WorkerNode(h.name, WorkerNodeArgs(s, h, pki, ssh_private_key, drain_host,
                                                     kube_proxy_kubeconfig)) for h in batch]
        drain = rollout.drain([m.member for m in members])
        last: Optional[pulumi.Resource] = None
        for m in members:
            last = m.configure(drain.command, last)
        if last is not None:
            uncordon = rollout.uncordon([m.member for m in members], last)
            for m in members:
                m.ready = uncordon.command
        nodes += members
    return nodes
