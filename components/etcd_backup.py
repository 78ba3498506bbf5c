"""EtcdBackup: a systemd timer on every etcd host takes `etcdctl snapshot save` every
`etcdBackupIntervalHours`, verifies the snapshot (`snapshot status` and a trial `snapshot restore`, which
checks the integrity hash), keeps the newest `etcdBackupRetain` and, when `etcdBackupHost` names an INSIDE
host, copies it there over SSH with a dedicated key that may run only the receiver on that host.

Steps:
  <backup-host>-etcd-backup-target   the receiver script and the key's forced-command authorization
  <etcd-host>-etcd-backup            script, service, timer (and the key, 0600 over stdin); a first snapshot
Restore: docs/restore.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_tls as tls

from components.config import Host, Settings
from components.host_step import HostFile, HostStep, HostStepArgs, host_connection, needs_sudo
from components.templating import render

SNAPSHOT_DIR = "/var/backups/etcd"
RECEIVED_DIR = "/var/backups/etcd-received"
SCRIPT = "/usr/local/sbin/containercloud-etcd-backup"
RECEIVER = "/usr/local/sbin/containercloud-etcd-backup-receive"
KEY_DIR = "/etc/etcd/backup"
SERVICE = "/etc/systemd/system/containercloud-etcd-backup.service"
TIMER = "/etc/systemd/system/containercloud-etcd-backup.timer"
PUBKEY = "/etc/containercloud/etcd-backup.pub"
ETCD_PKI = "/etc/etcd/pki"


@dataclass(frozen=True)
class Target:
    """Where the etcd hosts copy snapshots: rendered into the backup script."""

    address: str
    user: str
    port: int
    key: str
    known_hosts: str
    strict: str  # StrictHostKeyChecking: yes with the inventory's hostKey, accept-new without one


def target(s: Settings, host: Host) -> Target:
    return Target(host.address, s.ssh_user_for(host), s.ssh_port_for(host), f"{KEY_DIR}/id_ed25519",
                  f"{KEY_DIR}/known_hosts", "yes" if host.ssh.host_key else "accept-new")


def known_hosts(s: Settings, host: Host) -> str:
    port = s.ssh_port_for(host)
    where = host.address if port == 22 else f"[{host.address}]:{port}"
    return f"{where} {host.ssh.host_key}\n" if host.ssh.host_key else ""


def backup_script(s: Settings, host: Host, directory: str = SNAPSHOT_DIR, endpoint: str = "https://127.0.0.1:2379",
                  pki: str = ETCD_PKI, to: Optional[Target] = None) -> str:
    return render("etcd_backup/backup.sh.j2", host=host.name, dir=directory, retain=s.etcd_backup_retain,
                  endpoint=endpoint, pki=pki, target=to)


def receiver_script(s: Settings, directory: str = RECEIVED_DIR) -> str:
    return render("etcd_backup/receive.sh.j2", dir=directory, retain=s.etcd_backup_retain)


@dataclass(frozen=True)
class EtcdBackupArgs:
    settings: Settings
    ssh_private_key: pulumi.Input[str]
    etcd_steps: dict[str, pulumi.Resource]  # etcd host name -> its etcd step's command
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


def props(s: Settings) -> dict[str, Any]:
    return {
        "hosts": [h.name for h in s.etcd_hosts],
        "intervalHours": s.etcd_backup_interval_hours,
        "retain": s.etcd_backup_retain,
        "backupHost": s.etcd_backup_host,
        "directory": SNAPSHOT_DIR,
    }


class EtcdBackup(pulumi.ComponentResource):
    """`containercloud:k8s:EtcdBackup`."""

    def __init__(self, name: str, args: EtcdBackupArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("containercloud:k8s:EtcdBackup", name, props(args.settings), opts)
        self.args = args
        s = args.settings
        backup_host = s.host(s.etcd_backup_host) if s.etcd_backup_host else None
        key = None
        receiver: list[pulumi.Resource] = []
        if backup_host:
            key = tls.PrivateKey(f"{name}-ssh-key", algorithm="ED25519", opts=pulumi.ResourceOptions(parent=self))
            receiver = [self._target(backup_host, key).command]
        self.steps = [self._member(h, backup_host, key, receiver) for h in s.etcd_hosts]
        self.register_outputs({"hosts": [h.name for h in s.etcd_hosts]})

    def _step(self, host: Host, name: str, script: str, delete: str, files: list[HostFile],
              depends_on: list[pulumi.Resource]) -> HostStep:
        s = self.args.settings
        return HostStep(f"{host.name}-{name}",
                        HostStepArgs(host=host.name, connection=host_connection(s, host, self.args.ssh_private_key),
                                     script=script, delete_script=delete, files=files,
                                     use_sudo=needs_sudo(s, host)),
                        opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on))

    def _target(self, host: Host, key: tls.PrivateKey) -> HostStep:
        s = self.args.settings
        user = s.ssh_user_for(host)
        files = [HostFile(RECEIVER, receiver_script(s), "0755"), HostFile(PUBKEY, key.public_key_openssh)]
        script = render("etcd_backup/target.sh.j2", user=user, dir=RECEIVED_DIR, receiver=RECEIVER, pubkey=PUBKEY)
        delete = render("etcd_backup/target_undo.sh.j2", user=user, dir=RECEIVED_DIR, receiver=RECEIVER,
                        pubkey=PUBKEY)
        return self._step(host, "etcd-backup-target", script, delete, files, list(self.args.depends_on))

    def _member(self, host: Host, backup_host: Optional[Host], key: Optional[tls.PrivateKey],
                receiver: list[pulumi.Resource]) -> HostStep:
        s = self.args.settings
        hours = s.etcd_backup_interval_hours
        to = target(s, backup_host) if backup_host else None
        files = [
            HostFile(SCRIPT, backup_script(s, host, to=to), "0755"),
            HostFile(SERVICE, render("etcd_backup/backup.service.j2", host=host.name, script=SCRIPT)),
            HostFile(TIMER, render("etcd_backup/backup.timer.j2", host=host.name, hours=hours)),
        ]
        if backup_host and key:
            files.append(HostFile(f"{KEY_DIR}/id_ed25519", key.private_key_openssh, "0600", secret=True))
            files.append(HostFile(f"{KEY_DIR}/known_hosts", known_hosts(s, backup_host), "0600"))
        paths = [f.path for f in files]
        script = render("etcd_backup/install.sh.j2", hours=hours, dir=SNAPSHOT_DIR, paths=paths, pki=ETCD_PKI)
        delete = render("etcd_backup/undo.sh.j2", dir=SNAPSHOT_DIR, paths=paths + [KEY_DIR])
        deps = [self.args.etcd_steps[host.name], *receiver, *self.args.depends_on]
        return self._step(host, "etcd-backup", script, delete, files, deps)
