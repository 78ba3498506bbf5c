"""What the deployment places on each host, from the steps' Commands (policy/rules/artifacts/steps.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional

from offline.engine import ProgramRun
from policy.rules.artifacts.steps import step_props

COMMAND = "command:remote:Command"


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


def collect(run: ProgramRun) -> tuple[list[PlacedFile], list[Step]]:
    """Every step's files and scripts, decoded from its Command as the host receives them (a secret file's
    content from the step's stdin)."""
    files: list[PlacedFile] = []
    steps: list[Step] = []
    for reg in run.of_type(COMMAND):
        step = step_props(reg.type, reg.plain_inputs, reg.name)
        if step is None:
            continue
        for f in step["files"]:
            files.append(PlacedFile(step["host"], reg.name, f["path"], f["mode"], f["secret"], f["content"]))
        steps.append(Step(step["host"], reg.name, step["stepScript"], step["undoScript"]))
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
