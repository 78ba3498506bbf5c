"""Issue 12.3 / 12.4: host prerequisites first on every host — OS, architecture, cgroup v2 and the packages
each host's roles need (iptables, jq, nfs-common, ...), checked or installed before anything else runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from components import prerequisites
from components.config import parse_settings
from offline.engine import ProgramRun, run_program
from offline.engine.runner import load_stack_config
from tests.k8s_support import host_steps, step_of

STEP = "containercloud:host:HostStep"  # the wrapper component around each step's Command until issue 16
COMMAND = "command:remote:Command"
GATED = ("command:remote:Command", "command:remote:CopyToRemote")


def settings_of(stack: str, **overrides: object):  # type: ignore[no-untyped-def]
    cfg = load_stack_config(stack, dict(overrides))
    return parse_settings({k.split(":", 1)[1]: v for k, v in cfg.values.items()})


def full_script(run: ProgramRun, name: str) -> str:
    text = run.named(name, COMMAND).plain_inputs["create"]
    return text.split("<<'CC_STEP_EOF'\n", 1)[1].split("\nCC_STEP_EOF\n", 1)[0] + "\n"


def needed(stack: str, host: str, **overrides: object) -> set[str]:
    s = settings_of(stack, **overrides)
    return {p.name for p in prerequisites.packages(s, s.host(host))}


def test_packages_follow_the_roles() -> None:
    assert "iptables" in needed("dev", "worker-1")  # kube-proxy iptables mode
    assert "iptables" in needed("dev", "master-1")  # control-plane hosts are nodes too
    assert {"iptables", "jq"} <= needed("dev", "harbor-1")  # dockerd; the JSON health wait
    assert "iptables" in needed("dev", "rancher-1")  # rancher in docker mode
    assert "nfs-common" not in needed("dev", "harbor-1")
    assert {"curl", "ca-certificates", "nftables"} <= needed("dev", "worker-1")


def test_ha_harbor_on_nfs_needs_the_nfs_client() -> None:
    s = settings_of("ha")
    assert s.registry_shared_storage.startswith("nfs:")
    for h in s.registry_hosts:
        assert "nfs-common" in needed("ha", h.name)
    assert "nfs-common" not in needed("ha", "worker-1")


def test_every_host_checks_first_and_everything_else_waits_for_the_checks(dev: ProgramRun, ha: ProgramRun) -> None:
    """Every host's check first. The gate fans in the platform hosts' checks (a number that does not grow with
    the cluster); a worker's own commands wait for its own check instead, everything else for the gate; so no
    resource waits, even through others, for O(workers) checks (issue 16: the SDK's cycle check walks that)."""
    for run in (dev, ha):
        checks = [(r, st) for r, st in host_steps(run) if r.name.endswith("-prerequisites")]
        hosts = {st["host"] for _, st in checks}
        assert hosts == {r.plain_inputs["host"] for r in run.of_type("containercloud:net:HostFirewall")}
        workers = {h.name for h in settings_of(run.stack).hosts if prerequisites.only_worker(h)}
        assert workers and workers < hosts
        gate = run.named("host-prerequisites")
        check_of = {h: run.named(f"{h}-prerequisites", COMMAND).urn for h in hosts}
        assert set(gate.dependencies) == {u for h, u in check_of.items() if h not in workers}  # platform only
        host_at = {h.address: h.name for h in settings_of(run.stack).hosts}
        others = [r for t in GATED for r in run.of_type(t) if r.urn not in check_of.values()]
        assert others, "no remote commands found"
        on_workers = 0
        for r in others:
            host = host_at.get((r.plain_inputs.get("connection") or {}).get("host"))  # where it runs
            step = step_of(r)
            assert step is None or step["host"] == host, r.name  # a step connects to its own host
            if host in workers:
                on_workers += 1
                assert check_of[host] in r.dependencies and gate.urn not in r.dependencies, r.name
            else:
                assert gate.urn in r.dependencies, f"{r.name} does not wait for the prerequisites"
        assert on_workers >= 3 * len(workers)  # firewall, runtime, kubelet
        for urn in check_of.values():  # the checks wait for nothing on the hosts
            assert not [d for d in run.by_urn()[urn].dependencies if d.startswith("urn:") and "command:remote" in d]


def test_the_check_has_no_wrapper_and_keeps_its_urn_in_existing_stacks(dev: ProgramRun) -> None:
    """Issue 16: neither the HostPrerequisites component around the single check nor the HostStep component
    around its Command is a resource any more: the check is its Command, at the top of the stack. Stacks
    created before hold it as `HostStep$Command` (at the top) or, the oldest, `HostPrerequisites$HostStep$Command`
    (engine URNs: the whole parent type chain); both must be found by alias, or `pulumi up` would delete the old
    Command (running the step's undo on the host) and create a new one. The recording monitor computes alias
    URNs as pulumi's step generator does."""
    assert not dev.of_type(prerequisites.OLD_TYPE) and not dev.of_type(STEP)
    old_step = f"urn:pulumi:dev::container-cloud::{STEP}${COMMAND}" + "::{}-prerequisites"
    oldest = f"urn:pulumi:dev::container-cloud::{prerequisites.OLD_TYPE}${STEP}${COMMAND}" + "::{}-prerequisites"
    hosts = {r.plain_inputs["host"] for r in dev.of_type("containercloud:net:HostFirewall")}
    assert hosts
    for h in hosts:
        command = dev.named(f"{h}-prerequisites", COMMAND)
        step = step_of(command)
        assert step is not None and step["host"] == h
        assert command.parent.endswith("::pulumi:pulumi:Stack::container-cloud-dev")
        assert old_step.format(h) in command.aliases and oldest.format(h) in command.aliases
    # nothing else claims an old URN (the engine refuses two resources aliasing one)
    claimed = [a for r in dev.registrations for a in r.aliases]
    assert len(claimed) == len(set(claimed))
    assert len([a for a in claimed if prerequisites.OLD_TYPE in a]) == len(hosts)


def test_every_step_keeps_its_urn_under_its_old_wrapper(dev: ProgramRun) -> None:
    """Issue 16: each step's Command sat under a `containercloud:host:HostStep` component of the same name, itself
    under the step's owner (a component, or the stack). The Command now sits under the owner and carries an
    alias to that URN, so `pulumi up` adopts it instead of deleting it (running its undo on the host)."""
    by_urn = dev.by_urn()
    steps = host_steps(dev)
    owners = set()
    for cmd, _ in steps:
        owner = by_urn.get(cmd.parent)
        owners.add(owner.type if owner else "stack")
        chain = owner.urn.split("::")[2].removeprefix("pulumi:pulumi:Stack$") + "$" if owner else ""
        old = f"urn:pulumi:dev::container-cloud::{chain}{STEP}${COMMAND}::{cmd.name}"
        assert old in cmd.aliases, (cmd.name, cmd.aliases)
    assert {"stack", "containercloud:k8s:ControlPlane", "containercloud:k8s:WorkerNode",
            "containercloud:net:HostFirewall"} <= owners
    assert len(steps) == len({cmd.urn for cmd, _ in steps})


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("prereq")
    (d / "os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    return d


def _run_check(script: str, sandbox: Path, installed: set[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    """The check script in a mount namespace: Debian 12's os-release, cgroup v2 at /sys/fs/cgroup, and a
    dpkg-query / apt-get stand-in that knows `installed` (apt-get logs what it was asked to install)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "dpkg-query").write_text(
        "#!/bin/bash\npkg=${@: -1}\nfor p in " + " ".join(sorted(installed)) +
        "; do [[ $p == \"$pkg\" ]] && { printf 'install ok installed'; exit 0; }; done\nexit 1\n")
    (bin_dir / "apt-get").write_text(f"#!/bin/bash\necho \"$*\" >> {tmp}/apt.log\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    (tmp / "check.sh").write_text("set -euo pipefail\n" + script)
    inner = (f"mount --bind {sandbox}/os-release /etc/os-release && mount -t cgroup2 none /sys/fs/cgroup && "
             f"PATH={bin_dir}:$PATH bash {tmp}/check.sh")
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", inner],
                          capture_output=True, text=True)


needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")


@needs_root
def test_missing_packages_fail_in_one_message_naming_host_and_packages(dev: ProgramRun, sandbox: Path,
                                                                        tmp_path: Path) -> None:
    script = full_script(dev, "harbor-1-prerequisites")
    r = _run_check(script, sandbox, {"curl", "ca-certificates", "nftables"}, tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "harbor-1 does not meet the prerequisites" in r.stderr
    assert "missing packages: iptables jq" in r.stderr and "installHostPackages" in r.stderr
    assert not (tmp_path / "apt.log").exists()


@needs_root
def test_a_ready_host_passes(dev: ProgramRun, sandbox: Path, tmp_path: Path) -> None:
    script = full_script(dev, "worker-1-prerequisites")
    r = _run_check(script, sandbox, {"curl", "ca-certificates", "nftables", "iptables"}, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "worker-1: prerequisites met" in r.stdout


@needs_root
def test_install_host_packages_uses_the_configured_repositories(sandbox: Path, tmp_path: Path) -> None:
    run = run_program("dev", {"installHostPackages": True})
    assert run.error is None, run.error
    r = _run_check(full_script(run, "worker-1-prerequisites"), sandbox, {"curl", "nftables"}, tmp_path)
    assert r.returncode == 0, r.stderr
    log = (tmp_path / "apt.log").read_text().splitlines()
    assert log[0].startswith("update")
    assert log[1].endswith("install -y -q --no-install-recommends ca-certificates iptables")


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck not installed")
def test_prerequisite_scripts_pass_shellcheck(dev: ProgramRun, ha: ProgramRun, tmp_path: Path) -> None:
    for run in (dev, ha):
        checks = [r for r, _ in host_steps(run) if r.name.endswith("-prerequisites")]
        assert checks
        for r in checks:
            path = tmp_path / f"{r.name}.sh"
            path.write_text("#!/bin/bash\nset -euo pipefail\n" + full_script(run, r.name))
            out = subprocess.run(["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True)
            assert out.returncode == 0, out.stdout
