"""The single validation pass: every source of faults in one report, nothing invented for a setting with
a type error, warnings printed (not raised) for legal but unwise settings."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from components import config_pass
from components.config import Fault, Settings, parse_settings
from offline.engine import run_program
from offline.engine.runner import ROOT, load_stack_config

WARN_STACKS = sorted((ROOT / "tests" / "fixtures" / "bad_stacks" / "warnings").glob("*.yaml"))
_WARN = re.compile(r"^# warn: (?P<key>\S+) \| (?P<fragment>.+)$")


def raw_of(stack: str, stack_file: Path | None = None, **overrides: Any) -> dict[str, Any]:
    values = load_stack_config(stack, overrides, stack_file=stack_file).values
    return {k.split(":", 1)[1]: v for k, v in values.items()}


def expected_warnings(path: Path) -> list[tuple[str, str]]:
    found = [_WARN.match(line) for line in path.read_text().splitlines()]
    return [(m["key"], m["fragment"]) for m in found if m]


@pytest.mark.parametrize("stack", ["dev", "ha"])
def test_the_shipped_stacks_have_no_fault_and_no_warning(stack: str) -> None:
    result = config_pass.validate(raw_of(stack))
    assert (result.errors, result.warnings) == ([], [])
    assert isinstance(result.settings, Settings)


def test_a_type_error_invents_no_fault_from_the_missing_value() -> None:
    """apiServerPort is not a number: the port rules, which read it, say nothing; the others still run."""
    result = config_pass.validate(raw_of("dev", apiServerPort="https", rancherHostname="harbor.corp.example"))
    keys = [k for k, _ in result.errors]
    assert keys.count("apiServerPort") == 1
    assert "rancherHostname" in keys


def test_a_version_fault_is_not_repeated_for_a_key_the_rules_already_named() -> None:
    result = config_pass.validate(raw_of("dev", kubernetesVersion="v1.35"))
    assert [k for k, _ in result.errors] == ["kubernetesVersion"]
    assert "is not a version like 1.35.4" in result.errors[0][1]


def test_another_fault_source_plugs_in_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """How the version support matrix joins the pass: one more check in VERSION_SOURCES."""
    def matrix(s: Settings) -> Iterable[Fault]:
        if s.kubernetes_version == "1.35.4":
            yield "kubernetesVersion", "1.35.4 is not supported with Rancher v2.12.3 (test matrix)"
        yield "rancherHostname", "already faulted by the rules, so not repeated"

    monkeypatch.setattr(config_pass, "VERSION_SOURCES", (*config_pass.VERSION_SOURCES, matrix))
    run = run_program("dev", overrides={"rancherHostname": "harbor.corp.example"})
    lines = str(run.error).splitlines()
    assert run.registrations == []
    assert any("container-cloud:kubernetesVersion: 1.35.4 is not supported" in line for line in lines)
    assert any("container-cloud:rancherHostname: 'harbor.corp.example' is both" in line for line in lines)
    assert not any("already faulted" in line for line in lines)


def test_a_check_that_crashes_on_a_valid_stack_is_a_bug_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(s: Settings) -> Iterable[Fault]:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(config_pass, "FAULT_SOURCES", (*config_pass.FAULT_SOURCES, broken))
    with pytest.raises(ZeroDivisionError):
        config_pass.validate(raw_of("dev"))


def test_the_key_named_is_the_one_the_user_changed() -> None:
    lowered = config_pass.validate(raw_of("dev", certValidityHours=500)).errors
    raised = config_pass.validate(raw_of("dev", certEarlyRenewalHours=9000)).errors
    assert [k for k, _ in lowered] == ["certValidityHours"]
    assert [k for k, _ in raised] == ["certEarlyRenewalHours"]
    moved = config_pass.validate(raw_of("dev", serviceCidr="10.244.0.0/20")).errors
    assert [k for k, m in moved] == ["serviceCidr"] and "overlaps podCidr (10.244.0.0/16)" in moved[0][1]


def test_parse_settings_raises_every_fault_at_once() -> None:
    from components.config import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_settings(raw_of("dev", apiServerPort="https", publicPorts=[10250], podCidr="10.244.0.0/25"))
    assert [k for k, _ in err.value.faults] == ["apiServerPort", "publicPorts[0]", "podCidr"]


@pytest.mark.parametrize("path", WARN_STACKS, ids=[p.stem for p in WARN_STACKS])
def test_warnings_are_returned_not_raised(path: Path) -> None:
    result = config_pass.validate(raw_of("dev", stack_file=path))
    assert result.errors == [] and result.settings is not None
    for key, fragment in expected_warnings(path):
        assert any(k == key and fragment in m for k, m in result.warnings), (key, fragment, result.warnings)


def test_the_program_warns_through_pulumi_log_and_runs(caplog: pytest.LogCaptureFixture) -> None:
    path = ROOT / "tests" / "fixtures" / "bad_stacks" / "warnings" / "unused-settings.yaml"
    with caplog.at_level(logging.WARNING):
        run = run_program("dev", stack_file=path)
    assert run.error is None and run.registrations
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "container-cloud:sshBastionUser: has no effect without sshBastion" in warned


def test_the_offline_preview_prints_the_warnings(tmp_path: Path) -> None:
    path = ROOT / "tests" / "fixtures" / "bad_stacks" / "warnings" / "unused-settings.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "offline", "preview", "--stack", "dev", "--stack-file", str(path), "--out",
         str(tmp_path), "--program", str(ROOT / "tests" / "fixtures" / "offline_program.py"), "--no-tree",
         "--no-policy"], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "WARNING: container-cloud:ecdsaCurve: has no effect with keyAlgorithm RSA" in done.stderr
