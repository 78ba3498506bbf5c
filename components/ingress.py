"""IngressController: `containercloud:k8s:IngressController` — ingress-nginx for Rancher in helm mode.

The rancher chart only creates an Ingress (`ingress.tls.source=secret`: the certificate from our CA in
`tls-rancher-ingress`); something must serve it. As RKE/RKE2 do, ingress-nginx runs as a DaemonSet with
`hostNetwork: true` on the nodes labelled `node-role.containercloud.io/rancher=true` (set by the worker
register step, components/worker.py `node_labels`): nginx listens on those hosts' 443 (the catalogue's
Rancher flow opens it) and 80 (redirects to https; the host firewall does not open it). The IngressClass
`nginx` is the cluster default. The image comes from Harbor (`<registry>/system/ingress-nginx-controller`,
mirrored from components/artifacts.py `ingress_images`).

No admission webhook (and so no kube-webhook-certgen Jobs): with hostNetwork the webhook's :8443 would be a
port on the node that the host firewall keeps closed to the kube-apiserver, and a webhook with
failurePolicy Fail would then refuse every Ingress. Its main job, rejecting bad configuration snippets,
is moot with `allow-snippet-annotations: "false"`.

Applied with pulumi-kubernetes from a Jinja2-rendered manifest (components/templates/ingress/), one
resource per document, as components/addons.py does for flannel and CoreDNS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components import artifacts
from components.config import Settings
from components.manifests import apply_manifest
from components.templating import render

NAMESPACE = "ingress-nginx"
CLASS_NAME = "nginx"
CONTROLLER_CLASS = "k8s.io/ingress-nginx"
ELECTION_ID = "ingress-nginx-leader"
NODE_LABEL = "node-role.containercloud.io/rancher"  # components/worker.py node_labels
HTTP_PORT = 80
HTTPS_PORT = 443
IMAGE_NAME = "ingress-nginx-controller"

@dataclass(frozen=True)
class IngressControllerArgs:
    settings: Settings
    provider: k8s.Provider
    # what must be done first, applied to every child: the nodes registered and labelled, the CNI and
    # DNS add-ons, the controller image in Harbor
    depends_on: Sequence[pulumi.Resource] = ()


def manifest(s: Settings) -> list[dict[str, Any]]:
    """The ingress-nginx documents, in apply order (Namespace first)."""
    text = render("ingress/ingress-nginx.yaml.j2", version=artifacts.INGRESS_NGINX_VERSION,
                  image=artifacts.image(s, IMAGE_NAME), namespace=NAMESPACE, node_label=NODE_LABEL,
                  class_name=CLASS_NAME, controller_class=CONTROLLER_CLASS, election_id=ELECTION_ID,
                  http_port=HTTP_PORT, https_port=HTTPS_PORT)
    return [d for d in yaml.safe_load_all(text) if d]


def _resource_name(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    return f"ingress-{doc['kind'].lower()}-{meta['name'].replace(':', '-')}"


class IngressController(pulumi.ComponentResource):
    """`containercloud:k8s:IngressController`: ingress-nginx on the Rancher nodes."""

    resources: list[pulumi.CustomResource]

    def __init__(self, name: str, args: IngressControllerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        s = args.settings
        super().__init__("containercloud:k8s:IngressController", name, {
            "implementation": "ingress-nginx",
            "version": artifacts.INGRESS_NGINX_VERSION,
            "image": artifacts.image(s, IMAGE_NAME),
            "ingressClass": CLASS_NAME,
            "defaultClass": True,
            "hostNetwork": True,
            "nodeSelector": {NODE_LABEL: "true"},
            "hosts": [h.name for h in s.rancher_hosts],
            "ports": [HTTP_PORT, HTTPS_PORT],
            "admissionWebhook": False,
        }, opts)
        self.ingress_class = CLASS_NAME
        self.resources = apply_manifest(manifest(s), _resource_name, self, args.provider, list(args.depends_on))
        self.register_outputs({"ingressClass": CLASS_NAME, "resources": len(self.resources)})
