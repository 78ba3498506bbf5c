"""A host step as it reaches the host: decoded from its `command:remote:Command` (components/host_step.py).

`create` is a POSIX wrapper that writes the step script (a `CC_STEP_EOF` heredoc) and runs it with bash. The
step script names the step and its host in its second line (`# container-cloud step <step> on host <host>
(<digest>)`), writes each file known at rendering with `put_file PATH MODE <<'CC_FILE_…'` heredocs, each file
that arrives on stdin (`path base64` lines: the secret ones and those made from outputs) with `stdin_file PATH MODE
KIND`, and runs its body between `# --- step body ---` and
`# --- end of step body ---`. `delete` wraps the undo script the same way. A Command that is not a step (a
removal record, an upload, a deployer-side command) decodes to None. `create` holds no output of another
resource, so a step decodes at preview too; only the content of its stdin files is then unknown (None).

`step_props` returns what the rules read: `{"host", "step", "script", "deleteScript", "files": [{"path",
"mode", "secret", "content"}]}`, a file's content as the host receives it (a heredoc ends with a newline).
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from typing import Any, Optional

from pulumi_policy.proxy import UnknownValueError

from .files import unwrapped

REMOTE_COMMAND = "command:remote:Command"
_STEP_SCRIPT = re.compile(r"<<'CC_STEP_EOF'\n(.*?)\nCC_STEP_EOF\n", re.DOTALL)
_HEADER = re.compile(r"^# container-cloud (?:step|undo of step) (\S+) on host (\S+) \(([0-9a-f]+)\)$", re.MULTILINE)
_FILE = re.compile(r"^put_file ('[^']*'|\S+) ([0-7]{3,4}) <<'(CC_FILE_[0-9a-f]{16})'\n(.*?)^\3$",
                   re.MULTILINE | re.DOTALL)
_STDIN_FILE = re.compile(r"^stdin_file ('[^']*'|\S+) ([0-7]{3,4}) (secret|output)$", re.MULTILINE)
_BODY = re.compile(r"^# --- step body ---\n(.*?)^# --- end of step body ---$", re.MULTILINE | re.DOTALL)
_UNDO = re.compile(r"^# --- undo body ---\n(.*?)^# --- end of undo body ---$", re.MULTILINE | re.DOTALL)


def _text(props: Any, key: str) -> Optional[str]:
    try:
        value = unwrapped(props[key]) if key in props else None
    except UnknownValueError:
        return None
    return value if isinstance(value, str) else None


def inner_script(wrapper: str) -> Optional[str]:
    """The script inside a step's wrapper (its `CC_STEP_EOF` heredoc), or None."""
    found = _STEP_SCRIPT.search(wrapper)
    return found.group(1) + "\n" if found else None


def plain_files(script: str) -> list[dict[str, Any]]:
    """The `put_file` heredocs of a step script, in order."""
    out = []
    for found in _FILE.finditer(script):
        (path,) = shlex.split(found.group(1))
        out.append({"path": path, "mode": found.group(2), "secret": False, "content": found.group(4)})
    return out


def stdin_files(script: str, stdin: Optional[str]) -> list[dict[str, Any]]:
    """The files a step script writes from its stdin (`stdin_file PATH MODE KIND`: KIND secret or output), with the
    content of each from the stdin's `path base64` lines; None when unknown (at preview) or not there."""
    sent: dict[str, Optional[str]] = {}
    for line in (stdin or "").splitlines():
        parts = line.split(" ")
        if len(parts) != 2:
            continue
        try:
            sent[parts[0]] = base64.b64decode(parts[1], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            sent[parts[0]] = None
    out = []
    for found in _STDIN_FILE.finditer(script):
        (path,) = shlex.split(found.group(1))
        out.append({"path": path, "mode": found.group(2), "secret": found.group(3) == "secret",
                    "content": sent.get(path)})
    return out


def decode(name: str, create: str, delete: Optional[str], stdin: Optional[str]) -> Optional[dict[str, Any]]:
    """A step's props from its Command's inputs, or None when `create` is not a step's."""
    script = inner_script(create)
    header = _HEADER.search(script) if script else None
    if script is None or header is None:
        return None
    body = _BODY.search(script)
    undo_script = inner_script(delete) if delete else None
    undo = _UNDO.search(undo_script) if undo_script else None
    return {
        "host": header.group(2),
        "step": name,
        "digest": header.group(3),
        "script": body.group(1) if body else "",
        "deleteScript": undo.group(1) if undo else "",
        "stepScript": script,
        "undoScript": undo_script or "",
        "files": plain_files(script) + stdin_files(script, stdin),
    }


def step_props(resource_type: str, props: Any, name: str = "") -> Optional[dict[str, Any]]:
    """The step a resource deploys (see the module's docstring), or None."""
    if resource_type != REMOTE_COMMAND:
        return None
    create = _text(props, "create")
    if create is None:
        return None
    return decode(name, create, _text(props, "delete"), _text(props, "stdin"))


def step_of(args: Any) -> Optional[dict[str, Any]]:
    """The step a validated resource (the policy SDK's resource args, or a stack policy's resource) deploys."""
    return step_props(args.resource_type, args.props, str(getattr(args, "name", "") or ""))
