"""artifactsDirectory mode: the deployer copies each binary once, to the first registry host, which publishes it
into the registry; every host fetches it from there and verifies the upstream digest.

Under the mocks: one CopyToRemote per binary whatever the number of workers, all to the serving host, and
every binary step waits for the publish step. For real: the rendered publish and fetch scripts against a real
OCI registry (Debian's distribution 2.8.2, TLS from a CA made here, no auth) in a private network namespace.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from benchmarks.preview import overrides
from components import artifacts
from components.config import ConfigError, parse_settings
from lab.registry import config_yml, registry_binary
from offline.engine.runner import ProgramRun, load_stack_config, run_program
from policy.rules.hardening import registry_problems
from tests.k8s_support import COMMAND, k8s_steps

COPY = "command:remote:CopyToRemote"
BINARY_STEPS = ("-etcd", "-kube-apiserver", "-runtime", "-kubelet")


def _settings(stack: str = "dev", extra=None):
    cfg = load_stack_config(stack, extra)
    return parse_settings({k.split(":", 1)[1]: v for k, v in cfg.values.items()})


def _ancestors(run: ProgramRun, urn: str) -> set[str]:
    by_urn = run.by_urn()
    seen: set[str] = set()
    todo = [urn]
    while todo:
        reg = by_urn.get(todo.pop())
        for dep in reg.dependencies if reg else []:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


@pytest.mark.parametrize("workers", [3, 20, 200])
def test_each_binary_is_copied_once_to_the_serving_host_whatever_the_workers(workers):
    run = run_program("dev", overrides=overrides(workers))
    assert run.error is None, run.error
    s = _settings("dev", overrides(workers))
    serving = artifacts.serving_host(s)
    copies = run.of_type(COPY)
    binary_copies = [c for c in copies if c.plain_inputs["remotePath"].startswith(f"{artifacts.UPLOAD_DIR}/")
                     and "artifacts-upload-" in c.name]
    bom = artifacts.binaries(s)
    assert sorted(c.plain_inputs["remotePath"] for c in binary_copies) == sorted(artifacts.upload_path(b) for b in bom)
    assert sorted(c.plain_inputs["source"]["path"] for c in binary_copies) == sorted(
        f"{s.artifacts_directory}/{b.url_path}" for b in bom)
    # every upload from the deployer (binaries, docker, Harbor's installer, images) goes to a platform host:
    # none to a worker, so what the deployer pushes does not depend on the number of workers
    workers_addresses = {h.address for h in s.hosts if set(h.roles) == {"worker"}}
    assert len(workers_addresses) == workers
    assert {c.plain_inputs["connection"]["host"] for c in binary_copies} == {serving.address}
    assert not {c.plain_inputs["connection"]["host"] for c in copies} & workers_addresses


def test_every_binary_step_waits_for_the_publish_step_and_fetches_from_the_registry(dev):
    s = _settings()
    (publish,) = [r for r in dev.of_type(COMMAND) if r.name == f"{artifacts.serving_host(s).name}-artifacts-publish"]
    # the publish step waits for its uploads and Harbor's projects (the `system` project must exist)
    deps = _ancestors(dev, publish.urn)
    assert {c.urn for c in dev.of_type(COPY) if "artifacts-upload-" in c.name} <= deps
    assert any(r.name.endswith("harbor-projects") for r in dev.registrations if r.urn in deps)
    steps = [st for st in k8s_steps(dev) if st.name.endswith(BINARY_STEPS)]
    assert {st.name for st in steps} >= {"master-1-etcd", "master-1-kube-apiserver", "worker-3-runtime",
                                          "worker-3-kubelet"}
    for st in steps:
        assert publish.urn in _ancestors(dev, st.command_urn), st.name
        ca = artifacts.fetch_ca_path(st.name)
        assert ca in st.files and "BEGIN CERTIFICATE" in st.files[ca]
        # the CA is written before the fetch runs, also where the fetch is the prelude (before the step's files)
        create = st.command["create"]
        written = re.search(rf"^(?:put_file|stdin_file) {re.escape(ca)} ", create, re.MULTILINE)
        assert written and written.start() < create.index("fetch_artifact()"), st.name
        assert f"rm -f {ca}" in st.command["delete"]
        assert "registry:" in st.command["create"] and artifacts.ARTIFACT_REPOSITORY in st.command["create"]
        assert f"--resolve {s.registry_hostname}:443:{artifacts.registry_address(s)}" in st.command["create"]
        assert artifacts.UPLOAD_DIR not in st.command["create"]


def test_mirror_mode_publishes_nothing():
    run = run_program("dev", overrides={"artifactsMirrorUrl": "https://mirror.corp.example/artifacts"})
    assert run.error is None, run.error
    assert not [r for r in run.registrations if "artifacts-publish" in r.name or "artifacts-upload" in r.name]
    for st in k8s_steps(run):
        assert artifacts.FETCH_CA_DIR not in st.command["create"]


def test_directory_mode_needs_a_registry_host():
    s = _settings()
    hosts = [h.model_dump(by_alias=True) for h in s.hosts if "registry" not in h.roles]
    run = run_program("dev", overrides={"hosts": hosts})
    assert isinstance(run.error, ConfigError) and run.registrations == []
    assert "container-cloud:artifactsDirectory" in str(run.error)
    assert "first registry host" in str(run.error)


# --- for real: publish and fetch against distribution 2.8.2 in a network namespace ----------------------------

HOSTNAME = "harbor.corp.example"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _pki(tmp: Path) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=test-ca", cwd=tmp)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr", "-subj",
             f"/CN={HOSTNAME}", cwd=tmp)
    (tmp / "san.ext").write_text(f"subjectAltName=DNS:{HOSTNAME},IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
             "tls.crt", "-days", "2", "-extfile", "san.ext", cwd=tmp)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "token.key", "-out", "token.crt", "-days",
             "2", "-subj", "/CN=test-token-signer", cwd=tmp)


def _tool(tmp: Path, name: str, content: bytes, algorithm: str) -> tuple[artifacts.Binary, bytes]:
    src = tmp / "src" / name
    src.mkdir(parents=True)
    (src / name).write_bytes(content)
    archive = tmp / "src" / f"{name}-1.0.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / name, arcname=f"{name}-1.0.0/{name}")
    data = archive.read_bytes()
    digest = hashlib.new(algorithm, data).hexdigest()
    b = artifacts.Binary(name, "1.0.0", archive.name, f"{name}/1.0.0/{archive.name}", f"{algorithm}:{digest}",
                         "https://example.invalid/", ((f"{name}-1.0.0/{name}", str(tmp / f"dest/bin/{name}")),))
    return b, data


def _script(tmp: Path, name: str, text: str) -> str:
    text = text.replace(artifacts.CACHE_DIR, str(tmp / "cache")).replace(artifacts.FETCH_CA_DIR, str(tmp / "ca"))
    body = "set -euo pipefail\nCHANGED=()\n" + text + 'printf "changed:%s\\n" "${CHANGED[@]}"\n'
    path = tmp / f"{name}.sh"
    path.write_text(body)
    check = subprocess.run(["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    return str(path)


DRIVER = r"""
set -u
ip link set lo up
ip addr add "$ADDRESS/32" dev lo
if [[ -n ${REALM:-} ]]; then
  "$PYTHON" "$REALM" 127.0.0.1 8443 "$TMP/tls.crt" "$TMP/tls.key" "$TMP/token.key" "$CREDENTIAL" &
  # the realm must listen before the first token request (Python starts slowly on a loaded machine)
  for _ in $(seq 300); do
    curl -s -o /dev/null --cacert "$TMP/ca.crt" "https://127.0.0.1:8443/token" && break
    sleep 0.1
  done
fi
"$REGISTRY" serve "$CONFIG" >"$TMP/registry.log" 2>&1 &
for _ in $(seq 100); do
  curl -s -o /dev/null --cacert "$TMP/ca.crt" --resolve "$HOST:443:127.0.0.1" "https://$HOST/v2/" && break
  sleep 0.1
done
phase() { echo "=== $1"; shift; "$@"; echo "=== rc=$?"; }
# without a token: 401 when the registry uses token auth, 200 when it has none
phase probe curl -s -o /dev/null -w 'v2=%{http_code}\n' --cacert "$TMP/ca.crt" --resolve "$HOST:443:127.0.0.1" \
  "https://$HOST/v2/"
cp "$TMP/bad-upload" "$UPLOAD_A"; cp "$TMP/good-b" "$UPLOAD_B"
phase publish-tampered bash "$TMP/publish.sh"
cp "$TMP/good-a" "$UPLOAD_A"; cp "$TMP/good-b" "$UPLOAD_B"
phase publish bash "$TMP/publish.sh"
phase publish-again bash "$TMP/publish.sh"
phase fetch bash "$TMP/fetch.sh"
phase fetch-again bash "$TMP/fetch.sh"
# a tag pointing at other bytes (here the empty blob) is refused by the host's digest check
rm -rf "$TMP/cache/test-fetch"
: >"$TMP/bearer"
if [[ -n ${REALM:-} ]]; then
  token=$(curl -sf --cacert "$TMP/ca.crt" -K "$TMP/admin.curlrc" \
    "https://127.0.0.1:8443/token?service=test-registry&scope=repository:$REPO:pull,push" |
    sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
  printf 'header = "Authorization: Bearer %s"\n' "$token" >"$TMP/bearer"
fi
curl -sf -o /dev/null -X PUT --cacert "$TMP/ca.crt" --resolve "$HOST:443:127.0.0.1" -K "$TMP/bearer" \
  -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$TMP/retag.json" \
  "https://$HOST/v2/$REPO/manifests/$TAG_A"
phase fetch-retagged bash "$TMP/fetch.sh"
# what a host's anonymous token allows: pulling, not pushing
if [[ -n ${REALM:-} ]]; then
  token=$(curl -sf --cacert "$TMP/ca.crt" \
    "https://127.0.0.1:8443/token?service=test-registry&scope=repository:$REPO:pull,push" |
    sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
  printf 'header = "Authorization: Bearer %s"\n' "$token" >"$TMP/bearer"
  phase anonymous-push curl -s -o /dev/null -w 'put=%{http_code}\n' -X PUT --cacert "$TMP/ca.crt" \
    --resolve "$HOST:443:127.0.0.1" -K "$TMP/bearer" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary @"$TMP/retag.json" "https://$HOST/v2/$REPO/manifests/anonymous"
fi
kill $(jobs -p) 2>/dev/null || true  # the registry, and the token realm when there is one
wait 2>/dev/null || true
"""


def _phases(out: str) -> dict[str, tuple[str, int]]:
    phases: dict[str, tuple[str, int]] = {}
    for chunk in out.split("=== ")[1:]:
        if chunk.startswith("rc="):
            continue
        name, _, rest = chunk.partition("\n")
        phases[name] = (rest, 0)
    codes = [int(line.split("=")[-1]) for line in out.splitlines() if line.startswith("=== rc=")]
    return {name: (text, code) for (name, (text, _)), code in zip(phases.items(), codes, strict=True)}


def _token_auth(config: str, tmp: Path) -> str:
    """distribution's `auth.token` (the flow Harbor's token service implements), realm served by token_realm.py."""
    data = json.loads(config)
    data["auth"] = {"token": {"realm": "https://127.0.0.1:8443/token", "service": "test-registry",
                              "issuer": "test-token-issuer", "rootcertbundle": str(tmp / "token.crt")}}
    return json.dumps(data, indent=2) + "\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace")
@pytest.mark.parametrize("auth", ["none", "token"])
def test_publish_and_fetch_against_a_real_registry(tmp_path, monkeypatch, auth):
    """auth none: the lab's registry as it is. auth token: pushes need a token for the admin's credential
    (from the 0600 curl config, as on Harbor's host); hosts pull with an anonymous token, like Harbor's public
    `system` project."""
    tmp = tmp_path
    _pki(tmp)
    a, data_a = _tool(tmp, "toola", b"#!/bin/sh\necho a\n", "sha512")
    b, data_b = _tool(tmp, "toolb", b"#!/bin/sh\necho b\n", "sha256")
    (tmp / "good-a").write_bytes(data_a)
    (tmp / "good-b").write_bytes(data_b)
    (tmp / "bad-upload").write_bytes(data_a + b"x")
    (tmp / "ca").mkdir()
    (tmp / "ca" / "test-fetch-ca.crt").write_bytes((tmp / "ca.crt").read_bytes())  # the step's early file
    empty = {"digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2}
    (tmp / "retag.json").write_text(json.dumps({  # a's tag moved to other bytes (the empty blob)
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", **empty},
        "layers": [{"mediaType": "application/octet-stream", **empty,
                    "annotations": {"org.opencontainers.image.title": a.file}}]}, separators=(",", ":")))
    credential = "admin:test-only-password"
    (tmp / "admin.curlrc").write_text(f'user = "{credential}"\n')
    (tmp / "admin.curlrc").chmod(0o600)
    (tmp / "uploads").mkdir()
    monkeypatch.setattr(artifacts, "UPLOAD_DIR", str(tmp / "uploads"))
    s = _settings()
    publish = artifacts.publish_script(s, "test-publish", str(tmp / "ca.crt"), str(tmp / "admin.curlrc"), [a, b])
    fetch = artifacts.fetch_script(s, "test-fetch", [a, b])
    _script(tmp, "publish", publish)
    _script(tmp, "fetch", fetch)
    conf = tmp / "conf"
    conf.mkdir()
    for f in ("tls.crt", "tls.key"):
        (conf / f).write_bytes((tmp / f).read_bytes())
    config = config_yml("", 443, str(conf), str(tmp / "data"))
    (conf / "config.yml").write_text(_token_auth(config, tmp) if auth == "token" else config)
    env = dict(os.environ, TMP=str(tmp), REGISTRY=str(registry_binary()), CONFIG=str(conf / "config.yml"),
               HOST=HOSTNAME, ADDRESS=artifacts.registry_address(s), REPO=artifacts.ARTIFACT_REPOSITORY,
               UPLOAD_A=artifacts.upload_path(a), UPLOAD_B=artifacts.upload_path(b), TAG_A=artifacts.tag(a),
               CREDENTIAL=credential, PYTHON=sys.executable,
               REALM=str(Path(__file__).with_name("token_realm.py")) if auth == "token" else "")
    done = subprocess.run(["unshare", "--net", "bash", "-c", DRIVER], env=env, capture_output=True, text=True,
                          timeout=180)
    phases = _phases(done.stdout)
    print(done.stdout, done.stderr)

    assert phases["probe"][0].strip() == ("v2=401" if auth == "token" else "v2=200")
    if auth == "token":
        assert phases["anonymous-push"][0].strip() == "put=401"
        assert "test-only-password" not in publish + fetch  # the credential stays in its 0600 curl config

    text, rc = phases["publish-tampered"]
    assert rc != 0 and "digest mismatch" in done.stdout + done.stderr
    assert "pushed" not in text

    text, rc = phases["publish"]
    assert rc == 0
    assert text.count("pushed sha256:") == 3  # the empty config blob and the two files
    assert f"tagged {artifacts.ARTIFACT_REPOSITORY}:{artifacts.tag(a)}" in text
    assert f"tagged {artifacts.ARTIFACT_REPOSITORY}:{artifacts.tag(b)}" in text
    assert not (tmp / "uploads" / Path(artifacts.upload_path(a)).name).exists()  # verified into the cache

    text, rc = phases["publish-again"]
    assert rc == 0 and "pushed" not in text and "tagged" not in text  # nothing pushed, no tag rewritten

    text, rc = phases["fetch"]
    assert rc == 0
    assert (tmp / "dest/bin/toola").read_bytes() == b"#!/bin/sh\necho a\n"
    assert (tmp / "dest/bin/toolb").read_bytes() == b"#!/bin/sh\necho b\n"
    assert f"changed:{tmp}/dest/bin/toola" in text and f"changed:{tmp}/dest/bin/toolb" in text

    text, rc = phases["fetch-again"]
    assert rc == 0 and "changed:\n" in text and ".part" not in text  # no download (verified cache), no rewrite

    text, rc = phases["fetch-retagged"]
    assert rc != 0 and "digest mismatch" in done.stderr


def test_the_policy_refuses_a_fetch_that_skips_certificate_verification(dev):
    cmd = dev.named("worker-1-runtime", COMMAND)
    assert registry_problems(cmd.type, cmd.plain_inputs) == []
    create = cmd.plain_inputs["create"]
    assert "curl -sS --retry 5 --connect-timeout 10 --cacert" in create
    tampered = {**cmd.plain_inputs, "create": create.replace("curl -sS --retry 5", "curl -ksS --retry 5")}
    assert registry_problems(cmd.type, tampered) == [
        "create runs curl without certificate verification ('curl -ksS')"]
    # the components' own loopback health probes (self-signed /healthz) stay allowed
    assert registry_problems(cmd.type, {"create": 'curl -fsk "https://127.0.0.1:10257/healthz"'}) == []
