"""systemd unit files: the `ExecStart=` command line of `[Service]`, parsed into the daemon's flags.

`--flag=value`, `--flag value`, `-H value` and bare `--flag` (true) are understood; continuation lines
(`\\` at the end) are joined; every flag keeps the line of the unit it was read from. Drop-ins
(`<unit>.d/*.conf`) replace the command when they set ExecStart= (see `effective`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Flag:
    name: str
    value: str
    line: int


@dataclass
class Command:
    binary: str
    line: int
    flags: dict[str, list[Flag]] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # positional words (e.g. a `docker run` image)

    def get(self, *names: str) -> Optional[str]:
        """The value of the last of `names` given (a repeated flag: the last one wins)."""
        found = [f for n in names for f in self.flags.get(n, [])]
        return max(found, key=lambda f: f.line).value if found else None

    def values(self, *names: str) -> list[Flag]:
        return [f for n in names for f in self.flags.get(n, [])]

    def line_of(self, *names: str) -> int:
        found = self.values(*names)
        return found[-1].line if found else self.line


def _words(line: str, comments: bool) -> tuple[list[str], bool]:
    """The words of one physical line, and whether it continues (a trailing backslash)."""
    more = line.endswith("\\")
    try:
        return shlex.split(line[:-1] if more else line, comments=comments), more
    except ValueError:
        return line.split(), more


def _tokens(text: str) -> list[tuple[str, int]]:
    """The tokens of the effective ExecStart= of [Service] (an empty `ExecStart=` resets the list, as in a
    drop-in), each with its line number."""
    section, collecting = "", False
    out: list[tuple[str, int]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not collecting:
            if line.startswith("[") and line.endswith("]"):
                section = line
                continue
            if section != "[Service]" or not line.startswith("ExecStart="):
                continue
            line, collecting, out = line[len("ExecStart="):].lstrip("-@:+!"), True, []
        words, collecting = _words(line, comments=False)
        out += [(w, number) for w in words]
    return out


def _command(tokens: list[tuple[str, int]]) -> Command:
    command = Command(tokens[0][0], tokens[0][1])
    i = 1
    while i < len(tokens):
        word, line = tokens[i]
        i += 1
        if not word.startswith("-") or word == "-":
            command.args.append(word)
            continue
        name = word.lstrip("-")
        if "=" in name:
            name, value = name.split("=", 1)
        elif i < len(tokens) and not tokens[i][0].startswith("-"):
            value = tokens[i][0]
            i += 1
        else:
            value = "true"
        command.flags.setdefault(name, []).append(Flag(name, value, line))
    return command


def exec_start(text: str) -> Optional[Command]:
    """The ExecStart= command of a unit, or None when the unit has none."""
    tokens = _tokens(text)
    return _command(tokens) if tokens else None


def shell_commands(script: str, prefix: str) -> list[Command]:
    """Every command line of a shell script that starts with `prefix` (e.g. "docker run"), continuation lines
    joined, parsed like a unit's ExecStart= (the command's name is `prefix`)."""
    found, tokens, collecting = [], [], False
    for number, raw in enumerate(script.splitlines(), 1):
        line = raw.strip()
        if not collecting:
            if not line.startswith(prefix + " "):
                continue
            tokens, collecting = [(prefix, number)], True
            line = line[len(prefix):]
        words, more = _words(line, comments=True)
        tokens += [(w, number) for w in words]
        if not more:
            found.append(_command(tokens))
            collecting = False
    return found


def effective(unit: str, files: dict[str, str]) -> Optional[tuple[str, Command]]:
    """(path, command) of the ExecStart= systemd runs for `unit`: the last of the unit and its drop-ins
    (`unit.d/*.conf`, in name order) that sets one. `files` maps path to known content."""
    found = None
    for path in [unit] + sorted(p for p in files if p.startswith(unit + ".d/") and p.endswith(".conf")):
        cmd = exec_start(files[path]) if path in files else None
        if cmd is not None:
            found = (path, cmd)
    return found
