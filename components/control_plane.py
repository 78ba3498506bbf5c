"""ControlPlane: etcd (static cluster, mTLS), kube-apiserver, kube-controller-manager and kube-scheduler
as systemd units on the etcd / control-plane hosts, configured over SSH (HostStep per step).

Order (dependency graph): etc-hosts -> etcd (one member after the other; a member that joins a running
cluster is added first) -> kube-apiserver (needs every member; one host after the other, each after the
previous one answers /readyz) -> controller-manager + scheduler -> api-ready (the API answers at its
endpoint). Upgrades and growth: docs/upgrade.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_random as random
import yaml

from components import artifacts
from components.cluster_hosts import etc_hosts_step, step_opts
from components.config import Host, Settings
from components.etcd_backup import EtcdBackup, EtcdBackupArgs
from components.host_step import HostFile, HostStep, HostStepArgs, host_connection, needs_sudo
from components.kubeconfig import kubeconfig
from components.pki import ClusterPki
from components.templating import render, to_yaml

ETCD_PKI = "/etc/etcd/pki"
ETCD_DATA = "/var/lib/etcd"
ETCD_ENV = "/etc/etcd/cluster.env"
K8S = "/etc/kubernetes"
PKI = "/etc/kubernetes/pki"
ENCRYPTION_CONFIG = f"{K8S}/encryption-config.yaml"
UNITS = "/etc/systemd/system"
BIN = "/usr/local/bin"
CLUSTER_NAME = "kubernetes"


@dataclass(frozen=True)
class ControlPlaneArgs:
    settings: Settings
    pki: ClusterPki
    ssh_private_key: pulumi.Input[str]
    # artifactsDirectory mode: the registry's publish step, which the binary steps fetch from
    artifacts_ready: Sequence[pulumi.Resource] = ()


# --- flags (pure functions of the settings: the unit files and the component props use them) -------

def etcd_flags(s: Settings, host: Host) -> dict[str, str]:
    return {
        "name": host.name,
        "data-dir": ETCD_DATA,
        "listen-client-urls": f"https://{host.address}:2379,https://127.0.0.1:2379",
        "advertise-client-urls": f"https://{host.address}:2379",
        "listen-peer-urls": f"https://{host.address}:2380",
        "initial-advertise-peer-urls": f"https://{host.address}:2380",
        "initial-cluster-token": f"containercloud-{pulumi.get_stack()}",
        "listen-metrics-urls": "http://127.0.0.1:2381",
        "client-cert-auth": "true",
        "trusted-ca-file": f"{ETCD_PKI}/ca.crt",
        "cert-file": f"{ETCD_PKI}/server.crt",
        "key-file": f"{ETCD_PKI}/server.key",
        "peer-client-cert-auth": "true",
        "peer-trusted-ca-file": f"{ETCD_PKI}/ca.crt",
        "peer-cert-file": f"{ETCD_PKI}/peer.crt",
        "peer-key-file": f"{ETCD_PKI}/peer.key",
        "auto-tls": "false",
        "peer-auto-tls": "false",
        "cipher-suites": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,"
                         "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "snapshot-count": "10000",
    }


def etcd_join_script(s: Settings, host: Host, pki: str = ETCD_PKI, data_dir: str = ETCD_DATA,
                     env_file: str = ETCD_ENV, client_urls: Optional[dict[str, str]] = None,
                     peer_urls: Optional[dict[str, str]] = None) -> str:
    """Writes ETCD_INITIAL_CLUSTER(_STATE) for a member without data: `new` when no other member answers,
    else `member add` (one unstarted member at a time) and `existing`. The URL maps default to the
    inventory's (tests pass loopback ones)."""
    clients = client_urls or {h.name: f"https://{h.address}:2379" for h in s.etcd_hosts}
    peers = peer_urls or {h.name: f"https://{h.address}:2380" for h in s.etcd_hosts}
    names = [h.name for h in s.etcd_hosts if h.name in peers]
    return render("etcd/join.sh.j2", name=host.name, pki=pki, data_dir=data_dir, env_file=env_file,
                  peer_url=peers[host.name], others=",".join(clients[n] for n in names if n != host.name),
                  initial_cluster=",".join(f"{n}={peers[n]}" for n in names),
                  names=",".join(f"{n}={peers[n]}" for n in names))


def etcd_remove_script(s: Settings, host: Host, pki: str = ETCD_PKI, data_dir: str = ETCD_DATA,
                       etc_dir: str = "/etc/etcd", unit_file: str = f"{UNITS}/etcd.service") -> str:
    """Leave the cluster (`etcdctl member remove`) unless that breaks quorum, then stop and clean up."""
    return render("etcd/remove.sh.j2", name=host.name, data_dir=data_dir, pki=pki, endpoints=etcd_servers(s),
                  etc_dir=etc_dir, unit_file=unit_file)


def etcd_servers(s: Settings) -> str:
    return ",".join(f"https://{h.address}:2379" for h in s.etcd_hosts)


def version_file(component: str) -> str:
    return f"{K8S}/{component}.version"


def skew_guard(s: Settings, host: Host, component: str, kubeconfig_path: Optional[str] = None) -> str:
    """Refuses, on the host and before anything is replaced, a minor-version skip or downgrade of
    `component`; with `kubeconfig_path` (the kubelet's), also a kubelet newer than the running API server."""
    return render("node/skew_guard.sh.j2", target=s.kubernetes_version, host=host.name, component=component,
                  version_file=version_file(component), binary=f"{BIN}/{component}", kubeconfig=kubeconfig_path,
                  server=s.api_endpoint)


def service_account_issuer(s: Settings) -> str:
    return f"https://kubernetes.default.svc.{s.cluster_domain}"


def apiserver_flags(s: Settings, host: Optional[Host] = None) -> dict[str, str]:
    """Every flag of the kube-apiserver unit. Without `host`, the advertise address is the first host's."""
    host = host or s.control_plane_hosts[0]
    return {
        "advertise-address": host.address,
        "bind-address": "0.0.0.0",
        "secure-port": str(s.api_server_port),
        "allow-privileged": "true",
        "anonymous-auth": "false",
        "authorization-mode": "Node,RBAC",
        "enable-admission-plugins": "NodeRestriction",
        "client-ca-file": f"{PKI}/ca.crt",
        "tls-cert-file": f"{PKI}/apiserver.crt",
        "tls-private-key-file": f"{PKI}/apiserver.key",
        "tls-min-version": "VersionTLS12",
        "etcd-servers": etcd_servers(s),
        "etcd-cafile": f"{PKI}/etcd-ca.crt",
        "etcd-certfile": f"{PKI}/apiserver-etcd-client.crt",
        "etcd-keyfile": f"{PKI}/apiserver-etcd-client.key",
        "kubelet-certificate-authority": f"{PKI}/ca.crt",
        "kubelet-client-certificate": f"{PKI}/apiserver-kubelet-client.crt",
        "kubelet-client-key": f"{PKI}/apiserver-kubelet-client.key",
        "kubelet-preferred-address-types": "InternalIP,Hostname",
        "proxy-client-cert-file": f"{PKI}/front-proxy-client.crt",
        "proxy-client-key-file": f"{PKI}/front-proxy-client.key",
        "requestheader-client-ca-file": f"{PKI}/front-proxy-ca.crt",
        "requestheader-allowed-names": "front-proxy-client",
        "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "requestheader-group-headers": "X-Remote-Group",
        "requestheader-username-headers": "X-Remote-User",
        "service-account-issuer": service_account_issuer(s),
        "service-account-key-file": f"{PKI}/sa.pub",
        "service-account-signing-key-file": f"{PKI}/sa.key",
        "service-cluster-ip-range": s.service_cidr,
        "service-node-port-range": s.node_port_range,
        "profiling": "false",
        "audit-policy-file": f"{K8S}/audit-policy.yaml",
        "audit-log-path": "/var/log/kubernetes/audit/audit.log",
        "audit-log-maxage": "30",
        "audit-log-maxbackup": "10",
        "audit-log-maxsize": "100",
        "encryption-provider-config": ENCRYPTION_CONFIG,
    }


def encryption_config(key_base64: str) -> str:
    """Secrets encrypted at rest in etcd (secretbox, a 32-byte key from pulumi-random); `identity` last so
    Secrets written before encryption was enabled stay readable until they are rewritten."""
    return to_yaml({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": ["secrets"],
            "providers": [{"secretbox": {"keys": [{"name": "key1", "secret": key_base64}]}}, {"identity": {}}],
        }],
    })


def controller_manager_flags(s: Settings) -> dict[str, str]:
    conf = f"{K8S}/controller-manager.conf"
    return {
        "bind-address": "127.0.0.1",
        "kubeconfig": conf,
        "authentication-kubeconfig": conf,
        "authorization-kubeconfig": conf,
        "client-ca-file": f"{PKI}/ca.crt",
        "requestheader-client-ca-file": f"{PKI}/front-proxy-ca.crt",
        "root-ca-file": f"{PKI}/ca.crt",
        "service-account-private-key-file": f"{PKI}/sa.key",
        "use-service-account-credentials": "true",
        "cluster-name": CLUSTER_NAME,
        "allocate-node-cidrs": "true",
        "cluster-cidr": s.pod_cidr,
        "service-cluster-ip-range": s.service_cidr,
        "leader-elect": "true",
        "profiling": "false",
        "controllers": "*,bootstrapsigner,tokencleaner",
    }


def scheduler_flags(s: Settings) -> dict[str, str]:
    conf = f"{K8S}/scheduler.conf"
    return {
        "config": f"{K8S}/kube-scheduler.yaml",
        "bind-address": "127.0.0.1",
        "authentication-kubeconfig": conf,
        "authorization-kubeconfig": conf,
    }


def scheduler_config() -> str:
    return yaml.safe_dump({
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": f"{K8S}/scheduler.conf"},
        "leaderElection": {"leaderElect": True},
        "enableProfiling": False,
    }, sort_keys=False)


def unit(description: str, binary: str, flags: dict[str, str], documentation: str,
         after: Optional[list[str]] = None, **extra: Any) -> str:
    return render("units/service.j2", description=description, documentation=documentation, binary=binary,
                  flags=flags, after=after or ["network-online.target"], wants=["network-online.target"],
                  requires=extra.get("requires", []), type=extra.get("type", ""), pre=extra.get("pre", []),
                  extra=extra.get("extra", []))


def props(s: Settings) -> dict[str, Any]:
    """What the policy pack reads: config-derived, known at preview, no secrets."""
    return {
        "hosts": [h.name for h in s.control_plane_hosts],
        "apiserverFlags": apiserver_flags(s),
        "etcdHosts": [h.name for h in s.etcd_hosts],
        "nodePortRange": s.node_port_range,
        "apiEndpoint": s.api_endpoint,
    }


class ControlPlane(pulumi.ComponentResource):
    """`containercloud:k8s:ControlPlane`."""

    api_ready: pulumi.Resource
    admin_kubeconfig: pulumi.Output[str]
    api_endpoint: str
    ca_certificate: pulumi.Output[str]

    def __init__(self, name: str, args: ControlPlaneArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("containercloud:k8s:ControlPlane", name, props(args.settings), opts)
        self.args = args
        s = args.settings
        pki = args.pki
        self.api_endpoint = s.api_endpoint
        self.ca_certificate = pki.cas["kubernetes"].cert_pem
        self.admin_kubeconfig = kubeconfig(CLUSTER_NAME, s.api_endpoint, self.ca_certificate, "kubernetes-admin",
                                           pki.certs["admin"].cert_pem, pki.certs["admin"].key_pem)
        proxy = pki.certs["kube-proxy"]
        self.kube_proxy_kubeconfig = kubeconfig(CLUSTER_NAME, s.api_endpoint, self.ca_certificate,
                                                "system:kube-proxy", proxy.cert_pem, proxy.key_pem)
        managed = [h for h in s.hosts if h.has("etcd") or h.has("control-plane")]
        self.etc_hosts = {h.name: etc_hosts_step(s, h, args.ssh_private_key, self) for h in managed}
        key = random.RandomBytes("secrets-encryption-key", length=32, opts=pulumi.ResourceOptions(parent=self))
        config: pulumi.Output[str] = key.base64.apply(encryption_config)
        self.encryption_config: pulumi.Output[str] = pulumi.Output.secret(config)  # type: ignore[arg-type]
        # one member after the other: an upgrade or a renewal restarts one etcd member at a time, each after
        # the previous one is healthy again (a member of a cluster still forming does not wait: start.sh)
        self.etcd: list[HostStep] = []
        for h in s.etcd_hosts:
            self.etcd.append(self._etcd(h, [self.etcd[-1].command] if self.etcd else []))
        etcd_commands: list[pulumi.Resource] = [step.command for step in self.etcd]
        self.backup = EtcdBackup(f"{name}-etcd-backup", EtcdBackupArgs(
            s, args.ssh_private_key, {h.name: st.command for h, st in zip(s.etcd_hosts, self.etcd, strict=True)}),
            opts=pulumi.ResourceOptions(parent=self))
        # one at a time: each apiserver step (it restarts only when its content changed) starts after the
        # previous host's apiserver answers /readyz again, so an upgrade never takes every apiserver down
        self.apiservers: list[HostStep] = []
        for h in s.control_plane_hosts:
            previous: list[pulumi.Resource] = [self.apiservers[-1].command] if self.apiservers else []
            self.apiservers.append(self._apiserver(h, etcd_commands + previous))
        self.controllers = [self._controllers(h, api) for h, api in zip(s.control_plane_hosts, self.apiservers,
                                                                           strict=True)]
        ready = self._api_ready(s.control_plane_hosts[0])
        self.api_ready = ready.command
        self.register_outputs({
            "apiEndpoint": s.api_endpoint,
            "caCertificate": self.ca_certificate,
            "adminKubeconfig": self.admin_kubeconfig,
        })

    # --- helpers --------------------------------------------------------------------------------
    def _step(self, host: Host, step: str, script: str, delete_script: str, files: list[HostFile],
              depends_on: list[pulumi.Resource]) -> HostStep:
        s = self.args.settings
        return HostStep(
            f"{host.name}-{step}",
            HostStepArgs(host=host.name, connection=host_connection(s, host, self.args.ssh_private_key),
                         script=script, delete_script=delete_script, files=files, use_sudo=needs_sudo(s, host)),
            opts=step_opts(self, depends_on),
        )

    # --- etcd -------------------------------------------------------------------------------------
    def _etcd(self, host: Host, previous: list[pulumi.Resource]) -> HostStep:
        s, pki = self.args.settings, self.args.pki
        bins = artifacts.etcd_binaries(s)
        server, peer = pki.certs[f"etcd-server-{host.name}"], pki.certs[f"etcd-peer-{host.name}"]
        health = pki.certs["etcd-healthcheck-client"]
        unit_text = render("etcd/etcd.service.j2", name=host.name, binary=f"{BIN}/etcd",
                           flags=etcd_flags(s, host), env_file=ETCD_ENV)
        files = [
            HostFile(f"{ETCD_PKI}/ca.crt", pki.cas["etcd"].cert_pem),
            HostFile(f"{ETCD_PKI}/server.crt", server.cert_pem),
            HostFile(f"{ETCD_PKI}/server.key", server.key_pem, "0600", secret=True),
            HostFile(f"{ETCD_PKI}/peer.crt", peer.cert_pem),
            HostFile(f"{ETCD_PKI}/peer.key", peer.key_pem, "0600", secret=True),
            HostFile(f"{ETCD_PKI}/healthcheck-client.crt", health.cert_pem),
            HostFile(f"{ETCD_PKI}/healthcheck-client.key", health.key_pem, "0600", secret=True),
            HostFile(f"{UNITS}/etcd.service", unit_text),
        ]
        step_id = f"{host.name}-etcd"
        script = artifacts.fetch_script(s, step_id, bins) + etcd_join_script(s, host) + render(
            "etcd/start.sh.j2", name=host.name, data_dir=ETCD_DATA, pki=ETCD_PKI,
            endpoint="https://127.0.0.1:2379", paths=[f.path for f in files] + [ETCD_ENV, f"{BIN}/etcd"],
            env_file=ETCD_ENV)
        delete = etcd_remove_script(s, host) + artifacts.cleanup_script(s, step_id, bins)
        files += artifacts.fetch_files(s, step_id, pki.ca_bundle("kubernetes"))  # after `paths`: restarts nothing
        deps = [self.etc_hosts[host.name].command, *previous, *self.args.artifacts_ready]
        return self._step(host, "etcd", script, delete, files, deps)

    # --- kube-apiserver -----------------------------------------------------------------------------
    def _apiserver(self, host: Host, etcd: list[pulumi.Resource]) -> HostStep:
        s, pki = self.args.settings, self.args.pki
        bins = artifacts.control_plane_binaries(s)
        c = pki.certs
        unit_text = unit("Kubernetes API server", f"{BIN}/kube-apiserver", apiserver_flags(s, host),
                         "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/")
        files = [
            HostFile(f"{PKI}/ca.crt", pki.cas["kubernetes"].cert_pem),
            HostFile(f"{PKI}/etcd-ca.crt", pki.cas["etcd"].cert_pem),
            HostFile(f"{PKI}/front-proxy-ca.crt", pki.cas["front-proxy"].cert_pem),
            HostFile(f"{PKI}/apiserver.crt", c["kube-apiserver"].cert_pem),
            HostFile(f"{PKI}/apiserver.key", c["kube-apiserver"].key_pem, "0600", secret=True),
            HostFile(f"{PKI}/apiserver-etcd-client.crt", c["apiserver-etcd-client"].cert_pem),
            HostFile(f"{PKI}/apiserver-etcd-client.key", c["apiserver-etcd-client"].key_pem, "0600", secret=True),
            HostFile(f"{PKI}/apiserver-kubelet-client.crt", c["apiserver-kubelet-client"].cert_pem),
            HostFile(f"{PKI}/apiserver-kubelet-client.key", c["apiserver-kubelet-client"].key_pem, "0600",
                     secret=True),
            HostFile(f"{PKI}/front-proxy-client.crt", c["front-proxy-client"].cert_pem),
            HostFile(f"{PKI}/front-proxy-client.key", c["front-proxy-client"].key_pem, "0600", secret=True),
            HostFile(f"{PKI}/sa.pub", pki.service_account.cert_pem),
            HostFile(f"{PKI}/sa.key", pki.service_account.key_pem, "0600", secret=True),
            HostFile(f"{K8S}/audit-policy.yaml", render("apiserver/audit-policy.yaml.j2")),
            HostFile(ENCRYPTION_CONFIG, self.encryption_config, "0600", secret=True),
            HostFile(f"{K8S}/admin.conf", self.admin_kubeconfig, "0600", secret=True),
            HostFile(f"{UNITS}/kube-apiserver.service", unit_text),
        ]
        step_id = f"{host.name}-kube-apiserver"
        restart_on = [f.path for f in files if f.path != f"{K8S}/admin.conf"] + [f"{BIN}/kube-apiserver"]
        files += artifacts.fetch_files(s, step_id, pki.ca_bundle("kubernetes"))
        script = skew_guard(s, host, "kube-apiserver") + artifacts.fetch_script(s, step_id, bins) + render(
            "apiserver/start.sh.j2", host=host.name, port=s.api_server_port, paths=restart_on,
            target=s.kubernetes_version, version_file=version_file("kube-apiserver"))
        delete = render("apiserver/stop.sh.j2") + artifacts.cleanup_script(s, step_id, bins)
        deps = [self.etc_hosts[host.name].command, *etcd, *self.args.artifacts_ready]
        return self._step(host, "kube-apiserver", script, delete, files, deps)

    # --- controller-manager and scheduler -------------------------------------------------------------
    def _controllers(self, host: Host, apiserver: HostStep) -> HostStep:
        s, pki = self.args.settings, self.args.pki
        ca = pki.cas["kubernetes"].cert_pem
        local = f"https://127.0.0.1:{s.api_server_port}"
        cm = pki.certs["kube-controller-manager"]
        sched = pki.certs["kube-scheduler"]
        server = artifacts.kubernetes_server(s)
        doc = "https://kubernetes.io/docs/reference/command-line-tools-reference/"
        after = ["network-online.target", "kube-apiserver.service"]
        files = [
            HostFile(f"{K8S}/controller-manager.conf",
                     kubeconfig(CLUSTER_NAME, local, ca, "system:kube-controller-manager", cm.cert_pem, cm.key_pem),
                     "0600", secret=True),
            HostFile(f"{K8S}/scheduler.conf",
                     kubeconfig(CLUSTER_NAME, local, ca, "system:kube-scheduler", sched.cert_pem, sched.key_pem),
                     "0600", secret=True),
            HostFile(f"{K8S}/kube-scheduler.yaml", scheduler_config()),
            # the binaries come with the apiserver step: their digest here restarts both on an upgrade
            HostFile(f"{K8S}/controllers.version", f"{server.name} {server.version} {server.checksum}\n"),
            HostFile(f"{UNITS}/kube-controller-manager.service",
                     unit("Kubernetes controller manager", f"{BIN}/kube-controller-manager",
                          controller_manager_flags(s), doc + "kube-controller-manager/", after)),
            HostFile(f"{UNITS}/kube-scheduler.service",
                     unit("Kubernetes scheduler", f"{BIN}/kube-scheduler", scheduler_flags(s),
                          doc + "kube-scheduler/", after)),
        ]
        cm_paths = [f"{K8S}/controller-manager.conf", f"{K8S}/controllers.version",
                    f"{UNITS}/kube-controller-manager.service"]
        sched_paths = [f"{K8S}/scheduler.conf", f"{K8S}/kube-scheduler.yaml", f"{K8S}/controllers.version",
                       f"{UNITS}/kube-scheduler.service"]
        script = render("controllers/start.sh.j2", host=host.name, cm_paths=cm_paths, scheduler_paths=sched_paths)
        return self._step(host, "controllers", script, render("controllers/stop.sh.j2"), files,
                          [apiserver.command])

    # --- the API answers at its endpoint -------------------------------------------------------------
    def _api_ready(self, host: Host) -> HostStep:
        s = self.args.settings
        deps: list[pulumi.Resource] = [st.command for st in self.apiservers + self.controllers]
        script = render("apiserver/api_ready.sh.j2", endpoint=s.api_endpoint)
        return self._step(host, "api-ready", script, "true", [], deps)
