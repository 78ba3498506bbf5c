"""Drive the real policy pack over its analyzer gRPC server, the way `pulumi preview --policy-pack policy` does.

`PolicyAnalyzer` starts `python policy/__main__.py` (cwd policy/, PYTHONPATH with policy/), reads the
port the pack prints on its first stdout line, then speaks the Analyzer protocol:
GetAnalyzerInfo, Configure (each policy at its declared enforcement level, as the CLI does when the
stack sets no policy config), Analyze for every resource (type, inputs as a Struct with secrets still
marked, urn, name, options with the parent) and AnalyzeStack over all of them (with parent,
dependencies and property dependencies).

Engine fidelity, and where it stops:
  * Analyze gets the registration's inputs, exactly as registered (numbers as floats, secrets wrapped).
  * AnalyzeStack gets outputs. For custom resources these are the mocks' outputs. For components the
    engine sends the values of `register_outputs`, which the mock monitor cannot see; the harness sends
    their props instead. Components a stack policy reads (HostFirewall) register their props as outputs,
    so the two agree for them.
  * The provider reference is not recorded by the harness, so `provider` is not sent.
The subprocess is bounded: a start timeout, per-call deadlines, and kill on exit.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
POLICY_DIR = ROOT / "policy"
LEVELS = {
    analyzer_pb2.ADVISORY: "advisory",
    analyzer_pb2.MANDATORY: "mandatory",
    analyzer_pb2.REMEDIATE: "remediate",
    analyzer_pb2.DISABLED: "disabled",
}


@dataclass(frozen=True)
class Violation:
    policy: str
    level: str
    urn: str
    message: str


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    json_format.ParseDict(value, s)
    return s


class PolicyAnalyzer:
    """`with PolicyAnalyzer() as pa: violations = pa.analyze(run.registrations)`."""

    def __init__(self, policy_dir: Path = POLICY_DIR, start_timeout: float = 60.0, call_timeout: float = 60.0,
                 python: str = sys.executable):
        self.policy_dir = policy_dir
        self.start_timeout = start_timeout
        self.call_timeout = call_timeout
        self.python = python
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.channel: Optional[grpc.Channel] = None
        self.stub: Optional[analyzer_pb2_grpc.AnalyzerStub] = None
        self.info: Optional[analyzer_pb2.AnalyzerInfo] = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> PolicyAnalyzer:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.policy_dir)] + [p for p in [env.get("PYTHONPATH")] if p])
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [self.python, "__main__.py"], cwd=self.policy_dir, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            self.port = self._read_port()
            self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
            grpc.channel_ready_future(self.channel).result(timeout=self.start_timeout)
            self.stub = analyzer_pb2_grpc.AnalyzerStub(self.channel)
            self.info = self.stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=self.call_timeout)
            self._configure()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.communicate(timeout=10)
            self.process = None

    def _read_port(self) -> int:
        assert self.process is not None and self.process.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.process.stdout, selectors.EVENT_READ)
        line = b""
        try:
            while not line.endswith(b"\n"):
                if not sel.select(timeout=self.start_timeout):
                    raise TimeoutError(f"policy pack printed no port within {self.start_timeout}s")
                chunk = os.read(self.process.stdout.fileno(), 1)
                if not chunk:
                    err = self.process.stderr.read().decode() if self.process.stderr else ""
                    raise RuntimeError(f"policy pack exited before printing its port:\n{err}")
                line += chunk
        finally:
            sel.close()
        return int(line.strip())

    def _configure(self) -> None:
        assert self.stub is not None and self.info is not None
        config = {p.name: analyzer_pb2.PolicyConfig(enforcementLevel=p.enforcementLevel) for p in self.info.policies}
        self.stub.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=config), timeout=self.call_timeout)

    # --- analysis ----------------------------------------------------------------------------------
    @property
    def policy_names(self) -> list[str]:
        assert self.info is not None
        return [p.name for p in self.info.policies]

    def analyze_resource(self, reg: Any) -> list[Violation]:
        assert self.stub is not None
        request = analyzer_pb2.AnalyzeRequest(
            type=reg.type, properties=_struct(reg.inputs), urn=reg.urn, name=reg.name,
            options=analyzer_pb2.AnalyzerResourceOptions(
                parent=reg.parent or "",
                additionalSecretOutputs=list(reg.additional_secret_outputs),
                deleteBeforeReplace=bool(reg.delete_before_replace),
            ),
        )
        response = self.stub.Analyze(request, timeout=self.call_timeout)
        return [self._violation(d, reg.urn) for d in response.diagnostics]

    def analyze_stack(self, registrations: Iterable[Any]) -> list[Violation]:
        assert self.stub is not None
        resources = []
        for reg in registrations:
            properties = reg.outputs if reg.custom else reg.inputs
            resources.append(analyzer_pb2.AnalyzerResource(
                type=reg.type, properties=_struct(properties), urn=reg.urn, name=reg.name,
                options=analyzer_pb2.AnalyzerResourceOptions(parent=reg.parent or ""),
                parent=reg.parent or "",
                dependencies=list(reg.dependencies),
                propertyDependencies={
                    k: analyzer_pb2.AnalyzerPropertyDependencies(urns=list(v))
                    for k, v in reg.property_dependencies.items()
                },
            ))
        response = self.stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources),
                                          timeout=self.call_timeout)
        return [self._violation(d, "") for d in response.diagnostics]

    def analyze(self, registrations: Iterable[Any]) -> list[Violation]:
        """Every resource through Analyze, then the stack through AnalyzeStack; all diagnostics."""
        regs = list(registrations)
        out: list[Violation] = []
        for reg in regs:
            out += self.analyze_resource(reg)
        out += self.analyze_stack(regs)
        return out

    @staticmethod
    def _violation(d: Any, default_urn: str) -> Violation:
        return Violation(policy=d.policyName, level=LEVELS.get(d.enforcementLevel, str(d.enforcementLevel)),
                         urn=d.urn or default_urn, message=d.message)


def mandatory(violations: Iterable[Violation]) -> list[Violation]:
    return [v for v in violations if v.level == "mandatory"]
