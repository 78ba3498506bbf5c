"""TeamAccess: one application team's namespaces, RBAC, quota, client certificate and kubeconfig.

The team is the group `team:<name>` (the O of its client certificate, signed by the Kubernetes CA).
It is bound with RoleBindings to one built-in ClusterRole (view, edit or admin) in its own namespaces
only; `clusterRead` adds one ClusterRoleBinding to `view`. Nothing else is granted: the certificate
never carries `system:masters`, and no binding names `system:anonymous` or `system:unauthenticated`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_kubernetes.core.v1 as core
import pulumi_kubernetes.meta.v1 as meta
import pulumi_kubernetes.rbac.v1 as rbac

from components.config import Settings, Team
from components.kubeconfig import kubeconfig
from components.pki import CertSpec, KeyPair, KeySpec, issue_certificate

RBAC_GROUP = "rbac.authorization.k8s.io"
# team role -> built-in ClusterRole it is bound to (never cluster-admin)
CLUSTER_ROLES = {"view": "view", "edit": "edit", "admin": "admin"}
MANAGED_BY = {"app.kubernetes.io/managed-by": "container-cloud"}
# Pod Security Admission on team namespaces (kubernetes.io "Enforce Pod Security Standards with Namespace
# Labels"): block what baseline forbids, warn and audit what restricted would. Without a label PSA admits
# privileged pods.
POD_SECURITY = {"pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted"}


def group(team: str) -> str:
    return f"team:{team}"


def user(team: str) -> str:
    return f"team-{team}"


@dataclass(frozen=True)
class TeamAccessArgs:
    team: Team
    kube_provider: pulumi.ProviderResource
    ca: KeyPair  # the Kubernetes CA
    key: KeySpec
    api_endpoint: str
    cluster_name: str
    cert_validity_hours: int  # the stack's default, used when the team sets none
    early_renewal_hours: int
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)  # e.g. the API being ready

    @staticmethod
    def from_settings(s: Settings, team: Team, kube_provider: pulumi.ProviderResource, ca: KeyPair,
                      depends_on: Sequence[pulumi.Resource] = ()) -> TeamAccessArgs:
        return TeamAccessArgs(
            team=team,
            kube_provider=kube_provider,
            ca=ca,
            key=KeySpec(s.key_algorithm, s.rsa_bits, s.ecdsa_curve),
            api_endpoint=s.api_endpoint,
            cluster_name=pulumi.get_project(),
            cert_validity_hours=s.cert_validity_hours,
            early_renewal_hours=s.cert_early_renewal_hours,
            depends_on=list(depends_on),
        )

    @property
    def validity_hours(self) -> int:
        return self.team.cert_validity_hours or self.cert_validity_hours

    @property
    def cert_spec(self) -> CertSpec:
        name = self.team.name
        return CertSpec(user(name), "kubernetes", user(name), "client", organization=group(name),
                        validity_hours=self.validity_hours)


def team_props(args: TeamAccessArgs) -> dict[str, Any]:
    """What the policy pack reads (config-derived, known at preview)."""
    t = args.team
    return {
        "team": t.name,
        "namespaces": list(t.namespaces),
        "role": t.role,
        "clusterRead": t.cluster_read,
        "organization": group(t.name),
        "commonName": user(t.name),
        "validityHours": args.validity_hours,
    }


class TeamAccess(pulumi.ComponentResource):
    """`containercloud:k8s:TeamAccess`: a team's namespaces, bindings, quota and kubeconfig."""

    kubeconfig: pulumi.Output[str]  # secret
    credentials: KeyPair

    def __init__(self, name: str, args: TeamAccessArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("containercloud:k8s:TeamAccess", name, team_props(args), opts)
        self.args = args
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.kube_provider,
                                          depends_on=list(args.depends_on))
        team = args.team
        self.namespaces = {ns: self._namespace(ns, k8s_opts) for ns in team.namespaces}
        self.role_bindings = [self._role_binding(ns, res, k8s_opts) for ns, res in self.namespaces.items()]
        self.cluster_role_binding = self._cluster_read(k8s_opts) if team.cluster_read else None
        self.quotas = [self._quota(ns, res, k8s_opts) for ns, res in self.namespaces.items()] if _hard(team) else []
        self.credentials = issue_certificate(args.cert_spec, args.ca, args.key, args.validity_hours,
                                             args.early_renewal_hours, self)
        self.kubeconfig = kubeconfig(args.cluster_name, args.api_endpoint, args.ca.cert_pem, user(team.name),
                                     self.credentials.cert_pem, self.credentials.key_pem,
                                     namespace=team.namespaces[0])
        self.register_outputs({"namespaces": list(team.namespaces), "kubeconfig": self.kubeconfig})

    def _namespace(self, ns: str, opts: pulumi.ResourceOptions) -> core.Namespace:
        labels = {**MANAGED_BY, **POD_SECURITY, "containercloud/team": self.args.team.name}
        return core.Namespace(f"{self.args.team.name}-{ns}", metadata=meta.ObjectMetaArgs(name=ns, labels=labels),
                              opts=opts)

    def _subjects(self) -> list[rbac.SubjectArgs]:
        return [rbac.SubjectArgs(kind="Group", name=group(self.args.team.name), api_group=RBAC_GROUP)]

    def _role_binding(self, ns: str, res: core.Namespace, opts: pulumi.ResourceOptions) -> rbac.RoleBinding:
        team = self.args.team
        role = CLUSTER_ROLES[team.role]
        return rbac.RoleBinding(
            f"{team.name}-{ns}-{role}",
            metadata=meta.ObjectMetaArgs(name=f"team-{team.name}-{role}", namespace=res.metadata.name,
                                         labels=MANAGED_BY),
            role_ref=rbac.RoleRefArgs(api_group=RBAC_GROUP, kind="ClusterRole", name=role),
            subjects=self._subjects(),
            opts=opts,
        )

    def _cluster_read(self, opts: pulumi.ResourceOptions) -> rbac.ClusterRoleBinding:
        team = self.args.team
        return rbac.ClusterRoleBinding(
            f"{team.name}-cluster-view",
            metadata=meta.ObjectMetaArgs(name=f"team-{team.name}-cluster-view", labels=MANAGED_BY),
            role_ref=rbac.RoleRefArgs(api_group=RBAC_GROUP, kind="ClusterRole", name="view"),
            subjects=self._subjects(),
            opts=opts,
        )

    def _quota(self, ns: str, res: core.Namespace, opts: pulumi.ResourceOptions) -> core.ResourceQuota:
        team = self.args.team
        return core.ResourceQuota(
            f"{team.name}-{ns}-quota",
            metadata=meta.ObjectMetaArgs(name=f"team-{team.name}", namespace=res.metadata.name, labels=MANAGED_BY),
            spec=core.ResourceQuotaSpecArgs(hard=_hard(team)),
            opts=opts,
        )


def _hard(team: Team) -> dict[str, str]:
    q = team.quota
    if q is None:
        return {}
    hard = {"requests.cpu": q.cpu, "requests.memory": q.memory, "pods": None if q.pods is None else str(q.pods)}
    return {k: v for k, v in hard.items() if v}

