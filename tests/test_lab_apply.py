"""The lab's engine semantics against a real sshd on loopback: ordering, replace (new create, then the
old delete), update, delete order, unchanged = nothing, failures, host key checking, the bastion,
SFTP uploads and the steps that cannot run here."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.apply import Engine, Executor
from lab.state import COMMAND, COPY, Resource

SSHD = "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(SSHD) or not shutil.which("ssh"),
                                reason="needs root, sshd and the OpenSSH client")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> tuple[str, str]:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.read_text(), path.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("sshd")
    host_priv, host_pub = _keygen(d / "host_key")
    client_priv, client_pub = _keygen(d / "client_key")
    (d / "authorized_keys").write_text(client_pub + "\n")
    Path("/run/sshd").mkdir(exist_ok=True)
    port = _free_port()
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", "/dev/null", "-o", f"Port={port}", "-o", "ListenAddress=127.0.0.1",
                             "-o", f"HostKey={d / 'host_key'}", "-o", f"AuthorizedKeysFile={d / 'authorized_keys'}",
                             "-o", "StrictModes=no", "-o", "UsePAM=no", "-o", "PermitRootLogin=prohibit-password",
                             "-o", "PidFile=none", "-o", "MaxStartups=50", "-o", "MaxSessions=50",
                             "-o", "Subsystem=sftp /usr/lib/openssh/sftp-server"],
                            stderr=subprocess.PIPE)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    conn = {"host": "127.0.0.1", "port": float(port), "user": "root", "privateKey": client_priv,
            "hostKey": " ".join(host_pub.split()[:2]), "perDialTimeout": 15.0, "dialErrorLimit": 20.0}
    yield {"conn": conn, "dir": d, "port": port}
    proc.kill()
    proc.wait()


def _cmd(name: str, create: str, deps: tuple[str, ...] = (), triggers: Any = None, delete: str = "",
         conn: dict[str, Any] | None = None, **extra: Any) -> Resource:
    inputs: dict[str, Any] = {"create": create, "delete": delete, "connection": conn, "addPreviousOutputInEnv": False}
    if triggers is not None:
        inputs["triggers"] = triggers
    inputs.update(extra)
    return Resource(f"urn:test::{name}", COMMAND, name, "", deps, inputs)


def _logger(log: Path, word: str) -> str:
    return f"sleep 0.2; echo {word} >> {log}"


def _lines(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.fixture()
def chain(sshd: dict[str, Any], tmp_path: Path) -> tuple[Path, Any]:
    log = tmp_path / "log"
    conn = sshd["conn"]

    def build(b_trigger: str = "1", c_create: str = "c-create", with_c: bool = True) -> list[Resource]:
        out = [
            _cmd("a", _logger(log, "a-create"), triggers=["1"], delete=_logger(log, "a-delete"), conn=conn),
            _cmd("b", _logger(log, f"b-create-{b_trigger}"), deps=("urn:test::a",), triggers=[b_trigger],
                 delete=_logger(log, f"b-delete-{b_trigger}"), conn=conn),
            _cmd("d", _logger(log, "d-create"), conn=conn, delete=_logger(log, "d-delete")),
        ]
        if with_c:
            out.append(_cmd("c", _logger(log, c_create), deps=("urn:test::b",), triggers=["1"],
                            delete=_logger(log, "c-delete"), conn=conn))
        return out

    return log, build


def _engine() -> Engine:
    return Engine(Executor(), log=lambda _line: None)


def test_order_then_unchanged_runs_nothing(chain: tuple[Path, Any]) -> None:
    log, build = chain
    engine = _engine()
    report = engine.up(build())
    assert report.ok, [r.line() for r in report.results]
    lines = _lines(log)
    assert sorted(lines) == ["a-create", "b-create-1", "c-create", "d-create"]
    assert lines.index("a-create") < lines.index("b-create-1") < lines.index("c-create")
    # d is independent of a: it ran in parallel with a, not after c
    assert lines.index("d-create") < lines.index("c-create")
    again = engine.up(build())
    assert again.ran() == [] and _lines(log) == lines


def test_replace_runs_new_create_then_old_delete(chain: tuple[Path, Any]) -> None:
    log, build = chain
    engine = _engine()
    engine.up(build())
    log.write_text("")
    report = engine.up(build(b_trigger="2"))
    assert report.ok
    assert _lines(log) == ["b-create-2", "b-delete-1"]  # the OLD delete command, after the new create
    assert [(r.op, r.name) for r in report.ran()] == [("replace", "b"), ("delete-replaced", "b")]


def test_other_change_is_an_update(chain: tuple[Path, Any]) -> None:
    log, build = chain
    engine = _engine()
    engine.up(build())
    log.write_text("")
    report = engine.up(build(c_create="c-create-again"))
    assert _lines(log) == ["c-create-again"]
    assert [(r.op, r.name) for r in report.ran()] == [("update", "c")]


def test_removed_resource_is_deleted_and_destroy_is_reverse_order(chain: tuple[Path, Any]) -> None:
    log, build = chain
    engine = _engine()
    engine.up(build())
    log.write_text("")
    engine.up(build(with_c=False))
    assert _lines(log) == ["c-delete"]
    log.write_text("")
    report = engine.destroy()
    assert report.ok
    lines = _lines(log)
    assert sorted(lines) == ["a-delete", "b-delete-1", "d-delete"]
    assert lines.index("b-delete-1") < lines.index("a-delete")
    assert engine.state.resources == {}


def test_failure_is_reported_by_host_and_step_and_dependents_do_not_run(sshd: dict[str, Any], tmp_path: Path) -> None:
    log = tmp_path / "log"
    conn = sshd["conn"]
    resources = [
        _cmd("a", "echo boom >&2; exit 3", conn=conn),
        _cmd("b", _logger(log, "b"), deps=("urn:test::a",), conn=conn),
        _cmd("d", _logger(log, "d"), conn=conn),
    ]
    engine = _engine()
    report = engine.up(resources)
    assert not report.ok
    assert report.failures() == ["127.0.0.1: a (exit 3)"]
    assert "boom" in report.by_status("failed")[0].stderr
    assert [r.name for r in report.by_status("skipped")] == ["b"]
    assert _lines(log) == ["d"]
    # the failed step is not in the state: the next up runs it again
    assert "urn:test::a" not in engine.state.resources


def test_stdin_is_piped_and_the_host_key_is_checked(sshd: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "stdin"
    conn = sshd["conn"]
    engine = _engine()
    report = engine.up([_cmd("s", f"cat > {out}", conn=conn, stdin="secret-value\n")])
    assert report.ok and out.read_text() == "secret-value\n"
    other_key = _keygen(tmp_path / "other")[1]
    wrong = dict(conn, hostKey=" ".join(other_key.split()[:2]))
    bad = _engine().up([_cmd("w", "true", conn=wrong)])
    assert bad.failures() == ["127.0.0.1: w (exit 255)"]
    assert "host key" in bad.by_status("failed")[0].stderr.lower()
    engine.executor.close()
    assert not engine.executor.secrets.dir.exists()


def test_through_the_bastion(sshd: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "jumped"
    conn = dict(sshd["conn"])
    conn["proxy"] = {k: conn[k] for k in ("host", "port", "user", "privateKey", "hostKey")}
    # the target is reached from the bastion: its name resolves on the far side of the jump
    conn["host"] = "localhost"
    conn["hostKey"] = sshd["conn"]["hostKey"]
    report = _engine().up([_cmd("j", f"echo $SSH_CONNECTION > {out}", conn=conn)])
    assert report.ok, [r.line() for r in report.results]
    assert out.read_text().startswith("127.0.0.1 ") or out.read_text().startswith("::1 ")


def test_copy_to_remote_uploads_assets(sshd: dict[str, Any], tmp_path: Path) -> None:
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(4096))
    dst = tmp_path / "uploaded.bin"
    text_dst = tmp_path / "text.txt"
    conn = sshd["conn"]
    resources = [
        Resource("urn:test::f", COPY, "f", "", (), {"connection": conn, "remotePath": str(dst),
                                                    "source": {"path": str(src)}, "triggers": ["x"]}),
        Resource("urn:test::t", COPY, "t", "", (), {"connection": conn, "remotePath": str(text_dst),
                                                    "source": {"text": "hello\n"}}),
    ]
    report = _engine().up(resources)
    assert report.ok, [r.line() for r in report.results]
    assert dst.read_bytes() == src.read_bytes()
    assert text_dst.read_text() == "hello\n"


def test_steps_that_cannot_run_here_are_reported_with_their_dependents(sshd: dict[str, Any]) -> None:
    conn = sshd["conn"]
    resources = [
        _cmd("worker-1-node", "true", conn=conn),
        _cmd("after-node", "true", deps=("urn:test::worker-1-node",), conn=conn),
        Resource("urn:test::ns", "kubernetes:core/v1:Namespace", "ns", "", (), {}),
        _cmd("other", "true", conn=conn),
    ]
    report = _engine().up(resources)
    not_run = {r.name: r.reason for r in report.by_status("not-run")}
    assert set(not_run) == {"worker-1-node", "after-node", "ns"}
    assert "API server" in not_run["worker-1-node"] and "worker-1-node" in not_run["after-node"]
    assert [r.name for r in report.by_status("ok")] == ["other"]


def test_old_delete_of_a_replacement_waits_for_an_update_without_failures(sshd: dict[str, Any], tmp_path: Path) -> None:
    log = tmp_path / "log"
    conn = sshd["conn"]

    def build(version: str, broken: bool) -> list[Resource]:
        return [
            _cmd("r", _logger(log, f"r-create-{version}"), triggers=[version],
                 delete=_logger(log, f"r-delete-{version}"), conn=conn),
            _cmd("x", "exit 1" if broken else _logger(log, "x-create"), conn=conn),
        ]

    engine = _engine()
    engine.up(build("1", broken=False))
    log.write_text("")
    failed = engine.up(build("2", broken=True))
    assert failed.failures() == ["127.0.0.1: x (exit 1)"]
    assert _lines(log) == ["r-create-2"]  # the new create ran; the old delete waits
    assert [(r.op, r.name) for r in failed.by_status("skipped")] == [("delete-replaced", "r")]
    log.write_text("")
    fixed = engine.up(build("2", broken=False))
    assert fixed.ok
    # x is back to the inputs its failed update left in the state: nothing to do; the pending old delete
    # of r runs, with the old command
    assert _lines(log) == ["r-delete-1"]
    assert [(r.op, r.name) for r in fixed.ran()] == [("delete-replaced", "r")]
