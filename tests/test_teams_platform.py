"""Issue 17: directory logins, a team's Harbor project / robot / pull Secrets, Rancher projects — under the mocks."""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components.config import ConfigError, parse_settings
from offline.engine import ProgramRun, run_program
from offline.engine.runner import ROOT, load_stack_config
from tests.k8s_support import host_step, step_of

PROGRAM = ROOT / "__main__.py"
COMMAND = "command:remote:Command"
SECRET = "kubernetes:core/v1:Secret"
TEAM_REGISTRY = "containercloud:registry:TeamRegistry"
TEAM_RANCHER = "containercloud:rancher:TeamRancher"
DIRECTORY = "containercloud:auth:DirectoryAuth"
BIND_PASSWORD = "Bind-Pa55word-9f3k"
ADMIN_PASSWORD = "Admin-Pa55word-7q2z"
GROUPS = {"payments": "cn=payments,ou=groups,dc=corp,dc=example",
          "analytics": "cn=analytics,ou=groups,dc=corp,dc=example"}


def _ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corp directory CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def directory(kind: str = "openldap", url: str = "ldaps://ldap.corp.example") -> dict[str, Any]:
    return {"type": kind, "url": url, "caCertificate": _ca_pem(), "bindDn": "cn=harbor,ou=services,dc=corp,dc=example",
            "userSearchBase": "ou=people,dc=corp,dc=example", "userSearchFilter": "(objectClass=inetOrgPerson)",
            "groupSearchBase": "ou=groups,dc=corp,dc=example", "adminUser": "platform-admin"}


def _teams_with_groups() -> list[dict[str, Any]]:
    teams = load_stack_config("dev").values["container-cloud:teams"]
    return [{**t, "directoryGroup": GROUPS[t["name"]]} for t in json.loads(teams)]


@pytest.fixture(scope="module")
def plain() -> ProgramRun:
    run = run_program("dev", program=PROGRAM)
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="module")
def with_directory() -> ProgramRun:
    run = run_program("dev", overrides={"directory": directory(), "teams": _teams_with_groups(),
                                        "directoryBindPassword": BIND_PASSWORD,
                                        "directoryAdminPassword": ADMIN_PASSWORD}, program=PROGRAM)
    assert run.error is None, run.error
    return run


def script(run: ProgramRun, name: str, key: str = "create") -> str:
    text = run.named(name, COMMAND).plain_inputs[key]
    return text.split("<<'CC_STEP_EOF'\n", 1)[1].split("\nCC_STEP_EOF\n", 1)[0] + "\n"


def stdin_files(run: ProgramRun, name: str) -> dict[str, str]:
    """What the step's stdin carries: lines of a path, then the content base64, decoded."""
    bundle = run.named(name, COMMAND).plain_inputs["stdin"]
    out = {}
    for line in bundle.splitlines():
        words = line.split(" ")
        out[words[0]] = base64.b64decode(words[-1]).decode()
    return out


def plain_file(run: ProgramRun, name: str, path: str) -> str:
    """A non-secret file of a step, as the policy pack receives it (decoded from its Command's `create`)."""
    entry = next(f for f in host_step(run, name)[1]["files"] if f["path"] == path)
    assert entry["secret"] is False and isinstance(entry["content"], str)
    return str(entry["content"])


def _everything_but_stdin(run: ProgramRun, name: str) -> str:
    inputs = dict(run.named(name, COMMAND).plain_inputs)
    inputs.pop("stdin")
    return json.dumps(inputs)


# --- without a directory: projects, robots, pull Secrets; nothing of the directory -----------------------

def test_teams_get_projects_robots_and_pull_secrets_without_directory(plain: ProgramRun) -> None:
    settings = parse_settings({k.split(":", 1)[1]: v for k, v in load_stack_config("dev").values.items()})
    assert not plain.of_type(DIRECTORY) and not plain.of_type(TEAM_RANCHER)
    assert {r.name for r in plain.of_type(TEAM_REGISTRY)} == {f"{t.name}-registry" for t in settings.teams}
    for t in settings.teams:
        props = plain.named(f"{t.name}-registry", TEAM_REGISTRY).plain_inputs
        assert props["project"] == {"name": t.name, "public": False}
        assert props["robot"]["permissions"] == [{"kind": "project", "namespace": t.name,
                                                 "access": [{"resource": "repository", "action": "pull"}]}]
        assert props.get("memberGroup") is None
        body = script(plain, f"{t.name}-registry-harbor")
        assert "member_group" not in body and "ldap" not in body
        assert f'-X POST "$api/robots" -d @/etc/containercloud/registry-teams/{t.name}/robot.json' in body
        robot_call = json.loads(plain_file(plain, f"{t.name}-registry-harbor",
                                           f"/etc/containercloud/registry-teams/{t.name}/robot.json"))
        assert robot_call["level"] == "project" and robot_call["permissions"] == props["robot"]["permissions"]
        for ns in t.namespaces:
            secret = plain.named(f"{t.name}-{ns}-harbor-pull", SECRET)
            assert secret.plain_inputs["type"] == "kubernetes.io/dockerconfigjson"
            assert secret.plain_inputs["metadata"]["namespace"] == ns
            assert secret.input_is_secret("stringData")
            config = json.loads(secret.plain_inputs["stringData"][".dockerconfigjson"])
            auth = config["auths"][settings.registry_hostname]
            assert auth["username"] == f"robot${t.name}+pull"
            assert base64.b64decode(auth["auth"]).decode() == f"{auth['username']}:{auth['password']}"
            # the same secret Harbor gets through PATCH /robots/{id}, only over stdin
            sent = stdin_files(plain, f"{t.name}-registry-harbor")[
                f"/etc/containercloud/registry-teams/{t.name}/robot-secret.json"]
            assert json.loads(sent) == {"secret": auth["password"]}
            assert auth["password"] not in _everything_but_stdin(plain, f"{t.name}-registry-harbor")
    assert "teamPullCredentials" in plain.secret_outputs


def test_removing_a_team_deletes_its_robot_and_keeps_its_project_by_default(plain: ProgramRun) -> None:
    undo = script(plain, "payments-registry-harbor", "delete")
    assert 'harbor_api -f -X DELETE "$api/robots/$id"' in undo
    assert '"$api/projects/$project"' in undo and "-X DELETE -H 'X-Is-Resource-Name: true'" not in undo
    run = run_program("dev", overrides={"registryKeepTeamProjects": False}, program=PROGRAM)
    assert run.error is None, run.error
    assert "-X DELETE -H 'X-Is-Resource-Name: true' \"$api/projects/$project\"" in script(
        run, "payments-registry-harbor", "delete")


# --- with a directory ---------------------------------------------------------------------------------

def filled_body(run: ProgramRun, name: str, directory: str, body: str, tmp_path: Path,
                names: tuple[str, ...]) -> dict[str, Any]:
    """The request body as the step sends it: its stdin files on disk, fill_passwords run by bash."""
    from components.host_step import passwords_script
    tmp_path.mkdir()
    for path, content in stdin_files(run, name).items():
        if path.startswith(directory + "/"):
            (tmp_path / path.rsplit("/", 1)[1]).write_text(content)
    (tmp_path / body).write_text(plain_file(run, name, f"{directory}/{body}"))  # not secret: in the script
    script = passwords_script(str(tmp_path), *names)
    out = subprocess.run(["bash", "-c", f"set -euo pipefail\n{script}fill_passwords {tmp_path / body} {tmp_path}/out"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out").stat().st_mode & 0o077 == 0
    return dict(json.loads((tmp_path / "out").read_text()))


def test_directory_bodies_are_plain_files_and_the_passwords_only_on_stdin(with_directory: ProgramRun,
                                                                          tmp_path: Path) -> None:
    harbor, hdir = "directory-harbor", "/etc/containercloud/directory-harbor"
    settings = json.loads(plain_file(with_directory, harbor, f"{hdir}/ldap.json"))  # what the policy pack reads
    assert settings["ldap_url"] == "ldaps://ldap.corp.example:636" and settings["ldap_verify_cert"] is True
    assert settings["ldap_search_password"] == "<secret:bind-password>"
    body = filled_body(with_directory, harbor, hdir, "ldap.json", tmp_path / "h", ("bind-password",))
    assert body == {**settings, "ldap_search_password": BIND_PASSWORD}
    assert 'PUT "$api/configurations" -d @"$body"' in script(with_directory, harbor)
    assert 'POST "$api/ldap/ping" -d @"$body"' in script(with_directory, harbor)
    rancher, rdir = "directory-rancher", "/etc/containercloud/directory-rancher"
    rsettings = json.loads(plain_file(with_directory, rancher, f"{rdir}/auth.json"))
    assert rsettings["ldapConfig"]["tls"] is True and rsettings["ldapConfig"]["starttls"] is False
    assert rsettings["ldapConfig"]["port"] == 636 and "BEGIN CERTIFICATE" in rsettings["ldapConfig"]["certificate"]
    rbody = filled_body(with_directory, rancher, rdir, "auth.json", tmp_path / "r",
                        ("bind-password", "admin-password"))
    assert rbody["ldapConfig"]["serviceAccountPassword"] == BIND_PASSWORD and rbody["password"] == ADMIN_PASSWORD
    assert "/v3/openLdapConfigs/openldap?action=testAndApply" in script(with_directory, rancher)
    for name in (harbor, rancher):
        assert with_directory.named(name, COMMAND).input_is_secret("stdin")
        rest = _everything_but_stdin(with_directory, name)
        assert BIND_PASSWORD not in rest and ADMIN_PASSWORD not in rest
    holders = set()
    for reg in with_directory.registrations:  # only the two steps hold them, as secret files on stdin (base64)
        assert BIND_PASSWORD not in json.dumps(reg.plain_inputs), reg.urn
        step = step_of(reg)
        if step is not None and any(BIND_PASSWORD in (f["content"] or "") for f in step["files"]):
            holders.add((reg.type, reg.name))
    assert holders == {(COMMAND, harbor), (COMMAND, rancher)}
    for name, names in ((harbor, {"bind-password"}), (rancher, {"bind-password", "admin-password"})):
        files = host_step(with_directory, name)[1]["files"]
        secret = {f["path"].rsplit("/", 1)[1][:-5] for f in files if f["secret"]}
        assert names <= secret and all(f["mode"] == "0600" for f in files if f["secret"])
        assert not any(BIND_PASSWORD in f["content"] for f in files if not f["secret"])


def test_passwords_with_json_and_shell_specials_are_filled_verbatim(tmp_path: Path) -> None:
    from components.host_step import passwords_script
    tricky = 'a&b\\c"d$e`f\'g*h'
    (tmp_path / "bind-password.json").write_text(json.dumps(tricky) + "\n")
    (tmp_path / "admin-password.json").write_text(json.dumps("&") + "\n")
    (tmp_path / "body.json").write_text(json.dumps({"p": "<secret:bind-password>", "q": "<secret:admin-password>"}))
    script = passwords_script(str(tmp_path), "bind-password", "admin-password")
    out = subprocess.run(["bash", "-c", f"set -euo pipefail\n{script}fill_passwords {tmp_path}/body.json {tmp_path}/o"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "o").read_text()) == {"p": tricky, "q": "&"}


def test_active_directory_uses_its_own_provider() -> None:
    run = run_program("dev", overrides={"directory": directory("activedirectory"),
                                        "directoryBindPassword": BIND_PASSWORD,
                                        "directoryAdminPassword": ADMIN_PASSWORD}, program=PROGRAM)
    assert run.error is None, run.error
    rbody = json.loads(plain_file(run, "directory-rancher", "/etc/containercloud/directory-rancher/auth.json"))
    assert rbody["activeDirectoryConfig"]["serviceAccountUsername"].startswith("cn=harbor")
    assert rbody["enabled"] is True
    assert "/v3/activeDirectoryConfigs/activedirectory?action=testAndApply" in script(run, "directory-rancher")


def test_each_team_gets_its_group_as_developer_and_a_rancher_project(with_directory: ProgramRun) -> None:
    roles = {"payments": "project-member", "analytics": "read-only"}
    for team, dn in GROUPS.items():
        body = script(with_directory, f"{team}-registry-harbor")
        member = body.split('"$api/projects/$project/members" \\\n  -d ', 1)[1].split("\n", 1)[0].strip("')")
        assert json.loads(member) == {"role_id": 2, "member_group": {"group_type": 1, "ldap_group_dn": dn}}
        props = with_directory.named(f"{team}-rancher", TEAM_RANCHER).plain_inputs
        assert props["groupPrincipalId"] == f"openldap_group://{dn}" and props["roleTemplateId"] == roles[team]
        rancher = script(with_directory, f"{team}-rancher-rancher")
        for ns in props["namespaces"]:
            assert f'annotate --overwrite namespace {ns} "field.cattle.io/projectId=$project"' in rancher
        # the team steps wait for the directory (Harbor can only add an LDAP group in ldap_auth)
        deps = with_directory.named(f"{team}-registry-harbor", COMMAND).dependencies
        assert any("directory-harbor" in d for d in deps)


def test_teams_platform_scripts_pass_shellcheck(plain: ProgramRun, with_directory: ProgramRun, tmp_path: Path) -> None:
    paths: list[str] = []
    for run in (plain, with_directory):
        for r in run.of_type(COMMAND):
            ours = r.name.startswith(("directory-", "smoke-test"))
            if ours or "-registry-harbor" in r.name or "-rancher-rancher" in r.name:
                for key in ("create", "delete"):
                    p = tmp_path / f"{run.stack}-{len(paths)}-{r.name}-{key}.sh"
                    p.write_text(script(run, r.name, key))
                    paths.append(str(p))
    assert len(paths) >= 20
    out = subprocess.run(["shellcheck", "-s", "bash", *paths], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


# --- settings -------------------------------------------------------------------------------------------

def _faults(**overrides: Any) -> list[str]:
    raw = {k.split(":", 1)[1]: v for k, v in load_stack_config("dev", overrides).values.items()}
    with pytest.raises(ConfigError) as err:
        parse_settings(raw)
    return err.value.problems


def test_ldap_without_tls_and_a_group_without_directory_are_refused() -> None:
    problems = _faults(directory=directory(url="ldap://ldap.corp.example"))
    assert any(p.startswith("container-cloud:directory.url: 'ldap://ldap.corp.example'") and "without TLS" in p
               for p in problems), problems
    teams = _teams_with_groups()
    problems = _faults(teams=teams)
    assert "container-cloud:teams[0].directoryGroup: set, but no directory is configured (directory.url is empty)" \
        in problems
    problems = _faults(directory={**directory(), "caCertificate": "not a pem", "bindDn": "harbor"})
    assert any(p.startswith("container-cloud:directory.caCertificate:") for p in problems)
    assert any(p.startswith("container-cloud:directory.bindDn: 'harbor' is not a distinguished name") for p in problems)


# --- the team script's flow, against a stand-in for Harbor's API ------------------------------------------

FAKE_HARBOR = r'''
api=https://harbor.test/api/v2.0
log=$LOG
harbor_api() {
  printf '%s\n' "$*" >> "$log"
  local url
  for url in "$@"; do :; done
  case "$*" in
    *"-X POST $api/projects "*) printf '%s' "${PROJECT_CODE:-201}" ;;
    *"-X PUT -H X-Is-Resource-Name: true $api/projects/payments "*) printf 200 ;;
    *"-X POST $api/robots "*) printf 201; cp "$ROBOT_BODY" "$STATE/robot" ;;
    *"-X DELETE $api/robots/"*) rm -f "$STATE/robot" ;;
    *"-X PATCH $api/robots/"*) printf 200 ;;
    *"$api/robots?q="*) if [[ -f $STATE/robot ]]; then
        printf '[{"id":7,"level":"project","name":"robot$payments+pull","permissions":[{"access":[]}]}]'
      else printf '[]'; fi ;;
    *"$api/robots/7") [[ -f $STATE/robot ]] || return 22
      # GET /robots/{id}: a Robot as Harbor answers it (no secret; access with an effect)
      printf '{"creation_time":"2026-11-24T10:00:00.000Z","description":"x","disable":false,"duration":-1,'
      printf '"editable":true,"expires_at":-1,"id":7,"level":"project","name":"robot$payments+pull",'
      printf '"permissions":%s,"update_time":"2026-11-24T10:00:00.000Z"}' \
        "$(grep -o '"permissions":.*\]' "$STATE/robot" | cut -d : -f 2- \
           | sed 's/"action":"\([a-z]*\)"/"action":"\1","effect":""/g')" ;;
    *"$api/projects/payments") printf '{"name":"payments","project_id":3}' ;;
    *) echo "unexpected call: $*" >&2; return 1 ;;
  esac
}
'''


def _team_script(tmp_path: Path, state: Path, project_code: str = "201") -> subprocess.CompletedProcess[str]:
    from components.team_registry import permission_signature, robot_body, robot_name
    from components.templating import render
    robot_path, secret_path = tmp_path / "robot.json", tmp_path / "robot-secret.json"
    robot_path.write_text(json.dumps(robot_body("payments"), separators=(",", ":")) + "\n")
    if not secret_path.exists():
        secret_path.write_text('{"secret":"Secret-1"}\n')
    body = render("team_registry/team.sh.j2", team="payments", robot_name=robot_name("payments"), group_dn="",
                  robot_path=str(robot_path), permission_signature=permission_signature("payments"),
                  secret_path=str(secret_path), keep=True, curlrc="", api_dir=str(state))
    env = {"PATH": "/usr/bin:/bin", "LOG": str(tmp_path / "calls.log"), "STATE": str(state),
           "PROJECT_CODE": project_code, "ROBOT_BODY": str(robot_path)}
    return subprocess.run(["bash", "-c", "set -euo pipefail\n" + FAKE_HARBOR + body], capture_output=True, text=True,
                          env=env, timeout=30)


def _calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    calls = log.read_text().splitlines()
    log.unlink()
    return calls


def _writes(calls: list[str]) -> list[str]:
    return [c for c in calls if any(f"-X {verb} https://harbor.test/api/v2.0/robots" in c
                                    for verb in ("POST", "DELETE", "PATCH"))]


def test_team_script_keeps_a_robot_with_our_permissions_and_recreates_a_drifted_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    first = _team_script(tmp_path, state)
    assert first.returncode == 0, first.stderr
    assert [c.split(" -X ")[1] for c in _writes(_calls(tmp_path))] == [  # no robot yet: created, its secret set
        f"POST https://harbor.test/api/v2.0/robots -d @{tmp_path}/robot.json",
        f"PATCH https://harbor.test/api/v2.0/robots/7 -d @{tmp_path}/robot-secret.json"]
    second = _team_script(tmp_path, state)  # the robot exists with exactly pull on payments: nothing written
    assert second.returncode == 0, second.stderr
    assert _writes(_calls(tmp_path)) == []
    assert "robot robot$payments+pull can pull from payments" in second.stdout
    (tmp_path / "robot-secret.json").write_text('{"secret":"Secret-2"}\n')  # a new secret: only PATCHed
    third = _team_script(tmp_path, state)
    assert third.returncode == 0, third.stderr
    assert [c.split(" -X ")[1] for c in _writes(_calls(tmp_path))] == [
        f"PATCH https://harbor.test/api/v2.0/robots/7 -d @{tmp_path}/robot-secret.json"]
    robot = state / "robot"  # someone gave the robot push as well: deleted and created with pull only
    robot.write_text(robot.read_text().replace('{"resource":"repository","action":"pull"}',
                                               '{"resource":"repository","action":"pull"},'
                                               '{"resource":"repository","action":"push"}'))
    fourth = _team_script(tmp_path, state)
    assert fourth.returncode == 0, fourth.stderr
    assert [c.split(" -X ")[1].split(" ")[0] for c in _writes(_calls(tmp_path))] == ["DELETE", "POST", "PATCH"]
    assert "its permissions differ from pull on payments: replaced" in fourth.stdout
    assert '"action":"push"' not in robot.read_text()
    assert _writes(_calls_after(_team_script(tmp_path, state), tmp_path)) == []  # and then it is kept again


def _calls_after(run: subprocess.CompletedProcess[str], tmp_path: Path) -> list[str]:
    assert run.returncode == 0, run.stderr
    return _calls(tmp_path)


def test_team_script_stops_when_harbor_refuses_the_project(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    out = _team_script(tmp_path, state, project_code="403")
    assert out.returncode == 1
    assert "project payments: create returned HTTP 403" in out.stderr
