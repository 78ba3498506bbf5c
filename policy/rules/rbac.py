"""Rule 10: no role bound to system:anonymous or system:unauthenticated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .artifacts import holds_credentials
from .common import get, items

Report = Callable[..., None]

BINDING_TYPES = (
    "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
)
FORBIDDEN_SUBJECTS = ("system:anonymous", "system:unauthenticated")


def rbac_problems(resource_type: str, props: Any) -> list[str]:
    if resource_type not in BINDING_TYPES:
        return []
    role = get(props, "roleRef", "name")
    return [
        f"binds {role} to {get(s, 'kind')} {get(s, 'name')}"
        for s in items(get(props, "subjects"))
        if get(s, "name") in FORBIDDEN_SUBJECTS
    ]


def validate_rbac(args: Any, report: Report) -> None:
    """No RoleBinding or ClusterRoleBinding to system:anonymous or system:unauthenticated."""
    for problem in rbac_problems(args.resource_type, args.props):
        report(f"{args.name}: {problem}")


# --- least privilege (CIS 5.1) -----------------------------------------------------------------------------

ROLE_TYPES = (
    "kubernetes:rbac.authorization.k8s.io/v1:Role",
    "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
)
CLUSTER_BINDING = BINDING_TYPES[1]
BROAD_GROUPS = ("system:authenticated", "system:serviceaccounts")
DISCOVERY_ROLES = ("system:basic-user", "system:discovery", "system:public-info-viewer")
CLUSTER_WIDE_WRITE = ("cluster-admin", "admin", "edit")
ESCALATING_VERBS = ("bind", "escalate", "impersonate")


def _subject(s: Any) -> str:
    ns = get(s, "namespace")
    return f"{get(s, 'kind')} {ns + '/' if ns else ''}{get(s, 'name')}"


def binding_problems(resource_type: str, props: Any) -> list[str]:
    if resource_type not in BINDING_TYPES:
        return []
    role = get(props, "roleRef", "name")
    problems = []
    for s in items(get(props, "subjects")):
        name, kind = get(s, "name"), get(s, "kind")
        if role == "cluster-admin":
            problems.append(f"binds cluster-admin to {_subject(s)}; cluster-admin stays with the platform's own "
                            "admin certificate (CIS 5.1.1)")
        elif isinstance(name, str) and name.startswith(BROAD_GROUPS) and role not in DISCOVERY_ROLES:
            problems.append(f"binds {role} to {_subject(s)}: every authenticated user or service account would hold "
                            "it (CIS 5.1.1, 5.1.3)")
        elif kind == "ServiceAccount" and name == "default":
            problems.append(f"binds {role} to the default ServiceAccount of {get(s, 'namespace')}; every pod there "
                            "would hold it (CIS 5.1.5)")
        elif resource_type == CLUSTER_BINDING and role in CLUSTER_WIDE_WRITE and kind in ("Group", "User"):
            problems.append(f"binds {role} cluster-wide to {_subject(s)}; teams get write access only in their "
                            "namespaces (RoleBinding; CIS 5.1.1)")
    return problems


def role_problems(resource_type: str, props: Any) -> list[str]:
    if resource_type not in ROLE_TYPES:
        return []
    problems = []
    for i, rule in enumerate(items(get(props, "rules"))):
        verbs = [v for v in items(get(rule, "verbs")) if isinstance(v, str)]
        resources = [r for r in items(get(rule, "resources")) if isinstance(r, str)]
        groups = [g for g in items(get(rule, "apiGroups")) if isinstance(g, str)]
        if "*" in verbs and ("*" in resources or "*" in groups):
            what = "every resource" if "*" in resources else "every API group"
            problems.append(f"rules[{i}] grants every verb on {what} (wildcards; CIS 5.1.3)")
        escalating = sorted(set(verbs) & set(ESCALATING_VERBS))
        if escalating:
            problems.append(f"rules[{i}] grants {', '.join(escalating)} (privilege escalation; CIS 5.1.8)")
    return problems


def validate_least_privilege(args: Any, report: Report) -> None:
    """No cluster-admin binding, nothing beyond discovery for system:authenticated or all service accounts, no
    binding to a default ServiceAccount, no cluster-wide write for teams, no wildcard or escalating role rules
    (CIS 5.1.1, 5.1.3, 5.1.5, 5.1.8)."""
    for problem in binding_problems(args.resource_type, args.props) + role_problems(args.resource_type, args.props):
        report(f"{args.name}: {problem}")


# --- Pod Security on team namespaces (CIS 5.2) ----------------------------------------------------------

NAMESPACE = "kubernetes:core/v1:Namespace"
TEAM_LABEL = "containercloud/team"
PSA_MODES = ("enforce", "audit", "warn")
PSA_LEVELS = ("baseline", "restricted")


def namespace_problems(resource_type: str, props: Any) -> list[str]:
    labels = get(props, "metadata", "labels", default={})
    if resource_type != NAMESPACE or not isinstance(get(labels, TEAM_LABEL), str):
        return []
    problems = []
    if get(labels, "pod-security.kubernetes.io/enforce") is None:
        problems.append("team namespace has no pod-security.kubernetes.io/enforce label; Pod Security admission "
                        "then admits privileged pods (CIS 5.2.2-5.2.12): enforce baseline or restricted")
    for mode in PSA_MODES:
        level = get(labels, f"pod-security.kubernetes.io/{mode}")
        if level is not None and level not in PSA_LEVELS:
            problems.append(f"team namespace labels pod-security.kubernetes.io/{mode}={level}; team workloads run "
                            "at baseline or restricted (CIS 5.2.2-5.2.12)")
    return problems


def validate_team_pod_security(args: Any, report: Report) -> None:
    """Team namespaces enforce Pod Security baseline or restricted; no mode relaxed to privileged (CIS 5.2)."""
    for problem in namespace_problems(args.resource_type, args.props):
        report(f"{args.name}: {problem}")


# --- credentials in ConfigMaps ------------------------------------------------------------------------------

CONFIG_MAP = "kubernetes:core/v1:ConfigMap"


def configmap_problems(resource_type: str, props: Any) -> list[str]:
    if resource_type != CONFIG_MAP:
        return []
    data = get(props, "data", default={})
    problems = []
    for key in list(data) if hasattr(data, "keys") else []:
        value = get(data, key)
        what = holds_credentials(value) if isinstance(value, str) else None
        if what:
            problems.append(f"data.{key} holds {what}; ConfigMaps are readable by anyone who can read the namespace "
                            "and are not encrypted at rest: use a Secret (CIS 5.4.1)")
    return problems


def validate_configmap_credentials(args: Any, report: Report) -> None:
    """No private key or credential-bearing kubeconfig in a ConfigMap (use a Secret; CIS 5.4.1)."""
    for problem in configmap_problems(args.resource_type, args.props):
        report(f"{args.name}: {problem}")
