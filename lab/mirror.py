"""The host lab's artifacts mirror: every file the program fetches from `artifactsMirrorUrl`, at its mirror
path `<component>/<version>/<file>`, in the upstream archive layout the program's fetch scripts extract,
filled with real Debian binaries where Debian (bookworm) has them and strict stand-ins where no registry we
reach has the binary. The lab pins its own digests (the Debian builds are not the upstream files): a
checksums file in the shape of components/artifacts_checksums.yaml, and `lab_checksums(path)` to make the
program use it in-process. The shipped checksums file stays untouched.

    build = build_mirror(settings)            # build/lab-cache/mirror + lab-checksums.yaml + MANIFEST.json
    with lab_checksums(build.checksums):      # the program, run in-process, pins the lab's digests
        run_program(...)
    # serving: python3 -m http.server --bind <addr> <port> --directory <build.root>

What is where (recorded per file in <root>/MANIFEST.json with the Debian package versions):
  kubernetes-server  kube-apiserver, kube-controller-manager, kube-scheduler: lab stand-ins (lab/standins);
                     kubectl: the real kubectl 1.33 of the machine's Google Cloud SDK (`kubectl` apt package,
                     /usr/lib/google-cloud-sdk/bin/kubectl.1.33)
  kubernetes-node    kubelet, kube-proxy: lab stand-ins
  etcd               etcd, etcdctl: Debian etcd-server/etcd-client 3.4.23 under the 3.6.14 name; etcdutl (3.5+, not in
                     Debian's 3.4): a stand-in answering `snapshot status|restore` with etcdctl 3.4 (the backup step)
  containerd         Debian containerd 1.6.20 (containerd, containerd-shim-runc-v2, ctr)
  runc               Debian runc 1.1.5
  cni-plugins        Debian containernetworking-plugins 1.1.1
  crictl             no Debian package (cri-tools is not in bookworm): a stand-in answering `crictl info`
                     by asking containerd for its version with the real `ctr` (it speaks no CRI)
  docker             Debian docker.io 20.10.24 dockerd/docker/docker-proxy/docker-init, containerd and runc
                     as above, in docker's static-tarball layout docker/<binary>; + SHA256SUMS
  docker-compose     no Debian package of compose v2: a stand-in CLI plugin answering `docker compose
                     version` only; + SHA256SUMS
Not mirrored (nothing in Debian): Harbor's offline installer, image archives (images/*.tar), the rancher
chart, helm (no host step fetches helm: the chart is installed from the deployer).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from components import artifacts, docker_engine
from components.config import Settings
from lab import standins

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "build" / "lab-cache"
DEBIAN_PACKAGES = ("etcd-server", "etcd-client", "containerd", "runc", "containernetworking-plugins", "docker.io",
                   "tini")
KUBECTL = Path("/usr/lib/google-cloud-sdk/bin/kubectl.1.33")
KUBECTL_ORIGIN = "kubectl 1.33.1 of the machine's Google Cloud SDK (apt package kubectl 1:528.0.0-0)"


@dataclass(frozen=True)
class Source:
    """Where a member's bytes come from: a file on disk, or generated content."""

    origin: str
    path: Optional[Path] = None
    data: Optional[bytes] = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


@dataclass(frozen=True)
class MirrorBuild:
    root: Path  # the directory to serve
    checksums: Path  # lab checksums, shape of components/artifacts_checksums.yaml
    manifest: dict[str, dict[str, object]]  # url path -> {sha256, members: {member: origin}}


# --- Debian binaries, extracted into the cache (never installed on the machine) ---------------------------

def debian_root(cache: Path = CACHE) -> tuple[Path, dict[str, str]]:
    """Download (apt-get download) and extract (dpkg-deb -x) the Debian packages; return the extracted root and
    {package: version}."""
    debs, root = cache / "debs", cache / "debian"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in DEBIAN_PACKAGES if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True, capture_output=True)
    versions = {}
    for package in DEBIAN_PACKAGES:
        deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
        versions[package] = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                                           capture_output=True, text=True).stdout.strip()
        marker = root / ".extracted" / deb.name
        if not marker.exists():
            root.mkdir(parents=True, exist_ok=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    return root, versions


def _deb(root: Path, versions: dict[str, str], package: str, path: str) -> Source:
    target = root / path.lstrip("/")
    while target.is_symlink():  # e.g. docker-init -> tini-static
        link = os.readlink(target)
        target = (target.parent / link) if not link.startswith("/") else root / link.lstrip("/")
    if not target.is_file():
        raise FileNotFoundError(f"{package}: {path} not in the extracted package")
    return Source(f"Debian {package} {versions[package]} {path}", path=target)


def _script(origin: str, text: str) -> Source:
    return Source(origin, data=text.encode())


# etcd 3.5+ moved `snapshot status` and `snapshot restore` from etcdctl to etcdutl; Debian's 3.4 has them
# in etcdctl. The stand-in answers only those two, with etcdctl 3.4, and refuses anything else; it drops
# restore's 3.6-only --bump-revision/--mark-compacted (3.4 has no revision bump).
ETCDUTL = r"""#!/bin/bash
set -euo pipefail
if [[ $# -lt 2 || $1 != snapshot || ( $2 != status && $2 != restore ) ]]; then
  echo "etcdutl (lab stand-in): only 'snapshot status' and 'snapshot restore' are available" >&2
  exit 1
fi
args=()
while (( $# )); do
  case $1 in
    --bump-revision) shift 2 ;;
    --bump-revision=*|--mark-compacted) shift ;;
    *) args+=("$1"); shift ;;
  esac
done
ETCDCTL_API=3 exec etcdctl "${args[@]}"
"""

CRICTL = r"""#!/bin/sh
# Lab stand-in for crictl (cri-tools is not in Debian bookworm). Answers only `crictl [--runtime-endpoint=E] info`,
# by asking containerd at E for its version with the real `ctr`; it does not speak CRI. Anything else: exit 1.
endpoint=unix:///run/containerd/containerd.sock
for arg in "$@"; do
  case $arg in
    --runtime-endpoint=*|-r=*) endpoint=${arg#*=} ;;
    --image-endpoint=*|--timeout=*|-i=*|-t=*) ;;
    info) cmd=info ;;
    *) echo "crictl (lab stand-in): '$arg' is not supported; only 'info'" >&2; exit 1 ;;
  esac
done
[ "${cmd:-}" = info ] || { echo "crictl (lab stand-in): only 'info' is supported" >&2; exit 1; }
sock=${endpoint#unix://}
ctr=$(command -v ctr || echo /usr/local/bin/ctr)
exec "$ctr" --address "$sock" --timeout 5s version
"""

COMPOSE = r"""#!/bin/sh
# Lab stand-in for the docker compose v2 CLI plugin (no compose v2 in Debian bookworm): answers the docker CLI
# plugin metadata call and `docker compose version` only.
case "$1" in
  docker-cli-plugin-metadata)
    printf '{"SchemaVersion":"0.1.0","Vendor":"container-cloud host lab",'
    printf '"Version":"%s","ShortDescription":"lab stand-in"}\n' "$VERSION"
    exit 0 ;;
  compose)
    shift ;;
esac
if [ "${1:-}" = version ]; then echo "Docker Compose version $VERSION (lab stand-in)"; exit 0; fi
echo "docker compose (lab stand-in): '$*' is not supported in the host lab" >&2
exit 1
"""


# --- archives -------------------------------------------------------------------------------------------

def _tar_gz(members: dict[str, Source]) -> bytes:
    """A reproducible tar.gz (mtime 0, root-owned, 0755 files, parent directories listed)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs: set[str] = set()
        for name in sorted(members):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs and d not in (".", ""):
                    dirs.add(d)
                    info = tarfile.TarInfo(d + "/")
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(info)
            data = members[name].read()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o755, 0, 0, 0
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=1) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _binary_members(b: artifacts.Binary, sources: dict[str, Source]) -> dict[str, Source]:
    """The Binary's members (paths inside its archive) mapped to their sources, by the member's base name."""
    out = {}
    for member, _dest in b.members:
        base = member.rsplit("/", 1)[-1] or b.file
        if base not in sources:
            raise KeyError(f"lab mirror has no source for {b.name} {member!r}")
        out[member] = sources[base]
    return out


def sources(s: Settings, root: Path, versions: dict[str, str]) -> dict[str, Source]:
    """Every binary by its base name."""
    k = s.kubernetes_version
    out = {name: Source(f"lab stand-in lab/standins ({name} v{k} flags)", data=standins.build(name, k))
           for name in standins.NAMES}
    out.update({
        "kubectl": Source(KUBECTL_ORIGIN, path=KUBECTL),
        "etcd": _deb(root, versions, "etcd-server", "/usr/bin/etcd"),
        "etcdctl": _deb(root, versions, "etcd-client", "/usr/bin/etcdctl"),
        "etcdutl": _script("stand-in: etcdctl 3.4's snapshot status/restore (3.4 has no etcdutl)", ETCDUTL),
        "containerd": _deb(root, versions, "containerd", "/usr/bin/containerd"),
        "containerd-shim-runc-v2": _deb(root, versions, "containerd", "/usr/bin/containerd-shim-runc-v2"),
        "ctr": _deb(root, versions, "containerd", "/usr/bin/ctr"),
        "runc": _deb(root, versions, "runc", "/usr/sbin/runc"),
        "runc.amd64": _deb(root, versions, "runc", "/usr/sbin/runc"),
        "crictl": _script("lab stand-in: crictl info via ctr (cri-tools is not in Debian bookworm)", CRICTL),
        "dockerd": _deb(root, versions, "docker.io", "/usr/sbin/dockerd"),
        "docker": _deb(root, versions, "docker.io", "/usr/bin/docker"),
        "docker-proxy": _deb(root, versions, "docker.io", "/usr/sbin/docker-proxy"),
        "docker-init": _deb(root, versions, "tini", "/usr/bin/tini-static"),
    })
    for plugin in artifacts.CNI_PLUGINS:
        out[plugin] = _deb(root, versions, "containernetworking-plugins", f"/usr/lib/cni/{plugin}")
    return out


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_mirror(s: Settings, out: Path = CACHE / "mirror", cache: Path = CACHE) -> MirrorBuild:
    """Write the mirror directory `out` (replacing it), its MANIFEST.json and the lab checksums file next to it."""
    root, versions = debian_root(cache)
    src = sources(s, root, versions)
    if out.exists():
        shutil.rmtree(out)
    manifest: dict[str, dict[str, object]] = {}
    checksums: dict[str, dict[str, dict[str, str]]] = {}

    def place(url_path: str, data: bytes, members: dict[str, Source]) -> str:
        target = out / url_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        digest = _sha256(data)
        manifest[url_path] = {"sha256": digest, "members": {m: v.origin for m, v in members.items()}}
        return digest

    for b in artifacts.binaries(s):
        members = _binary_members(b, src) if b.archive else {b.file: src[b.file]}
        data = _tar_gz(members) if b.archive else members[b.file].read()
        digest = place(b.url_path, data, members)
        checksums.setdefault(b.name, {}).setdefault(b.version, {})[b.file] = f"sha256:{digest}"

    # docker's static tarball and the compose plugin: no upstream digest; SHA256SUMS next to them
    docker = {f"docker/{n}": src[n] for n in ("dockerd", "docker", "docker-proxy", "docker-init", "containerd",
                                               "containerd-shim-runc-v2", "ctr", "runc")}
    compose = _script("lab stand-in: docker compose plugin (version only)",
                      COMPOSE.replace("$VERSION", docker_engine.COMPOSE_VERSION))
    for staged, data, members in (
        (docker_engine.docker_artifacts()[0], _tar_gz(docker), docker),
        (docker_engine.docker_artifacts()[1], compose.read(), {"docker-compose-linux-x86_64": compose}),
    ):
        digest = place(staged.rel_path, data, members)
        sums = out / staged.sums_rel_path
        sums.write_text(f"{digest}  {staged.name}\n")

    (out / "MANIFEST.json").write_text(json.dumps({"debian": versions, "files": manifest}, indent=2) + "\n")
    checksums_file = out.parent / "lab-checksums.yaml"
    checksums_file.write_text(
        "# Host lab digests (lab/mirror.py): the lab's own builds, NOT the upstream files. Never ship this.\n"
        + yaml.safe_dump(checksums, sort_keys=True))
    return MirrorBuild(out, checksums_file, manifest)


@contextlib.contextmanager
def lab_checksums(path: Path) -> Iterator[None]:
    """Point components.artifacts at the lab's checksums file (in-process) and restore it afterwards."""
    saved = artifacts.CHECKSUMS_FILE
    artifacts.CHECKSUMS_FILE = path
    artifacts._checksums.cache_clear()
    try:
        yield
    finally:
        artifacts.CHECKSUMS_FILE = saved
        artifacts._checksums.cache_clear()


def serve_command(root: Path, address: str, port: int) -> list[str]:
    """The command the lab runner starts inside the mirror host."""
    return ["python3", "-m", "http.server", "--bind", address, str(port), "--directory", str(root)]
