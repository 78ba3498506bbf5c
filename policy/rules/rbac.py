"""Rule 10: no role bound to system:anonymous or system:unauthenticated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
