"""Growing etcd, for real: the rendered membership fragment of the etcd step run on loopback with the
program's certificates (ha stack, Debian's etcd 3.4). A first member with nobody to ask starts `new`; a
second one finds it, is added (`member add`) and starts `existing`; re-running changes nothing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from components.config import parse_settings
from components.control_plane import etcd_join_script
from offline.engine.runner import ProgramRun, load_stack_config
from tests.etcd_support import ENV, HAVE_ETCD, Member, write_pki
from tests.k8s_support import files_by_host, inner_script, step

pytestmark = pytest.mark.skipif(not HAVE_ETCD, reason="etcd not installed")
PRELUDE = """set -euo pipefail
CHANGED=()
put_file() { local tmp; tmp=$(mktemp); cat > "$tmp"; if ! cmp -s "$tmp" "$1"; then install -D -m "$2" "$tmp" "$1";
  CHANGED+=("$1"); fi; rm -f "$tmp"; }
"""


def _join(s, host, members: list[Member], me: Member) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    env_file = me.work / "cluster.env"
    script = PRELUDE + etcd_join_script(
        s, host, pki=str(me.pki), data_dir=str(me.data), env_file=str(env_file),
        client_urls={m.name: m.client_url for m in members}, peer_urls={m.name: m.peer_url for m in members}) \
        + 'echo "changed: ${CHANGED[*]}"\n'
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=600, env=ENV)
    values = {}
    if env_file.exists():
        values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line)
    return r, values


def test_a_second_member_joins_a_running_cluster_with_member_add(ha: ProgramRun, tmp_path: Path) -> None:
    s = parse_settings({k.split(":", 1)[1]: v for k, v in load_stack_config("ha").values.items()})
    files = files_by_host(ha)
    h1, h2 = s.etcd_hosts[0], s.etcd_hosts[1]
    m1, m2 = Member(h1.name, tmp_path / "m1"), Member(h2.name, tmp_path / "m2")
    for m in (m1, m2):
        write_pki(files[m.name], m.pki)
    try:
        # first member, nobody to ask: a fresh cluster (only m1 in this test's inventory)
        r, env1 = _join(s, h1, [m1], m1)
        assert r.returncode == 0, r.stderr
        assert env1 == {"ETCD_INITIAL_CLUSTER": f"{h1.name}={m1.peer_url}", "ETCD_INITIAL_CLUSTER_STATE": "new"}
        m1.start(m1.flags(files[h1.name]["/etc/systemd/system/etcd.service"], h1.address), env1)
        m1.wait_healthy()
        m1.ctl("put", "/registry/before-growth", "kept")

        # second member: m1 answers, so m2 is added first and starts `existing`
        r, env2 = _join(s, h2, [m1, m2], m2)
        assert r.returncode == 0, r.stderr
        assert env2["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
        assert set(env2["ETCD_INITIAL_CLUSTER"].split(",")) == {f"{h1.name}={m1.peer_url}", f"{h2.name}={m2.peer_url}"}
        listed = m1.ctl("member", "list", "-w", "simple").stdout
        assert ", unstarted, " in listed and m2.peer_url in listed
        m2.start(m2.flags(files[h2.name]["/etc/systemd/system/etcd.service"], h2.address), env2)
        m2.wait_healthy()
        lines = m1.ctl("member", "list", "-w", "simple").stdout.strip().splitlines()
        assert len(lines) == 2 and all(", started, " in ln for ln in lines), lines
        assert {ln.split(", ")[2] for ln in lines} == {h1.name, h2.name}
        health = m1.ctl("endpoint", "health", endpoints=f"{m1.client_url},{m2.client_url}")
        out = health.stdout + health.stderr
        assert f"{m1.client_url} is healthy" in out and f"{m2.client_url} is healthy" in out
        assert m2.ctl("get", "/registry/before-growth", "--print-value-only").stdout.strip() == "kept"

        # the step again on both: members with data are left alone (nothing rewritten, no member add)
        for h, m in ((h1, m1), (h2, m2)):
            r, _ = _join(s, h, [m1, m2], m)
            assert r.returncode == 0 and "changed: \n" in r.stdout, r.stdout + r.stderr
        assert len(m1.ctl("member", "list").stdout.strip().splitlines()) == 2
    finally:
        m2.stop()
        m1.stop()


def test_three_members_started_one_after_the_other_form_a_new_cluster(ha: ProgramRun, tmp_path: Path) -> None:
    """The order the etcd steps run in (one after the other, so an upgrade restarts one member at a time):
    the first two find no quorum and start `new`; the third finds the cluster they formed, sees itself
    listed (unstarted) and starts `existing` without a `member add`."""
    s = parse_settings({k.split(":", 1)[1]: v for k, v in load_stack_config("ha").values.items()})
    files = files_by_host(ha)
    members = [Member(h.name, tmp_path / h.name) for h in s.etcd_hosts]
    for m in members:
        write_pki(files[m.name], m.pki)
    states = []
    try:
        for h, m in zip(s.etcd_hosts, members, strict=True):
            r, env = _join(s, h, members, m)
            assert r.returncode == 0, r.stderr
            states.append(env["ETCD_INITIAL_CLUSTER_STATE"])
            assert set(env["ETCD_INITIAL_CLUSTER"].split(",")) == {f"{x.name}={x.peer_url}" for x in members}
            m.start(m.flags(files[h.name]["/etc/systemd/system/etcd.service"], h.address), env)
            if h is s.etcd_hosts[1]:
                members[0].wait_healthy()  # quorum of two: the third step finds a running cluster
        for m in members:
            m.wait_healthy()
        lines = members[0].ctl("member", "list", "-w", "simple").stdout.strip().splitlines()
        assert len(lines) == 3 and all(", started, " in ln for ln in lines), lines
        assert states == ["new", "new", "existing"]
        assert "member add" not in r.stdout + r.stderr
    finally:
        for m in members:
            m.stop()


def test_etcd_steps_run_one_after_the_other_and_a_forming_member_is_not_waited_for(ha: ProgramRun,
                                                                                     tmp_path: Path) -> None:
    names = [f"cp-{i}-etcd" for i in (1, 2, 3)]
    assert step(ha, names[0]).command_urn in step(ha, names[1]).dependencies
    assert step(ha, names[1]).command_urn in step(ha, names[2]).dependencies
    body = inner_script(step(ha, names[0]).command["create"])
    start = body[body.index("# a member of a cluster that is still forming"):body.index("install -d -m 0700 "
                                                                                       "/var/lib/containercloud")]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("systemctl", "etcdctl", "journalctl", "sleep"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho {tool} "$*" >> {tmp_path}/log\n'
                                    + ("exit 1\n" if tool == "etcdctl" else ""))
        (bin_dir / tool).chmod(0o755)
    env_file, data = tmp_path / "cluster.env", tmp_path / "data"
    script = (PRELUDE + "changed() { return 0; }\n"
              + start.replace("/etc/etcd/cluster.env", str(env_file)).replace("/var/lib/etcd", str(data)))

    def run(state: str, cluster: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "log").write_text("")
        env_file.write_text(f"ETCD_INITIAL_CLUSTER={cluster}\nETCD_INITIAL_CLUSTER_STATE={state}\n")
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                              env={**ENV, "PATH": f"{bin_dir}:{ENV['PATH']}"})

    forming = run("new", "cp-1=https://a:2380,cp-2=https://b:2380")
    assert forming.returncode == 0 and "starts a new cluster" in forming.stdout
    assert "etcdctl" not in (tmp_path / "log").read_text()
    shutil.rmtree(data)
    single = run("new", "cp-1=https://a:2380")  # a one-member cluster must be healthy: waited for
    assert single.returncode == 1 and "did not become healthy" in single.stderr
    assert (tmp_path / "log").read_text().count("etcdctl") == 60
