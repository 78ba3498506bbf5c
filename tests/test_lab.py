"""The host lab as tests: the dev and ha stacks applied over real SSH into network-namespace hosts,
with every phase's proof asserted (lab/run.py). Needs root and `ip netns` (CI runs as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest


def _netns_unavailable() -> str:
    if os.geteuid() != 0:
        return "the host lab needs root (network namespaces, mounts)"
    if not shutil.which("ip") or subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` is unavailable on this machine"
    return ""


REASON = _netns_unavailable()
if REASON:
    print(f"tests/test_lab.py skipped: {REASON}")
pytestmark = pytest.mark.skipif(bool(REASON), reason=REASON or "-")

BUDGET = {"dev": 180.0, "ha": 360.0}  # seconds, on the 2-core CI machine


# The lab runs the program on bare hosts and found defects of the program (not of the lab), listed in the
# README's lab section: the artifact fetch needs curl, which a fresh Debian lacks; dockerd needs iptables,
# which the docker step does not install; the runtime and etcd undo leave directories and the unit's
# enable link behind. Strict: the day the lab passes, this marker must go.
PROGRAM_DEFECTS = pytest.mark.xfail(strict=True, raises=AssertionError,
                                    reason="program defects found by the lab (README: the host lab)")


@PROGRAM_DEFECTS
@pytest.mark.parametrize("stack", ["dev", "ha"])
def test_lab(stack: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    from lab.proofs_issue12 import NAMES as ISSUE12
    from lab.run import print_summary, run

    start = time.monotonic()
    result = run(stack, workdir=tmp_path_factory.mktemp(f"lab-{stack}"))  # raises LabFailure on a broken proof
    elapsed = time.monotonic() - start
    print_summary(result)
    for proof in ("idempotency", "etcd", "zone matrix", "docker", "destroy", *ISSUE12):
        assert proof in result.proofs, f"proof {proof!r} did not run"
    if stack == "dev":
        assert "change" in result.proofs and "fault" in result.proofs
    assert result.reports["second up"].ran() == []
    assert result.not_run, "the steps that need a real API server, Harbor or Rancher are listed"
    assert elapsed < BUDGET[stack], f"the {stack} lab took {elapsed:.0f}s (budget {BUDGET[stack]:.0f}s)"
