"""Issue 17: the smoke test — its step under the mocks, and its script run against stand-in kubectl and curl."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from components import artifacts, smoke_test
from components.config import Settings, parse_settings
from offline.engine import ProgramRun, run_program
from offline.engine.runner import ROOT, load_stack_config
from tests.k8s_support import host_step

SMOKE = "containercloud:k8s:SmokeTest"
CLUSTER_IP = "10.96.0.50"
NODE_PORT = "30080"


def _settings(**overrides: object) -> Settings:
    return parse_settings({k.split(":", 1)[1]: v for k, v in load_stack_config("dev", overrides).values.items()})


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    run = run_program("dev", program=ROOT / "__main__.py")
    assert run.error is None, run.error
    return run


def test_smoke_test_runs_on_an_inside_host_after_the_addons_with_nginx_from_harbor(dev: ProgramRun) -> None:
    s = _settings()
    comp = dev.named("smoke-test", SMOKE)
    props = comp.plain_inputs
    assert s.host(props["host"]).zone == "inside"
    assert props["nodes"] == [h.name for h in s.worker_hosts if h.zone == "dmz"] and props["nodes"]
    assert props["image"] == f"{s.registry_hostname}/system/nginx:1.30.0"
    assert any(i.name == "nginx" and i.source == artifacts.NGINX_IMAGE for i in artifacts.images(s))
    step, run = host_step(dev, "smoke-test-run")
    assert step.parent == comp.urn and run["host"] == props["host"]
    assert any("addons" in d or "flannel" in d or "coredns" in d for d in step.dependencies)
    assert any("harbor-images" in d for d in step.dependencies)  # the image is in Harbor first
    files = {f["path"]: f for f in run["files"]}
    kubeconfig = files["/etc/containercloud/smoke-test/admin.kubeconfig"]
    assert kubeconfig["mode"] == "0600" and kubeconfig["secret"]
    docs = smoke_test.workload_docs(s)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    terms = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == props["nodes"]
    assert next(d for d in docs if d["kind"] == "Service")["spec"]["type"] == "NodePort"


def test_smoke_test_can_be_turned_off() -> None:
    run = run_program("dev", overrides={"smokeTest": False}, program=ROOT / "__main__.py")
    assert run.error is None, run.error
    assert not run.of_type(SMOKE)
    assert not any(i.name == "nginx" for i in artifacts.images(_settings(smokeTest=False)))


# --- the script itself, against stand-ins that answer like the cluster would ----------------------------

def _tool(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run(tmp_path: Path, broken: str = "") -> subprocess.CompletedProcess[str]:
    s = _settings()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "kubectl.log"
    dns_answer = "10.96.0.99" if broken == "dns" else CLUSTER_IP
    _tool(bin_dir, "kubectl", f"""echo "$*" >> {log}
case "$*" in
  *rollout*) {"exit 1" if broken == "rollout" else "exit 0"} ;;
  *clusterIP*) echo {CLUSTER_IP} ;;
  *nodePort*) echo {NODE_PORT} ;;
  *"get pods"*) echo nginx-abc ;;
  *getent*) echo "{dns_answer}  $5" ;;
esac
""")
    nodeport_ok = "true" if broken != "nodeport" else "false"
    _tool(bin_dir, "curl", f"""url=${{*: -1}}
if [[ $url == http://{CLUSTER_IP}/ ]] || {{ [[ $url == *:{NODE_PORT}/ ]] && {nodeport_ok}; }}; then
  echo '<title>Welcome to nginx!</title>'
else
  exit 7
fi
""")
    _tool(bin_dir, "sleep", "exit 0\n")
    script = "set -euo pipefail\n" + smoke_test.script(s)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)


def _cleaned_up(tmp_path: Path) -> bool:
    return "delete --ignore-not-found" in (tmp_path / "kubectl.log").read_text()


def test_smoke_script_passes_and_cleans_up(tmp_path: Path) -> None:
    out = _run(tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"NodePort {NODE_PORT} and cluster DNS answer" in out.stdout
    assert _cleaned_up(tmp_path)


@pytest.mark.parametrize(("broken", "message"), [
    ("rollout", "smoke test FAILED: nginx ("),
    ("nodeport", f"smoke test FAILED: the NodePort {NODE_PORT} on DMZ worker "),
    ("dns", f"smoke test FAILED: cluster DNS: nginx.containercloud-smoke.svc.cluster.local resolved to "
            f"'10.96.0.99' in a pod, not {CLUSTER_IP}"),
])
def test_smoke_script_fails_the_up_with_a_clear_message(tmp_path: Path, broken: str, message: str) -> None:
    out = _run(tmp_path, broken)
    assert out.returncode == 1
    assert message in out.stderr, out.stderr
    assert _cleaned_up(tmp_path)  # even when it fails
