"""Air-gapped artifacts: the bill of materials, digests only from artifacts_checksums.yaml, delivery from
the mirror (curl, served here on loopback) or the deployer (CopyToRemote), verification before install."""

from __future__ import annotations

import hashlib
import http.server
import re
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest
import yaml

from components import artifacts
from components.config import ConfigError, parse_settings
from offline.engine.runner import ProgramRun, load_stack_config, run_program
from tests.k8s_support import inner_script, k8s_steps

UPSTREAM_HOSTS = ("dl.k8s.io", "github.com", "ghcr.io", "registry.k8s.io", "docker.io", "quay.io", "googleapis")


def _settings(stack: str = "dev", overrides=None):
    cfg = load_stack_config(stack, overrides)
    return parse_settings({k.split(":", 1)[1]: v for k, v in cfg.values.items()})


@pytest.fixture(scope="module")
def mirror() -> ProgramRun:
    run = run_program("dev", overrides={"artifactsMirrorUrl": "https://mirror.corp.example/artifacts"})
    assert run.error is None, run.error
    return run


def test_bill_of_materials_takes_digests_from_the_checksum_file():
    s = _settings()
    table = yaml.safe_load(artifacts.CHECKSUMS_FILE.read_text())
    bom = artifacts.binaries(s)
    names = {b.name for b in bom}
    assert names == {"etcd", "kubernetes-server", "kubernetes-node", "containerd", "runc", "cni-plugins", "crictl"}
    for b in bom:
        assert table[b.name][b.version][b.file] == b.checksum
        assert b.url_path == f"{b.name}/{b.version}/{b.file}"
        assert b.algorithm in ("sha256", "sha512") and len(b.digest) in (64, 128)
        assert b.upstream_url.endswith(b.file)
    assert artifacts.kubernetes_server(s).version == s.kubernetes_version


def test_images_have_sources_and_harbor_targets():
    s = _settings("ha")
    by_name = {i.name: i for i in artifacts.images(s)}
    assert by_name["coredns"].source == "registry.k8s.io/coredns/coredns:v1.12.4"
    assert by_name["coredns"].target == "harbor.corp.example/system/coredns:v1.12.4"
    assert by_name["pause"].target == "harbor.corp.example/system/pause:3.10.1"
    assert by_name["flannel-cni-plugin"].target == "harbor.corp.example/system/flannel-cni-plugin:v1.6.2-flannel1"
    assert _settings("dev").registry_hostname == "harbor.corp.example"
    assert artifacts.image(_settings("dev"), "flannel") == "harbor.corp.example/system/flannel:v0.26.7"


def test_a_version_without_a_digest_is_refused_before_any_resource():
    run = run_program("dev", overrides={"kubernetesVersion": "1.34.99"})
    assert isinstance(run.error, ConfigError)
    assert "container-cloud:kubernetesVersion" in str(run.error)
    assert "kubernetes-server 1.34.99" in str(run.error)
    assert run.registrations == []


def test_missing_checksum_file_names_component_and_version(monkeypatch, tmp_path):
    monkeypatch.setattr(artifacts, "CHECKSUMS_FILE", tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match=r"etcd 3\.6\.14 \(etcd-v3\.6\.14-linux-amd64\.tar\.gz\)"):
        artifacts.etcd()


def _k8s_texts(run: ProgramRun) -> list[str]:
    return [st.command[k] for st in k8s_steps(run) for k in ("create", "delete")]


@pytest.mark.parametrize("which", ["dev", "mirror"])
def test_nothing_reaches_the_internet(which, request):
    run = request.getfixturevalue(which)
    for text in _k8s_texts(run):
        for host in UPSTREAM_HOSTS:
            assert host not in text
    for reg in run.registrations:
        if reg.type.startswith("kubernetes:apps/"):
            pod = reg.plain_inputs["spec"]["template"]["spec"]
            for c in pod.get("initContainers", []) + pod["containers"]:
                assert c["image"].startswith("harbor.corp.example/system/")


def test_directory_mode_hosts_fetch_from_the_registry_and_the_step_removes_what_it_installed(dev):
    s = _settings()
    copies = dev.of_type("command:remote:CopyToRemote")
    steps = {st.name: st for st in k8s_steps(dev)}
    for host, step, bins in [("master-1", "etcd", artifacts.etcd_binaries(s)),
                             ("master-1", "kube-apiserver", artifacts.control_plane_binaries(s)),
                             ("worker-2", "runtime", [artifacts.containerd(), artifacts.runc(),
                                                      artifacts.cni_plugins(), artifacts.crictl()]),
                             ("worker-2", "kubelet", [artifacts.kubernetes_node(s)])]:
        st = steps[f"{host}-{step}"]
        # nothing is copied to the host itself: the first registry host serves (tests/test_artifacts_registry.py)
        assert not [c for c in copies if c.plain_inputs["connection"]["host"] == st.command["connection"]["host"]]
        for b in bins:
            assert f"registry:{artifacts.tag(b)}" in st.command["create"]
            assert f"rm -f {b.members[0][1]}" in st.command["delete"]
            # nothing downloads before the artifacts section (the kubelet's version skew guard asks the API
            # server's /version with curl: not a download)
            head = inner_script(st.command["create"]).split("# --- artifacts:")[0]
            assert "curl" not in head.split("# --- version skew guard")[0]


def test_mirror_mode_downloads_with_curl_and_copies_nothing(mirror):
    assert mirror.of_type("command:remote:CopyToRemote") == []
    st = next(st for st in k8s_steps(mirror) if st.name == "worker-1-runtime")
    url = "https://mirror.corp.example/artifacts/containerd/2.2.7/containerd-2.2.7-linux-amd64.tar.gz"
    assert url in st.command["create"]


def test_unchanged_stack_registers_identical_commands(dev):
    again = run_program("dev")
    assert again.error is None

    def texts(run: ProgramRun) -> dict[str, tuple[str, str, list[str]]]:
        # a node's rollout fingerprint hashes its certificates, which are fresh per harness run (stable in
        # a real stack's state): it is normalised like the step digest
        steps = k8s_steps(run)
        prints = {line.split()[-1] for st in steps for path, content in st.files.items()
                  if path.startswith("/var/lib/containercloud/rollout/") for line in content.splitlines() if line}

        def plain(text: str) -> str:
            for value in prints:
                text = text.replace(value, "FINGERPRINT")
            return text

        return {st.name: (plain(st.command["create"]), plain(st.command["delete"]), st.command["triggers"])
                for st in steps}

    first, second = texts(dev), texts(again)
    assert first.keys() == second.keys() and len(first) > 10
    pem = re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----|CC_FILE_[0-9a-f]{16}", re.S)

    def normal(value: tuple[str, str, list[str]]) -> tuple[str, str]:
        # certificates and public keys are fresh per harness run; everything else must be byte-identical
        digest = value[2][0]
        return tuple(pem.sub("PEM", v.replace(digest, "DIGEST")) for v in value[:2])  # type: ignore[return-value]

    for name in first:
        assert normal(first[name]) == normal(second[name]), name
        # (-node steps carry their node's rollout fingerprint, a hash over fresh certificates here: their
        # digest differs per harness run, so they are compared normalised only, above)
        if name.endswith(("-etc-hosts", "-api-ready")):
            assert first[name] == second[name], name


# --- the fetch/verify/install script, run for real ---------------------------------------------

def _tarball(path: Path, member: str, content: bytes) -> None:
    src = path.parent / "src"
    (src / Path(member).parent).mkdir(parents=True, exist_ok=True)
    (src / member).write_bytes(content)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src / member, arcname=member)


def _binary(tmp: Path, archive: Path, algorithm: str) -> artifacts.Binary:
    digest = hashlib.new(algorithm, archive.read_bytes()).hexdigest()
    return artifacts.Binary("tool", "1.0.0", archive.name, f"tool/1.0.0/{archive.name}", f"{algorithm}:{digest}",
                            "https://example.invalid/tool.tgz", (("tool-1.0.0/tool", str(tmp / "dest/bin/tool")),))


def _run_fetch(tmp: Path, settings, b: artifacts.Binary) -> subprocess.CompletedProcess[str]:
    script = artifacts.fetch_script(settings, "test-step", [b]).replace(artifacts.CACHE_DIR, str(tmp / "cache"))
    body = "set -euo pipefail\nCHANGED=()\n" + script + 'printf "changed:%s\\n" "${CHANGED[@]}"\n'
    (tmp / "fetch.sh").write_text(body)
    assert subprocess.run(["shellcheck", "-s", "bash", str(tmp / "fetch.sh")], capture_output=True).returncode == 0
    return subprocess.run(["bash", str(tmp / "fetch.sh")], capture_output=True, text=True, timeout=60)


def test_fetch_downloads_from_the_mirror_on_loopback_and_verifies(tmp_path):
    served = tmp_path / "www"
    archive_dir = served / "tool/1.0.0"
    archive_dir.mkdir(parents=True)
    archive = archive_dir / "tool-1.0.0.tar.gz"
    _tarball(archive, "tool-1.0.0/tool", b"binary\n")
    b = _binary(tmp_path, archive, "sha256")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        s = _settings(overrides={"artifactsMirrorUrl": f"http://127.0.0.1:{server.server_port}/"})
        ok = _run_fetch(tmp_path, s, b)
        assert ok.returncode == 0, ok.stderr
        assert (tmp_path / "dest/bin/tool").read_bytes() == b"binary\n"
        # the mirror now serves something else: the cached verified copy is kept, a fresh fetch is refused
        archive.write_bytes(b"evil")
        (tmp_path / "cache/test-step" / archive.name).unlink()
        bad = _run_fetch(tmp_path, s, b)
        assert bad.returncode != 0 and "digest mismatch" in bad.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_unknown_versions_fail_together_before_any_resource() -> None:
    run = run_program("dev", overrides={"kubernetesVersion": "1.99.0", "rancherVersion": "v2.99.0"})
    assert run.error is not None and run.registrations == []
    message = str(run.error)
    assert "container-cloud:rancherVersion: v2.99.0" in message
    assert "1.99.0" in message
