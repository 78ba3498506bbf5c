"""Real etcd members for the tests: the program's certificates and rendered unit flags, on loopback ports
(the server and peer certificates carry 127.0.0.1 as a SAN). Debian's etcd/etcdctl 3.4 run here."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tests.k8s_support import unit_exec

HAVE_ETCD = bool(shutil.which("etcd") and shutil.which("etcdctl"))
ENV = {**os.environ, "ETCDCTL_API": "3"}


_GIVEN: set[int] = set()


def free_port() -> int:
    """A free local port not handed out before in this process: the kernel may offer a port it just released
    again, and two members of one test cluster then clash on it."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def write_pki(files: dict[str, str], pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        if path.startswith("/etc/etcd/pki/"):
            target = pki / Path(path).name
            target.write_text(content)
            target.chmod(0o600)


@dataclass
class Member:
    name: str
    work: Path
    client: int = field(default_factory=free_port)
    peer: int = field(default_factory=free_port)
    metrics: int = field(default_factory=free_port)
    proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def pki(self) -> Path:
        return self.work / "pki"

    @property
    def data(self) -> Path:
        return self.work / "data"

    @property
    def client_url(self) -> str:
        return f"https://127.0.0.1:{self.client}"

    @property
    def peer_url(self) -> str:
        return f"https://127.0.0.1:{self.peer}"

    def flags(self, unit: str, address: str) -> dict[str, str]:
        """The rendered unit's flags with this member's paths and loopback ports."""
        _, flags = unit_exec(unit)
        out = {}
        for key, value in flags.items():
            value = value.replace("/etc/etcd/pki", str(self.pki)).replace("/var/lib/etcd", str(self.data))
            value = value.replace(f"{address}:2379", f"127.0.0.1:{self.client}")
            value = value.replace(f"{address}:2380", f"127.0.0.1:{self.peer}").replace(":2381", f":{self.metrics}")
            out[key] = value
        out["listen-client-urls"] = self.client_url
        return out

    def start(self, flags: dict[str, str], env: Optional[dict[str, str]] = None) -> None:
        log = open(self.work / "etcd.log", "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(["etcd"] + [f"--{k}={v}" for k, v in flags.items()], stdout=log,
                                     stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        log.close()

    def ctl(self, *args: str, endpoints: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["etcdctl", f"--endpoints={endpoints or self.client_url}", f"--cacert={self.pki}/ca.crt",
             f"--cert={self.pki}/healthcheck-client.crt", f"--key={self.pki}/healthcheck-client.key",
             "--dial-timeout=3s", "--command-timeout=5s", *args],
            capture_output=True, text=True, timeout=30, env=ENV, check=check)

    def wait_healthy(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        last = None
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            last = self.ctl("endpoint", "health", check=False)
            if last.returncode == 0:
                return
            time.sleep(0.3)
        raise AssertionError(f"{self.name} not healthy: {last.stderr if last else ''}\n{self.log()}")

    def log(self) -> str:
        path = self.work / "etcd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
