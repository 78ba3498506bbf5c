"""HostStep: one idempotent step on one host over SSH — files to place, a script to run, and its undo.

How a step reaches the host (one `remote.Command`):
  * `create` is a short POSIX wrapper that writes the rendered step script to a temp dir and runs it
    with bash as root (`sudo -n` when the SSH user is not root). Non-secret files are embedded in
    the script as quoted heredocs, so a reviewer reads them in the plan. `create` is always known at
    preview: it holds no output of another resource.
  * Secret files (private keys, passwords, kubeconfigs), and the files made from other resources' outputs
    (certificates), travel over **stdin**, as `path base64` lines; the script names each one with its mode
    (`stdin_file PATH MODE KIND`) and fails when one is missing. Secrets never appear in `create`, `delete`,
    `environment` or on a command line.
  * `triggers` holds the content hash of the script and of the files in `create` (and the path and mode
    of the stdin files), so a change of what the step installs replaces the command (re-runs it); a change
    of a stdin file's content alone is an update, which re-runs the create too. The step is otherwise left
    alone. The create records the hash in a marker file;
    the delete only undoes the step when the marker still holds *its* hash — so the old delete that
    Pulumi runs after a replacement's new create is a no-op, while removing the step for real
    runs the undo script.
  * Files are written only when their content differs (`put_file`), and the list of changed files
    is available to the body as `changed PATH`, so a second run restarts nothing.

The policy pack and the offline preview (`build/<stack>/hosts/<host>/`) read each step from its Command:
`create` names the step and its host in the step script's first lines, holds every file known now and names
the stdin files with their modes; `stdin` holds their content (policy/rules/artifacts/steps.py decodes both).
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

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


def on_stdin(f: HostFile) -> bool:
    """A file that travels on stdin: a secret, or one made from the deployment's outputs (a certificate), so
    that `create` is known at preview and states the file's path and mode."""
    return f.secret or not isinstance(f.content, str)


def _stdin_bundle(files: Sequence[HostFile]) -> Optional[pulumi.Output[str]]:
    """The stdin files as `path base64` lines; a Pulumi secret when one of them is a secret."""
    sent = [f for f in files if on_stdin(f)]
    if not sent:
        return None

    def encode(contents: list[str]) -> str:
        return "".join(f"{f.path} {base64.b64encode(c.encode()).decode()}\n"
                       for f, c in zip(sent, contents, strict=True))

    bundle = pulumi.Output.all(*[f.content for f in sent]).apply(encode)
    return pulumi.Output.secret(bundle) if any(f.secret for f in sent) else bundle


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


# The inventory name of the host whose step's Command is being constructed: stack transformations run inside
# the constructor, and the prerequisites gate (components/prerequisites.py) needs the host a command runs on
# (the Command's `connection` is already an Output there: pulumi-command makes it a secret).
_BUILDING_FOR: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("containercloud_step_host", default=None)


def building_for() -> Optional[str]:
    """The host of the step whose Command is being constructed, or None outside a step's construction."""
    return _BUILDING_FOR.get()


OLD_TYPE = "containercloud:host:HostStep"  # the wrapper component around each Command until issue 16 (aliased)


def old_step_urn(name: str, owner: Optional[pulumi.Resource]) -> pulumi.Input[str]:
    """The URN of the `containercloud:host:HostStep` component that wrapped the step's Command until issue 16,
    under the step's owner (or the stack)."""
    if owner is None:
        return f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{OLD_TYPE}::{name}"
    return owner.urn.apply(lambda urn: f"{urn.rsplit('::', 1)[0]}${OLD_TYPE}::{name}")


class HostStep:
    """A step on a host: one `command:remote:Command`, registered under the step's owner (`opts.parent`).

    Not a resource of its own: the Command holds everything the step deploys (its `create`, `delete` and
    `stdin`), which is what the policy pack and the offline preview read (policy/rules/artifacts/steps.py).
    A wrapper component per step was a third of the program's resources at 1000 workers and bought nothing.
    Stacks created before issue 16 hold each Command under its wrapper: the alias makes `pulumi up` adopt it
    (a delete would run the step's undo on the host). Only `parent`, `depends_on` and `aliases` of `opts`
    reach the Command."""

    command: command.remote.Command

    def __init__(self, name: str, args: HostStepArgs, opts: Optional[pulumi.ResourceOptions] = None):
        self.host = args.host  # the inventory name
        owner = opts.parent if opts else None
        rendered = render_step(name, args)
        aliases = [*(opts.aliases or [] if opts else []), pulumi.Alias(parent=old_step_urn(name, owner))]
        building = _BUILDING_FOR.set(args.host)
        try:
            self.command = _command(name, args, rendered, opts, aliases)
        finally:
            _BUILDING_FOR.reset(building)


def _command(name: str, args: HostStepArgs, rendered: dict[str, str], opts: Optional[pulumi.ResourceOptions],
             aliases: list[pulumi.Input[Union[str, pulumi.Alias]]]) -> command.remote.Command:
    return command.remote.Command(
        name,
        connection=args.connection,
        create=rendered["create"],
        delete=rendered["delete"],
        stdin=_stdin_bundle(args.files),
        triggers=[rendered["digest"]],
        add_previous_output_in_env=False,
        opts=pulumi.ResourceOptions(parent=opts.parent if opts else None,
                                    depends_on=(opts.depends_on if opts else None), aliases=aliases),
    )


def render_step(name: str, args: HostStepArgs) -> dict[str, str]:
    """What the step's Command runs, known now (no Output): `create` and `delete` (the wrapper around the step and
    undo scripts), with the step's `digest` and `body` (the step script). The files that travel on stdin
    (`on_stdin`) are named in the step script with their mode; their content is not in the digest: a change of it
    alone changes `stdin`, which pulumi-command applies as an update (the create runs again), not a replacement."""
    step_id = name if name.startswith(f"{args.host}-") else f"{args.host}-{name}"  # the marker file name
    files = [
        {"path": f.path, "mode": f.mode, "content": f.content, "delimiter": _delimiter(f.path, str(f.content)),
         "early": f.early}
        for f in args.files if not on_stdin(f)
    ]
    stdin_files = [{"path": f.path, "mode": f.mode, "kind": "secret" if f.secret else "output", "early": f.early}
                   for f in args.files if on_stdin(f)]
    digest = _digest(([args.prelude] if args.prelude else []) + [args.script, args.delete_script]
                     + [f"{f['path']}:{f['mode']}:{f['content']}" for f in files]
                     + [f"{f['path']}:{f['mode']}:{f['kind']}" for f in stdin_files])
    body = render("host_step/step.sh.j2", step=step_id, host=args.host, marker_dir=MARKER_DIR, digest=digest,
                  files=files, stdin_files=stdin_files, body=args.script, prelude=args.prelude)
    undo = render("host_step/undo.sh.j2", step=step_id, host=args.host, marker_dir=MARKER_DIR, digest=digest,
                  body=args.delete_script, dirs=owned_dirs([f.path for f in args.files]))
    sudo = "sudo -n " if args.use_sudo else ""
    return {
        "digest": digest,
        "create": render("host_step/wrapper.sh.j2", script=body, sudo=sudo),
        "delete": render("host_step/wrapper.sh.j2", script=undo, sudo=sudo),
        "body": body,
    }


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
