"""Issue 17 rules: team robot accounts pull only from their own project, directory logins only over TLS,
Headlamp never exposed outside the API server.

- `robot-pull-only` reads what reaches the registry host: the robot request body in a HostStep's script
  (`POST "$api/robots" -d '<json>'`), so a hand-edited template is judged, not the component's claims.
- `directory-tls` reads the DirectoryAuth component's inputs (the request bodies with the passwords
  redacted; the bodies themselves reach the hosts as secrets): ldaps, certificate verification, Rancher tls.
- `headlamp-not-exposed` reads the Kubernetes objects applied: a Service selecting Headlamp is ClusterIP,
  no Ingress routes to it, and no ClusterRoleBinding grants its ServiceAccount anything cluster-wide.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .common import HOST_STEP, get, items

Report = Callable[..., None]

DIRECTORY_AUTH = "containercloud:auth:DirectoryAuth"
SERVICE = "kubernetes:core/v1:Service"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
CLUSTER_ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
HEADLAMP_NAMESPACE = "headlamp"
HEADLAMP_LABEL = ("app.kubernetes.io/name", "headlamp")
_ROBOT_CALL = re.compile(r"""-X POST "\$api/robots" -d '([^']*)'""")


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
    for access in items(get(perm, "access")):
        if (get(access, "resource"), get(access, "action")) != ("repository", "pull"):
            problems.append(f"robot {name}: {get(access, 'resource')}:{get(access, 'action')} on project "
                            f"{get(perm, 'namespace')} (pull from repositories only)")
    return problems


def robot_bodies(script: str) -> list[dict[str, Any]]:
    out = []
    for raw in _ROBOT_CALL.findall(script or ""):
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError:
            out.append({"name": "?", "level": "unparseable request body"})
    return out


def validate_robot_pull_only(args: Any, report: Report) -> None:
    """A robot account created on a registry host pulls from one project's repositories and does nothing else."""
    if args.resource_type != HOST_STEP:
        return
    for body in robot_bodies(get(args.props, "script") or ""):
        for problem in robot_problems(body):
            report(f"{args.name}: {problem}")


# --- directory over TLS -----------------------------------------------------------------------------------

def directory_problems(props: Any) -> list[str]:
    problems = []
    url = get(props, "url") or ""
    if not str(url).startswith("ldaps://"):
        problems.append(f"directory {url}: not ldaps:// (LDAP without TLS)")
    harbor = get(props, "harbor") or {}
    if not str(get(harbor, "ldap_url") or "").startswith("ldaps://"):
        problems.append(f"Harbor ldap_url {get(harbor, 'ldap_url')!r} is not ldaps://")
    if get(harbor, "ldap_verify_cert") is not True:
        problems.append("Harbor ldap_verify_cert is not true")
    rancher = get(props, "rancher") or {}
    for key in ("ldapConfig", "activeDirectoryConfig"):
        config = get(rancher, key)
        if config is not None and (get(config, "tls") is not True or get(config, "starttls") is True):
            problems.append(f"Rancher {key}: tls must be true (ldaps), not plain LDAP or StartTLS")
    return problems


def validate_directory_tls(args: Any, report: Report) -> None:
    """Harbor and Rancher reach the directory over ldaps, verifying its certificate."""
    if args.resource_type != DIRECTORY_AUTH:
        return
    for problem in directory_problems(args.props):
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
