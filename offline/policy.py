"""Run the real policy pack over its analyzer gRPC protocol (as `pulumi preview --policy-pack` does)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offline.engine.monitor import Registration


@dataclass
class PolicyResult:
    ran: bool
    violations: list[dict[str, str]]
    note: str = ""

    @property
    def mandatory(self) -> list[dict[str, str]]:
        return [v for v in self.violations if v["level"].lower() == "mandatory"]

    @property
    def verdict(self) -> str:
        if not self.ran:
            return f"NOT RUN ({self.note})"
        if self.mandatory:
            return f"FAILED: {len(self.mandatory)} mandatory violation(s), {len(self.violations)} in all"
        return f"passed: 0 mandatory violations, {len(self.violations)} advisory"


def _as_dict(v: Any) -> dict[str, str]:
    return {"policy": str(v.policy), "level": str(v.level).lower(), "urn": str(v.urn or ""),
            "message": str(v.message)}


def run_policy(pack: Path, registrations: list[Registration], skip: bool = False) -> PolicyResult:
    if skip:
        return PolicyResult(False, [], "--no-policy")
    if not (pack / "__main__.py").is_file():
        return PolicyResult(False, [], f"no policy pack at {pack}/__main__.py")
    try:
        from offline.engine import policy_client as client
    except ImportError as err:
        return PolicyResult(False, [], f"offline/engine/policy_client.py is missing: {err}")
    with client.PolicyAnalyzer(pack) as analyzer:
        violations = analyzer.analyze(registrations)
    return PolicyResult(True, sorted((_as_dict(v) for v in violations),
                                     key=lambda v: (v["level"], v["policy"], v["urn"])))
