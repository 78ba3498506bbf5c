"""ClusterAddons: flannel (VXLAN) and CoreDNS applied with pulumi-kubernetes once the API answers,
their images pulled from the registry (Harbor project `system`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components import artifacts
from components.cluster_hosts import hosts_entries
from components.config import Settings
from components.manifests import apply_manifest
from components.templating import render


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
                  cluster_domain=s.cluster_domain, replicas=replicas, hosts=hosts_entries(s))
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
        flannel = apply_manifest(flannel_manifest(s), _resource_name, self, args.provider, [])
        namespaces = [r for r in flannel if isinstance(r, k8s.core.v1.Namespace)]
        self.resources += flannel
        self.resources += apply_manifest(coredns_manifest(s), _resource_name, self, args.provider, [])
        self.namespaces = namespaces
        self.register_outputs({"resources": len(self.resources)})
