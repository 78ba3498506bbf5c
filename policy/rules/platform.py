"""Issue 17 rules: team robot accounts pull only from their own project, directory logins only over TLS,
Headlamp never exposed outside the API server.

Both request rules read what reaches the host: a step's `script` and `files` (its Command, decoded). A call's
body is the `-d '<json>'` on its line, the file of `-d @<path>`, or — for a temporary body `-d @"$var"` — the file that
`fill_passwords <path> "$var"` filled (components/templates/directory/passwords.sh.j2: a non-secret body with
`"<secret:NAME>"` placeholders, each password its own secret file). A body that is secret, unknown at
preview, missing or not JSON cannot be judged: the call is reported (fail closed).

- `robot-pull-only`: every robot create (`"$api/robots"` with -X POST or a body) is level project, one
  permission, `repository:pull` only.
- `directory-tls`: every write of Harbor's `"$api/configurations"` carrying LDAP settings has an ldaps://
  `ldap_url` and `ldap_verify_cert: true`; every Rancher `?action=testAndApply` body has `tls: true`, no
  StartTLS and a PEM `certificate` to verify the directory with.
- `headlamp-not-exposed` reads the Kubernetes objects applied: a Service selecting Headlamp is ClusterIP,
  no Ingress routes to it, and no ClusterRoleBinding grants its ServiceAccount anything cluster-wide.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Union

from .artifacts.files import HostFile, host_files
from .artifacts.steps import step_of
from .common import get, items

Report = Callable[..., None]

SERVICE = "kubernetes:core/v1:Service"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
CLUSTER_ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
HEADLAMP_NAMESPACE = "headlamp"
HEADLAMP_LABEL = ("app.kubernetes.io/name", "headlamp")

_DATA = re.compile(r"""(?:^|\s)(?:-d|--data(?:-binary|-raw|-ascii)?)(?:\s+|=)?(?:'(?P<inline>[^']*)'|@(?P<file>\S+))""")
_FILL = re.compile(r"""fill_passwords\s+(\S+)\s+(\S+)""")
_ROBOTS = re.compile(r"""\$\{?api\}?/robots["'\s]""")
_CONFIGURATIONS = re.compile(r"""\$\{?api\}?/configurations["'\s]""")
_TEST_AND_APPLY = re.compile(r"""[?&]action=testAndApply""")
_WRITE = re.compile(r"""-X\s*(POST|PUT|PATCH)""")

Body = Union[dict[str, Any], str]  # a parsed body, or why it cannot be judged


# --- request bodies in scripts ------------------------------------------------------------------------------

def _unquote(word: str) -> str:
    word = word.rstrip(")")
    if len(word) >= 2 and word[0] == word[-1] and word[0] in "'\"":
        return word[1:-1]
    return word


def _logical_lines(script: str) -> list[str]:
    return script.replace("\\\n", " ").splitlines()


def _file_body(path: str, files: dict[str, HostFile]) -> Body:
    f = files.get(path)
    if f is None:
        return f"its body {path} is not a file of the step"
    if f.secret or f.content is None:
        return f"its body {path} is {'secret' if f.secret else 'unknown'}, so what it asks for cannot be read"
    return _parse(f.content, path)


def _parse(text: str, where: str) -> Body:
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return f"its body {where} is not JSON"
    return body if isinstance(body, dict) else f"its body {where} is not a JSON object"


def _body(line: str, fills: dict[str, str], files: dict[str, HostFile]) -> Body:
    data = _DATA.search(line)
    if data is None:
        return "it sends no body that can be read"
    if data.group("inline") is not None:
        return _parse(data.group("inline"), "on the command line")
    target = _unquote(data.group("file"))
    if target in fills:
        return _file_body(fills[target], files)
    if "$" in target:
        return f"its body {target} is made on the host from nothing the step shows"
    return _file_body(target, files)


def request_bodies(props: Any, call: Callable[[str], bool]) -> list[Body]:
    """The body of every call in a step's script that `call` picks, from the step's own files."""
    script = get(props, "script") or ""
    if not isinstance(script, str):
        return []
    files = {f.path: f for f in host_files(props)}
    lines = _logical_lines(script)
    lines = [line for line in lines if not line.lstrip().startswith("#")]
    fills = {_unquote(dst): _unquote(src) for line in lines for src, dst in _FILL.findall(line)}
    return [_body(line, fills, files) for line in lines if call(line)]


def _robot_create(line: str) -> bool:
    return bool(_ROBOTS.search(line + " ")) and (bool(re.search(r"-X\s*POST", line)) or bool(_DATA.search(line)))


def _harbor_configuration_write(line: str) -> bool:
    return bool(_CONFIGURATIONS.search(line + " ")) and (bool(_WRITE.search(line)) or bool(_DATA.search(line)))


def _rancher_test_and_apply(line: str) -> bool:
    return bool(_TEST_AND_APPLY.search(line))


# --- robot accounts ---------------------------------------------------------------------------------------

def robot_problems(body: dict[str, Any]) -> list[str]:
    name = body.get("name", "?")
    perms = items(body.get("permissions"))
    if body.get("level") != "project":
        return [f"robot {name}: level {body.get('level')!r}; a team robot is level project"]
    if len(perms) != 1:
        return [f"robot {name}: {len(perms)} permissions; a team robot reaches its one project only"]
    problems = []
    perm = perms[0]
    if get(perm, "kind") != "project":
        problems.append(f"robot {name}: permission kind {get(perm, 'kind')!r}, not project")
    accesses = items(get(perm, "access"))
    if not accesses:
        problems.append(f"robot {name}: no access listed on project {get(perm, 'namespace')}")
    for access in accesses:
        if (get(access, "resource"), get(access, "action"), get(access, "effect") or "allow") != \
                ("repository", "pull", "allow"):
            problems.append(f"robot {name}: {get(access, 'resource')}:{get(access, 'action')} on project "
                            f"{get(perm, 'namespace')} (pull from repositories only)")
    return problems


def validate_robot_pull_only(args: Any, report: Report) -> None:
    """A robot account created on a registry host pulls from one project's repositories and does nothing else."""
    step = step_of(args)
    if step is None:
        return
    for body in request_bodies(step, _robot_create):
        if isinstance(body, str):
            report(f"{args.name}: a robot account is created (POST /robots) but {body}")
            continue
        for problem in robot_problems(body):
            report(f"{args.name}: {problem}")


# --- directory over TLS -----------------------------------------------------------------------------------

def _carries_ldap(body: dict[str, Any]) -> bool:
    return body.get("auth_mode") == "ldap_auth" or any(str(k).startswith("ldap_") for k in body)


def harbor_ldap_problems(body: dict[str, Any]) -> list[str]:
    if not _carries_ldap(body):
        return []
    problems = []
    url = body.get("ldap_url")
    if not str(url or "").startswith("ldaps://"):
        problems.append(f"Harbor ldap_url {url!r} is not ldaps:// (LDAP without TLS)")
    if body.get("ldap_verify_cert") is not True:
        problems.append("Harbor ldap_verify_cert is not true")
    return problems


def rancher_ldap_problems(body: dict[str, Any]) -> list[str]:
    configs = [(k, body[k]) for k in ("ldapConfig", "activeDirectoryConfig") if isinstance(body.get(k), dict)]
    if not configs:
        return ["Rancher testAndApply body holds no ldapConfig or activeDirectoryConfig to judge"]
    problems = []
    for key, config in configs:
        if config.get("tls") is not True or config.get("starttls") is True:
            problems.append(f"Rancher {key}: tls must be true (ldaps), not plain LDAP or StartTLS")
        if "BEGIN CERTIFICATE" not in str(config.get("certificate") or ""):
            problems.append(f"Rancher {key}: no certificate to verify the directory with")
    return problems


def validate_directory_tls(args: Any, report: Report) -> None:
    """Harbor and Rancher reach the directory over ldaps, verifying its certificate."""
    step = step_of(args)
    if step is None:
        return
    calls: list[tuple[str, Callable[[str], bool], Callable[[dict[str, Any]], list[str]]]] = [
        ("Harbor's configurations are written", _harbor_configuration_write, harbor_ldap_problems),
        ("Rancher's auth provider is set (testAndApply)", _rancher_test_and_apply, rancher_ldap_problems)]
    for what, call, judge in calls:
        for body in request_bodies(step, call):
            problems = [f"{what} but {body}"] if isinstance(body, str) else judge(body)
            for problem in problems:
                report(f"{args.name}: {problem}")


# --- Headlamp only through the API server -------------------------------------------------------------------

def _headlamp_selected(props: Any) -> bool:
    key, value = HEADLAMP_LABEL
    return get(props, "spec", "selector", key) == value


def headlamp_problems(resource_type: str, props: Any) -> list[str]:
    if resource_type == SERVICE and _headlamp_selected(props):
        kind = get(props, "spec", "type") or "ClusterIP"
        if kind != "ClusterIP" or get(props, "spec", "externalIPs"):
            return [f"Service {get(props, 'metadata', 'name')} exposes Headlamp as {kind}; only ClusterIP "
                    "(reach it through the API server's service proxy)"]
    if resource_type == INGRESS:
        backends = [get(p, "backend", "service", "name") for r in items(get(props, "spec", "rules"))
                    for p in items(get(r, "http", "paths"))]
        if get(props, "metadata", "namespace") == HEADLAMP_NAMESPACE or "headlamp" in backends:
            return [f"Ingress {get(props, 'metadata', 'name')} routes to Headlamp; it is reached through the API only"]
    if resource_type == CLUSTER_ROLE_BINDING:
        for s in items(get(props, "subjects")):
            if get(s, "kind") == "ServiceAccount" and get(s, "namespace") == HEADLAMP_NAMESPACE:
                return [f"ClusterRoleBinding gives {get(props, 'roleRef', 'name')} to Headlamp's ServiceAccount "
                        f"{get(s, 'name')}; users sign in with their own token"]
    return []


def validate_headlamp_not_exposed(args: Any, report: Report) -> None:
    """Headlamp: a ClusterIP Service only (no NodePort, LoadBalancer, Ingress); no cluster-wide ServiceAccount rights"""
    for problem in headlamp_problems(args.resource_type, args.props):
        report(f"{args.name}: {problem}")
