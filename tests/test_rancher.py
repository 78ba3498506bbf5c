"""Issue 6: Rancher server in docker mode (dev) and Helm mode (ha; dev overridden), and the import step."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from offline.engine.runner import ProgramRun
from tests.k8s_support import host_step, host_steps
from tests.test_registry import full_script, openssl_verify, step_file_secret, step_files

RANCHER = "containercloud:rancher:RancherServer"
COMMAND = "command:remote:Command"
SECRET = "kubernetes:core/v1:Secret"
RELEASE = "kubernetes:helm.sh/v3:Release"


def api_ready_urn(run: ProgramRun) -> str:
    return next(r.urn for r in run.of_type(COMMAND) if r.name.endswith("-api-ready"))


# --- docker mode ------------------------------------------------------------------------------------

def test_docker_mode_runs_rancher_from_harbor_with_our_ca(dev: ProgramRun, tmp_path: Path) -> None:
    props = dev.of_type(RANCHER)[0].plain_inputs
    assert props["mode"] == "docker" and props["host"] == "rancher-1"
    assert props["systemDefaultRegistry"] == "harbor.corp.example" and props["privateCa"] is True
    step = host_step(dev, "rancher-1-rancher")[1]
    assert step["host"] == "rancher-1"
    script = step["script"]
    assert "-e CATTLE_SYSTEM_DEFAULT_REGISTRY=harbor.corp.example" in script
    assert "harbor.corp.example/rancher/rancher:v2.14.4" in script
    assert "--restart=unless-stopped --privileged" in script
    assert "-p 443:443" in script and "-p 80" not in script
    assert "/opt/rancher:/var/lib/rancher" in script and "/ping" in script
    files = step_files(dev, "rancher-1-rancher")
    ca = dev.outputs["kubernetesCaCertificate"]
    ssl = "/etc/containercloud/rancher/ssl"
    assert files[f"{ssl}/cacerts.pem"]["content"] == ca
    result = openssl_verify(tmp_path, ca, files[f"{ssl}/cert.pem"]["content"], "rancher-1")
    assert result.returncode == 0, result.stderr
    assert files[f"{ssl}/key.pem"]["mode"] == "0600" and step_file_secret(dev, "rancher-1-rancher", f"{ssl}/key.pem")
    for mount in ("cert.pem", "key.pem", "cacerts.pem"):
        assert f"{ssl}/{mount}:/etc/rancher/ssl/{mount}:ro" in script


def test_docker_mode_bootstrap_password_only_in_a_secret_env_file(dev: ProgramRun) -> None:
    password = dev.outputs["rancherAdminPassword"]
    assert "rancherAdminPassword" in dev.secret_outputs
    assert len(password) >= 24 and password.lower() not in ("admin", "password")
    env = "/etc/containercloud/rancher/rancher.env"
    files = step_files(dev, "rancher-1-rancher")
    assert files[env]["content"] == f"CATTLE_BOOTSTRAP_PASSWORD={password}\n" and files[env]["mode"] == "0600"
    assert step_file_secret(dev, "rancher-1-rancher", env)
    cmd = dev.named("rancher-1-rancher", COMMAND)
    assert password not in cmd.plain_inputs["create"] and cmd.input_is_secret("stdin")
    assert f"--env-file {env}" in cmd.plain_inputs["create"]


def test_docker_mode_waits_for_docker_and_the_image_mirror(dev: ProgramRun) -> None:
    deps = dev.named("rancher-1-rancher", COMMAND).dependencies
    assert dev.named("rancher-1-docker", COMMAND).urn in deps
    assert dev.named("harbor-1-harbor-images", COMMAND).urn in deps
    assert files_ca(dev, "rancher-1-docker") == dev.outputs["kubernetesCaCertificate"]
    assert not dev.of_type(RELEASE)


def files_ca(run: ProgramRun, step: str) -> str:
    return step_files(run, step)["/etc/docker/certs.d/harbor.corp.example/ca.crt"]["content"]


# --- import ---------------------------------------------------------------------------------------

def test_import_depends_on_api_and_rancher_ready(dev: ProgramRun, ha: ProgramRun, dev_helm: ProgramRun) -> None:
    step = dev.named("master-1-rancher-import", COMMAND)
    assert api_ready_urn(dev) in step.dependencies
    assert dev.named("rancher-1-rancher", COMMAND).urn in step.dependencies
    for run, host in ((ha, "cp-1"), (dev_helm, "master-1")):
        step = run.named(f"{host}-rancher-import", COMMAND)
        assert api_ready_urn(run) in step.dependencies
        assert run.of_type(RELEASE)[0].urn in step.dependencies


def test_import_registers_the_cluster_with_secrets_in_files(dev: ProgramRun) -> None:
    imported = host_step(dev, "master-1-rancher-import")[1]
    assert imported["host"] == "master-1"
    script = imported["script"]
    assert "v3-public/localProviders/local?action=login" in script and "-d @/etc/containercloud" in script
    assert '"name":"container-cloud-dev"' in script and "clusterregistrationtokens" in script
    assert "kubectl --kubeconfig /etc/containercloud/rancher-import/admin.kubeconfig apply -f" in script
    assert "--cacert /etc/containercloud/rancher-import/ca.crt" in script
    files = step_files(dev, "master-1-rancher-import")
    login = json.loads(files["/etc/containercloud/rancher-import/login.json"]["content"])
    assert login == {"username": "admin", "password": dev.outputs["rancherAdminPassword"], "responseType": "json"}
    for path in ("login.json", "admin.kubeconfig"):
        full = f"/etc/containercloud/rancher-import/{path}"
        assert files[full]["mode"] == "0600" and step_file_secret(dev, "master-1-rancher-import", full)
    assert "kubectl --kubeconfig" in imported["deleteScript"]
    assert "rancherClusterId" in dev.outputs and "rancherClusterId" not in dev.secret_outputs


def test_helm_mode_checks_local_instead_of_importing_twice(ha: ProgramRun) -> None:
    script = host_step(ha, "cp-1-rancher-import")[1]["script"]
    assert "v3/clusters/local" in script and "clusterregistrationtokens" not in script
    assert "kubectl" not in script


# --- helm mode ------------------------------------------------------------------------------------

def test_helm_mode_chart_values_and_secrets(ha: ProgramRun, tmp_path: Path) -> None:
    release = ha.of_type(RELEASE)[0]
    inputs = release.plain_inputs
    assert inputs["chart"] == "artifacts/charts/rancher-2.14.4.tgz" and inputs["namespace"] == "cattle-system"
    values = inputs["values"]
    assert values["systemDefaultRegistry"] == "harbor.corp.example"
    assert values["privateCA"] is True and values["ingress"]["tls"]["source"] == "secret"
    assert values["hostname"] == "rancher.corp.example" and values["replicas"] == 3
    # the chart's placement keys (it has no nodeSelector/tolerations values: unknown keys are ignored)
    assert values["extraNodeSelectorTerms"] == [
        {"key": "node-role.containercloud.io/rancher", "operator": "In", "values": ["true"]}]
    assert not {"nodeSelector", "tolerations"} & set(values)
    assert values["ingress"]["ingressClassName"] == "nginx"
    assert values["ingress"]["tls"]["secretName"] == "tls-rancher-ingress"
    assert "bootstrapPassword" not in json.dumps(values)
    ca = ha.outputs["kubernetesCaCertificate"]
    secrets = {r.plain_inputs["metadata"]["name"]: r for r in ha.of_type(SECRET)
               if r.plain_inputs["metadata"].get("namespace") == "cattle-system"}
    tls_secret = secrets["tls-rancher-ingress"]
    assert tls_secret.plain_inputs["type"] == "kubernetes.io/tls" and tls_secret.input_is_secret("stringData")
    result = openssl_verify(tmp_path, ca, tls_secret.plain_inputs["stringData"]["tls.crt"], "rancher.corp.example")
    assert result.returncode == 0, result.stderr
    assert secrets["tls-ca"].plain_inputs["stringData"]["cacerts.pem"] == ca
    boot = secrets["bootstrap-secret"]
    assert boot.input_is_secret("stringData")
    assert boot.plain_inputs["stringData"]["bootstrapPassword"] == ha.outputs["rancherAdminPassword"]
    for r in secrets.values():
        assert r.urn in release.dependencies
    assert ha.named("harbor-1-harbor-images", COMMAND).urn in release.dependencies
    props = ha.of_type(RANCHER)[0].plain_inputs
    assert props["mode"] == "helm" and props["systemDefaultRegistry"] == "harbor.corp.example"
    assert props["hosts"] == ["rancher-1", "rancher-2", "rancher-3"]
    assert not [r for r, _ in host_steps(ha) if r.name.endswith("-rancher")]


def test_dev_in_helm_mode(dev_helm: ProgramRun) -> None:
    release = dev_helm.of_type(RELEASE)[0]
    assert release.plain_inputs["values"]["systemDefaultRegistry"] == "harbor.corp.example"
    assert release.plain_inputs["values"]["replicas"] == 1
    assert not [r for r, _ in host_steps(dev_helm) if r.name in ("rancher-1-docker", "rancher-1-rancher")]


def test_every_rancher_script_passes_shellcheck(dev: ProgramRun, ha: ProgramRun, tmp_path: Path) -> None:
    paths = []
    for run in (dev, ha):
        for r in run.of_type(COMMAND):
            if "rancher-import" in r.name or r.name == "rancher-1-rancher":
                for key in ("create", "delete"):
                    p = tmp_path / f"{run.stack}-{r.name}-{key}.sh"
                    p.write_text(full_script(run, r.name, key))
                    paths.append(str(p))
    assert len(paths) == 6
    out = subprocess.run(["shellcheck", "-s", "bash", *paths], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
