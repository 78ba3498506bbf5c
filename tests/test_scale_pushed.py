"""Issue 16: what the deployer pushes, measured from the graph (benchmarks/pushed.py): one upload per
CopyToRemote of a file on the deployer; bytes from the files when they are on this machine, unknown otherwise."""

from __future__ import annotations

from pathlib import Path

from benchmarks.pushed import pushed
from offline.engine import run_program


def test_uploads_and_bytes_from_the_files_on_the_deployer(tmp_path: Path) -> None:
    run = run_program("dev", overrides={"artifactsDirectory": str(tmp_path)})
    assert run.error is None, run.error
    uploads = pushed(run)
    copies = [r for r in run.registrations if r.type == "command:remote:CopyToRemote"]
    assert uploads.files == len(copies) > 0
    assert uploads.hosts == {str(r.plain_inputs["connection"]["host"]) for r in copies}
    assert uploads.bytes() is None, "no artifact is on this machine: bytes are unknown, never guessed"
    for i, path in enumerate(uploads.uploads):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"x" * (1000 + i))
    assert uploads.bytes() == sum((1000 + i) * n for i, n in enumerate(uploads.uploads.values()))
    assert sum(uploads.per_artifact().values()) == uploads.files
    assert all(not folder.startswith(("/", "..")) for folder in uploads.per_artifact())


def test_mirror_mode_pushes_no_file() -> None:
    run = run_program("dev", overrides={"artifactsMirrorUrl": "https://mirror.corp.example/artifacts"})
    assert run.error is None, run.error
    uploads = pushed(run)
    assert uploads.files == 0 and uploads.bytes() == 0
    assert uploads.stdin_bytes > 0  # scripts and configuration still go over SSH
