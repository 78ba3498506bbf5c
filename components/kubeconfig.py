"""Kubeconfig documents built from a client certificate: CA embedded, secret as a whole."""

from __future__ import annotations

import base64
from typing import Optional

import pulumi

from components.templating import to_yaml


def _b64(pem: str) -> str:
    return base64.b64encode(pem.encode()).decode()


def render_kubeconfig(cluster: str, server: str, ca_pem: str, user: str, cert_pem: str, key_pem: str,
                      namespace: Optional[str] = None) -> str:
    context: dict[str, str] = {"cluster": cluster, "user": user}
    if namespace:
        context["namespace"] = namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": user, "user": {"client-certificate-data": _b64(cert_pem),
                                          "client-key-data": _b64(key_pem)}}],
        "contexts": [{"name": f"{user}@{cluster}", "context": context}],
        "current-context": f"{user}@{cluster}",
        "preferences": {},
    }
    return to_yaml(doc)


def kubeconfig(cluster: str, server: str, ca_pem: pulumi.Input[str], user: str, cert_pem: pulumi.Input[str],
               key_pem: pulumi.Input[str], namespace: Optional[str] = None) -> pulumi.Output[str]:
    """A kubeconfig as a Pulumi secret (it carries a private key)."""
    doc = pulumi.Output.all(ca_pem, cert_pem, key_pem).apply(
        lambda v: render_kubeconfig(cluster, server, v[0], user, v[1], v[2], namespace)
    )
    return pulumi.Output.secret(doc)
