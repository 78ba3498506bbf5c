"""TeamRancher: `containercloud:rancher:TeamRancher` — a team's Rancher project (only with a directory).

On the INSIDE host of the Rancher import, through Rancher's v3 API (v2.14): the project named after the
team in this stack's cluster (`POST /v3/projects` with `clusterId`), the team's directory group bound to
it (`POST /v3/projectroletemplatebindings` with `projectId`, `roleTemplateId`, `groupPrincipalId`
`<provider>_group://<dn>`; role templates `read-only`, `project-member`, `project-owner` from
pkg/data/management/role_data.go), and the team's namespaces moved into it with the annotation
`field.cattle.io/projectId: <cluster>:<project>` (kubectl with the admin kubeconfig, a 0600 file).
Removing the team takes the namespaces out of the project, then deletes the project.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi

from components.config import Settings, Team
from components.directory import group_principal
from components.host_step import HostFile, HostStep, HostStepArgs, host_connection, needs_sudo
from components.templating import render

API_ROOT = "/etc/containercloud/rancher-teams"
# team role -> Rancher project role template (the same reach as the ClusterRole TeamAccess binds)
ROLE_TEMPLATES = {"view": "read-only", "edit": "project-member", "admin": "project-owner"}


@dataclass(frozen=True)
class TeamRancherArgs:
    settings: Settings
    team: Team
    ssh_private_key: pulumi.Input[str]
    host: str  # the Rancher import host (INSIDE)
    api_files: Sequence[HostFile]  # RancherServer.api_files(api_dir)
    api_script: str  # RancherServer.api_script(api_dir)
    admin_kubeconfig: pulumi.Input[str]  # secret
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)  # namespaces, import, directory

    @property
    def api_dir(self) -> str:
        return api_dir(self.team.name)

    @property
    def principal(self) -> str:
        dn = self.team.directory_group
        return group_principal(self.settings.directory, dn) if dn else ""


def api_dir(team: str) -> str:
    return f"{API_ROOT}/{team}"


def _props(args: TeamRancherArgs) -> dict[str, Any]:
    return {
        "team": args.team.name,
        "project": args.team.name,
        "namespaces": list(args.team.namespaces),
        "groupPrincipalId": args.principal,
        "roleTemplateId": ROLE_TEMPLATES[args.team.role],
    }


class TeamRancher(pulumi.ComponentResource):
    """A team's Rancher project, its group binding and its namespaces."""

    def __init__(self, name: str, args: TeamRancherArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("containercloud:rancher:TeamRancher", name, _props(args), opts)
        a = args
        s = a.settings
        host = s.host(a.host)
        kubeconfig = f"{a.api_dir}/admin.kubeconfig"
        files = [*a.api_files, HostFile(kubeconfig, a.admin_kubeconfig, "0600", secret=True)]
        values = dict(team=a.team.name, namespaces=list(a.team.namespaces), principal=a.principal,
                      role_template=ROLE_TEMPLATES[a.team.role], kubeconfig=kubeconfig, api_dir=a.api_dir)
        self.step = HostStep(
            f"{name}-rancher",
            HostStepArgs(host=host.name, connection=host_connection(s, host, a.ssh_private_key),
                         script=a.api_script + render("team_rancher/project.sh.j2", **values),
                         delete_script=a.api_script + render("team_rancher/project-undo.sh.j2", **values),
                         files=files, use_sudo=needs_sudo(s, host)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(a.depends_on)))
        self.register_outputs({"project": a.team.name})
