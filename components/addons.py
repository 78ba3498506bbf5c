"""ClusterAddons: flannel (VXLAN) and CoreDNS applied with pulumi-kubernetes once the API answers,
their images pulled from the registry (Harbor project `system`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components import artifacts
from components.config import Settings
from components.templating import render

KINDS: dict[tuple[str, str], Any] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Service"): k8s.core.v1.Service,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): k8s.rbac.v1.ClusterRole,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): k8s.rbac.v1.ClusterRoleBinding,
    ("apps/v1", "DaemonSet"): k8s.apps.v1.DaemonSet,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
}
FIELDS = {"metadata": "metadata", "spec": "spec", "data": "data", "rules": "rules", "roleRef": "role_ref",
          "subjects": "subjects"}


@dataclass(frozen=True)
class ClusterAddonsArgs:
    settings: Settings
    provider: k8s.Provider


def flannel_manifest(s: Settings) -> list[dict[str, Any]]:
    text = render("addons/flannel.yaml.j2", flannel_image=artifacts.image(s, "flannel"),
                  cni_image=artifacts.image(s, "flannel-cni-plugin"), pod_cidr=s.pod_cidr,
                  vxlan_port=s.flannel_vxlan_port)
    return [d for d in yaml.safe_load_all(text) if d]


def coredns_manifest(s: Settings) -> list[dict[str, Any]]:
    replicas = 2 if len(s.worker_hosts) > 1 else 1
    text = render("addons/coredns.yaml.j2", image=artifacts.image(s, "coredns"), dns_ip=s.cluster_dns_ip,
                  cluster_domain=s.cluster_domain, replicas=replicas)
    return [d for d in yaml.safe_load_all(text) if d]


def _resource_name(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    ns = meta.get("namespace")
    name = meta["name"].replace(":", "-")
    return "-".join(p for p in (doc["kind"].lower(), ns, name) if p)


class ClusterAddons(pulumi.ComponentResource):
    """`containercloud:k8s:ClusterAddons`: flannel and CoreDNS."""

    resources: list[pulumi.CustomResource]

    def __init__(self, name: str, args: ClusterAddonsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        s = args.settings
        super().__init__("containercloud:k8s:ClusterAddons", name, {
            "images": [i.target for i in artifacts.kubernetes_images(s) if i.name != "pause"],
            "flannelVxlanPort": s.flannel_vxlan_port,
            "podCidr": s.pod_cidr,
            "clusterDnsIp": s.cluster_dns_ip,
        }, opts)
        self.resources = []
        flannel = self._apply(flannel_manifest(s), args.provider, [])
        namespaces = [r for r in flannel if isinstance(r, k8s.core.v1.Namespace)]
        self.resources += flannel
        self.resources += self._apply(coredns_manifest(s), args.provider, [])
        self.namespaces = namespaces
        self.register_outputs({"resources": len(self.resources)})

    def _apply(self, docs: list[dict[str, Any]], provider: k8s.Provider,
               depends_on: list[pulumi.Resource]) -> list[pulumi.CustomResource]:
        out: list[pulumi.CustomResource] = []
        namespaces: list[pulumi.Resource] = []
        for doc in docs:
            cls = KINDS[(doc["apiVersion"], doc["kind"])]
            kwargs = {FIELDS[k]: v for k, v in doc.items() if k in FIELDS}
            deps = depends_on + (namespaces if doc["metadata"].get("namespace") else [])
            res = cls(_resource_name(doc), **kwargs,
                      opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=deps))
            if doc["kind"] == "Namespace":
                namespaces.append(res)
            out.append(res)
        return out
