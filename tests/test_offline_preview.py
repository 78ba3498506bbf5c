"""Issue 8: `python -m offline preview` — plan, real policy pack, host files, artifact checks, exit status."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from offline.engine.runner import ROOT
from policy.rules.artifacts.steps import step_props

FIXTURES = ROOT / "tests" / "fixtures"
PACK = ROOT / "policy" / "__main__.py"
RESOURCE_KEYS = {"urn", "type", "name", "custom", "parent", "dependencies", "inputs"}


def preview(out: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "offline", "preview", "--out", str(out), *args],
                          cwd=ROOT, capture_output=True, text=True, check=False, timeout=600,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("dev")
    return out, preview(out, "--stack", "dev")


def test_dev_preview_passes(dev) -> None:
    out, done = dev
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "+   pulumi:pulumi:Stack" in done.stdout and "├─ containercloud:pki:ClusterPki" in done.stdout
    checks = json.loads((out / "checks.json").read_text())["checks"]
    assert [c for c in checks if c["status"] == "failed"] == []
    kinds = {c["name"] for c in checks if c["status"] == "ok"}
    assert {"openssl verify", "kubectl config view", "shellcheck", "systemd-analyze verify", "nft -c -f"} <= kinds


def test_plan_shape_and_no_private_key(dev) -> None:
    out, _ = dev
    text = (out / "plan.json").read_text()
    assert "PRIVATE KEY" not in text
    plan = json.loads(text)
    assert plan["project"] == "container-cloud" and plan["stack"] == "dev"
    assert plan["resources"] and all(set(r) == RESOURCE_KEYS for r in plan["resources"])
    types = {r["type"] for r in plan["resources"]}
    assert {"containercloud:pki:ClusterPki", "containercloud:net:HostFirewall", "command:remote:Command"} <= types
    assert "containercloud:host:HostStep" not in types  # a step is its Command (issue 16)
    assert plan["outputs"]["kubeconfigs"] == "[secret]"
    assert plan["outputs"]["apiEndpoint"].startswith("https://")
    connections = [r["inputs"]["connection"] for r in plan["resources"] if r["type"] == "command:remote:Command"]
    assert connections and all(c == "[secret]" for c in connections)


def test_policy_json_shape(dev) -> None:
    out, _ = dev
    doc = json.loads((out / "policy.json").read_text())
    assert set(doc) == {"violations"}
    for v in doc["violations"]:
        assert set(v) == {"policy", "level", "urn", "message"}
        assert v["level"] != "mandatory"


def test_host_trees(dev) -> None:
    """Every step's Command in the plan is written out under its host: the step and undo scripts, each file its
    `create` carries with that content; the secret files (stdin is "[secret]" in the plan) only listed in
    SECRETS.txt, never written."""
    out, _ = dev
    plan = json.loads((out / "plan.json").read_text())
    decoded = [(r, step_props(r["type"], r["inputs"], r["name"])) for r in plan["resources"]]
    steps = [(r, st) for r, st in decoded if st is not None]
    assert steps
    hosts = {st["host"] for _, st in steps}
    assert {p.name for p in (out / "hosts").iterdir()} == hosts
    secrets_seen = 0
    for r, st in steps:
        host, name = st["host"], r["name"]
        script = (out / "hosts" / host / "_steps" / f"{name}.sh").read_text()
        assert script.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in script
        assert script == st["stepScript"]
        assert (out / "hosts" / host / "_steps" / f"{name}.undo.sh").read_text() == st["undoScript"]
        listed = out / "hosts" / host / "SECRETS.txt"
        lines = [ln.split("\t") for ln in listed.read_text().splitlines()[1:]] if listed.is_file() else []
        secret = {ln[0] for ln in lines if ln[3] == f"(step {name})"}
        assert bool(secret) == (r["inputs"].get("stdin") == "[secret]"), name
        for f in st["files"]:
            placed = out / "hosts" / host / f["path"].lstrip("/")
            if f["secret"]:
                assert f["path"] in secret, (name, f["path"])
            elif f["content"] is not None:
                assert placed.read_text() == f["content"], (name, f["path"])
            else:  # on a secret stdin with the secret files: the preview writes it from the run
                assert placed.is_file(), (name, f["path"])
        for path in secret:
            assert not (out / "hosts" / host / path.lstrip("/")).exists(), path
        secrets_seen += len(secret)
    assert secrets_seen  # keys and kubeconfigs reach the hosts
    for path in (out / "hosts").rglob("*"):
        if path.is_file():
            assert "PRIVATE KEY" not in path.read_text(errors="replace"), path


@pytest.mark.skipif(not PACK.is_file(), reason="policy/__main__.py does not exist: no pack to reject the stack")
def test_broken_stack_fails_on_the_policy(tmp_path: Path) -> None:
    done = preview(tmp_path, "--stack", "broken", "--stack-file", str(FIXTURES / "Pulumi.broken.yaml"), "--no-tree")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    violations = json.loads((tmp_path / "policy.json").read_text())["violations"]
    mandatory = [v for v in violations if v["level"] == "mandatory"]
    assert mandatory and all("master-1-firewall" in v["urn"] for v in mandatory)
    assert any("2379" in v["message"] for v in mandatory)
    assert "[mandatory]" in done.stdout and "master-1-firewall" in done.stdout


def _fixture_preview(out: Path, broken: bool, *args: str) -> subprocess.CompletedProcess[str]:
    return preview(out, "--stack", "dev", "--program", str(FIXTURES / "offline_program.py"), "--no-tree",
                   "--no-policy", *args,
                   env={"OFFLINE_FIXTURE_BROKEN": "1" if broken else "0"})


def test_secrets_written_0600_only_with_show_secrets(tmp_path: Path) -> None:
    done = _fixture_preview(tmp_path, False, "--show-secrets")
    assert done.returncode == 0, done.stdout[-3000:]
    key = tmp_path / "hosts" / "worker-1" / "etc" / "demo" / "admin.key"
    assert "PRIVATE KEY" in key.read_text()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not (tmp_path / "hosts" / "worker-1" / "SECRETS.txt").exists()
    checks = json.loads((tmp_path / "checks.json").read_text())["checks"]
    assert any(c["name"] == "kubectl config view" and "admin.kubeconfig" in c["target"] and c["status"] == "ok"
               for c in checks)
    assert "PRIVATE KEY" not in (tmp_path / "plan.json").read_text()


def test_each_broken_artifact_fails_its_tool(tmp_path: Path) -> None:
    done = _fixture_preview(tmp_path, True)
    assert done.returncode == 1
    checks = json.loads((tmp_path / "checks.json").read_text())["checks"]
    failed = {(c["name"], c["target"].split(" ")[0]) for c in checks if c["status"] == "failed"}
    assert ("openssl verify", "hosts/worker-1/etc/demo/admin.crt") in failed
    assert ("nft -c -f", "hosts/worker-1/etc/nftables.d/demo.nft") in failed
    assert ("shellcheck", "hosts/worker-1/usr/local/bin/demo-check.sh") in failed
    assert ("systemd-analyze verify", "worker-1:/etc/systemd/system/demo.service") in failed
    ok = {(c["name"], c["target"].split(" ")[0]) for c in checks if c["status"] == "ok"}
    assert ("openssl verify", "hosts/worker-1/etc/demo/ca.crt") in ok
    assert "Policy: NOT RUN" in done.stdout


def test_a_missing_policy_pack_is_a_failure(tmp_path: Path) -> None:
    done = preview(tmp_path, "--stack", "dev", "--program", str(FIXTURES / "offline_program.py"), "--no-tree",
                   "--policy-pack", str(tmp_path / "no-pack"))
    assert done.returncode == 1
    assert "Policy: NOT RUN (no policy pack at" in done.stdout
