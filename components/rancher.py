"""RancherServer: `containercloud:rancher:RancherServer` — Rancher pulling from Harbor, TLS from our CA.

docker mode: a container on the (first) rancher host, `--restart=unless-stopped --privileged`, only
443 published, our certificate, key and CA mounted at /etc/rancher/ssl, the bootstrap password in a
0600 `--env-file`, data in /opt/rancher. Deleting the step removes the container and the TLS/env
files but KEEPS /opt/rancher (Rancher's database: a re-create comes back with its users, tokens and
cluster registrations; remove it by hand to start over).

helm mode: the rancher chart from the artifacts directory (`charts/rancher-<version>.tgz`), with the
Secrets it reads (`tls-rancher-ingress`, `tls-ca`, `bootstrap-secret`) created first, on the nodes
labelled `node-role.containercloud.io/rancher=true`. Its Ingress (class `nginx`) is served by the
ingress controller passed in `RancherServerArgs.ingress` (components/ingress.py), which the release
depends on; helm mode refuses to run without one.

Import: a step on the first control-plane host waits for Rancher, logs in with the bootstrap password
(a 0600 JSON file), sets server-url and, in docker mode, creates the imported cluster and applies its
registration manifest with the admin kubeconfig. In helm mode Rancher runs on this very cluster, which
it manages as `local`: importing it again would install a second agent, so the step checks `local`.
The step prints only the cluster id on stdout.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import docker_engine
from components.config import Settings, StackSecrets
from components.host_step import HostFile, HostStep, HostStepArgs, host_connection, needs_sudo
from components.pki import ClusterPki, KeyPair
from components.templating import render

NAMESPACE = "cattle-system"
NODE_LABEL = "node-role.containercloud.io/rancher"
DATA_DIR = "/opt/rancher"
SSL_DIR = "/etc/containercloud/rancher/ssl"
ENV_FILE = "/etc/containercloud/rancher/rancher.env"
IMPORT_DIR = "/etc/containercloud/rancher-import"
IMPORT_STATE = "/var/lib/containercloud/rancher-import"
PASSWORD_LENGTH = 32
PING_RETRIES = 90
INGRESS_CLASS = "nginx"  # components/ingress.py CLASS_NAME
TLS_SECRET = "tls-rancher-ingress"


@dataclass(frozen=True)
class RancherServerArgs:
    settings: Settings
    ssh_private_key: pulumi.Input[str]
    ca_pem: pulumi.Input[str]
    cert: KeyPair
    admin_kubeconfig: pulumi.Input[str]  # secret
    api_ready: Sequence[pulumi.Resource] = ()  # the Kubernetes API answers once these are done
    registry_ready: Sequence[pulumi.Resource] = ()  # Rancher's images are in Harbor once these are done
    kube_provider: Optional[k8s.Provider] = None  # helm mode
    depends_on: Sequence[pulumi.Resource] = ()  # helm mode: what the chart needs first (workers, add-ons)
    cluster_name: str = "container-cloud"
    import_host: str = field(default="")
    ingress: Optional[pulumi.Resource] = None  # helm mode: the ingress controller serving the chart's Ingress

    @staticmethod
    def from_settings(s: Settings, secrets: StackSecrets, pki: ClusterPki, admin_kubeconfig: pulumi.Input[str],
                      api_ready: Sequence[pulumi.Resource], registry_ready: Sequence[pulumi.Resource],
                      kube_provider: Optional[k8s.Provider] = None, depends_on: Sequence[pulumi.Resource] = (),
                      cluster_name: str = "container-cloud",
                      ingress: Optional[pulumi.Resource] = None) -> RancherServerArgs:
        return RancherServerArgs(s, secrets.ssh_private_key, pki.ca_bundle("kubernetes"), pki.certs["rancher"],
                                 admin_kubeconfig, tuple(api_ready), tuple(registry_ready), kube_provider,
                                 tuple(depends_on), cluster_name, s.control_plane_hosts[0].name, ingress)


def chart_path(s: Settings) -> str:
    return f"{s.artifacts_directory.rstrip('/')}/charts/rancher-{s.rancher_version.lstrip('v')}.tgz"


def helm_values(s: Settings) -> dict[str, Any]:
    """Values of the rancher chart (chart/values.yaml of rancher/rancher). The chart has no `nodeSelector`
    or `tolerations` value (unknown keys are silently ignored): placement goes through
    `extraNodeSelectorTerms`, match expressions the chart adds to its required node affinity. No
    `extraTolerations`: helm mode requires the worker role on rancher hosts, which are not tainted.
    `bootstrapPassword` is left out on purpose: the chart reuses the existing `bootstrap-secret`
    (created first by this component) instead of storing the password in the release's values."""
    return {
        "hostname": s.rancher_hostname,
        "replicas": s.rancher_replicas,
        "ingress": {"ingressClassName": INGRESS_CLASS, "tls": {"source": "secret", "secretName": TLS_SECRET}},
        "privateCA": True,
        "systemDefaultRegistry": s.registry_hostname,
        "useBundledSystemChart": True,
        "rancherImageTag": s.rancher_version,
        "extraNodeSelectorTerms": [{"key": NODE_LABEL, "operator": "In", "values": ["true"]}],
    }


def _props(args: RancherServerArgs) -> dict[str, Any]:
    s = args.settings
    props: dict[str, Any] = {
        "mode": s.rancher_mode,
        "hostname": s.rancher_hostname,
        "url": f"https://{s.rancher_hostname}",
        "systemDefaultRegistry": s.registry_hostname,
        "privateCa": True,
        "version": s.rancher_version,
        "image": f"{s.registry_hostname}/rancher/rancher:{s.rancher_version}",
        "adminPasswordLength": PASSWORD_LENGTH,
        "importHost": args.import_host,
    }
    if s.rancher_mode == "docker":
        props.update({"host": s.rancher_hosts[0].name, "publishedPorts": [443], "dataDirectory": DATA_DIR})
    else:
        props.update({"hosts": [h.name for h in s.rancher_hosts], "replicas": s.rancher_replicas,
                      "chart": chart_path(s), "values": helm_values(s)})
    return props


def _secret(value: pulumi.Output[dict[str, str]]) -> pulumi.Output[dict[str, str]]:
    out: pulumi.Output[dict[str, str]] = pulumi.Output.secret(value)
    return out


class RancherServer(pulumi.ComponentResource):
    """Rancher server and the cluster imported into it."""

    url: str
    admin_password: pulumi.Output[str]
    cluster_id: pulumi.Output[str]
    ready: list[pulumi.Resource]

    def __init__(self, name: str, args: RancherServerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("containercloud:rancher:RancherServer", name, _props(args), opts)
        self.args = args
        s = args.settings
        self.url = f"https://{s.rancher_hostname}"
        password = random.RandomPassword(f"{name}-bootstrap-password", length=PASSWORD_LENGTH, special=False,
                                         min_upper=2, min_lower=2, min_numeric=2,
                                         opts=pulumi.ResourceOptions(parent=self))
        self.admin_password = pulumi.Output.secret(password.result)
        self.ready = self._docker() if s.rancher_mode == "docker" else self._helm(name)
        self.import_step = self._import().command
        self.cluster_id = self.import_step.stdout.apply(lambda out: (out or "").strip())
        self.register_outputs({"url": self.url, "adminPassword": self.admin_password, "clusterId": self.cluster_id})

    # --- docker mode ---------------------------------------------------------------------------
    def _docker(self) -> list[pulumi.Resource]:
        s = self.args.settings
        host = s.rancher_hosts[0]
        docker = docker_engine.docker_step(s, host, self.args.ssh_private_key, self.args.ca_pem, self)
        env = self.admin_password.apply(lambda p: f"CATTLE_BOOTSTRAP_PASSWORD={p}\n")
        files = [
            HostFile(f"{SSL_DIR}/cert.pem", self.args.cert.cert_pem),
            HostFile(f"{SSL_DIR}/key.pem", self.args.cert.key_pem, "0600", secret=True),
            HostFile(f"{SSL_DIR}/cacerts.pem", self.args.ca_pem),
            HostFile(ENV_FILE, env, "0600", secret=True),
        ]
        values = dict(image=f"{s.registry_hostname}/rancher/rancher:{s.rancher_version}", ssl_dir=SSL_DIR,
                      env_file=ENV_FILE, data_dir=DATA_DIR, registry=s.registry_hostname,
                      hostname=s.rancher_hostname, retries=PING_RETRIES, watched=[f.path for f in files])
        step = HostStep(
            f"{host.name}-rancher",
            HostStepArgs(host=host.name, connection=host_connection(s, host, self.args.ssh_private_key),
                         script=render("rancher/docker.sh.j2", **values),
                         delete_script=render("rancher/docker-undo.sh.j2", **values), files=files,
                         use_sudo=needs_sudo(s, host)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[docker, *self.args.registry_ready]))
        return [step.command]

    # --- helm mode -----------------------------------------------------------------------------
    def _helm(self, name: str) -> list[pulumi.Resource]:
        s = self.args.settings
        if self.args.ingress is None:
            raise ValueError("RancherServer in helm mode needs RancherServerArgs.ingress (components/ingress.py): "
                             "without an ingress controller the chart's Ingress is served by nothing")
        provider = self.args.kube_provider or k8s.Provider(
            f"{name}-kubernetes", kubeconfig=self.args.admin_kubeconfig, cluster_identifier=self.args.cluster_name,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.args.api_ready)))
        kopts = pulumi.ResourceOptions(parent=self, provider=provider)
        ns = k8s.core.v1.Namespace(f"{name}-namespace", metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE), opts=kopts)
        meta = lambda n: k8s.meta.v1.ObjectMetaArgs(name=n, namespace=NAMESPACE)  # noqa: E731
        nsopts = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[ns])
        tls_data: pulumi.Output[dict[str, str]] = pulumi.Output.all(
            self.args.cert.cert_pem, self.args.cert.key_pem).apply(lambda v: {"tls.crt": v[0], "tls.key": v[1]})
        tls_secret = k8s.core.v1.Secret(
            f"{name}-tls-rancher-ingress", metadata=meta(TLS_SECRET), type="kubernetes.io/tls",
            string_data=_secret(tls_data), opts=nsopts)
        ca_secret = k8s.core.v1.Secret(
            f"{name}-tls-ca", metadata=meta("tls-ca"), type="Opaque",
            string_data={"cacerts.pem": pulumi.Output.from_input(self.args.ca_pem)}, opts=nsopts)
        bootstrap = k8s.core.v1.Secret(
            f"{name}-bootstrap-secret", metadata=meta("bootstrap-secret"), type="Opaque",
            string_data=_secret(self.admin_password.apply(lambda p: {"bootstrapPassword": p})),
            opts=nsopts)
        ingress = [self.args.ingress] if self.args.ingress is not None else []
        release = k8s.helm.v3.Release(
            f"{name}-chart", name="rancher", namespace=NAMESPACE, chart=chart_path(s), values=helm_values(s),
            create_namespace=False, atomic=False, timeout=900,
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[
                tls_secret, ca_secret, bootstrap, *ingress, *self.args.registry_ready, *self.args.depends_on]))
        return [release]

    # --- API access for other components' steps on the import host --------------------------------
    def api_files(self, directory: str) -> list[HostFile]:
        """Our CA and the admin login (a 0600 JSON file) for `api_script(directory)`."""
        login = self.admin_password.apply(
            lambda p: json.dumps({"username": "admin", "password": p, "responseType": "json"}) + "\n")
        return [HostFile(f"{directory}/ca.crt", self.args.ca_pem),
                HostFile(f"{directory}/login.json", login, "0600", secret=True)]

    def api_script(self, directory: str) -> str:
        """Logs in as admin, defines `api` (curl with the token from a 0600 curl config) and `$cluster`
        (the id of the cluster this stack imported, or `local` in helm mode)."""
        s = self.args.settings
        return render("rancher/api.sh.j2", url=self.url, ca=f"{directory}/ca.crt", login=f"{directory}/login.json",
                      cluster_name=self.args.cluster_name, register=s.rancher_mode == "docker")

    # --- import --------------------------------------------------------------------------------
    def _import(self) -> HostStep:
        s = self.args.settings
        host = s.host(self.args.import_host)
        login = self.admin_password.apply(
            lambda p: json.dumps({"username": "admin", "password": p, "responseType": "json"}) + "\n")
        files = [
            HostFile(f"{IMPORT_DIR}/ca.crt", self.args.ca_pem),
            HostFile(f"{IMPORT_DIR}/login.json", login, "0600", secret=True),
            HostFile(f"{IMPORT_DIR}/admin.kubeconfig", self.args.admin_kubeconfig, "0600", secret=True),
        ]
        values = dict(url=self.url, hostname=s.rancher_hostname, ca=f"{IMPORT_DIR}/ca.crt",
                      login=f"{IMPORT_DIR}/login.json", kubeconfig=f"{IMPORT_DIR}/admin.kubeconfig",
                      state=IMPORT_STATE, manifest=f"{IMPORT_STATE}/import.yaml", import_dir=IMPORT_DIR,
                      cluster_name=self.args.cluster_name, register=s.rancher_mode == "docker",
                      retries=PING_RETRIES)
        return HostStep(
            f"{host.name}-rancher-import",
            HostStepArgs(host=host.name, connection=host_connection(s, host, self.args.ssh_private_key),
                         script=render("rancher/import.sh.j2", **values),
                         delete_script=render("rancher/import-undo.sh.j2", **values), files=files,
                         use_sudo=needs_sudo(s, host)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*self.args.api_ready, *self.ready]))
