"""The version skew guard, run for real: the fragment cut from the rendered kube-apiserver and kubelet steps
(unchanged), in a private mount namespace with a tmpfs at /etc/kubernetes and over /usr/local/bin, so the
version files, the installed binary and the kubelet's kubeconfig sit at their real paths."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import pytest

from offline.engine.runner import ProgramRun
from tests.k8s_support import inner_script, step

pytestmark = pytest.mark.skipif(not shutil.which("unshare"), reason="unshare missing")
TARGET = "1.35.4"  # Pulumi.yaml's kubernetesVersion


def _guard(run: ProgramRun, name: str) -> str:
    body = inner_script(step(run, name).command["create"])
    start = body.index("# --- version skew guard")
    end = body.index("# --- artifacts:", start)
    return body[start:end]


def _run(tmp_path: Path, guard: str, files: dict[str, str], binary_version: Optional[str] = None,
         api_version: Optional[str] = None) -> subprocess.CompletedProcess[str]:
    stage = tmp_path / "stage"
    stage.mkdir(exist_ok=True)
    upper, work = tmp_path / "etc-upper", tmp_path / "etc-work"
    upper.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    # /etc/kubernetes does not exist on this machine: an overlay over /etc (this namespace only) holds it
    setup = [f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc",
             "mkdir -p /etc/kubernetes", "mount -t tmpfs tmpfs /etc/kubernetes", "mount -t tmpfs tmpfs /usr/local/bin"]
    for i, (path, content) in enumerate(files.items()):
        (stage / str(i)).write_text(content)
        setup.append(f"cp {stage / str(i)} {path}")
    if binary_version:
        setup.append(f"printf '#!/bin/sh\\necho Kubernetes v{binary_version}\\n' > /usr/local/bin/kube-apiserver"
                     " && chmod +x /usr/local/bin/kube-apiserver")
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    # curl stand-in: the API server's /version, answered only when a CA, client certificate and key came along
    doc = json.dumps({"major": "1", "gitVersion": f"v{api_version}", "platform": "linux/amd64"}, indent=2)
    (fake / "curl").write_text(
        "#!/bin/bash\nfor a in \"$@\"; do echo \"$a\" >> " + str(tmp_path / "curl.log") + "; done\n"
        "while (( $# )); do case $1 in --cacert|--cert|--key) grep -q -- '-----BEGIN' \"$2\" || exit 60; shift 2 ;;"
        " *) shift ;; esac; done\n"
        + (f"cat <<'EOF'\n{doc}\nEOF\n" if api_version else "exit 7\n"))
    (fake / "curl").chmod(0o755)
    (fake / "sleep").write_text("#!/bin/sh\n")  # the guard's retries, without the waiting
    (fake / "sleep").chmod(0o755)
    script = tmp_path / "guard.sh"
    script.write_text(f"set -euo pipefail\nexport PATH={fake}:$PATH\n" + guard + "echo GUARD-PASSED\n")
    return subprocess.run(["unshare", "-m", "bash", "-c", " && ".join(setup) + f" && bash {script}"],
                          capture_output=True, text=True, timeout=60)


def test_apiserver_guard_refuses_a_minor_skip_and_a_downgrade_naming_the_versions(dev: ProgramRun,
                                                                                    tmp_path: Path) -> None:
    guard = _guard(dev, "master-1-kube-apiserver")
    version = "/etc/kubernetes/kube-apiserver.version"
    skip = _run(tmp_path, guard, {version: "1.33.1\n"})
    assert skip.returncode == 1 and "GUARD-PASSED" not in skip.stdout
    assert f"from 1.33.1 to {TARGET}: that skips a Kubernetes minor version" in skip.stderr
    down = _run(tmp_path, guard, {version: "1.36.0\n"})
    assert down.returncode == 1 and f"downgrade kube-apiserver on master-1 from 1.36.0 to {TARGET}" in down.stderr
    for ok in ("1.34.9\n", "1.35.0\n", f"{TARGET}\n"):
        r = _run(tmp_path, guard, {version: ok})
        assert r.returncode == 0 and "GUARD-PASSED" in r.stdout, (ok, r.stderr)
    fresh = _run(tmp_path, guard, {})
    assert fresh.returncode == 0 and "GUARD-PASSED" in fresh.stdout, fresh.stderr
    # a host installed before version files existed: the binary says which version it is
    old = _run(tmp_path, guard, {}, binary_version="1.33.7")
    assert old.returncode == 1 and f"from 1.33.7 to {TARGET}" in old.stderr


def test_kubelet_guard_refuses_a_kubelet_newer_than_the_api_server(dev: ProgramRun, tmp_path: Path) -> None:
    st = step(dev, "worker-1-kubelet")
    guard = _guard(dev, "worker-1-kubelet")
    files = {"/etc/kubernetes/kubelet.conf": st.files["/etc/kubernetes/kubelet.conf"],
             "/etc/kubernetes/kubelet.version": "1.34.2\n"}
    newer = _run(tmp_path, guard, files, api_version="1.34.5")
    assert newer.returncode == 1, newer.stderr
    assert (f"refusing to run kubelet {TARGET} on worker-1: the API server runs 1.34.5 and a kubelet must not be "
            "newer than the API server") in newer.stderr
    same = _run(tmp_path, guard, files, api_version=TARGET)
    assert same.returncode == 0 and "GUARD-PASSED" in same.stdout, same.stderr
    log = (tmp_path / "curl.log").read_text()
    assert "https://198.51.100.11:6443/version" in log  # the dev stack's API endpoint
    unreachable = _run(tmp_path, guard, files)
    assert unreachable.returncode == 1 and "the API server's version cannot be read" in unreachable.stderr
    skip = _run(tmp_path, guard, {**files, "/etc/kubernetes/kubelet.version": "1.33.0\n"}, api_version=TARGET)
    assert skip.returncode == 1 and f"kubelet on worker-1 from 1.33.0 to {TARGET}" in skip.stderr


def test_the_guard_runs_before_any_binary_is_installed_and_the_version_is_recorded_after(dev: ProgramRun) -> None:
    for name, unit in (("master-1-kube-apiserver", "kube-apiserver"), ("worker-1-kubelet", "kubelet")):
        body = inner_script(step(dev, name).command["create"])
        assert body.index("# --- version skew guard") < body.index("install_binary") \
            < body.index(f"systemctl restart {unit}.service") < body.rindex(f"/etc/kubernetes/{unit}.version")
