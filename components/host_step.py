"""HostStep: one idempotent step on one host over SSH — files to place, a script to run, and its undo.

How a step reaches the host (one `remote.Command`):
  * `create` is a short POSIX wrapper that writes the rendered step script to a temp dir and runs it
    with bash as root (`sudo -n` when the SSH user is not root). Non-secret files are embedded in
    the script as quoted heredocs, so a reviewer reads them in the plan.
  * Secret files (private keys, passwords, kubeconfigs) travel only over **stdin**, as
    `path mode base64` lines, and are written 0600 (or the given mode) by the script. They never
    appear in `create`, `delete`, `environment` or on a command line.
  * `triggers` holds the content hash, so a change of what the step installs replaces the command
    (re-runs it); the step is otherwise left alone. The create records the hash in a marker file;
    the delete only undoes the step when the marker still holds *its* hash — so the old delete that
    Pulumi runs after a replacement's new create is a no-op, while removing the step for real
    runs the undo script.
  * Files are written only when their content differs (`put_file`), and the list of changed files
    is available to the body as `changed PATH`, so a second run restarts nothing.

The component's props carry the host, the file list (secret contents as Pulumi secrets) and the
script, which is what the offline preview writes to `build/<stack>/hosts/<host>/`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_command as command

from components.config import Host, Settings
from components.templating import render

MARKER_DIR = "/var/lib/containercloud/steps"


@dataclass(frozen=True)
class HostFile:
    path: str
    content: Any  # str or pulumi.Output[str]
    mode: str = "0644"
    secret: bool = False
    early: bool = False  # written before the prelude (what the prelude itself reads, e.g. a CA); never secret


@dataclass(frozen=True)
class HostStepArgs:
    host: str
    connection: command.remote.ConnectionArgs
    script: str
    delete_script: str
    files: Sequence[HostFile] = field(default_factory=list)
    use_sudo: bool = False
    # runs before any file is written (e.g. fetching and verifying binaries): when it fails, the step
    # leaves no configuration behind
    prelude: str = ""


def _digest(parts: list[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _secret_bundle(files: Sequence[HostFile]) -> Optional[pulumi.Output[str]]:
    secret = [f for f in files if f.secret]
    if not secret:
        return None

    def encode(contents: list[str]) -> str:
        lines = [f"{f.path} {f.mode} {base64.b64encode(c.encode()).decode()}\n"
                 for f, c in zip(secret, contents, strict=True)]
        return "".join(lines)

    return pulumi.Output.secret(pulumi.Output.all(*[f.content for f in secret]).apply(encode))


# Directories only the program's steps write to: a step's undo removes the ones its files were in, once
# empty. Distribution directories (/etc, /etc/systemd/system, /usr/local/bin...) are never removed.
OWNED_DIRS = ("/etc/kubernetes", "/etc/containerd", "/etc/cni", "/etc/etcd", "/etc/docker", "/etc/containercloud",
              "/var/lib/kubelet", "/var/lib/kube-proxy", "/opt/containercloud")


def owned_dirs(paths: Sequence[str]) -> list[str]:
    """The parents of `paths` inside OWNED_DIRS (each owned root included), deepest first."""
    out: set[str] = set()
    for path in paths:
        parent = path.rsplit("/", 1)[0]
        for root in OWNED_DIRS:
            while parent == root or parent.startswith(root + "/"):
                out.add(parent)
                parent = parent.rsplit("/", 1)[0]
    return sorted(out, key=lambda d: (-d.count("/"), d))


def _delimiter(path: str, content: str) -> str:
    return "CC_FILE_" + hashlib.sha256((path + content).encode()).hexdigest()[:16]


class HostStep(pulumi.ComponentResource):
    """A step on a host: `containercloud:host:HostStep`."""

    command: command.remote.Command

    def __init__(self, name: str, args: HostStepArgs, opts: Optional[pulumi.ResourceOptions] = None):
        plain_files = [f for f in args.files if not f.secret]
        secret_files = [f for f in args.files if f.secret]
        props = {
            "host": args.host,
            "step": name,
            "script": args.script,
            "deleteScript": args.delete_script,
            "files": [
                {"path": f.path, "mode": f.mode, "secret": f.secret,
                 "content": pulumi.Output.secret(f.content) if f.secret else f.content}
                for f in args.files
            ],
        }
        super().__init__("containercloud:host:HostStep", name, props, opts)
        self.host = args.host  # the inventory name: prerequisites' gating finds a worker's own check by it
        step_id = name if name.startswith(f"{args.host}-") else f"{args.host}-{name}"  # the marker file name

        def scripts(contents: list[str]) -> dict[str, str]:
            files = [
                {"path": f.path, "mode": f.mode, "content": c, "delimiter": _delimiter(f.path, c), "early": f.early}
                for f, c in zip(plain_files, contents, strict=True)
            ]
            digest = _digest(([args.prelude] if args.prelude else []) + [args.script, args.delete_script]
                             + [f"{f['path']}:{f['mode']}:{f['content']}" for f in files]
                             + [f"{f.path}:{f.mode}:secret" for f in secret_files])
            body = render("host_step/step.sh.j2", step=step_id, marker_dir=MARKER_DIR, digest=digest,
                          files=files, secret_count=len(secret_files), body=args.script, prelude=args.prelude)
            undo = render("host_step/undo.sh.j2", step=step_id, marker_dir=MARKER_DIR, digest=digest,
                          body=args.delete_script, dirs=owned_dirs([f.path for f in args.files]))
            sudo = "sudo -n " if args.use_sudo else ""
            return {
                "digest": digest,
                "create": render("host_step/wrapper.sh.j2", script=body, sudo=sudo),
                "delete": render("host_step/wrapper.sh.j2", script=undo, sudo=sudo),
                "body": body,
                "undo": undo,
            }

        contents = [f.content for f in plain_files]
        if all(isinstance(c, str) for c in contents):
            now = scripts(contents)  # nothing to wait for: render now, no Output chain (cheaper at scale)
            self.digest: pulumi.Input[str] = now["digest"]
            self.script: pulumi.Input[str] = now["body"]
            create: pulumi.Input[str] = now["create"]
            delete: pulumi.Input[str] = now["delete"]
        else:
            rendered = pulumi.Output.all(*contents).apply(scripts)
            self.digest = rendered.apply(lambda r: r["digest"])
            self.script = rendered.apply(lambda r: r["body"])
            create = rendered.apply(lambda r: r["create"])
            delete = rendered.apply(lambda r: r["delete"])
        self.command = command.remote.Command(
            name,
            connection=args.connection,
            create=create,
            delete=delete,
            stdin=_secret_bundle(args.files),
            triggers=[self.digest],
            add_previous_output_in_env=False,
            # a component's depends_on is not recorded on its children: pass it on, so the engine
            # orders creates (and deletes, in reverse) by these edges
            opts=pulumi.ResourceOptions(parent=self, depends_on=(opts.depends_on if opts else None)),
        )
        self.register_outputs({"digest": self.digest})


def connection(address: str, user: str, port: int, private_key: pulumi.Input[str],
               host_key: Optional[str] = None, bastion: Optional[tuple[str, str, int, str]] = None,
               ) -> command.remote.ConnectionArgs:
    """SSH to `address`, through the bastion (address, user, port, host key or "") when one is set."""
    proxy = None
    if bastion:
        proxy = command.remote.ProxyConnectionArgs(
            host=bastion[0], user=bastion[1], port=bastion[2], private_key=private_key,
            host_key=bastion[3] or None,
        )
    return command.remote.ConnectionArgs(
        host=address, user=user, port=port, private_key=private_key, host_key=host_key, proxy=proxy,
        dial_error_limit=20, per_dial_timeout=15,
    )


def host_connection(s: Settings, host: Host, private_key: pulumi.Input[str]) -> command.remote.ConnectionArgs:
    bastion = None
    if s.ssh_bastion:
        bastion = (s.ssh_bastion, s.ssh_bastion_user or s.ssh_user, s.ssh_bastion_port, s.ssh_bastion_host_key)
    return connection(host.address, s.ssh_user_for(host), s.ssh_port_for(host), private_key,
                      host.ssh.host_key, bastion)


def needs_sudo(s: Settings, host: Host) -> bool:
    return s.ssh_user_for(host) != "root"


# --- passwords in files the policy pack can read: "<secret:NAME>" placeholders, filled on the host ---------

def placeholder(name: str) -> str:
    """What stands for the password file `name`.json in a request body (passwords.sh.j2 fills it in)."""
    return f"<secret:{name}>"


def password_file(directory: str, name: str, password: pulumi.Input[str]) -> HostFile:
    content = pulumi.Output.from_input(password).apply(lambda p: json.dumps(p) + "\n")
    return HostFile(f"{directory}/{name}.json", pulumi.Output.secret(content), "0600", secret=True)


def passwords_script(directory: str, *names: str) -> str:
    return render("host_step/passwords.sh.j2", secrets_dir=directory, names=names)
