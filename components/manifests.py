"""Kubernetes manifests (rendered YAML documents) applied as typed pulumi-kubernetes resources.

Each document becomes the resource class of its apiVersion/kind, so the plan shows every object and
the policy pack sees its inputs (RBAC subjects, images, ...). Namespaced objects wait for the
manifest's Namespace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

KINDS: dict[tuple[str, str], Any] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Service"): k8s.core.v1.Service,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): k8s.rbac.v1.ClusterRole,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): k8s.rbac.v1.ClusterRoleBinding,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("apps/v1", "DaemonSet"): k8s.apps.v1.DaemonSet,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("networking.k8s.io/v1", "IngressClass"): k8s.networking.v1.IngressClass,
}
FIELDS = {"metadata": "metadata", "spec": "spec", "data": "data", "rules": "rules", "roleRef": "role_ref",
          "subjects": "subjects", "automountServiceAccountToken": "automount_service_account_token"}


def apply_manifest(docs: list[dict[str, Any]], name: Callable[[dict[str, Any]], str], parent: pulumi.Resource,
                   provider: k8s.Provider, depends_on: list[pulumi.Resource]) -> list[pulumi.CustomResource]:
    out: list[pulumi.CustomResource] = []
    namespaces: list[pulumi.Resource] = []
    for doc in docs:
        cls = KINDS[(doc["apiVersion"], doc["kind"])]
        kwargs = {FIELDS[k]: v for k, v in doc.items() if k in FIELDS}
        deps = depends_on + (namespaces if doc["metadata"].get("namespace") else [])
        res = cls(name(doc), **kwargs, opts=pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=deps))
        if doc["kind"] == "Namespace":
            namespaces.append(res)
        out.append(res)
    return out
