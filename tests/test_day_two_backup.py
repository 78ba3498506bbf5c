"""etcd backups: the rendered steps under the harness, and the rendered backup script run for real against
a real etcd (Debian's 3.4, the program's certificates): snapshots, verification, retention, the copy to a
backup host's receiver, and a restore that follows docs/restore.md's own commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from components.config import parse_settings
from components.etcd_backup import backup_script, receiver_script, target
from offline.engine.runner import ProgramRun, load_stack_config, run_program
from tests.etcd_support import ENV, HAVE_ETCD, Member, write_pki
from tests.k8s_support import files_by_host, inner_script, k8s_steps, step

ROOT = Path(__file__).resolve().parent.parent
BACKUP_HOST = {"etcdBackupHost": "rancher-1"}


def _settings(stack: str, overrides=None):
    cfg = load_stack_config(stack, overrides)
    return parse_settings({k.split(":", 1)[1]: v for k, v in cfg.values.items()})


@pytest.fixture(scope="module")
def with_target() -> ProgramRun:
    run = run_program("ha", overrides=BACKUP_HOST)
    assert run.error is None, run.error
    return run


def test_every_etcd_host_gets_a_timer_after_its_etcd_step(ha: ProgramRun) -> None:
    s = _settings("ha")
    files = files_by_host(ha)
    for h in s.etcd_hosts:
        f = files[h.name]
        timer = f["/etc/systemd/system/containercloud-etcd-backup.timer"]
        assert "OnUnitActiveSec=6h" in timer and "WantedBy=timers.target" in timer
        service = f["/etc/systemd/system/containercloud-etcd-backup.service"]
        assert "ExecStart=/usr/local/sbin/containercloud-etcd-backup" in service and "Type=oneshot" in service
        script = f["/usr/local/sbin/containercloud-etcd-backup"]
        assert "retain=28" in script and f"etcd-{h.name}-" in script and "ssh " not in script
        st = step(ha, f"{h.name}-etcd-backup")
        assert step(ha, f"{h.name}-etcd").command_urn in st.dependencies
        assert "systemctl start containercloud-etcd-backup.service" in st.command["create"]
    others = {h.name for h in s.hosts} - {h.name for h in s.etcd_hosts}
    assert not [st for st in k8s_steps(ha) if "etcd-backup" in st.name and st.host in others]


def test_backup_host_receives_with_a_dedicated_key_that_runs_only_the_receiver(with_target: ProgramRun) -> None:
    s = _settings("ha", BACKUP_HOST)
    tgt = step(with_target, "rancher-1-etcd-backup-target")
    pub = tgt.files["/etc/containercloud/etcd-backup.pub"]
    assert pub.startswith("ssh-ed25519 ")
    body = inner_script(tgt.command["create"])
    assert 'restrict,command=\\"/usr/local/sbin/containercloud-etcd-backup-receive\\"' in body
    for h in s.etcd_hosts:
        st = step(with_target, f"{h.name}-etcd-backup")
        key = "/etc/etcd/backup/id_ed25519"
        assert key in st.secret_paths and st.modes[key] == "0600"
        assert re.search(rf"^{re.escape(key)} ", st.command["stdin"], re.MULTILINE)  # its content on stdin
        assert "PRIVATE KEY" in st.files[key] and "PRIVATE KEY" not in st.command["create"]
        assert tgt.command_urn in st.dependencies
        script = st.files["/usr/local/sbin/containercloud-etcd-backup"]
        assert "root@198.51.100.21" in script and "-i /etc/etcd/backup/id_ed25519" in script


def test_bad_day_two_settings_are_refused_with_every_other_fault_before_any_resource() -> None:
    hosts = [dict(h) for h in load_stack_hosts("ha")]
    hosts[3]["zone"] = "dmz2"
    run = run_program("ha", overrides={"etcdBackupHost": "worker-1", "etcdBackupIntervalHours": 0,
                                       "etcdBackupRetain": 5000, "maxUnavailableWorkers": 150, "hosts": hosts})
    assert run.error is not None and run.registrations == []
    text = str(run.error)
    assert "container-cloud:hosts[3].zone: 'dmz2' is not a zone" in text
    assert "container-cloud:etcdBackupIntervalHours: 0" in text
    assert "container-cloud:etcdBackupRetain: 5000" in text
    assert "container-cloud:maxUnavailableWorkers: 150" in text
    run = run_program("ha", overrides={"etcdBackupHost": "worker-1"})
    assert "container-cloud:etcdBackupHost: 'worker-1' is in zone dmz" in str(run.error)
    run = run_program("ha", overrides={"etcdBackupHost": "nope"})
    assert "'nope' is not an inventory host" in str(run.error) and run.registrations == []


def load_stack_hosts(stack: str) -> list[dict[str, object]]:
    return list(yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["container-cloud:hosts"])


def test_scripts_pass_shellcheck_and_units_pass_systemd_analyze(with_target: ProgramRun, tmp_path: Path) -> None:
    files = files_by_host(with_target)
    scripts = [files["cp-1"]["/usr/local/sbin/containercloud-etcd-backup"],
               step(with_target, "rancher-1-etcd-backup-target").files[
                   "/usr/local/sbin/containercloud-etcd-backup-receive"]]
    for i, text in enumerate(scripts):
        path = tmp_path / f"s{i}.sh"
        path.write_text(text)
        r = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout
    for name in ("containercloud-etcd-backup.service", "containercloud-etcd-backup.timer"):
        (tmp_path / name).write_text(files["cp-1"][f"/etc/systemd/system/{name}"])
    exe = "/usr/local/sbin/containercloud-etcd-backup"
    stub = f"mount -t tmpfs tmpfs /usr/local/sbin && printf '#!/bin/sh\\n' > {exe} && chmod +x {exe}"
    units = " ".join(str(tmp_path / n) for n in ("containercloud-etcd-backup.service",
                                                 "containercloud-etcd-backup.timer"))
    r = subprocess.run(["unshare", "-m", "sh", "-c", f"{stub} && systemd-analyze verify {units}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr


# --- for real -----------------------------------------------------------------------------------------

def _doc_block(marker: str) -> str:
    text = (ROOT / "docs" / "restore.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    (block,) = [b for b in blocks if b.startswith(f"# {marker}\n")]
    return block


@pytest.fixture
def member(ha: ProgramRun, tmp_path: Path):
    s = _settings("ha")
    host = s.etcd_hosts[0]
    files = files_by_host(ha)[host.name]
    m = Member(host.name, tmp_path / "m1")
    write_pki(files, m.pki)
    flags = m.flags(files["/etc/systemd/system/etcd.service"], host.address)
    flags["initial-cluster"] = f"{host.name}={m.peer_url}"
    m.start(flags)
    try:
        m.wait_healthy()
        yield m, s, host, flags
    finally:
        m.stop()


def _run(script: str, tmp_path: Path, name: str, env=None, path_dirs=()) -> subprocess.CompletedProcess[str]:
    f = tmp_path / name
    f.write_text(script)
    f.chmod(0o755)
    extra = ":".join(str(p) for p in path_dirs)
    full_env = {**ENV, **(env or {})}
    if extra:
        full_env["PATH"] = f"{extra}:{full_env['PATH']}"
    return subprocess.run(["bash", str(f)], capture_output=True, text=True, timeout=120, env=full_env)


@pytest.mark.skipif(not HAVE_ETCD, reason="etcd not installed")
def test_backup_keeps_verified_snapshots_prunes_and_restores_per_the_runbook(member, tmp_path: Path) -> None:
    m, s, host, flags = member
    s = s.model_copy(update={"etcd_backup_retain": 3})
    backups = tmp_path / "backups"
    script = backup_script(s, host, directory=str(backups), endpoint=m.client_url, pki=str(m.pki))
    for i in range(4):
        m.ctl("put", f"/registry/k{i}", f"v{i}")
        r = _run(script, tmp_path, "backup.sh")
        assert r.returncode == 0, r.stderr
        assert "kept " in r.stdout
        time.sleep(1.1)  # one snapshot per second: names carry the UTC time
    kept = sorted(p.name for p in backups.glob("*.db"))
    assert len(kept) == 3 and all(n.startswith(f"etcd-{host.name}-") for n in kept), kept
    assert "pruned " in r.stdout
    for name in kept:
        check = subprocess.run(["sha256sum", "-c", f"{name}.sha256"], cwd=backups, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
    assert not list(backups.glob(".*.part")) and not list(backups.glob(".verify.*"))
    m.ctl("put", "/registry/after", "written after the last snapshot")

    # docs/restore.md, step 3, unchanged: etcdutl is 3.6's; here a shim runs etcdctl 3.4, which has the
    # same restore flags except --bump-revision/--mark-compacted (3.6 only), which the shim drops
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "etcdutl").write_text('#!/bin/bash\nargs=()\nwhile (( $# )); do\n  case $1 in\n'
                                  '    --bump-revision) shift 2 ;;\n    --mark-compacted) shift ;;\n'
                                  '    *) args+=("$1"); shift ;;\n  esac\ndone\nexec etcdctl "${args[@]}"\n')
    (shim / "etcdutl").chmod(0o755)
    restored = Member(host.name, tmp_path / "m2")
    write_pki({f"/etc/etcd/pki/{p.name}": p.read_text() for p in m.pki.iterdir()}, restored.pki)
    env = {"SNAPSHOT": str(backups / kept[-1]), "NAME": host.name, "PEER_URL": restored.peer_url,
           "INITIAL_CLUSTER": f"{host.name}={restored.peer_url}", "TOKEN": flags["initial-cluster-token"],
           "DATA_DIR": str(restored.data)}
    r = _run("set -euo pipefail\n" + _doc_block("restore-member"), tmp_path, "restore.sh", env, [shim])
    assert r.returncode == 0, r.stdout + r.stderr
    m.stop()
    new_flags = dict(flags)
    for key in ("data-dir", "listen-client-urls", "advertise-client-urls", "listen-peer-urls",
                "initial-advertise-peer-urls", "listen-metrics-urls"):
        new_flags[key] = (new_flags[key].replace(str(m.data), str(restored.data))
                          .replace(str(m.client), str(restored.client)).replace(str(m.peer), str(restored.peer))
                          .replace(str(m.metrics), str(restored.metrics)))
    restored.start(new_flags)
    try:
        restored.wait_healthy()
        for i in range(4):
            assert restored.ctl("get", f"/registry/k{i}", "--print-value-only").stdout.strip() == f"v{i}"
        assert restored.ctl("get", "/registry/after").stdout.strip() == ""
    finally:
        restored.stop()


@pytest.mark.skipif(not HAVE_ETCD, reason="etcd not installed")
def test_a_corrupt_snapshot_is_not_kept(member, tmp_path: Path) -> None:
    m, s, host, _ = member
    backups = tmp_path / "backups"
    bad = tmp_path / "bad"
    bad.mkdir()
    real = shutil.which("etcdctl")
    (bad / "etcdctl").write_text(f'#!/bin/bash\n{real} "$@"\nrc=$?\n'
                                 'if [[ " $* " == *" snapshot save "* ]]; then truncate -s -100 "${@: -1}"; fi\n'
                                 'exit $rc\n')
    (bad / "etcdctl").chmod(0o755)
    r = _run(backup_script(s, host, directory=str(backups), endpoint=m.client_url, pki=str(m.pki)),
             tmp_path, "backup.sh", path_dirs=[bad])
    assert r.returncode != 0 and "failed verification" in r.stderr
    assert not list(backups.glob("*.db")) and not list(backups.glob(".*.part"))


@pytest.mark.skipif(not HAVE_ETCD, reason="etcd not installed")
def test_copy_to_the_backup_host_goes_through_the_receiver_only(member, tmp_path: Path) -> None:
    """The real ssh is replaced by a stand-in that runs what authorized_keys' command= runs: the receiver,
    with SSH_ORIGINAL_COMMAND set and the snapshot on stdin (the lab runs the real sshd)."""
    m, s, host, _ = member
    s = s.model_copy(update={"etcd_backup_retain": 2})
    received = tmp_path / "received"
    receiver = tmp_path / "receive.sh"
    receiver.write_text(receiver_script(s, str(received)))
    receiver.chmod(0o755)
    fake = tmp_path / "fakessh"
    fake.mkdir()
    log = tmp_path / "ssh.log"
    (fake / "ssh").write_text(f'#!/bin/bash\necho "$*" >> {log}\nSSH_ORIGINAL_COMMAND="${{@: -1}}" exec {receiver}\n')
    (fake / "ssh").chmod(0o755)
    to = target(s, s.host("rancher-1"))
    script = backup_script(s, host, directory=str(tmp_path / "local"), endpoint=m.client_url, pki=str(m.pki), to=to)
    for _ in range(3):
        r = _run(script, tmp_path, "backup.sh", path_dirs=[fake])
        assert r.returncode == 0, r.stderr
        assert "copied " in r.stdout
        time.sleep(1.1)
    got = sorted(p.name for p in received.glob("*.db"))
    assert len(got) == 2
    assert sorted(p.name for p in (tmp_path / "local").glob("*.db")) == got
    for name in got:
        assert subprocess.run(["sha256sum", "-c", f"{name}.sha256"], cwd=received).returncode == 0
    assert "-o StrictHostKeyChecking=accept-new" in log.read_text() and "root@198.51.100.21" in log.read_text()
    # the receiver refuses anything but a well-formed put with a matching digest
    for cmd in ("rm -rf /", f"put ../x.db {'0' * 64}", f"put {got[0]} {'0' * 64}"):
        refused = subprocess.run([str(receiver)], input=b"data", capture_output=True,
                                 env={"SSH_ORIGINAL_COMMAND": cmd, "PATH": ENV["PATH"]})
        assert refused.returncode != 0, cmd
    assert sorted(p.name for p in received.glob("*.db")) == got
