"""Docker engine from the artifacts source, and the staging of files upstream publishes no digest for.

Used by the Harbor registry (docker + compose plugin) and by Rancher in docker mode. Not a component:
functions that return the pieces of a `HostStep` (files, script, undo) and the CopyToRemote uploads.

Digests: a file listed in `components/artifacts_checksums.yaml` is verified against that digest;
Harbor's offline installer, docker's static tarball, the compose plugin, image archives and charts have
no entry there (see the note in that file), so the host verifies them against the `SHA256SUMS` file
staged next to them in the artifacts source (`<dir>/SHA256SUMS`); a file without a line there is
refused. Layout: `<component>/<version>/<file>` for installers, `images/<name>_<tag>.tar` for images.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi
import pulumi_command as command

from components import artifacts
from components.artifacts import chained, copy_to_host
from components.config import ConfigError, Host, Settings
from components.host_step import HostFile, HostStep, HostStepArgs, host_connection, needs_sudo
from components.templating import render

DOCKER_VERSION = "28.5.1"
COMPOSE_VERSION = "v2.40.0"
DOCKER_HOME = "/opt/containercloud/docker"
COMPOSE_PLUGIN = "/usr/local/lib/docker/cli-plugins/docker-compose"
CERTS_D = "/etc/docker/certs.d"


@dataclass(frozen=True)
class Staged:
    """One file taken from the artifacts source into the host's cache, digest-verified."""

    name: str  # file name in the cache
    rel_path: str  # path inside the artifacts source
    checksum: Optional[str] = None  # "<algorithm>:<hex>" from artifacts_checksums.yaml, else SHA256SUMS

    @property
    def sums_rel_path(self) -> str:
        return str(Path(self.rel_path).parent / "SHA256SUMS")


def staged(component: str, version: str, file: str) -> Staged:
    try:
        digest: Optional[str] = artifacts.checksum(component, version, file)
    except ConfigError:
        digest = None
    return Staged(file, f"{component}/{version}/{file}", digest)


def docker_artifacts() -> list[Staged]:
    return [staged("docker", DOCKER_VERSION, f"docker-{DOCKER_VERSION}.tgz"),
            staged("docker-compose", COMPOSE_VERSION, "docker-compose-linux-x86_64")]


def upload_path(rel_path: str) -> str:
    return f"{artifacts.UPLOAD_DIR}/containercloud-{rel_path.replace('/', '-')}"


def source(s: Settings, rel_path: str) -> str:
    if s.artifacts_mirror_url:
        return f"{s.artifacts_mirror_url.rstrip('/')}/{rel_path}"
    return upload_path(rel_path)


def stage_script(s: Settings, cache: str, files: Sequence[Staged]) -> str:
    """Shell: leave a verified copy of every file in `cache` (fetched with curl, or the upload)."""
    items = []
    for f in files:
        algorithm, digest = f.checksum.split(":", 1) if f.checksum else ("sha256", "")
        items.append({"name": f.name, "source": source(s, f.rel_path), "sums": source(s, f.sums_rel_path),
                      "algorithm": algorithm, "digest": digest})
    return render("docker_engine/stage.sh.j2", cache=cache, files=items)


def uploads(s: Settings, prefix: str, connection: command.remote.ConnectionArgs, files: Sequence[Staged],
            parent: pulumi.Resource) -> list[pulumi.Resource]:
    """Directory mode: CopyToRemote of each file and of the SHA256SUMS it is checked against."""
    if s.artifacts_mirror_url:
        return []
    return chained(_upload_rels(files), lambda rel, after: copy_to_host(
        f"{prefix}-upload-{rel.replace('/', '-')}", s, connection, rel, upload_path(rel), parent, after=after))


def _upload_rels(files: Sequence[Staged]) -> list[str]:
    rels = [p for f in files for p in ((f.rel_path,) if f.checksum else (f.rel_path, f.sums_rel_path))]
    return list(dict.fromkeys(rels))


def upload_paths(s: Settings, files: Sequence[Staged]) -> list[str]:
    """What the step removes once it has verified copies in its cache (directory mode)."""
    return [] if s.artifacts_mirror_url else [upload_path(rel) for rel in _upload_rels(files)]


def daemon_json() -> str:
    """No insecure-registries: the registry is trusted through certs.d with our CA."""
    return json.dumps({
        "log-driver": "json-file",
        "log-opts": {"max-size": "50m", "max-file": "5"},
        "live-restore": False,
    }, indent=2) + "\n"


def certs_d_path(registry_hostname: str) -> str:
    return f"{CERTS_D}/{registry_hostname}/ca.crt"


def docker_step(s: Settings, host: Host, private_key: pulumi.Input[str], registry_ca_pem: pulumi.Input[str],
                parent: pulumi.Resource, depends_on: Optional[list[pulumi.Resource]] = None) -> pulumi.Resource:
    """Docker engine + compose plugin on `host`, trusting the registry through certs.d."""
    conn = host_connection(s, host, private_key)
    files = docker_artifacts()
    cache = f"{artifacts.CACHE_DIR}/{host.name}-docker"
    ups = uploads(s, f"{host.name}-docker", conn, files, parent)
    script = stage_script(s, cache, files) + render(
        "docker_engine/install.sh.j2", cache=cache, docker_version=DOCKER_VERSION, docker_home=DOCKER_HOME,
        compose_plugin=COMPOSE_PLUGIN, uploads=upload_paths(s, files))
    undo = render("docker_engine/uninstall.sh.j2", cache=cache, docker_home=DOCKER_HOME,
                  compose_plugin=COMPOSE_PLUGIN, certs_dir=f"{CERTS_D}/{s.registry_hostname}")
    step_files = [
        HostFile("/etc/systemd/system/docker.service",
                 render("docker_engine/docker.service.j2", docker_home=DOCKER_HOME)),
        HostFile("/etc/docker/daemon.json", daemon_json()),
        HostFile(certs_d_path(s.registry_hostname), registry_ca_pem),
    ]
    return HostStep(
        f"{host.name}-docker",
        HostStepArgs(host=host.name, connection=conn, script=script, delete_script=undo, files=step_files,
                     use_sudo=needs_sudo(s, host)),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=(depends_on or []) + ups),
    ).command
