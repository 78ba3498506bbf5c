"""HostStep's shell contract, executed for real with bash: files written only on change, secrets on
stdin, a marker that makes the undo a no-op after a replacement, and shellcheck-clean scripts."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from components.templating import render
from offline.engine import ProgramRun, run_program
from policy.rules.artifacts.steps import step_props

PROGRAM = '''
import pulumi
from components.host_step import HostFile, HostStep, HostStepArgs, connection

HostStep("demo", HostStepArgs(
    host="h1",
    connection=connection("192.0.2.1", "ops", 22, pulumi.Output.secret("SSH-KEY-MATERIAL")),
    script="if changed /etc/demo.conf; then\\n  echo restart-demo\\nfi",
    delete_script="rm -f /etc/demo.conf",
    files=[HostFile("/etc/demo.conf", "a=1\\n"),
           HostFile("/etc/demo.key", pulumi.Output.secret("TOP-SECRET-VALUE\\n"), "0600", True)],
    use_sudo=True,
))
'''


def _step(tmp: Path, digest: str, body: str, files: list[dict[str, str]], stdin_paths: list[Path]) -> str:
    stdin_files = [{"path": str(p), "mode": "0600", "kind": "secret", "early": False} for p in stdin_paths]
    return render("host_step/step.sh.j2", step="h1-demo", host="h1", marker_dir=str(tmp / "markers"), digest=digest,
                  files=files, stdin_files=stdin_files, body=body)


def _file(path: Path, content: str) -> dict[str, str]:
    return {"path": str(path), "mode": "0644", "content": content, "delimiter": "CC_FILE_test"}


def _run(script: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], input=stdin, capture_output=True, text=True, timeout=30)


def test_step_is_idempotent_and_takes_secrets_from_stdin(tmp_path: Path) -> None:
    conf, key = tmp_path / "etc/demo.conf", tmp_path / "etc/demo.key"
    body = f"if changed {conf}; then\n  echo restart-demo\nfi"
    script = _step(tmp_path, "d1", body, [_file(conf, "a=1\n")], [key])
    stdin = f"{key} {base64.b64encode(b'TOP-SECRET').decode()}\n"
    first = _run(script, stdin)
    assert first.returncode == 0, first.stderr
    assert "restart-demo" in first.stdout
    assert conf.read_text() == "a=1\n" and key.read_text() == "TOP-SECRET"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "markers/h1-demo").read_text().strip() == "d1"
    second = _run(script, stdin)
    assert second.returncode == 0 and "restart-demo" not in second.stdout, "a second run restarted the service"
    changed = _step(tmp_path, "d2", body, [_file(conf, "a=2\n")], [key])
    third = _run(changed, stdin)
    assert "restart-demo" in third.stdout and conf.read_text() == "a=2\n"


def test_a_file_missing_from_stdin_fails_the_step_before_its_body(tmp_path: Path) -> None:
    conf, key, other = tmp_path / "etc/demo.conf", tmp_path / "etc/demo.key", tmp_path / "etc/other.key"
    script = _step(tmp_path, "d1", "echo body-ran", [_file(conf, "a=1\n")], [key, other])
    only_one = _run(script, f"{key} {base64.b64encode(b'TOP-SECRET').decode()}\n")
    assert only_one.returncode != 0 and "body-ran" not in only_one.stdout
    assert "1 file(s) on stdin, 2 expected" in only_one.stderr
    wrong = _run(script, "".join(f"{p} {base64.b64encode(b'x').decode()}\n" for p in (key, tmp_path / "etc/stray")))
    assert wrong.returncode != 0 and "did not arrive on stdin" in wrong.stderr and "body-ran" not in wrong.stdout
    assert not other.exists()


def test_undo_runs_only_for_its_own_digest(tmp_path: Path) -> None:
    target = tmp_path / "installed"
    target.write_text("x")
    (tmp_path / "markers").mkdir()
    (tmp_path / "markers/h1-demo").write_text("new\n")

    def undo(digest: str) -> str:
        return render("host_step/undo.sh.j2", step="h1-demo", host="h1", marker_dir=str(tmp_path / "markers"),
                      digest=digest, body=f"rm -f {target}")

    stale = _run(undo("old"))
    assert stale.returncode == 0 and target.exists(), "a replaced step's delete removed the new install"
    own = _run(undo("new"))
    assert own.returncode == 0 and not target.exists()
    assert not (tmp_path / "markers/h1-demo").exists()


def test_failing_body_fails_the_step(tmp_path: Path) -> None:
    result = _run(_step(tmp_path, "d", "false\necho not-reached", [], []))
    assert result.returncode != 0 and "not-reached" not in result.stdout
    assert not (tmp_path / "markers/h1-demo").exists()


def test_remote_command_carries_no_secret_and_passes_shellcheck(tmp_path: Path) -> None:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    run = run_program("dev", program=program)
    assert run.error is None, run.error
    (cmd,) = run.of_type("command:remote:Command")
    inputs = cmd.plain_inputs
    for field in ("create", "delete"):
        assert "TOP-SECRET-VALUE" not in inputs[field] and "SSH-KEY-MATERIAL" not in inputs[field]
        assert "sudo -n bash" in inputs[field]
    assert cmd.input_is_secret("stdin") and cmd.input_is_secret("connection")
    assert base64.b64encode(b"TOP-SECRET-VALUE\n").decode() in inputs["stdin"]
    assert inputs["triggers"] and len(inputs["triggers"][0]) == 64
    # the step is its Command, at the top of the stack (no owner), adopting its old URN under the wrapper
    assert not run.of_type("containercloud:host:HostStep")
    assert cmd.parent == "urn:pulumi:dev::container-cloud::pulumi:pulumi:Stack::container-cloud-dev"
    assert ("urn:pulumi:dev::container-cloud::containercloud:host:HostStep$command:remote:Command::demo"
            in cmd.aliases)
    step = step_props(cmd.type, inputs, cmd.name)
    assert step is not None and step["host"] == "h1" and step["step"] == "demo"
    files = {f["path"]: f for f in step["files"]}
    assert files["/etc/demo.key"]["secret"] and files["/etc/demo.key"]["content"] == "TOP-SECRET-VALUE\n"
    assert not files["/etc/demo.conf"]["secret"] and files["/etc/demo.conf"]["content"] == "a=1\n"
    assert "echo restart-demo" in step["script"] and step["deleteScript"] == "rm -f /etc/demo.conf\n"
    for field, shell in (("create", "sh"), ("delete", "sh")):
        path = tmp_path / f"{field}.sh"
        path.write_text(inputs[field])
        check = subprocess.run(["shellcheck", "-s", shell, str(path)], capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout
    inner = inputs["create"].split("<<'CC_STEP_EOF'\n", 1)[1].split("\nCC_STEP_EOF\n", 1)[0]
    (tmp_path / "inner.sh").write_text(inner)
    check = subprocess.run(["shellcheck", "-s", "bash", str(tmp_path / "inner.sh")], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout


def test_unchanged_program_registers_identical_inputs(tmp_path: Path) -> None:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    first = run_program("dev", program=program).of_type("command:remote:Command")[0].plain_inputs
    second = run_program("dev", program=program).of_type("command:remote:Command")[0].plain_inputs
    for field in ("create", "delete", "triggers", "stdin"):
        assert first[field] == second[field], field




def test_every_command_fits_in_one_exec_argument(dev: ProgramRun, ha: ProgramRun) -> None:
    """sshd runs the command as `sh -c <command>`: Linux refuses one argument over 128 KiB (MAX_ARG_STRLEN).
    Large content belongs on stdin or in CopyToRemote."""
    for run in (dev, ha):
        for cmd in run.of_type("command:remote:Command"):
            for field in ("create", "delete"):
                text = cmd.plain_inputs.get(field) or ""  # a removal record has a delete and no create
                assert len(text.encode()) < 128 * 1024, f"{run.stack} {cmd.name}.{field}"


def test_undo_removes_only_the_program_owned_dirs_its_files_were_in() -> None:
    from components.host_step import owned_dirs

    dirs = owned_dirs(["/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/admin.conf", "/etc/systemd/system/x.service",
                       "/usr/local/bin/kubectl", "/etc/containerd/certs.d/reg.example/hosts.toml"])
    assert dirs == ["/etc/containerd/certs.d/reg.example", "/etc/containerd/certs.d", "/etc/kubernetes/pki",
                    "/etc/containerd", "/etc/kubernetes"]
