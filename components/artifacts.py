"""Air-gapped artifacts: the bill of materials (binaries with upstream digests, container images) and
how a host gets them — from the internal HTTP mirror (`artifactsMirrorUrl`, curl on the host) or from
files on the deployer (`artifactsDirectory`: copied once to the first registry host, which publishes them
into the registry, where every host fetches them). Both use one layout: `<component>/<version>/<file>`.
Every host script verifies the upstream digest before it installs anything.

Digests come from `components/artifacts_checksums.yaml` only; a version without one is refused.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TypeVar

import pulumi
import pulumi_command as command
import yaml

from components.config import ConfigError, Fault, Host, Settings
from components.host_step import HostFile
from components.templating import render

T = TypeVar("T")

CHECKSUMS_FILE = Path(__file__).resolve().with_name("artifacts_checksums.yaml")
UPLOAD_DIR = "/var/tmp"  # CopyToRemote target: writable by a non-root SSH user, kept across reboots
CACHE_DIR = "/var/cache/containercloud/artifacts"

# Pinned versions of what is not a setting (kubernetes follows kubernetesVersion).
ETCD_VERSION = "3.6.14"
CONTAINERD_VERSION = "2.2.7"
RUNC_VERSION = "1.3.6"
CNI_PLUGINS_VERSION = "1.8.0"
CRICTL_VERSION = "1.35.0"
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap", "bandwidth", "firewall")

# Harbor project the system images live in: <registry>/system/<last path component>:<tag>.
SYSTEM_PROJECT = "system"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"
FLANNEL_IMAGE = "ghcr.io/flannel-io/flannel:v0.26.7"
FLANNEL_CNI_IMAGE = "ghcr.io/flannel-io/flannel-cni-plugin:v1.6.2-flannel1"
COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.12.4"


@dataclass(frozen=True)
class Binary:
    """One downloadable file. `members` maps what to install: (path inside the archive, or "" for the
    file itself) -> absolute destination on the host."""

    name: str
    version: str
    file: str
    url_path: str
    checksum: str  # "<algorithm>:<hex>", algorithm sha256 or sha512
    upstream_url: str
    members: tuple[tuple[str, str], ...]

    @property
    def algorithm(self) -> str:
        return self.checksum.split(":", 1)[0]

    @property
    def digest(self) -> str:
        return self.checksum.split(":", 1)[1]

    @property
    def sha256(self) -> Optional[str]:
        return self.digest if self.algorithm == "sha256" else None

    @property
    def archive(self) -> bool:
        return self.file.endswith((".tar.gz", ".tgz"))


@dataclass(frozen=True)
class Image:
    name: str
    source: str
    target: str


@functools.lru_cache(maxsize=4)
def _checksums(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def checksum(component: str, version: str, file: str, setting: Optional[str] = None) -> str:
    """The upstream digest of `file`; a clear error when the checksum file has none."""
    table = _checksums(CHECKSUMS_FILE).get(component) or {}
    versions = table.get(version) or table.get(version.lstrip("v")) or table.get(f"v{version.lstrip('v')}") or {}
    value = versions.get(file)
    if not value:
        message = (f"no digest for {component} {version} ({file}) in {CHECKSUMS_FILE.name}; "
                   "add the upstream-published digest there before using this version")
        raise ConfigError.of([(setting or "", message)])
    algorithm = str(value).split(":", 1)[0] if ":" in str(value) else "sha256"
    digest = str(value).split(":", 1)[-1]
    if algorithm not in ("sha256", "sha512"):
        raise ConfigError([f"{CHECKSUMS_FILE.name}: {component} {version} {file}: unsupported digest {algorithm}"])
    return f"{algorithm}:{digest}"


def _binary(component: str, version: str, file: str, upstream: str, members: tuple[tuple[str, str], ...],
            setting: Optional[str] = None) -> Binary:
    return Binary(component, version, file, f"{component}/{version}/{file}",
                  checksum(component, version, file, setting), upstream, members)


def _bin(*names: str, prefix: str = "", dest: str = "/usr/local/bin") -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{n}", f"{dest}/{n}") for n in names)


def kubernetes_server(s: Settings) -> Binary:
    v = s.kubernetes_version
    return _binary("kubernetes-server", v, "kubernetes-server-linux-amd64.tar.gz",
                   f"https://dl.k8s.io/v{v}/kubernetes-server-linux-amd64.tar.gz",
                   _bin("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
                        prefix="kubernetes/server/bin/"), "kubernetesVersion")


def kubernetes_node(s: Settings) -> Binary:
    v = s.kubernetes_version
    return _binary("kubernetes-node", v, "kubernetes-node-linux-amd64.tar.gz",
                   f"https://dl.k8s.io/v{v}/kubernetes-node-linux-amd64.tar.gz",
                   _bin("kubelet", "kube-proxy", prefix="kubernetes/node/bin/"), "kubernetesVersion")


def etcd() -> Binary:
    v = ETCD_VERSION
    return _binary("etcd", v, f"etcd-v{v}-linux-amd64.tar.gz",
                   f"https://github.com/etcd-io/etcd/releases/download/v{v}/etcd-v{v}-linux-amd64.tar.gz",
                   _bin("etcd", "etcdctl", "etcdutl", prefix=f"etcd-v{v}-linux-amd64/"))


def containerd() -> Binary:
    v = CONTAINERD_VERSION
    return _binary("containerd", v, f"containerd-{v}-linux-amd64.tar.gz",
                   f"https://github.com/containerd/containerd/releases/download/v{v}/containerd-{v}-linux-amd64.tar.gz",
                   _bin("containerd", "containerd-shim-runc-v2", "ctr", prefix="bin/"))


def runc() -> Binary:
    v = RUNC_VERSION
    return _binary("runc", v, "runc.amd64", f"https://github.com/opencontainers/runc/releases/download/v{v}/runc.amd64",
                   (("", "/usr/local/sbin/runc"),))


def cni_plugins() -> Binary:
    v = CNI_PLUGINS_VERSION
    return _binary("cni-plugins", v, f"cni-plugins-linux-amd64-v{v}.tgz",
                   f"https://github.com/containernetworking/plugins/releases/download/v{v}/"
                   f"cni-plugins-linux-amd64-v{v}.tgz",
                   _bin(*CNI_PLUGINS, prefix="./", dest="/opt/cni/bin"))


def crictl() -> Binary:
    v = CRICTL_VERSION
    return _binary("crictl", v, f"crictl-v{v}-linux-amd64.tar.gz",
                   f"https://github.com/kubernetes-sigs/cri-tools/releases/download/v{v}/crictl-v{v}-linux-amd64.tar.gz",
                   _bin("crictl"))


def etcd_binaries(s: Settings) -> list[Binary]:
    return [etcd()]


def control_plane_binaries(s: Settings) -> list[Binary]:
    return [kubernetes_server(s)]


def worker_binaries(s: Settings) -> list[Binary]:
    return [containerd(), runc(), cni_plugins(), crictl(), kubernetes_node(s)]


def binaries(s: Settings) -> list[Binary]:
    """Every binary the cluster installs; raises ConfigError when a digest is missing."""
    out: list[Binary] = []
    for b in etcd_binaries(s) + control_plane_binaries(s) + worker_binaries(s):
        if b not in out:
            out.append(b)
    return out


def _target(s: Settings, source: str) -> str:
    last = source.rsplit("/", 1)[-1]
    return f"{s.registry_hostname}/{SYSTEM_PROJECT}/{last}"


def _image(s: Settings, name: str, source: str) -> Image:
    return Image(name, source, _target(s, source))


def kubernetes_images(s: Settings) -> list[Image]:
    return [
        _image(s, "pause", PAUSE_IMAGE),
        _image(s, "flannel", FLANNEL_IMAGE),
        _image(s, "flannel-cni-plugin", FLANNEL_CNI_IMAGE),
        _image(s, "coredns", COREDNS_IMAGE),
    ]


def image(s: Settings, name: str) -> str:
    """Target reference (in Harbor) of the image called `name`."""
    return next(i.target for i in images(s) if i.name == name)


def images(s: Settings) -> list[Image]:
    """Every container image the platform runs, with its source and its target in Harbor."""
    return kubernetes_images(s) + extra_images(s)


# --- host delivery --------------------------------------------------------------------------------
# artifactsMirrorUrl: every host curls each file from the internal HTTP mirror.
# artifactsDirectory: the deployer copies each file ONCE, to the first registry host (`serving_host`),
# whose publish step (after Harbor's projects) verifies it and pushes it as a blob into ARTIFACT_REPOSITORY,
# one tagged manifest per file; every other host fetches the blob from the registry over https through
# our CA (the catalogue flow `hosts` -> registry 443) and verifies the upstream digest as before. So the
# bytes pushed from the deployer do not grow with the number of hosts.
ARTIFACT_REPOSITORY = f"{SYSTEM_PROJECT}/containercloud-artifacts"  # `system` is public: anonymous pulls
ARTIFACT_TYPE = "application/vnd.containercloud.binary.v1"
FETCH_CA_DIR = "/etc/containercloud/artifacts"


def registry_mode(s: Settings) -> bool:
    """Whether hosts fetch the binaries from the registry (artifactsDirectory mode)."""
    return not s.artifacts_mirror_url


def tag(b: Binary) -> str:
    """The tag of `b`'s manifest in ARTIFACT_REPOSITORY (tags allow [A-Za-z0-9_.-])."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{b.name}-{b.version}")


def serving_host(s: Settings) -> Host:
    """The host the deployer uploads the binaries to: the first registry host (it publishes them)."""
    return s.registry_hosts[0]


def registry_address(s: Settings) -> str:
    """Where hosts reach the registry hostname: its load balancer (ha) or the first registry host."""
    return s.registry_load_balancer_address or serving_host(s).address


def source(s: Settings, b: Binary) -> str:
    """Where a host takes `b` from: the mirror URL, or `registry:<tag>`."""
    if s.artifacts_mirror_url:
        return f"{s.artifacts_mirror_url.rstrip('/')}/{b.url_path}"
    return f"registry:{tag(b)}"


def upload_path(b: Binary) -> str:
    return f"{UPLOAD_DIR}/containercloud-{b.name}-{b.version}-{b.file}"


def fetch_ca_path(step: str) -> str:
    return f"{FETCH_CA_DIR}/{step}-ca.crt"


def registry_client(s: Settings, ca_path: str, address: str = "") -> str:
    return render("artifacts/registry.sh.j2", hostname=s.registry_hostname, address=address or registry_address(s),
                  repository=ARTIFACT_REPOSITORY, ca=ca_path)


def fetch_script(s: Settings, step: str, bins: list[Binary]) -> str:
    """Shell: verify (and fetch) every binary into the step's cache, then install its members,
    recording changed destinations in CHANGED (so `changed /usr/local/bin/x` restarts services)."""
    client = registry_client(s, fetch_ca_path(step)) if registry_mode(s) else ""
    return render("artifacts/fetch.sh.j2", cache=f"{CACHE_DIR}/{step}", registry=client, install=True,
                  binaries=[{"b": b, "source": source(s, b)} for b in bins])


def fetch_files(s: Settings, step: str, ca_pem: pulumi.Input[str]) -> list[HostFile]:
    """What the fetch reads before anything else is written: in registry mode the CA the registry's
    certificate chains to (public), written before the step's prelude."""
    return [HostFile(fetch_ca_path(step), ca_pem, early=True)] if registry_mode(s) else []


def cleanup_script(s: Settings, step: str, bins: list[Binary]) -> str:
    extra = [fetch_ca_path(step)] if registry_mode(s) else []
    return render("artifacts/cleanup.sh.j2", cache=f"{CACHE_DIR}/{step}", uploads=extra,
                  destinations=sorted({dest for b in bins for _, dest in b.members}))


def publish_script(s: Settings, step: str, ca_path: str, curlrc_path: str, bins: list[Binary]) -> str:
    """Serving host: verify each uploaded binary into the step's cache (removing the upload), then push it
    into ARTIFACT_REPOSITORY with the admin's credential (a 0600 curl config) unless it is there already."""
    items = [{"b": b, "source": upload_path(b), "tag": tag(b)} for b in bins]
    client = registry_client(s, ca_path, "127.0.0.1")  # Harbor on this host, as its API scripts reach it
    return (render("artifacts/fetch.sh.j2", cache=f"{CACHE_DIR}/{step}", registry=client, install=False, binaries=items)
            + render("artifacts/publish.sh.j2", repository=ARTIFACT_REPOSITORY, curlrc=curlrc_path,
                     artifact_type=ARTIFACT_TYPE, binaries=items))


def publish_undo(s: Settings, step: str) -> str:
    return render("artifacts/cleanup.sh.j2", cache=f"{CACHE_DIR}/{step}",
                  uploads=[upload_path(b) for b in binaries(s)], destinations=[]) \
        + f"# the blobs stay in {ARTIFACT_REPOSITORY} (like the images); delete its tags in Harbor to drop them\n"


def publish_uploads(s: Settings, connection: command.remote.ConnectionArgs, parent: pulumi.Resource,
                    ) -> list[pulumi.Resource]:
    """Directory mode: one CopyToRemote per binary, to the serving host only (one after the other)."""
    if not registry_mode(s):
        return []
    host = serving_host(s)
    return chained(binaries(s), lambda b, after: copy_to_host(
        f"{host.name}-artifacts-upload-{b.name}", s, connection, b.url_path, upload_path(b), parent,
        [b.checksum], after))


def copy_to_host(name: str, s: Settings, connection: command.remote.ConnectionArgs, rel_path: str,
                 remote_path: str, parent: pulumi.Resource, triggers: Optional[list[str]] = None,
                 after: Optional[pulumi.Resource] = None) -> command.remote.CopyToRemote:
    """Directory mode: copy `artifactsDirectory/rel_path` from the deployer to the host (CopyToRemote has
    no delete; the step that uses the file removes it). `after`: the upload it waits for (see `chained`)."""
    return command.remote.CopyToRemote(
        name,
        connection=connection,
        source=pulumi.FileAsset(str(Path(s.artifacts_directory) / rel_path)),
        remote_path=remote_path,
        triggers=triggers,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[after] if after else []),
    )


def chained(items: Sequence[T], make: Callable[[T, Optional[pulumi.Resource]], pulumi.Resource],
            ) -> list[pulumi.Resource]:
    """One upload per item, each after the previous one: one SFTP session at a time per step, so the
    sessions a host receives at once do not grow with the number of files (they share one link anyway)."""
    out: list[pulumi.Resource] = []
    for item in items:
        out.append(make(item, out[-1] if out else None))
    return out


# --- registry / rancher images ------------------------------------------------------------------------
# Harbor's own images ship inside its offline installer (install.sh loads them): none to mirror.
# Rancher's come from the pinned release's own image list, never from a list kept here: the site stages
# the release assets `rancher-images.txt` and `rancher-images.tar.gz` (made by that release's
# `rancher-save-images.sh --image-list rancher-images.txt`) under `rancher/<version>/` with a SHA256SUMS.
# The registry host pushes, to Harbor project `rancher` (Rancher's system-default-registry prefixes
# `rancher/...` with the registry), every line of that list whose repository Rancher runs for its server
# and an imported cluster, at the tag the list gives; a repository missing from the list fails the step.
RANCHER_PROJECT = "rancher"
RANCHER_IMAGE_LIST = "rancher-images.txt"
RANCHER_IMAGE_ARCHIVE = "rancher-images.tar.gz"
# repository -> why it is needed (rancher/rancher v2.14.4 sources that put it in rancher-images.txt; each
# is a key of OriginMap in pkg/image/origins.go @ v2.14.4, whose keys mirror rancher-images.txt)
RANCHER_REPOSITORIES: dict[str, str] = {
    "rancher/rancher": "the server (scripts/package-env IMAGE)",
    "rancher/rancher-agent": "cattle-cluster-agent on the imported cluster (scripts/package-env AGENT_IMAGE)",
    "rancher/rancher-webhook": "admission webhook Rancher installs (build.yaml webhookVersion)",
    "rancher/remotedialer-proxy": "API tunnel proxy Rancher installs (build.yaml remoteDialerProxyVersion)",
    "rancher/fleet": "GitOps controller Rancher always installs (build.yaml fleetVersion)",
    "rancher/fleet-agent": "fleet's agent on every cluster (build.yaml fleetVersion)",
    "rancher/shell": "helm-operation pods that install Rancher's charts (build.yaml defaultShellVersion)",
    "rancher/kuberlr-kubectl": "kubectl jobs of Rancher's system charts",
    "rancher/system-upgrade-controller": "the system-upgrade-controller chart "
                                         "(package/Dockerfile CATTLE_SYSTEM_UPGRADE_CONTROLLER_CHART_VERSION)",
    "rancher/cluster-api-controller": "the CAPI controller (scripts/package-env CLUSTER_API_CONTROLLER_IMAGE)",
    "rancher/scc-operator": "SUSE Customer Center operator (build.yaml defaultSccOperatorImage)",
}


def rancher_images(s: Settings) -> list[Image]:
    """The two images whose tag is rancherVersion itself; the rest take their tags from the release list."""
    return [Image(name, f"rancher/{name}:{s.rancher_version}",
                  f"{s.registry_hostname}/{RANCHER_PROJECT}/{name}:{s.rancher_version}")
            for name in ("rancher", "rancher-agent")]


# --- ingress-nginx (rancherMode helm: components/ingress.py) ------------------------------------------
# The controller only, no admission webhook (so no kube-webhook-certgen image). Pushed to Harbor project
# `system` as `ingress-nginx-controller` (upstream's last path component, `controller`, says nothing).
# The tag and its Kubernetes range were read at controller-v1.15.1 (docs/upstream.md, support_matrix.yaml);
# the image is pinned by tag, not digest: check the published digest when mirroring.
INGRESS_NGINX_VERSION = "v1.15.1"  # supports Kubernetes 1.31-1.35: components/support_matrix.yaml
INGRESS_NGINX_IMAGE = f"registry.k8s.io/ingress-nginx/controller:{INGRESS_NGINX_VERSION}"


def ingress_images(s: Settings) -> list[Image]:
    """ingress-nginx's images; only helm mode runs an ingress controller (docker mode publishes 443 itself)."""
    if s.rancher_mode != "helm":
        return []
    return [Image("ingress-nginx-controller", INGRESS_NGINX_IMAGE,
                  f"{s.registry_hostname}/{SYSTEM_PROJECT}/ingress-nginx-controller:{INGRESS_NGINX_VERSION}")]


# --- smoke test and Headlamp (components/smoke_test.py, components/headlamp.py) --------------------------
# nginx: the official image's stable line (nginx/docker-nginx stable/debian/Dockerfile @ 80b66be,
# 2026-04-14, "Updated stable to 1.30.0": NGINX_VERSION 1.30.0); Headlamp: the image its
# release v0.45.0 publishes (kubernetes-sigs/headlamp v0.45.0 charts/headlamp values.yaml `image.registry`
# ghcr.io, `image.repository` headlamp-k8s/headlamp, tag "" = the chart's appVersion 0.45.0, published as v0.45.0).
NGINX_IMAGE = "docker.io/library/nginx:1.30.0"
HEADLAMP_VERSION = "v0.45.0"
HEADLAMP_IMAGE = f"ghcr.io/headlamp-k8s/headlamp:{HEADLAMP_VERSION}"


def platform_images(s: Settings) -> list[Image]:
    """The optional workloads' images: nginx when smokeTest is on, Headlamp when headlamp is on."""
    out = []
    if s.smoke_test:
        out.append(_image(s, "nginx", NGINX_IMAGE))
    if s.headlamp:
        out.append(_image(s, "headlamp", HEADLAMP_IMAGE))
    return out


def extra_images(s: Settings) -> list[Image]:
    """Images mirrored one archive each (Rancher's come from its release list: registry/images.sh.j2)."""
    return ingress_images(s) + platform_images(s)


def check_bill_of_materials(s: Settings) -> list[Fault]:
    """Resolve every binary digest and image tag for the pinned versions, before any resource exists;
    return a fault `(key, message)` for every version the bill of materials does not know (one part of
    the validation pass in components/config_pass.py)."""
    faults: list[Fault] = []
    for resolve in (binaries, images):
        try:
            resolve(s)
        except ConfigError as err:
            faults += err.faults or [("", p) for p in err.problems]
    return faults
