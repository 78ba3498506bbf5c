"""Issue 5: Harbor (single and HA), registry trust, image mirror — under the harness, dev and ha stacks."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Optional

import yaml

from components import artifacts, docker_engine
from components.config import parse_settings
from components.host_step import passwords_script
from offline.engine.mocks import unwrap
from offline.engine.runner import ROOT, ProgramRun, load_stack_config
from tests.k8s_support import host_step

REGISTRY = "containercloud:registry:Harbor"
COMMAND = "command:remote:Command"


def step_files(run: ProgramRun, name: str) -> dict[str, dict[str, Any]]:
    """The files the step places, as the host receives them (decoded from its Command)."""
    return {f["path"]: f for f in host_step(run, name)[1]["files"]}


def step_file_secret(run: ProgramRun, name: str, path: str) -> bool:
    """Whether the file reaches the host only over the Command's secret stdin: not in its `create`."""
    cmd, step = host_step(run, name)
    entry = next(f for f in step["files"] if f["path"] == path)
    return (bool(entry["secret"]) and cmd.input_is_secret("stdin") and bool(entry["content"])
            and entry["content"] not in cmd.plain_inputs["create"])


def full_script(run: ProgramRun, name: str, key: str = "create") -> str:
    """The step script the wrapper writes on the host (inside its quoted heredoc)."""
    text = run.named(name, COMMAND).plain_inputs[key]
    return text.split("<<'CC_STEP_EOF'\n", 1)[1].split("\nCC_STEP_EOF\n", 1)[0] + "\n"


def harbor_yml(run: ProgramRun, host: str, tmp_path: Optional[Path] = None) -> dict[str, Any]:
    """harbor.yml as the step writes it on the host: its fill_passwords run by bash on harbor.yml.in and the
    password files the step receives."""
    import tempfile

    from components.registry import HARBOR_YML_IN, SECRETS_DIR

    files = step_files(run, f"{host}-harbor")
    work = Path(tmp_path or tempfile.mkdtemp())
    names = []
    for path, f in files.items():
        if path.startswith(SECRETS_DIR + "/"):
            (work / Path(path).name).write_text(f["content"])
            names.append(Path(path).stem)
    (work / "harbor.yml.in").write_text(files[HARBOR_YML_IN]["content"])
    script = passwords_script(str(work), *names) + f'fill_passwords "{work}/harbor.yml.in" "{work}/harbor.yml"\n'
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=True)
    assert (work / "harbor.yml").stat().st_mode & 0o777 == 0o600
    return yaml.safe_load((work / "harbor.yml").read_text())


def openssl_verify(tmp_path: Path, ca: str, cert: str, hostname: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "ca.pem").write_text(ca)
    (tmp_path / "cert.pem").write_text(cert)
    return subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), "-verify_hostname", hostname,
                           str(tmp_path / "cert.pem")], capture_output=True, text=True)


def settings_of(stack: str):  # type: ignore[no-untyped-def]
    cfg = load_stack_config(stack)
    return parse_settings({k.split(":", 1)[1]: v for k, v in cfg.values.items()})


# --- harbor.yml -------------------------------------------------------------------------------------

def test_single_harbor_yml_is_https_with_our_cert_and_generated_passwords(dev: ProgramRun, tmp_path: Path) -> None:
    cfg = harbor_yml(dev, "harbor-1")
    files = step_files(dev, "harbor-1-harbor")
    assert cfg["hostname"] == "harbor.corp.example"
    assert cfg["http"] == {"port": 80}
    assert cfg["https"]["port"] == 443
    cert, key = cfg["https"]["certificate"], cfg["https"]["private_key"]
    assert files[key]["mode"] == "0600" and step_file_secret(dev, "harbor-1-harbor", key)
    ca = dev.outputs["kubernetesCaCertificate"]
    result = openssl_verify(tmp_path, ca, files[cert]["content"], "harbor.corp.example")
    assert result.returncode == 0, result.stderr
    assert openssl_verify(tmp_path, ca, files[cert]["content"], "rancher-1").returncode != 0
    password = cfg["harbor_admin_password"]
    assert password == dev.outputs["registryAdminPassword"]
    assert len(password) >= 24 and password != "Harbor12345"
    assert len(cfg["database"]["password"]) >= 24 and cfg["database"]["password"] != "root123"
    assert "external_database" not in cfg and "external_redis" not in cfg
    assert cfg["data_volume"] == "/data/harbor"
    assert cfg["log"]["local"]["rotate_count"] > 0 and cfg["jobservice"]["max_job_workers"] > 0
    assert cfg["trivy"]["skip_update"] is True and cfg["trivy"]["offline_scan"] is True


def test_harbor_yml_ships_without_passwords_which_come_as_secret_0600_files(dev: ProgramRun, ha: ProgramRun) -> None:
    """harbor.yml.in (what the policy pack and a first preview read) holds no password; each password is its
    own secret 0600 file over stdin; the step writes harbor.yml 0600 (harbor_yml() above runs its filling)."""
    from components.registry import HARBOR_YML_IN, SECRETS_DIR

    for run, names in ((dev, {"harbor-admin", "harbor-database"}),
                       (ha, {"harbor-admin", "harbor-database", "harbor-redis"})):
        files = step_files(run, "harbor-1-harbor")
        assert not step_file_secret(run, "harbor-1-harbor", HARBOR_YML_IN)
        secrets = {Path(p).stem: f for p, f in files.items() if p.startswith(SECRETS_DIR + "/")}
        assert set(secrets) == names
        for name, f in secrets.items():
            assert f["mode"] == "0600" and step_file_secret(run, "harbor-1-harbor", f["path"])
            assert json.loads(f["content"]) not in files[HARBOR_YML_IN]["content"]
            assert f'"<secret:{name}>"' in files[HARBOR_YML_IN]["content"]
        assert not any(p.endswith("/harbor.yml") for p in files)
    assert dev.named("harbor-1-harbor", COMMAND).input_is_secret("stdin")
    assert "registryAdminPassword" in dev.secret_outputs


def test_ha_harbor_yml_uses_external_services_and_shared_storage(ha: ProgramRun) -> None:
    s = settings_of("ha")
    cfgs = [harbor_yml(ha, h.name) for h in s.registry_hosts]
    assert len(cfgs) == 2 and cfgs[0] == cfgs[1]
    cfg = cfgs[0]
    assert cfg["hostname"] == "harbor.corp.example"
    assert "database" not in cfg
    db = cfg["external_database"]["harbor"]
    assert (db["host"], db["port"]) == ("203.0.113.50", 5432)
    assert db["password"].startswith("PLACEHOLDER-SECRET:registryDatabasePassword")
    assert cfg["external_redis"]["host"] == "203.0.113.51:6379"
    assert cfg["external_redis"]["password"].startswith("PLACEHOLDER-SECRET:registryRedisPassword")
    assert cfg["data_volume"] == s.registry_data_path
    for h in s.registry_hosts:
        storage = host_step(ha, f"{h.name}-registry-storage")[1]
        assert storage["host"] == h.name
        assert f"203.0.113.60:/export/harbor {s.registry_data_path} nfs " in storage["script"]
        assert "umount" in storage["deleteScript"]
        harbor = ha.named(f"{h.name}-harbor", COMMAND)
        storage_cmd = ha.named(f"{h.name}-registry-storage", COMMAND).urn
        docker_cmd = ha.named(f"{h.name}-docker", COMMAND).urn
        assert storage_cmd in harbor.dependencies and docker_cmd in harbor.dependencies


def test_ha_instances_share_secret_key_and_token_cert(ha: ProgramRun, dev: ProgramRun, tmp_path: Path) -> None:
    assert not [p for p in step_files(dev, "harbor-1-harbor") if "/secret/" in p]  # single: Harbor's own
    a, b = step_files(ha, "harbor-1-harbor"), step_files(ha, "harbor-2-harbor")
    for suffix in ("/secret/keys/secretkey", "/secret/core/private_key.pem", "/secret/registry/root.crt"):
        path = next(p for p in a if p.endswith(suffix))
        assert a[path]["content"] == b[path]["content"]
    key = next(v["content"] for p, v in a.items() if p.endswith("/secretkey"))
    assert len(key) == 16
    token_cert = next(v["content"] for p, v in a.items() if p.endswith("/root.crt"))
    ca = ha.outputs["kubernetesCaCertificate"]
    (tmp_path / "ca.pem").write_text(ca)
    (tmp_path / "token.pem").write_text(token_cert)
    # signs tokens only: it must not pass as a TLS client or server of anything trusting the CA
    for purpose in ("sslclient", "sslserver"):
        out = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), "-purpose", purpose,
                              str(tmp_path / "token.pem")], capture_output=True, text=True)
        assert out.returncode != 0

    assert step_file_secret(ha, "harbor-1-harbor", next(p for p in a if p.endswith("/secretkey")))


def test_props_carry_a_redacted_config_and_no_secret(dev: ProgramRun, ha: ProgramRun) -> None:
    for run, mode in ((dev, "single"), (ha, "ha")):
        props = run.of_type(REGISTRY)[0].plain_inputs
        assert props["mode"] == mode and props["https"] is True
        assert props["httpPort"] == 80 and props["httpsPort"] == 443 and props["adminPasswordLength"] >= 24
        cfg = props["harborConfig"]
        assert cfg["harbor_admin_password"] == "[secret]"
        assert cfg["https"]["certificate"].endswith("tls.crt")
        text = yaml.safe_dump(props)
        assert run.outputs["registryAdminPassword"] not in text
        assert "PLACEHOLDER-SECRET" not in text
    assert ha.of_type(REGISTRY)[0].plain_inputs["harborConfig"]["external_database"]["harbor"]["password"] == "[secret]"


# --- trust, projects, mirror ------------------------------------------------------------------------

def test_docker_trusts_the_registry_ca_without_insecure_registry(dev: ProgramRun) -> None:
    ca = dev.outputs["kubernetesCaCertificate"]
    for host in ("harbor-1", "rancher-1"):
        files = step_files(dev, f"{host}-docker")
        assert files["/etc/docker/certs.d/harbor.corp.example/ca.crt"]["content"] == ca
        assert "insecure" not in files["/etc/docker/daemon.json"]["content"]
    for r in dev.registrations:
        if r.type == COMMAND:
            assert "insecure-registr" not in str(r.plain_inputs)


def test_every_worker_containerd_trusts_the_registry_ca(dev: ProgramRun, ha: ProgramRun) -> None:
    for run, stack in ((dev, "dev"), (ha, "ha")):
        s = settings_of(stack)
        ca = run.outputs["kubernetesCaCertificate"]
        for h in s.worker_hosts:
            files = step_files(run, f"{h.name}-runtime")
            hosts_toml = files[f"/etc/containerd/certs.d/{s.registry_hostname}/hosts.toml"]["content"]
            ca_file = re.search(r'ca = "([^"]+)"', hosts_toml)
            assert ca_file and files[ca_file[1]]["content"] == ca
            assert f'server = "https://{s.registry_hostname}"' in hosts_toml


def test_projects_created_through_the_api_with_a_0600_credential(dev: ProgramRun) -> None:
    step, props = host_step(dev, "harbor-1-harbor-projects")
    script = props["script"]
    assert '"project_name":"library","metadata":{"public":"false"}' in script
    assert '"project_name":"system","metadata":{"public":"true"}' in script
    assert '"project_name":"rancher","metadata":{"public":"true"}' in script
    assert "-K /etc/containercloud/registry-api/admin.curlrc" in script and " -u " not in script
    files = step_files(dev, "harbor-1-harbor-projects")
    rc = files["/etc/containercloud/registry-api/admin.curlrc"]
    assert rc["mode"] == "0600" and rc["content"] == f'user = "admin:{dev.outputs["registryAdminPassword"]}"\n'
    assert dev.named("harbor-1-harbor", COMMAND).urn in step.dependencies


def test_image_mirror_pushes_every_pinned_image_and_verifies_digests(dev: ProgramRun) -> None:
    s = settings_of("dev")
    step = dev.named("harbor-1-harbor-images", COMMAND)
    script = full_script(dev, "harbor-1-harbor-images")
    wanted = artifacts.images(s)
    assert {i.name for i in wanted} >= {"pause", "flannel", "coredns"}
    for image in wanted:
        assert image.target.startswith("harbor.corp.example/system/")
        assert f"mirror_image {image.name}_{image.target.rsplit(':', 1)[1]}.tar {image.source} {image.target}" in script
    # Rancher's images: the lines of the release's rancher-images.txt (issue 12.7), staged with its archive
    assert not [i for i in wanted if i.source.startswith("rancher/")]
    assert f"rancher_selection \"$cache\"/rancher-images.txt {' '.join(artifacts.RANCHER_REPOSITORIES)}" in script
    assert "--password-stdin" in script and "docker login" in script
    assert 'have != "$want"' in script  # the pushed digest is compared with Harbor's
    assert dev.named("harbor-1-harbor-projects", COMMAND).urn in step.dependencies
    # directory mode: each archive and the SHA256SUMS it is checked against are uploaded
    uploads = {r.name for r in dev.of_type("command:remote:CopyToRemote") if r.name.startswith("harbor-1-images")}
    rancher = f"harbor-1-images-upload-rancher-{s.rancher_version}"
    assert {f"{rancher}-rancher-images.txt", f"{rancher}-rancher-images.tar.gz", f"{rancher}-SHA256SUMS"} <= uploads
    assert "harbor-1-images-upload-images-SHA256SUMS" in uploads and len(uploads) == len(wanted) + 1 + 3


def test_no_credential_on_a_command_line(dev: ProgramRun, ha: ProgramRun) -> None:
    for run in (dev, ha):
        secrets = [run.outputs["registryAdminPassword"], run.outputs["rancherAdminPassword"]]
        secrets += [unwrap(r.outputs["result"]) for r in run.of_type("random:index/randomPassword:RandomPassword")]
        harbor = run.of_type(REGISTRY)[0]
        for r in run.registrations:
            if r.type == COMMAND:
                text = str(r.plain_inputs.get("create", "")) + str(r.plain_inputs.get("delete", ""))
                assert not any(sec in text for sec in secrets), r.name
                assert "PLACEHOLDER-SECRET" not in text, r.name
        assert not any(sec in str(harbor.plain_inputs) for sec in secrets)


def test_default_password_appears_nowhere_in_the_program() -> None:
    # policy/ is excluded: its credentials rule names the default in order to reject it
    out = subprocess.run(["grep", "-rl", "Harbor12345", "--exclude-dir=tests", "--exclude-dir=policy",
                          "--exclude-dir=.venv", "--exclude-dir=.git", "--exclude-dir=build",
                          "--exclude-dir=node_modules", "--exclude-dir=.mypy_cache", "--exclude-dir=.ruff_cache", "."],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.stdout == ""


def test_every_registry_script_passes_shellcheck(dev: ProgramRun, ha: ProgramRun, tmp_path: Path) -> None:
    paths = []
    for run in (dev, ha):
        for r in run.of_type(COMMAND):
            if any(k in r.name for k in ("harbor", "docker", "registry-storage")):
                for key in ("create", "delete"):
                    p = tmp_path / f"{run.stack}-{r.name}-{key}.sh"
                    p.write_text(full_script(run, r.name, key))
                    paths.append(str(p))
    assert len(paths) >= 16
    out = subprocess.run(["shellcheck", "-s", "bash", *paths], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


# --- staging: the digest check really runs ----------------------------------------------------------

def _stage(tmp_path: Path, content: bytes, sums_line: str | None) -> subprocess.CompletedProcess[str]:
    s = settings_of("dev")
    rel = f"h3test/{tmp_path.name}/thing.tgz"
    staged = docker_engine.Staged("thing.tgz", rel)
    upload = Path(docker_engine.upload_path(rel))
    sums = Path(docker_engine.upload_path(staged.sums_rel_path))
    upload.write_bytes(content)
    if sums_line is not None:
        sums.write_text(sums_line)
    script = "set -euo pipefail\n" + docker_engine.stage_script(s, str(tmp_path / "cache"), [staged])
    try:
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    finally:
        upload.unlink(missing_ok=True)
        sums.unlink(missing_ok=True)


def test_stage_verifies_against_sha256sums(tmp_path: Path) -> None:
    import hashlib
    good = b"installer\n"
    digest = hashlib.sha256(good).hexdigest()
    ok = _stage(tmp_path, good, f"{digest}  thing.tgz\n")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "cache" / "thing.tgz").read_bytes() == good
    assert (tmp_path / "cache" / "thing.tgz.sha256").read_text().strip() == digest
    # cached, uploads gone: a re-run still verifies from the recorded digest
    again = subprocess.run(["bash", "-c", "set -euo pipefail\n" + docker_engine.stage_script(
        settings_of("dev"), str(tmp_path / "cache"),
        [docker_engine.Staged("thing.tgz", f"h3test/{tmp_path.name}/thing.tgz")])], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr


def test_stage_refuses_a_tampered_or_unlisted_file(tmp_path: Path) -> None:
    import hashlib
    digest = hashlib.sha256(b"installer\n").hexdigest()
    (tmp_path / "a").mkdir()
    bad = _stage(tmp_path / "a", b"tampered\n", f"{digest}  thing.tgz\n")
    assert bad.returncode != 0 and "mismatch" in bad.stderr
    assert not (tmp_path / "a" / "cache" / "thing.tgz").exists()
    (tmp_path / "b").mkdir()
    missing = _stage(tmp_path / "b", b"installer\n", f"{digest}  other.tgz\n")
    assert missing.returncode != 0 and "no sha256 line" in missing.stderr


# --- issue 12.1: Harbor's health answer is parsed as JSON -------------------------------------------------

HARBOR_HEALTH = {  # the shape /api/v2.0/health answers (issue 12.1): components first, then the overall status
    "healthy": '{"components":[{"name":"core","status":"healthy"},{"name":"database","status":"healthy"}],'
               '"status":"healthy"}',
    "unhealthy": '{"components":[{"name":"core","status":"healthy"},{"name":"redis","status":"unhealthy"}],'
                 '"status":"unhealthy"}',
}


def _run_health_wait(dev: ProgramRun, tmp_path: Path, answer: str) -> subprocess.CompletedProcess[str]:
    script = full_script(dev, "harbor-1-harbor")
    start = script.index("healthy=0\n")
    end = script.index("fi\n", script.index("if (( ! healthy ))")) + 3
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text(f"#!/bin/sh\nprintf '%s' '{answer}'\n")
    (bin_dir / "sleep").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    body = "set -euo pipefail\n" + script[start:end]
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    return subprocess.run(["bash", "-c", body], capture_output=True, text=True, env=env)


def test_harbor_wait_accepts_the_real_health_answer(dev: ProgramRun, tmp_path: Path) -> None:
    assert _run_health_wait(dev, tmp_path, HARBOR_HEALTH["healthy"]).returncode == 0


def test_harbor_wait_refuses_an_unhealthy_answer(dev: ProgramRun, tmp_path: Path) -> None:
    r = _run_health_wait(dev, tmp_path, HARBOR_HEALTH["unhealthy"])
    assert r.returncode == 1 and "is not healthy" in r.stderr


# --- issue 12.7: Rancher's images come from the pinned release's rancher-images.txt ------------------------

# An excerpt in the release list's format (one image per line; OCI chart entries since v2.14); the tags are
# test data: the step takes every tag from the staged list itself.
RELEASE_LIST = """rancher/charts/rancher-webhook:109.0.5+up0.10.9
rancher/cluster-api-controller:v1.12.7
rancher/fleet-agent:v0.15.5
rancher/fleet:v0.15.5
rancher/hardened-etcd:v3.6.12-k3s1-build20260701
rancher/kuberlr-kubectl:v7.1.0
rancher/rancher-agent:{v}
rancher/rancher-webhook:v0.10.9
rancher/rancher:{v}
rancher/remotedialer-proxy:v0.7.4
rancher/scc-operator:v0.5.0
rancher/shell:v0.7.1
rancher/system-agent-installer-rke2:v1.35.5-rke2r1
rancher/system-upgrade-controller:v0.17.0
"""


def _selection(dev: ProgramRun, tmp_path: Path, listing: str) -> subprocess.CompletedProcess[str]:
    script = full_script(dev, "harbor-1-harbor-images")
    start = script.index("rancher_selection() {")
    end = script.index("\n}\n", start) + 3
    call = next(ln for ln in script.splitlines() if ln.startswith("selection=$(rancher_selection"))
    (tmp_path / "rancher-images.txt").write_text(listing)
    body = (f"set -euo pipefail\ncache={tmp_path}\n" + script[start:end] + call + "\nprintf '%s\\n' \"$selection\"\n")
    return subprocess.run(["bash", "-c", body], capture_output=True, text=True)


def test_rancher_images_are_the_release_lists_lines_for_what_rancher_runs(dev: ProgramRun, tmp_path: Path) -> None:
    v = settings_of("dev").rancher_version
    r = _selection(dev, tmp_path, RELEASE_LIST.format(v=v))
    assert r.returncode == 0, r.stderr
    picked = set(r.stdout.split())
    assert {f"rancher/rancher:{v}", f"rancher/rancher-agent:{v}", "rancher/remotedialer-proxy:v0.7.4",
            "rancher/system-upgrade-controller:v0.17.0", "rancher/kuberlr-kubectl:v7.1.0",
            "rancher/cluster-api-controller:v1.12.7", "rancher/scc-operator:v0.5.0"} <= picked
    assert {line.split(":")[0] for line in picked} == set(artifacts.RANCHER_REPOSITORIES)
    assert not [p for p in picked if "hardened" in p or "charts/" in p or "installer" in p]


def test_a_release_list_without_a_needed_repository_fails_naming_it(dev: ProgramRun, tmp_path: Path) -> None:
    v = settings_of("dev").rancher_version
    listing = "\n".join(ln for ln in RELEASE_LIST.format(v=v).splitlines()
                        if not ln.startswith(("rancher/remotedialer-proxy", "rancher/rancher:")))
    r = _selection(dev, tmp_path, listing + "\n")
    assert r.returncode == 1
    assert "does not list: " in r.stderr and "rancher/remotedialer-proxy" in r.stderr
    assert f"rancher/rancher:{v}" in r.stderr


# --- issue 12.4: Harbor HA on NFS: root must be able to chown to Harbor's 10000:10000 ---------------------

def _chown_probe(ha: ProgramRun, tmp_path: Path, chown_works: bool) -> subprocess.CompletedProcess[str]:
    script = full_script(ha, "harbor-1-registry-storage")
    block = script[script.index("probe="):]
    mount_point = settings_of("ha").registry_data_path
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "chown").write_text("#!/bin/sh\nexit 0\n" if chown_works else
                                   "#!/bin/sh\necho 'chown: Operation not permitted' >&2\nexit 1\n")
    (bin_dir / "chown").chmod(0o755)
    body = "set -euo pipefail\n" + block.replace(mount_point, str(tmp_path))
    return subprocess.run(["bash", "-c", body], capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"})


def test_nfs_storage_refuses_a_root_squashed_export_with_what_it_must_allow(ha: ProgramRun, tmp_path: Path) -> None:
    r = _chown_probe(ha, tmp_path, chown_works=False)
    assert r.returncode == 1 and "no_root_squash" in r.stderr and "10000:10000" in r.stderr
    assert not list(tmp_path.glob(".containercloud-*"))


def test_nfs_storage_accepts_an_export_root_can_chown_on(ha: ProgramRun, tmp_path: Path) -> None:
    assert _chown_probe(ha, tmp_path, chown_works=True).returncode == 0
    assert not list(tmp_path.glob(".containercloud-*"))


def test_ha_harbor_instances_restart_one_after_the_other(ha: ProgramRun) -> None:
    """A change that restarts Harbor (version, renewed certificate) rolls: each host's Harbor step waits for
    the previous host's, which ends only when that instance answers healthy on its own address."""
    from tests.k8s_support import command_graph, short

    graph = {short(u): {short(d) for d in deps} for u, deps in command_graph(ha).items()}
    steps = sorted(n for n in graph if re.fullmatch(r"harbor-\d+-harbor", n))
    assert len(steps) >= 2
    assert not any(re.fullmatch(r"harbor-\d+-harbor", d) for d in graph[steps[0]])
    for before, after in zip(steps, steps[1:], strict=False):
        assert before in graph[after], (after, sorted(graph[after]))
