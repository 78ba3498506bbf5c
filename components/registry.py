"""Harbor: `containercloud:registry:Harbor` — the registry over https from our CA, single node or HA.

On every registry host: docker + compose plugin (components/docker_engine.py, which also trusts the
registry through /etc/docker/certs.d), in HA the shared storage mounted at the data path, then the
offline installer unpacked and `install.sh` run when harbor.yml, the certificate or the version
changes, and a bounded wait for `/api/v2.0/health`. On the first registry host: the projects
(`library` private; `system` and `rancher` public for pulls, because kubelets and Rancher's system
default registry pull anonymously — pushes need the admin) and the image mirror (load, tag, push,
verify the digest). The admin password, database password and secret key come from pulumi-random and
reach the hosts only as 0600 files over stdin. Deleting a host's step keeps the data volume.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_random as random
import pulumi_tls as tls
import yaml

from components import artifacts, docker_engine
from components.config import Host, Settings, StackSecrets
from components.docker_engine import Staged
from components.host_step import (
    HostFile,
    HostStep,
    HostStepArgs,
    host_connection,
    needs_sudo,
    password_file,
    passwords_script,
    placeholder,
)
from components.pki import ClusterPki, Issued, KeyPair
from components.templating import render

HTTP_PORT = 80
HTTPS_PORT = 443
ADMIN_PASSWORD_LENGTH = 32
SECRET_KEY_LENGTH = 16  # Harbor's secretkey is exactly 16 characters
JOB_WORKERS = 10
LOG_ROTATE_COUNT = 50
LOG_ROTATE_SIZE = "200M"
HEALTH_RETRIES = 60
INSTALL_ROOT = "/opt/containercloud/harbor"
CONFIG_DIR = "/etc/containercloud/registry"
API_DIR = "/etc/containercloud/registry-api"
REDACTED = "[secret]"
# (name, public): pulls of system and Rancher images are anonymous; `library` holds the teams' images.
PROJECTS = (("library", False), ("system", True), (artifacts.RANCHER_PROJECT, True))


@dataclass(frozen=True)
class MirrorImage:
    name: str
    source: str
    target: str
    project: str
    repository: str
    tag: str

    @property
    def archive(self) -> str:
        return f"{self.name}_{self.tag}.tar"

    @property
    def staged(self) -> Staged:
        return Staged(self.archive, f"images/{self.archive}")


def mirror_image(image: artifacts.Image, registry_hostname: str) -> MirrorImage:
    ref = image.target.removeprefix(f"{registry_hostname}/")
    project, rest = ref.split("/", 1)
    repository, tag = rest.rsplit(":", 1)
    return MirrorImage(image.name, image.source, image.target, project, repository, tag)


def api_script(s: Settings, directory: str) -> str:
    """`harbor_api` (curl through our CA, the admin's credential from a 0600 curl config) for a script on the
    first registry host, which reaches Harbor at 127.0.0.1."""
    return render("registry/api.sh.j2", hostname=s.registry_hostname, https_port=HTTPS_PORT,
                  resolve_to="127.0.0.1", ca_path=f"{directory}/ca.crt", curlrc_path=f"{directory}/admin.curlrc")


def rancher_release_files(s: Settings) -> list[Staged]:
    """The pinned Rancher release's image list and the archive its rancher-save-images.sh made of it."""
    return [docker_engine.staged("rancher", s.rancher_version, f)
            for f in (artifacts.RANCHER_IMAGE_LIST, artifacts.RANCHER_IMAGE_ARCHIVE)]


@dataclass(frozen=True)
class HarborArgs:
    settings: Settings
    ssh_private_key: pulumi.Input[str]
    ca_pem: pulumi.Input[str]
    cert: KeyPair
    token_ca: KeyPair  # signs the HA token-service certificate
    database_password: pulumi.Input[str]  # ha: the external PostgreSQL's (secret)
    redis_password: pulumi.Input[str]  # ha: the external Redis's (secret)
    images: tuple[MirrorImage, ...]

    @staticmethod
    def from_settings(s: Settings, secrets: StackSecrets, pki: ClusterPki) -> HarborArgs:
        return HarborArgs(
            settings=s,
            ssh_private_key=secrets.ssh_private_key,
            ca_pem=pki.ca_bundle("kubernetes"),
            cert=pki.certs["registry"],
            token_ca=pki.cas["kubernetes"],
            database_password=secrets.registry_database_password,
            redis_password=secrets.registry_redis_password,
            images=tuple(mirror_image(i, s.registry_hostname) for i in artifacts.images(s)),
        )

    @property
    def ha(self) -> bool:
        return self.settings.registry_mode == "ha"


# --- harbor.yml ------------------------------------------------------------------------------------

def data_path(s: Settings) -> str:
    return s.registry_data_path.rstrip("/") or "/"


def install_dir(s: Settings) -> str:
    return f"{INSTALL_ROOT}/{s.registry_version}/harbor"


DIRECTORY_CA = f"{CONFIG_DIR}/directory-ca.crt"
HARBOR_YML_IN = f"{CONFIG_DIR}/harbor.yml.in"  # harbor.yml with "<secret:NAME>" for each password: not secret
SECRETS_DIR = f"{CONFIG_DIR}/secrets"  # one 0600 JSON string per password, over stdin


def harbor_yml(s: Settings, admin_password: str, database_password: str, redis_password: str) -> str:
    host, _, port = s.registry_database_address.rpartition(":")
    return render(
        "registry/harbor.yml.j2",
        version=s.registry_version,
        schema_version=s.registry_version.lstrip("v").rsplit(".", 1)[0] + ".0",
        hostname=s.registry_hostname,
        http_port=HTTP_PORT,
        https_port=HTTPS_PORT,
        cert_path=f"{CONFIG_DIR}/tls.crt",
        key_path=f"{CONFIG_DIR}/tls.key",
        admin_password=admin_password,
        external=s.registry_mode == "ha",
        database={"host": host, "port": port or "5432"},
        database_password=database_password,
        redis_address=s.registry_redis_address,
        redis_password=redis_password,
        data_volume=data_path(s),
        ca_bundle=DIRECTORY_CA if s.directory.enabled else "",
        job_workers=JOB_WORKERS,
        log_rotate_count=LOG_ROTATE_COUNT,
        log_rotate_size=LOG_ROTATE_SIZE,
    )


def redacted_config(s: Settings) -> dict[str, Any]:
    """harbor.yml's structure with every password replaced by "[secret]": what the policy pack checks."""
    return yaml.safe_load(harbor_yml(s, REDACTED, REDACTED, REDACTED))


def _props(args: HarborArgs) -> dict[str, Any]:
    s = args.settings
    return {
        "hosts": [h.name for h in s.registry_hosts],
        "hostname": s.registry_hostname,
        "https": True,
        "httpPort": HTTP_PORT,
        "httpsPort": HTTPS_PORT,
        "mode": s.registry_mode,
        "version": s.registry_version,
        "adminPasswordLength": ADMIN_PASSWORD_LENGTH,
        "harborConfig": copy.deepcopy(redacted_config(s)),
        "dataPath": data_path(s),
        "sharedStorage": s.registry_shared_storage if args.ha else "",
        "projects": [{"name": n, "public": p} for n, p in PROJECTS],
        "images": [i.target for i in args.images],
        "rancherImages": {"list": f"rancher/{s.rancher_version}/{artifacts.RANCHER_IMAGE_LIST}",
                          "repositories": list(artifacts.RANCHER_REPOSITORIES)},
    }


# --- the component ---------------------------------------------------------------------------------

class Harbor(pulumi.ComponentResource):
    """Harbor on the registry hosts: `containercloud:registry:Harbor`."""

    url: str
    admin_password: pulumi.Output[str]
    ready: list[pulumi.Resource]  # the image mirror: everything is in Harbor once these are done
    certificates: list[Issued]  # what it issues itself (ha: the token-service certificate)

    def __init__(self, name: str, args: HarborArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("containercloud:registry:Harbor", name, _props(args), opts)
        self.args = args
        s = args.settings
        self.url = f"https://{s.registry_hostname}"
        admin = random.RandomPassword(f"{name}-admin-password", length=ADMIN_PASSWORD_LENGTH, special=False,
                                      min_upper=2, min_lower=2, min_numeric=2, opts=self._child())
        self.admin_password = pulumi.Output.secret(admin.result)
        if args.ha:
            db_password: pulumi.Input[str] = args.database_password
        else:
            db = random.RandomPassword(f"{name}-database-password", length=ADMIN_PASSWORD_LENGTH, special=False,
                                       opts=self._child())
            db_password = db.result
        passwords = {"harbor-admin": self.admin_password, "harbor-database": db_password}
        if args.ha:
            passwords["harbor-redis"] = args.redis_password
        self.password_files = [password_file(SECRETS_DIR, n, p) for n, p in passwords.items()]
        self.password_names = list(passwords)
        # what a preview (and the policy pack) reads before any password exists: the whole harbor.yml
        self.harbor_yml_in = harbor_yml(s, placeholder("harbor-admin"), placeholder("harbor-database"),
                                        placeholder("harbor-redis"))
        self.certificates = []
        shared = self._shared_secrets(name) if args.ha else []
        self.harbor_steps = self._rolling([self._host_deps(h) for h in s.registry_hosts], shared)
        first = s.registry_hosts[0]
        projects = self._projects(first)
        self.ready = [self._images(first, projects)]
        # artifactsDirectory mode: the binaries every host installs, published once (components/artifacts.py)
        self.artifacts_ready: list[pulumi.Resource] = (
            [self._publish_artifacts(first, projects)] if artifacts.registry_mode(s) else [])
        self.register_outputs({"url": self.url, "adminPassword": self.admin_password})

    def _shared_secrets(self, name: str) -> list[HostFile]:
        """HA: one secretkey and one token-signing key/cert for every instance (Harbor's prepare would
        otherwise generate its own on each host). Harbor signs tokens with RS256, so the key is RSA
        whatever keyAlgorithm says; the certificate only carries digital_signature + code_signing, so it
        authenticates nothing else that trusts the cluster CA."""
        s = self.args.settings
        secret_key = random.RandomPassword(f"{name}-secret-key", length=SECRET_KEY_LENGTH, special=False,
                                           opts=self._child())
        token_key = tls.PrivateKey(f"{name}-token-key", algorithm="RSA", rsa_bits=4096, opts=self._child())
        csr = tls.CertRequest(f"{name}-token-csr", private_key_pem=token_key.private_key_pem,
                              subject=tls.CertRequestSubjectArgs(common_name="harbor-token-service"),
                              opts=self._child())
        cert = tls.LocallySignedCert(
            f"{name}-token-cert", cert_request_pem=csr.cert_request_pem, ca_cert_pem=self.args.token_ca.cert_pem,
            ca_private_key_pem=self.args.token_ca.key_pem, allowed_uses=["digital_signature", "code_signing"],
            validity_period_hours=s.cert_validity_hours, early_renewal_hours=s.cert_early_renewal_hours,
            opts=self._child())
        self.certificates.append(Issued.of(f"{name}-token", "kubernetes", "harbor-token-service",
                                           s.cert_early_renewal_hours, cert))
        return [
            HostFile(f"{data_path(s)}/secret/keys/secretkey", secret_key.result, "0600", secret=True),
            HostFile(f"{data_path(s)}/secret/core/private_key.pem",
                     pulumi.Output.secret(token_key.private_key_pem), "0600", secret=True),
            HostFile(f"{data_path(s)}/secret/registry/root.crt", cert.cert_pem),
        ]

    def _child(self, depends_on: Optional[list[pulumi.Resource]] = None) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, depends_on=depends_on or [])

    def _host_deps(self, host: Host) -> tuple[Host, list[pulumi.Resource]]:
        """A registry host's docker engine and, in ha, its shared storage: what its Harbor waits for."""
        s = self.args.settings
        docker = docker_engine.docker_step(s, host, self.args.ssh_private_key, self.args.ca_pem, self)
        deps: list[pulumi.Resource] = [docker]
        if self.args.ha:
            deps.append(self._storage(host))
        return host, deps

    def _rolling(self, hosts: list[tuple[Host, list[pulumi.Resource]]],
                 shared: list[HostFile]) -> list[pulumi.Resource]:
        """One Harbor after the other: each host's step waits for the previous host's, which ends only when
        that instance answers healthy; a change that restarts Harbor (a version, a renewed certificate)
        never has two instances down behind the registry load balancer."""
        steps: list[pulumi.Resource] = []
        for host, deps in hosts:
            steps.append(self._harbor(host, shared, [*deps, *steps[-1:]]))
        return steps

    def _storage(self, host: Host) -> pulumi.Resource:
        s = self.args.settings
        fstype, spec = s.registry_shared_storage.split(":", 1)
        options = "_netdev,nofail,hard,noatime" if fstype == "nfs" else "_netdev,nofail,noatime,name=harbor"
        mount_point = data_path(s)
        values = dict(source=spec, mount_point=mount_point, fstype=fstype,
                      fstab_line=f"{spec} {mount_point} {fstype} {options} 0 0")
        return HostStep(
            f"{host.name}-registry-storage",
            HostStepArgs(host=host.name, connection=host_connection(s, host, self.args.ssh_private_key),
                         script=render("registry/storage.sh.j2", **values),
                         delete_script=render("registry/storage-undo.sh.j2", **values),
                         use_sudo=needs_sudo(s, host)),
            opts=self._child()).command

    def _harbor(self, host: Host, shared: list[HostFile], deps: list[pulumi.Resource]) -> pulumi.Resource:
        s = self.args.settings
        conn = host_connection(s, host, self.args.ssh_private_key)
        installer = docker_engine.staged("harbor", s.registry_version,
                                         f"harbor-offline-installer-{s.registry_version}.tgz")
        cache = f"{artifacts.CACHE_DIR}/{host.name}-harbor"
        ups = docker_engine.uploads(s, f"{host.name}-harbor", conn, [installer], self)
        files = [
            HostFile(HARBOR_YML_IN, self.harbor_yml_in),
            *self.password_files,
            HostFile(f"{CONFIG_DIR}/tls.crt", self.args.cert.cert_pem),
            HostFile(f"{CONFIG_DIR}/tls.key", self.args.cert.key_pem, "0600", secret=True),
            HostFile(f"{CONFIG_DIR}/ca.crt", self.args.ca_pem),
            *shared,
        ]
        if s.directory.enabled:  # harbor.yml's storage_service.ca_bundle: Harbor core trusts the directory's CA
            files.append(HostFile(DIRECTORY_CA, s.directory.ca_certificate))
        values = dict(
            version=s.registry_version, install_root=INSTALL_ROOT, install_dir=install_dir(s),
            version_dir=f"{INSTALL_ROOT}/{s.registry_version}", installer=installer.name,
            uploads=docker_engine.upload_paths(s, [installer]),
            watched=[f.path for f in files if not f.path.endswith("ca.crt")],
            health_retries=HEALTH_RETRIES, ca_path=f"{CONFIG_DIR}/ca.crt", hostname=s.registry_hostname,
            https_port=HTTPS_PORT, health_url=f"https://{s.registry_hostname}/api/v2.0/health",
        )
        script = (docker_engine.stage_script(s, cache, [installer])
                  + passwords_script(SECRETS_DIR, *self.password_names)
                  + render("registry/harbor.sh.j2", harbor_yml_in=HARBOR_YML_IN, **values))
        undo = render("registry/harbor-undo.sh.j2", install_root=INSTALL_ROOT, config_dir=CONFIG_DIR, cache=cache,
                      data_volume=data_path(s))
        return HostStep(
            f"{host.name}-harbor",
            HostStepArgs(host=host.name, connection=conn, script=script, delete_script=undo, files=files,
                         use_sudo=needs_sudo(s, host)),
            opts=self._child(deps + ups)).command

    def _api_files(self) -> list[HostFile]:
        curlrc = self.admin_password.apply(lambda p: f'user = "admin:{p}"\n')
        return [
            HostFile(f"{API_DIR}/ca.crt", self.args.ca_pem),
            HostFile(f"{API_DIR}/admin.curlrc", curlrc, "0600", secret=True),
            HostFile(f"{API_DIR}/admin.password", self.admin_password, "0600", secret=True),
        ]

    def _api(self) -> str:
        return api_script(self.args.settings, API_DIR)

    def api_files(self, directory: str) -> list[HostFile]:
        """The CA and the admin's 0600 curl config for a step of another component that calls Harbor's API
        on the first registry host (with `api_script(settings, directory)`)."""
        curlrc = self.admin_password.apply(lambda p: f'user = "admin:{p}"\n')
        return [HostFile(f"{directory}/ca.crt", self.args.ca_pem),
                HostFile(f"{directory}/admin.curlrc", curlrc, "0600", secret=True)]

    def _projects(self, host: Host) -> pulumi.Resource:
        s = self.args.settings
        projects = [{"name": n, "public": "true" if p else "false"} for n, p in PROJECTS]
        return HostStep(
            f"{host.name}-harbor-projects",
            HostStepArgs(host=host.name, connection=host_connection(s, host, self.args.ssh_private_key),
                         script=self._api() + render("registry/projects.sh.j2", projects=projects),
                         delete_script=f"rm -f {API_DIR}/admin.curlrc {API_DIR}/admin.password {API_DIR}/ca.crt\n"
                                       "# the projects and their images stay in Harbor (its data is kept)\n",
                         files=self._api_files(), use_sudo=needs_sudo(s, host)),
            opts=self._child(list(self.harbor_steps))).command

    def _publish_artifacts(self, host: Host, projects: pulumi.Resource) -> pulumi.Resource:
        """The deployer's one copy of each binary (to this host only) pushed into the `system` project."""
        s = self.args.settings
        conn = host_connection(s, host, self.args.ssh_private_key)
        step = f"{host.name}-artifacts-publish"
        ups = artifacts.publish_uploads(s, conn, self)
        return HostStep(
            step,
            HostStepArgs(host=host.name, connection=conn,
                         script=artifacts.publish_script(s, step, f"{API_DIR}/ca.crt", f"{API_DIR}/admin.curlrc",
                                                         artifacts.binaries(s)),
                         delete_script=artifacts.publish_undo(s, step), files=self._api_files(),
                         use_sudo=needs_sudo(s, host)),
            opts=self._child([projects] + ups)).command

    def _images(self, host: Host, projects: pulumi.Resource) -> pulumi.Resource:
        s = self.args.settings
        conn = host_connection(s, host, self.args.ssh_private_key)
        cache = f"{artifacts.CACHE_DIR}/{host.name}-images"
        rancher = rancher_release_files(s)
        staged = [i.staged for i in self.args.images] + rancher
        ups = docker_engine.uploads(s, f"{host.name}-images", conn, staged, self)
        body = render("registry/images.sh.j2", hostname=s.registry_hostname, password_path=f"{API_DIR}/admin.password",
                      images=self.args.images, rancher_version=s.rancher_version,
                      rancher_list=artifacts.RANCHER_IMAGE_LIST, rancher_archive=artifacts.RANCHER_IMAGE_ARCHIVE,
                      rancher_repositories=list(artifacts.RANCHER_REPOSITORIES),
                      keep=[f.name for f in staged], uploads=docker_engine.upload_paths(s, staged))
        return HostStep(
            f"{host.name}-harbor-images",
            HostStepArgs(host=host.name, connection=conn,
                         script=docker_engine.stage_script(s, cache, staged) + self._api() + body,
                         delete_script=f"rm -rf {cache}\n# pushed images stay in Harbor\n",
                         files=self._api_files(), use_sudo=needs_sudo(s, host)),
            opts=self._child([projects] + ups)).command
