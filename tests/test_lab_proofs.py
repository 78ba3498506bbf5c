"""The logic of the lab's issue-12 proofs (lab/proofs_issue12.py) and the kube-proxy stand-in's iptables
check, without the lab: the lab tests (tests/test_lab.py) run the proofs on hosts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from lab import proofs_issue12 as p
from lab.standins import build, standin
from offline.engine import run_program
from policy.rules.artifacts import parse_ruleset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dev_rulesets() -> dict[str, str]:
    run = run_program("dev")
    assert run.error is None, run.error
    return {r.plain_inputs["host"]: r.plain_inputs["ruleset"] for r in run.of_type("containercloud:net:HostFirewall")}


# --- 3: kube-proxy refuses without iptables -----------------------------------------------------------

def _fake_iptables(tmp_path: Path, code: int) -> Path:
    bindir = tmp_path / f"bin{code}"
    bindir.mkdir()
    tool = bindir / "iptables"
    tool.write_text(f"#!/bin/sh\nexit {code}\n")
    tool.chmod(0o755)
    return bindir


@pytest.mark.parametrize("mode", ["iptables", "", "ipvs"])
def test_kube_proxy_refuses_iptables_modes_without_iptables(mode: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    with pytest.raises(standin.Refused, match="^iptables is not available on this host$"):
        standin.check_proxy_platform({"mode": mode})


def test_kube_proxy_refuses_when_iptables_does_not_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(_fake_iptables(tmp_path, 1)))
    with pytest.raises(standin.Refused):
        standin.check_proxy_platform({"mode": "iptables"})


def test_kube_proxy_starts_with_a_working_iptables_or_in_nftables_mode(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(_fake_iptables(tmp_path, 0)))
    standin.check_proxy_platform({"mode": "iptables"})
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    standin.check_proxy_platform({"mode": "nftables"})


def test_kube_proxy_checks_before_it_serves_and_the_check_is_shipped(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """run_proxy (what the stand-in runs once its flags and files passed) refuses before binding a port, and
    the executable the mirror ships carries the check."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(standin.Refused, match="iptables is not available on this host"):
        standin.run_proxy({"mode": "iptables", "healthzBindAddress": "127.0.0.1:1", "metricsBindAddress": ""})
    shipped = build("kube-proxy", "1.35.4").decode()
    assert "def check_proxy_platform" in shipped and "    check_proxy_platform(cfg)\n" in shipped


# --- 5: the pod network, the Service DNAT, the ruleset before the fix ---------------------------------

def test_pod_addresses_take_the_last_24_of_the_pod_cidr() -> None:
    assert p.pod_addresses("10.244.0.0/16") == ("10.244.255.1", "10.244.255.2", 24)
    assert p.pod_addresses("10.42.7.0/24") == ("10.42.7.1", "10.42.7.2", 24)


def test_the_service_dnat_is_valid_nft(tmp_path: Path) -> None:
    path = tmp_path / "dnat.nft"
    path.write_text(p.dnat_ruleset("10.96.0.1", 443, "198.51.100.11", 6443))
    done = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
    if done.returncode != 0 and "Operation not permitted" in done.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN")
    assert done.returncode == 0, done.stderr
    assert "ip daddr 10.96.0.1 tcp dport 443 dnat to 198.51.100.11:6443" in path.read_text()


def test_without_flow_removes_exactly_the_pod_rule(dev_rulesets: dict[str, str]) -> None:
    master = dev_rulesets["master-1"]
    old = p.without_flow(master, "10.244.0.0/16", 6443)
    removed = [ln for ln in master.splitlines() if ln not in old.splitlines()]
    assert len(removed) == 1 and "dport 6443 accept" in removed[0]
    rule = next(r for c in parse_ruleset(master) for r in c.rules if r.text in removed[0])
    assert rule.saddr == ["10.244.0.0/16"]  # the rule (its named set resolved) admitted the pods only
    assert "dport 6443 accept" in old  # the other sources keep the apiserver
    with pytest.raises(ValueError):
        p.without_flow(old, "10.244.0.0/16", 6443)


def test_the_ruleset_before_the_fix_had_no_pod_rule() -> None:
    """What without_flow stands in for: the firewall of commit 170a934's parent opened 6443 to no pod source."""
    old = subprocess.run(["git", "show", "170a934^:policy/rules/ports.py"], cwd=ROOT, capture_output=True, text=True)
    if old.returncode != 0:
        pytest.skip(f"history not available: {old.stderr.strip()}")
    new = (ROOT / "policy/rules/ports.py").read_text()
    assert 'Flow(("pods",), "control-plane", "apiServerPort"' in new
    assert 'Flow(("pods",), "control-plane", "apiServerPort"' not in old.stdout


# --- 6: the docker image, the stranger, the ruleset without forward -----------------------------------

def test_docker_archive_is_a_docker_save_tarball() -> None:
    data = p.docker_archive(b"\x7fELF fake busybox", "cclab-busybox:1")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        manifest = json.loads(_read(tar, "manifest.json"))
        config = json.loads(_read(tar, manifest[0]["Config"]))
        layer_bytes = _read(tar, manifest[0]["Layers"][0])
    with tarfile.open(fileobj=io.BytesIO(layer_bytes)) as layer:
        layer_names = set(layer.getnames())
    assert manifest[0]["RepoTags"] == ["cclab-busybox:1"] and set(names) >= {"manifest.json"}
    assert config["rootfs"]["type"] == "layers" and len(config["rootfs"]["diff_ids"]) == 1
    assert config["config"]["Cmd"][:3] == ["/bin/busybox", "httpd", "-f"]
    assert {"bin/busybox", "www/index.html"} <= layer_names


def _read(tar: tarfile.TarFile, name: str) -> Any:
    f = tar.extractfile(name)
    assert f is not None
    return f.read()


def test_stranger_address_is_free_and_inside_the_zone() -> None:
    assert p.stranger_address("203.0.113.0/24", ["203.0.113.254"]) == "203.0.113.253"
    assert p.stranger_address("203.0.113.0/24", []) == "203.0.113.254"
    with pytest.raises(ValueError):
        p.stranger_address("203.0.113.0/30", ["203.0.113.2"])


def test_without_forward_keeps_the_input_chain_only(dev_rulesets: dict[str, str], tmp_path: Path) -> None:
    harbor = dev_rulesets["harbor-1"]
    cut = p.without_forward(harbor)
    assert "chain input" in cut and "chain forward" not in cut and "chain published" not in cut
    assert cut.count("{") == cut.count("}")
    path = tmp_path / "cut.nft"
    path.write_text(cut)
    done = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
    if done.returncode == 0 or "Operation not permitted" not in done.stderr:
        assert done.returncode == 0, done.stderr
    with pytest.raises(ValueError):
        p.without_forward(dev_rulesets["master-1"])  # no Docker there: no forward chain


def test_format_table_aligns_columns() -> None:
    out = p.format_table(("a", "bb"), [("xxx", "y")]).splitlines()
    assert out == ["  a    bb", "  xxx  y"]


def test_parse_probe_reads_the_last_json_line_or_the_error() -> None:
    ok = subprocess.CompletedProcess([], 0, b'noise\n{"result": "dropped"}\n', b"")
    assert p.parse_probe(ok) == {"result": "dropped"}
    bad = subprocess.CompletedProcess([], 1, b"", b"Traceback\nssl.SSLError: alert\n")
    assert p.parse_probe(bad) == {"result": "error", "detail": ["ssl.SSLError: alert"]}


def test_the_probe_answers_dropped_open_and_http(tmp_path: Path) -> None:
    """The probe script itself, against a local listener (open/http) and a closed port (refused)."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(100)
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhi")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    run = subprocess.run(p.probe_argv("http", "127.0.0.1", port), capture_output=True, timeout=30,
                         env=dict(os.environ))
    server.close()
    assert p.parse_probe(run) == {"result": "answered", "status": "HTTP/1.0 200 OK"}
    closed = subprocess.run(p.probe_argv("tcp", "127.0.0.1", port), capture_output=True, timeout=30)
    assert p.parse_probe(closed)["result"] == "refused"


@pytest.mark.parametrize("stack", ["dev", "ha"])
def test_every_node_and_docker_host_gets_iptables_from_the_prerequisites(stack: str) -> None:
    """The program side of 12.3: the step the lab proves installs iptables wherever kube-proxy or dockerd runs."""
    from components import prerequisites
    from components.config import parse_settings
    from components.firewall import runs_docker
    from lab.run import stack_raw

    s = parse_settings(stack_raw(stack))
    need = [h for h in s.hosts if h in s.node_hosts or runs_docker(h, s.rancher_mode)]
    assert need and all("iptables" in [p.name for p in prerequisites.packages(s, h)] for h in need)
    assert all("iptables" in prerequisites.script(s, h) for h in need)


# --- issue 15: the upgrade's order from the execution log ---------------------------------------------

def _upgrade_log(swap: bool = False, overlap: bool = False, early_kubelet: bool = False,
                 drain_ran: bool = False) -> list[Any]:
    from lab.proofs_upgrade import Entry

    def step(host: str, name: str, end: float, took: float = 1.0) -> Entry:
        return Entry("ok", "replace", host, name, end=end, duration=took)

    def held(name: str) -> Entry:
        return Entry("ok" if drain_ran else "not-run", "replace", "cp-1", name, reason="needs a real API server")

    log = [step("cp-1", "cp-1-kube-apiserver", 2.0), step("cp-1", "cp-1-controllers", 3.0),
           step("cp-2", "cp-2-kube-apiserver", 3.5 if overlap else 4.0, 1.8), step("cp-2", "cp-2-controllers", 5.0),
           held("cp-1-rollout-batch-0"), held("cp-1-rollout-batch-1"),
           step("w-2", "w-2-runtime", 6.0), step("w-2", "w-2-kubelet", 7.0), held("cp-1-batch-1-node"),
           held("cp-1-rollout-batch-2"),
           step("w-1", "w-1-runtime", 6.5), step("w-1", "w-1-kubelet", 7.5), held("cp-1-batch-2-node")]
    if swap:
        log[4], log[5] = log[5], log[4]
    if early_kubelet:
        log.insert(4, log.pop(11))
    return log


def test_upgrade_order_of_a_right_log_has_no_fault() -> None:
    from lab.proofs_upgrade import check_order

    assert check_order(_upgrade_log(), ["cp-1", "cp-2"], [[], ["w-2"], ["w-1"]], "cp-1") == []


@pytest.mark.parametrize(("kind", "fault"), [
    ("swap", "drain steps out of batch order: [1, 0, 2]"),
    ("overlap", "cp-2-kube-apiserver started before cp-1-kube-apiserver ended"),
    ("early_kubelet", "w-1-kubelet ran before batch 2's drain step"),
    ("drain_ran", "cp-1-rollout-batch-0 on cp-1 ran: drain/uncordon need a real API server"),
])
def test_upgrade_order_faults_are_read_from_the_log(kind: str, fault: str) -> None:
    from lab.proofs_upgrade import check_order

    faults = check_order(_upgrade_log(**{kind: True}), ["cp-1", "cp-2"], [[], ["w-2"], ["w-1"]], "cp-1")
    assert fault in faults, faults


def test_upgrade_order_misses_a_node_that_did_not_roll() -> None:
    from lab.proofs_upgrade import check_order

    log = [e for e in _upgrade_log() if e.name not in ("w-1-kubelet", "cp-1-batch-2-node")]
    faults = check_order(log, ["cp-1", "cp-2"], [[], ["w-2"], ["w-1"]], "cp-1")
    assert faults == ["w-1-kubelet was not replaced", "batch 2 has no uncordon step in the log"]


def test_the_rollout_log_leaves_out_the_old_sides_deletes_and_other_steps() -> None:
    """After the rollout the engine deletes the replaced drain steps' old sides (in reverse order): they are not
    part of the order, nor are unrelated steps (firewall, uploads)."""
    from lab.proofs_upgrade import Entry, check_order, relevant

    log = _upgrade_log() + [Entry("not-run", "delete-replaced", "cp-1", "cp-1-rollout-batch-2"),
                            Entry("not-run", "delete-replaced", "cp-1", "cp-1-rollout-batch-1"),
                            Entry("ok", "replace", "w-1", "w-1-firewall", end=9.0)]
    shown = [e for e in log if relevant(e, ["cp-1", "cp-2"], ["w-1", "w-2"])]
    assert shown == _upgrade_log()
    assert check_order(shown, ["cp-1", "cp-2"], [[], ["w-2"], ["w-1"]], "cp-1") == []
    assert check_order(log, ["cp-1", "cp-2"], [[], ["w-2"], ["w-1"]], "cp-1") != []


def test_the_bump_stays_within_the_minor() -> None:
    from lab.proofs_upgrade import bumped

    assert bumped("1.35.4") == "1.35.5" and bumped("1.36.19") == "1.36.20"


# --- issue 15: etcd membership stages from the program's own variant stacks ---------------------------

def test_membership_stages_replace_grow_and_remove_only_etcd_steps() -> None:
    """The ha stack with the etcd role on cp-1, then cp-1+cp-2, then all three, then cp-3 removed: as the
    engine diffs them, growing creates the new host's etcd step and replaces the running ones (their delete
    after a replacement is a no-op: host_step marker), shrinking deletes only cp-3's etcd step."""
    from lab.proofs_membership import etcd_closure, is_etcd_step, shrink_keeps, stages, variant_hosts
    from lab.run import stack_raw
    from lab.state import ReplayMocks, diff, from_registrations

    raw = stack_raw("ha")
    names = ["cp-1", "cp-2", "cp-3"]
    mocks = ReplayMocks()
    applied: dict[str, Any] = {}
    ops = []
    previous: list[Any] = []
    for i, members in enumerate(stages(names)):
        run = run_program("ha", {"hosts": variant_hosts(raw["hosts"], members, names)}, mocks=mocks)
        assert run.error is None, run.error
        wanted = etcd_closure(from_registrations(run.registrations))
        if i == 3:
            wanted = shrink_keeps(previous, wanted)
        assert sorted(r.name for r in wanted if is_etcd_step(r)) == [f"{m}-etcd" for m in members]
        assert {r.type for r in wanted if r.remote} <= {"command:remote:Command", "command:remote:CopyToRemote"}
        ops.append(sorted((c.op, c.resource.name) for c in diff(applied, wanted)
                          if c.op != "same" and is_etcd_step(c.resource)))
        applied, previous = {r.urn: r for r in wanted}, wanted
    assert ops == [
        [("create", "cp-1-etcd")],
        [("create", "cp-2-etcd"), ("replace", "cp-1-etcd")],
        [("create", "cp-3-etcd"), ("replace", "cp-1-etcd"), ("replace", "cp-2-etcd")],
        [("delete", "cp-3-etcd"), ("replace", "cp-1-etcd"), ("replace", "cp-2-etcd")],
    ]
    assert any(r.name == "cp-3-etc-hosts" for r in previous), "a shrink keeps the host's other steps"


def test_the_bumped_version_gets_the_current_entries_and_keeps_them() -> None:
    from lab.proofs_upgrade import with_version

    table = {"kubernetes-node": {"v1.35.4": {"f": "sha256:1"}}, "etcd": {"3.6.14": {"e": "sha256:2"}}}
    got = with_version(table, "1.35.4", "1.35.5")
    assert got["kubernetes-node"] == {"v1.35.4": {"f": "sha256:1"}, "v1.35.5": {"f": "sha256:1"}}
    assert got["etcd"] == table["etcd"] and "v1.35.5" not in table["kubernetes-node"]
