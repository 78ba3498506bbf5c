"""What the deployer pushes to hosts in one `up`, from the registered graph.

Every `command:remote:CopyToRemote` whose `source` is a file asset or a file archive on the deployer (a
path: in `artifactsDirectory` mode, `<artifactsDirectory>/<component>/<version>/<file>`) is one upload
through the deployer's link. A host that serves the others inside the air gap receives its files from the
deployer once; what hosts then copy among themselves (remote Commands) is not the deployer's traffic and is
not counted here.

Bytes: the size of each file where it exists on this machine (the program's working directory is the
repository, so a relative `artifactsDirectory` resolves against it); otherwise unknown. This machine holds
no artifacts and the upstream sizes were not verifiable offline, so no size is assumed: the benchmark
compares the uploads themselves (which file, how many times) across sizes, and equal uploads push equal
bytes whatever the files weigh.

Command `stdin` (scripts and per-host configuration, tens of KiB a host) is the deployer's traffic too, but a
host's own configuration is O(1) per host by design; it is reported apart (`stdin_bytes`), not in the
artifact criterion.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from offline.engine import ProgramRun
from offline.engine.runner import ROOT

COPY = "command:remote:CopyToRemote"
COMMAND = "command:remote:Command"
SIG = "4dabf18193072939515e22adb298388d"
ASSET_SIG = "c44067f5952c0a294b673a41bacd8c17"
ARCHIVE_SIG = "0def7320c3a5731c473e5ecbe6d01bc7"


@dataclass
class Pushed:
    """The deployer's uploads in one `up`."""

    uploads: Counter[str] = field(default_factory=Counter)  # source path -> CopyToRemote resources pushing it
    hosts: set[str] = field(default_factory=set)  # hosts that receive a file from the deployer
    other_sources: int = 0  # CopyToRemote sources that are not files on the deployer (text, remote URI)
    stdin_bytes: int = 0  # Command stdin (UTF-8), all hosts
    directory: Path = Path(".")  # the stack's artifactsDirectory

    @property
    def files(self) -> int:
        return sum(self.uploads.values())

    def bytes(self, root: Path = ROOT) -> Optional[int]:
        """Total bytes of the uploads, or None when a file is not on this machine (its size is unknown)."""
        sizes = [_size(root / path) for path in self.uploads]
        if any(size is None for size in sizes):
            return None
        return sum(int(size or 0) * n for size, n in zip(sizes, self.uploads.values(), strict=True))

    def per_artifact(self) -> dict[str, int]:
        """The file's folder under artifactsDirectory (`<component>/<version>`, `images`) -> uploads of its files."""
        out: Counter[str] = Counter()
        for path, n in self.uploads.items():
            folder = Path(path).parent
            out[str(folder.relative_to(self.directory) if folder.is_relative_to(self.directory) else folder)] += n
        return dict(sorted(out.items()))


def pushed(run: ProgramRun) -> Pushed:
    out = Pushed(directory=Path(run.config.get("container-cloud:artifactsDirectory", ".")))
    for reg in run.registrations:
        if reg.type == COMMAND:
            out.stdin_bytes += len(str(reg.plain_inputs.get("stdin") or "").encode())
        if reg.type != COPY:
            continue
        inputs = reg.plain_inputs
        path = _deployer_path(inputs.get("source"))
        if path is None:
            out.other_sources += 1
            continue
        out.uploads[path] += 1
        out.hosts.add(str(inputs["connection"]["host"]))
    return out


def _deployer_path(source: Any) -> Optional[str]:
    """The path of a file asset or file archive; None for text assets, remote URIs and asset maps."""
    if isinstance(source, dict) and source.get(SIG) in (ASSET_SIG, ARCHIVE_SIG) and source.get("path"):
        return str(source["path"])
    return None


def _size(path: Path) -> Optional[int]:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return None
