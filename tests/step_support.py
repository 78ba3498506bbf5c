"""Host steps in tests, as their `command:remote:Command` carries them (components/host_step.py).

`command_props` renders a step's Command inputs with the product's own `render_step`, for tests that call a
policy directly. `registered_step` reads a registered step back into the `HostStepArgs` that render it — checked
by rendering them again and comparing with what was registered, byte for byte — so a test can change a file, a
mode or the script and `rendered` gives the Command a host would then receive (create, delete, stdin, triggers).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import itertools
import re
from collections.abc import Iterator, Sequence
from typing import Any, Optional

import pulumi_command as command

from components.host_step import HostFile, HostStepArgs, _delimiter, on_stdin, render_step
from offline.engine.mocks import SECRET_SIG, SECRET_VALUE
from offline.engine.monitor import Registration
from policy.rules.artifacts.steps import plain_files, step_props

REMOTE_COMMAND = "command:remote:Command"
STEP_BODY = "# --- step body ---\n"
_FILE_BLOCK = re.compile(r"^put_file ('[^']*'|\S+) ([0-7]{3,4}) <<'(CC_FILE_[0-9a-f]{16})'\n.*?^\3\n",
                         re.MULTILINE | re.DOTALL)
_STDIN_BLOCK = re.compile(r"^# \d+ file\(s\) arrive on stdin .*?^}\n\n", re.MULTILINE | re.DOTALL)
_ITEM = re.compile(r"^put_file ('[^']*'|\S+) ([0-7]{3,4}) <<'(CC_FILE_[0-9a-f]{16})'\n.*?^\3\n"
                   r"|^stdin_file ('[^']*'|\S+) ([0-7]{3,4}) (secret|output)\n", re.MULTILINE | re.DOTALL)


@dataclasses.dataclass(frozen=True)
class FromOutput:
    """A file's content that the program has as another resource's output (a certificate): it travels on stdin."""

    text: str


def _text(content: Any) -> str:
    return content.text if isinstance(content, FromOutput) else str(content)


def step_args(host: str, files: Sequence[HostFile], script: str = "true", delete_script: str = "true",
              address: str = "192.0.2.1") -> HostStepArgs:
    return HostStepArgs(host=host, connection=command.remote.ConnectionArgs(host=address), script=script,
                        delete_script=delete_script, files=list(files))


def secret_stdin(files: Sequence[HostFile]) -> Optional[str]:
    """What the step's Command reads on stdin: its secret files and those made from outputs, as `path base64`
    lines (None: none)."""
    lines = [f"{f.path} {base64.b64encode(_text(f.content).encode()).decode()}\n" for f in files if on_stdin(f)]
    return "".join(lines) or None


def command_inputs(name: str, args: HostStepArgs) -> dict[str, Any]:
    """The step's Command inputs (`stdin` plain, as the policy SDK hands it to a rule)."""
    rendered = render_step(name, args)
    inputs: dict[str, Any] = {"create": rendered["create"], "delete": rendered["delete"],
                              "triggers": [rendered["digest"]]}
    stdin = secret_stdin(args.files)
    if stdin is not None:
        inputs["stdin"] = stdin
    return inputs


def command_props(name: str, host: str, address: str, files: Sequence[HostFile], script: str = "true",
                  delete_script: str = "true") -> dict[str, Any]:
    """A step Command's props as a resource policy receives them (with the SSH target in `connection`)."""
    args = step_args(host, files, script, delete_script, address)
    return command_inputs(name, args) | {"connection": {"host": address}}


# --- a registered step, read back into what renders it -----------------------------------------------------


def _preamble() -> str:
    """The fixed lines of every step script between its header and its first file."""
    empty = render_step("x", step_args("h", []))["body"]
    head = empty.split("\n", 2)[2]  # after the shebang and the header
    return head[:head.index(STEP_BODY)].removesuffix("\n")  # the blank line before the body


def _original(path: str, delimiter: str, received: str) -> str:
    """A file's content as the step was given it: the heredoc adds the final newline when it has none."""
    for content in (received, received.removesuffix("\n")):
        if _delimiter(path, content) == delimiter:
            return content
    raise AssertionError(f"{path}: no content gives its heredoc delimiter {delimiter}")


def _files_and_prelude(region: str, sent: dict[str, dict[str, Any]]) -> tuple[list[HostFile], str, int]:
    """The files in the order they are written (`put_file` heredocs, and `stdin_file` lines with the content that
    arrived on stdin, `sent`), the prelude, and how many files are written before it (when there is one), of a
    step script's region between its preamble and its body."""
    files: list[HostFile] = []
    gaps: list[tuple[int, str]] = []  # (number of files before it, text)
    at = 0
    for found in _ITEM.finditer(region):
        if found.start() > at and region[at:found.start()].strip():
            gaps.append((len(files), region[at:found.start()]))
        if found.group(1) is not None:
            (decoded,) = plain_files(found.group(0))
            files.append(HostFile(decoded["path"], _original(decoded["path"], found.group(3), decoded["content"]),
                                  decoded["mode"]))
        else:
            path, kind = found.group(4).strip("'"), found.group(6)
            text = sent[path]["content"]
            files.append(HostFile(path, text if kind == "secret" else FromOutput(text), found.group(5),
                                  secret=kind == "secret"))
        at = found.end()
    if at < len(region) and region[at:].strip():
        gaps.append((len(files), region[at:]))
    assert len(gaps) <= 1, f"text between the files of a step script: {gaps}"
    if not gaps:
        return files, "", -1
    early, prelude = gaps[0]
    return files, prelude.removesuffix("\n"), early


def _orders(files: list[HostFile], early: int) -> Iterator[list[HostFile]]:
    """The orders the step may have been given its files in: the script writes the early ones (those before the
    prelude, or when there is none, up to two of the first) first, the digest takes them in the given order."""
    counts = [early] if early >= 0 else range(min(2, len(files)) + 1)
    for count in counts:
        first = [dataclasses.replace(f, early=True) for f in files[:count]]
        rest = files[count:]
        for slots in itertools.combinations(range(len(files)), count):
            given, pending_first, pending_rest = [], iter(first), iter(rest)
            for i in range(len(files)):
                given.append(next(pending_first) if i in slots else next(pending_rest))
            yield given


def _body(text: str) -> str:
    return text.removesuffix("\n")  # the template puts the body's own text on lines of its own


def registered_step(reg: Registration) -> HostStepArgs:
    """The HostStepArgs that render the registered step Command `reg` exactly (asserted)."""
    inputs = reg.plain_inputs
    step = step_props(reg.type, inputs, reg.name)
    assert step is not None, f"{reg.name} is not a step's Command"
    script = step["stepScript"]
    header_end = script.index("\n", script.index("\n") + 1) + 1
    preamble = _preamble()
    assert script[header_end:].startswith(preamble), f"{reg.name}: not the step template's preamble"
    region = script[header_end + len(preamble):script.index(STEP_BODY)].removesuffix("\n")
    region = _STDIN_BLOCK.sub("", region)
    sent = {f["path"]: f for f in step["files"]}
    plain, prelude, early = _files_and_prelude(region, sent)
    registered = {key: inputs.get(key) for key in ("create", "delete", "triggers", "stdin")}
    for files in _orders(plain, early):
        args = HostStepArgs(host=step["host"], connection=command.remote.ConnectionArgs(host="192.0.2.1"),
                            script=_body(step["script"]), delete_script=_body(step["deleteScript"]),
                            files=files, use_sudo="sudo -n bash" in inputs["create"], prelude=prelude)
        if command_inputs(reg.name, args) == {key: value for key, value in registered.items() if value is not None}:
            return args
    raise AssertionError(f"{reg.name}: its Command does not render again from what it holds")


def rendered(reg: Registration, args: HostStepArgs) -> Registration:
    """`reg` with the Command inputs that `args` render (a secret stdin stays a secret)."""
    reg = copy.deepcopy(reg)
    inputs = command_inputs(reg.name, args)
    stdin = inputs.pop("stdin", None)
    reg.inputs.update(inputs)
    reg.inputs.pop("stdin", None)
    if stdin is not None:
        reg.inputs["stdin"] = {SECRET_SIG: SECRET_VALUE, "value": stdin}
    return reg


def with_file(args: HostStepArgs, path: str, **changes: Any) -> HostStepArgs:
    """`args` with the one file at `path` changed (content, mode, secret)."""
    found = [f for f in args.files if f.path == path]
    assert len(found) == 1, f"no single file {path} in the step"
    files = [dataclasses.replace(f, **changes) if f.path == path else f for f in args.files]
    return dataclasses.replace(args, files=files)


def is_step(reg: Registration) -> bool:
    return step_props(reg.type, reg.plain_inputs, reg.name) is not None
