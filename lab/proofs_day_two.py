"""Day-two proofs on lab hosts (issue 15): the program's etcd backup step really snapshots etcd, and a
snapshot restores the keys written before it (docs/restore.md's commands, on a scratch member).

The other day-two proofs: etcd growth and shrinking with the program's etcd steps (lab/proofs_membership.py,
ha) and an upgrade's order from the execution log (lab/proofs_upgrade.py, dev; its drain and uncordon steps
need a real API server and are logged NOT RUN).
"""

from __future__ import annotations

import time
from typing import Any

from components.etcd_backup import SCRIPT, SNAPSHOT_DIR
from lab.proofs_issue12 import ProofFailed as ProofError

PKI = "/etc/etcd/pki"
SCRATCH = "/var/tmp/containercloud-lab-restore"
CLIENT, PEER = "http://127.0.0.1:23790", "http://127.0.0.1:23800"
BEFORE, AFTER = "containercloud-lab/before-snapshot", "containercloud-lab/after-snapshot"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


def _etcdctl(lab: Any, host: Any, *args: str, endpoint: str = "") -> Any:
    tls = [f"--cacert={PKI}/ca.crt", f"--cert={PKI}/healthcheck-client.crt", f"--key={PKI}/healthcheck-client.key"]
    where = endpoint or f"https://{host.address}:2379"
    return lab.run(host.name, ["env", "ETCDCTL_API=3", "etcdctl", f"--endpoints={where}",
                               *([] if endpoint else tls), *args], check=False)


def _newest_snapshot(lab: Any, host: Any) -> str:
    listed = lab.run(host.name, ["sh", "-c", f"ls -1 {SNAPSHOT_DIR}/*.db | sort | tail -n 1"], check=False)
    path = _text(listed.stdout).strip()
    if listed.returncode != 0 or not path:
        raise ProofError(f"no snapshot in {SNAPSHOT_DIR} on {host.name}")
    return path


def _scratch_member(lab: Any, host: Any, snapshot: str) -> int:
    """Restore `snapshot` into a scratch data dir and start a one-member etcd on loopback from it."""
    lab.run(host.name, ["rm", "-rf", SCRATCH])
    restored = lab.run(host.name, ["etcdutl", "snapshot", "restore", snapshot, "--data-dir", f"{SCRATCH}/data",
                                   "--name", "restore-check", "--initial-cluster", f"restore-check={PEER}",
                                   "--initial-advertise-peer-urls", PEER], check=False)
    if restored.returncode != 0:
        raise ProofError(f"restore of {snapshot} failed: {_text(restored.stderr)[-300:]}")
    return int(lab.spawn(host.name, ["etcd", "--name", "restore-check", "--data-dir", f"{SCRATCH}/data",
                                     "--listen-client-urls", CLIENT, "--advertise-client-urls", CLIENT,
                                     "--listen-peer-urls", PEER], log=f"{SCRATCH}.log"))


def _get(lab: Any, host: Any, key: str, endpoint: str = "") -> str:
    got = _etcdctl(lab, host, "get", key, "--print-value-only", endpoint=endpoint)
    if got.returncode != 0:
        raise ProofError(f"etcdctl get {key} failed: {_text(got.stderr)[-200:]}")
    return _text(got.stdout).strip()


def backup_restore_proof(lab: Any, settings: Any) -> str:
    host = settings.etcd_hosts[0]
    if _etcdctl(lab, host, "put", BEFORE, "1").returncode != 0:
        raise ProofError("cannot write the marker key before the snapshot")
    earlier = _newest_snapshot(lab, host)  # the one the backup step took at `up`
    time.sleep(1.1)  # snapshot names carry the UTC second
    # what the timer's service runs (its ExecStart); Debian's systemctl stand-in would not show its output
    ran = lab.run(host.name, [SCRIPT], check=False)
    if ran.returncode != 0:
        raise ProofError(f"{SCRIPT} failed: {_text(ran.stderr)[-300:]}")
    snapshot = _newest_snapshot(lab, host)
    if snapshot == earlier:
        raise ProofError(f"{SCRIPT} kept no new snapshot (newest is still {earlier})")
    summed = lab.run(host.name, ["sh", "-c", f"cd {SNAPSHOT_DIR} && sha256sum -c {snapshot.rsplit('/', 1)[1]}.sha256"],
                     check=False)
    if summed.returncode != 0:
        raise ProofError(f"{snapshot}.sha256 does not match: {_text(summed.stdout)}")
    _etcdctl(lab, host, "put", AFTER, "1")
    pid = _scratch_member(lab, host, snapshot)
    try:
        for _ in range(50):
            if _etcdctl(lab, host, "endpoint", "health", endpoint=CLIENT).returncode == 0:
                break
            time.sleep(0.2)
        before, after = _get(lab, host, BEFORE, CLIENT), _get(lab, host, AFTER, CLIENT)
    finally:
        lab.run(host.name, ["kill", str(pid)], check=False)
        lab.run(host.name, ["rm", "-rf", SCRATCH, f"{SCRATCH}.log"], check=False)
        _etcdctl(lab, host, "del", "--prefix", "containercloud-lab/")
    if before != "1" or after:
        raise ProofError(f"restored member: {BEFORE}={before!r} (want '1'), {AFTER}={after!r} (want none)")
    return (f"{host.name}: the backup script kept {snapshot} (sha256 checked); restored into a scratch member "
            f"it holds the key written before it and not the one written after")
