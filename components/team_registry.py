"""TeamRegistry: `containercloud:registry:TeamRegistry` — a team's place in Harbor and its pull Secrets.

On the first registry host (Harbor's API at 127.0.0.1, the admin's credential in a 0600 curl config that
came over stdin): a private project named after the team; with a directory, the team's directory group
as its developer (`member_group` with `group_type` 1 and `ldap_group_dn`, role_id 2); a robot account of
level `project` whose one permission is `kind: project, namespace: <team>` with the one access
`repository: pull` (Harbor v2.13 swagger `RobotCreate`, `RobotPermission`, `Access`). Its secret is a
pulumi-random password set with `PATCH /robots/{id}` (`RobotSec`), so Pulumi holds it as a secret and
no API answer has to be read back. A re-run keeps a robot whose permissions (GET /robots/{id}) are exactly
these and PATCHes its secret only when the step's stamp (robot id + the secret file's sha256) differs, so
the pull Secrets stay valid; a robot with other permissions is deleted and created again. The robot body
reaches the host as a non-secret file (`robot.json`, read by the policy pack); only the secret is secret.
The credential becomes a `kubernetes.io/dockerconfigjson` Secret
(`harbor-pull`) in each of the team's namespaces.

Removing the team deletes the robot account (the step's undo) and the Secrets (Pulumi); the project
and its images stay unless `registryKeepTeamProjects` is false (Harbor then deletes it only when empty).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_kubernetes.core.v1 as core
import pulumi_kubernetes.meta.v1 as meta
import pulumi_random as random

from components.config import Settings, Team
from components.host_step import HostFile, HostStep, HostStepArgs, host_connection, needs_sudo
from components.registry import api_script
from components.templating import render

PULL_SECRET = "harbor-pull"
ROBOT = "pull"  # Harbor names a project robot `robot$<project>+<name>`
ROBOT_PREFIX = "robot$"  # Harbor's default robot_name_prefix
SECRET_LENGTH = 32  # Harbor: 8-128 characters, at least one upper, one lower, one digit
DEVELOPER = 2  # Harbor role_id: 1 projectAdmin, 2 developer, 3 guest, 4 maintainer
API_ROOT = "/etc/containercloud/registry-teams"
MANAGED_BY = {"app.kubernetes.io/managed-by": "container-cloud"}


def robot_name(team: str) -> str:
    return f"{ROBOT_PREFIX}{team}+{ROBOT}"


def robot_permissions(team: str) -> list[dict[str, Any]]:
    return [{"kind": "project", "namespace": team, "access": [{"resource": "repository", "action": "pull"}]}]


def robot_body(team: str) -> dict[str, Any]:
    return {"name": ROBOT, "description": f"container-cloud: pulls of team {team}", "level": "project",
            "duration": -1, "disable": False, "permissions": robot_permissions(team)}


def permission_signature(team: str) -> str:
    """The robot's permissions as the team script reads them from GET /robots/{id}: every `kind`, `namespace`,
    `resource` and `action` pair, sorted (one permission with one access: one of each)."""
    pairs = [f'"{k}":"{v}"' for p in robot_permissions(team) for k, v in p.items() if k != "access"]
    pairs += [f'"{k}":"{v}"' for p in robot_permissions(team) for a in p["access"] for k, v in a.items()]
    return " ".join(sorted(pairs))


def dockerconfigjson(registry: str, username: str, password: str) -> str:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {registry: {"username": username, "password": password, "auth": auth}}})


@dataclass(frozen=True)
class TeamRegistryArgs:
    settings: Settings
    team: Team
    ssh_private_key: pulumi.Input[str]
    api_files: Sequence[HostFile]  # the CA and the admin's curl config under api_dir (Harbor.api_files)
    kube_provider: pulumi.ProviderResource
    namespaces: Sequence[pulumi.Resource]  # the team's Namespace resources (TeamAccess)
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)  # Harbor ready, the directory set

    @property
    def api_dir(self) -> str:
        return api_dir(self.team.name)

    @property
    def group_dn(self) -> str:
        s = self.settings
        return (self.team.directory_group or "") if s.directory.enabled else ""


def api_dir(team: str) -> str:
    return f"{API_ROOT}/{team}"


def _props(args: TeamRegistryArgs) -> dict[str, Any]:
    t = args.team
    return {
        "team": t.name,
        "registry": args.settings.registry_hostname,
        "project": {"name": t.name, "public": False},
        "robot": {"name": robot_name(t.name), "level": "project", "permissions": robot_permissions(t.name)},
        "memberGroup": {"ldapGroupDn": args.group_dn, "roleId": DEVELOPER} if args.group_dn else None,
        "pullSecret": {"name": PULL_SECRET, "namespaces": list(t.namespaces)},
        "keepProject": args.settings.registry_keep_team_projects,
    }


class TeamRegistry(pulumi.ComponentResource):
    """A team's Harbor project, its pull-only robot account and the pull Secrets in its namespaces."""

    robot_secret: pulumi.Output[str]  # secret
    pull_secrets: list[core.Secret]

    def __init__(self, name: str, args: TeamRegistryArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("containercloud:registry:TeamRegistry", name, _props(args), opts)
        self.args = args
        secret = random.RandomPassword(f"{name}-robot-secret", length=SECRET_LENGTH, special=False, min_upper=2,
                                       min_lower=2, min_numeric=2, opts=pulumi.ResourceOptions(parent=self))
        self.robot_secret = pulumi.Output.secret(secret.result)
        self.step = self._harbor(name)
        self.pull_secrets = [self._pull_secret(ns, res) for ns, res in zip(args.team.namespaces, args.namespaces,
                                                                             strict=True)]
        self.register_outputs({"robot": robot_name(args.team.name), "robotSecret": self.robot_secret})

    def _harbor(self, name: str) -> pulumi.Resource:
        a = self.args
        s = a.settings
        host = s.registry_hosts[0]
        team = a.team.name
        secret_path = f"{a.api_dir}/robot-secret.json"
        robot_path = f"{a.api_dir}/robot.json"  # not secret: what the policy pack reads
        files = [*a.api_files,
                 HostFile(robot_path, json.dumps(robot_body(team), separators=(",", ":")) + "\n", "0600"),
                 HostFile(secret_path, self.robot_secret.apply(lambda p: json.dumps({"secret": p}) + "\n"),
                          "0600", secret=True)]
        values = dict(team=team, robot_name=robot_name(team), group_dn=a.group_dn, robot_path=robot_path,
                      permission_signature=permission_signature(team), secret_path=secret_path,
                      keep=s.registry_keep_team_projects, curlrc=f"{a.api_dir}/admin.curlrc", api_dir=a.api_dir)
        api = api_script(s, a.api_dir)
        return HostStep(
            f"{name}-harbor",
            HostStepArgs(host=host.name, connection=host_connection(s, host, a.ssh_private_key),
                         script=api + render("team_registry/team.sh.j2", **values),
                         delete_script=api + render("team_registry/team-undo.sh.j2", **values),
                         files=files, use_sudo=needs_sudo(s, host)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(a.depends_on))).command

    def _pull_secret(self, ns: str, namespace: pulumi.Resource) -> core.Secret:
        a = self.args
        config: pulumi.Output[str] = pulumi.Output.secret(self.robot_secret.apply(
            lambda p: dockerconfigjson(a.settings.registry_hostname, robot_name(a.team.name), p)))
        return core.Secret(
            f"{a.team.name}-{ns}-{PULL_SECRET}",
            metadata=meta.ObjectMetaArgs(name=PULL_SECRET, namespace=ns, labels=MANAGED_BY),
            type="kubernetes.io/dockerconfigjson",
            string_data={".dockerconfigjson": config},
            opts=pulumi.ResourceOptions(parent=self, provider=a.kube_provider, depends_on=[namespace, self.step]))
