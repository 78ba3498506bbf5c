"""What the deployment places on each host, from the `containercloud:host:HostStep` registrations."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Optional

from offline.engine import ProgramRun
from offline.engine.mocks import SECRET_SIG, SECRET_VALUE, unwrap
from offline.engine.monitor import Registration

HOST_STEP = "containercloud:host:HostStep"
COMMAND = "command:remote:Command"
_STEP_SCRIPT = re.compile(r"<<'CC_STEP_EOF'\n(.*?)\nCC_STEP_EOF\n", re.DOTALL)


@dataclass(frozen=True)
class PlacedFile:
    host: str
    step: str
    path: str
    mode: str
    secret: bool
    content: Optional[str]  # None when unknown (preview)


@dataclass(frozen=True)
class Step:
    host: str
    name: str
    script: str  # the bash script the step runs on the host (files + body)
    undo: str


def _wrapped(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def _inner_script(wrapper: Any, fallback: str) -> str:
    """The step script inside HostStep's wrapper (a heredoc); the wrapper itself if it has none."""
    if not isinstance(wrapper, str):
        return fallback
    found = _STEP_SCRIPT.search(wrapper)
    return found.group(1) + "\n" if found else wrapper


def _files(reg: Registration) -> list[PlacedFile]:
    props = reg.inputs
    host = unwrap(props.get("host"))
    out = []
    for f in props.get("files") or []:
        secret = bool(unwrap(f.get("secret"))) or _wrapped(f.get("content")) or _wrapped(f)
        f = unwrap(f)
        content = f.get("content")
        out.append(PlacedFile(host, reg.name, f["path"], str(f.get("mode") or "0644"), secret,
                              content if isinstance(content, str) else None))
    return out


def collect(run: ProgramRun) -> tuple[list[PlacedFile], list[Step]]:
    files: list[PlacedFile] = []
    steps: list[Step] = []
    for reg in run.of_type(HOST_STEP):
        props = reg.plain_inputs
        files += _files(reg)
        command = next((c for c in run.children_of(reg.urn) if c.type.startswith(COMMAND)), None)
        inputs = command.plain_inputs if command else {}
        steps.append(Step(props["host"], str(props.get("step") or reg.name),
                          _inner_script(inputs.get("create"), str(props.get("script") or "")),
                          _inner_script(inputs.get("delete"), str(props.get("deleteScript") or ""))))
    return files, steps


def _target(root: Path, path: str) -> Path:
    rel = PurePosixPath(path)
    if not rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"host file path {path!r} is not an absolute path")
    return root.joinpath(*rel.parts[1:])


def _write(path: Path, content: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)
    os.chmod(path, mode)


def write_hosts(out: Path, files: list[PlacedFile], steps: list[Step], show_secrets: bool) -> list[str]:
    """Write hosts/<host>/<path> and hosts/<host>/_steps/; return problems (conflicting files)."""
    problems = []
    placed: dict[tuple[str, str], PlacedFile] = {}
    secrets: dict[str, list[PlacedFile]] = {}
    for f in files:
        key = (f.host, f.path)
        if key in placed and placed[key].content != f.content:
            problems.append(f"{f.host}:{f.path} is written by steps {placed[key].step} and {f.step} "
                            "with different content")
        placed[key] = f
        root = out / f.host
        if f.secret and not show_secrets:
            secrets.setdefault(f.host, []).append(f)
            continue
        if f.content is None:
            continue
        mode = 0o600 if f.secret else int(f.mode, 8) & 0o777
        _write(_target(root, f.path), f.content, mode)
    for s in steps:
        _write(out / s.host / "_steps" / f"{s.name}.sh", s.script, 0o755)
        _write(out / s.host / "_steps" / f"{s.name}.undo.sh", s.undo, 0o755)
    for host, listed in secrets.items():
        lines = [f"{f.path}\t{f.mode}\t[secret]\t(step {f.step})" for f in listed]
        header = "# secret files this host receives over stdin; write them with --show-secrets\n"
        _write(out / host / "SECRETS.txt", header + "\n".join(sorted(lines)) + "\n", 0o644)
    return problems
