"""Headlamp: `containercloud:k8s:Headlamp` — the web view of the cluster (`headlamp`, off by default).

The Kubernetes Dashboard was archived in January 2026; its maintainers point to Headlamp
(kubernetes-sigs/headlamp). Deployed from the image mirrored into Harbor, with the chart's container
(kubernetes-sigs/headlamp v0.45.0 charts/headlamp: args `-in-cluster`, `-in-cluster-context-name`,
`-plugins-dir`, port 4466, user 100:101) but WITHOUT the chart's default ClusterRoleBinding to
cluster-admin: its ServiceAccount has no binding at all. A user opens it through the API server's service
proxy (`/api/v1/namespaces/headlamp/services/http:headlamp:http/proxy/`, which needs their own
`services/proxy` right) or Rancher, and signs in with their own token: what they see is what their RBAC
allows. The Service is ClusterIP: never a NodePort, LoadBalancer or Ingress.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components import artifacts
from components.config import Settings
from components.manifests import apply_manifest
from components.templating import render

NAMESPACE = "headlamp"
PROXY_PATH = f"/api/v1/namespaces/{NAMESPACE}/services/http:headlamp:http/proxy/"


def manifest(s: Settings) -> list[dict[str, Any]]:
    text = render("headlamp/headlamp.yaml.j2", namespace=NAMESPACE, image=artifacts.image(s, "headlamp"),
                  version=artifacts.HEADLAMP_VERSION)
    return [d for d in yaml.safe_load_all(text) if d]


def _resource_name(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    return "-".join(p for p in ("headlamp", doc["kind"].lower(), meta.get("namespace"), meta["name"]) if p)


@dataclass(frozen=True)
class HeadlampArgs:
    settings: Settings
    provider: k8s.Provider


class Headlamp(pulumi.ComponentResource):
    """Headlamp in namespace `headlamp`, reachable only through the API server."""

    url: str

    def __init__(self, name: str, args: HeadlampArgs, opts: Optional[pulumi.ResourceOptions] = None):
        s = args.settings
        super().__init__("containercloud:k8s:Headlamp", name, {
            "namespace": NAMESPACE,
            "image": artifacts.image(s, "headlamp"),
            "serviceType": "ClusterIP",
            "clusterRoleBindings": [],
        }, opts)
        self.url = f"{s.api_endpoint}{PROXY_PATH}"
        self.resources = apply_manifest(manifest(s), _resource_name, self, args.provider, [])
        self.register_outputs({"url": self.url})
