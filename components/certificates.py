"""The stack output `certificates`: every certificate the program issues, with its expiry, not secret.

One entry per certificate (the three CAs, the cluster's component and node certificates, the teams'
client certificates, Harbor's token-service certificate in ha):

    {"name": "kube-apiserver", "ca": "kubernetes", "commonName": "kube-apiserver",
     "notAfter": "2027-11-24T14:03:36Z", "renewFrom": "2027-10-25T14:03:36Z", "readyForRenewal": false}

`notAfter` is pulumi-tls's `validity_end_time`; `renewFrom` is `notAfter` minus the certificate's
`early_renewal_hours`: the first `pulumi up` at or after that time replaces it (pulumi-tls plans the
replacement). `readyForRenewal` is pulumi-tls's `ready_for_renewal` as the last `up` left it (false right
after an `up`, which renewed whatever was due); compare `renewFrom` with today's date, or run
`python -m offline preview --state`, to know what the next `up` renews (docs/renewal.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pulumi

from components.pki import ClusterPki, Issued
from components.registry import Harbor
from components.team_access import TeamAccess


def utc(rfc3339: str) -> str:
    """An RFC 3339 time (the provider writes Go's RFC3339Nano, possibly with a local offset) as `...Z`."""
    when = dt.datetime.fromisoformat(rfc3339).astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def renew_from(not_after: str, early_renewal_hours: int) -> str:
    when = dt.datetime.fromisoformat(utc(not_after)) - dt.timedelta(hours=early_renewal_hours)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def entry(cert: Issued) -> pulumi.Output[dict[str, Any]]:
    def build(values: list[Any]) -> dict[str, Any]:
        not_after, ready = values
        return {"name": cert.name, "ca": cert.ca, "commonName": cert.common_name, "notAfter": utc(not_after),
                "renewFrom": renew_from(not_after, cert.early_renewal_hours), "readyForRenewal": bool(ready)}

    return pulumi.Output.all(cert.not_after, cert.ready_for_renewal).apply(build)


def issued_certificates(pki: ClusterPki, teams: Sequence[TeamAccess], registry: Harbor) -> list[Issued]:
    team_certs = [t.credentials.issued for t in teams if t.credentials.issued is not None]
    return [*pki.issued(), *team_certs, *registry.certificates]


def certificates_output(pki: ClusterPki, teams: Sequence[TeamAccess], registry: Harbor) -> pulumi.Output[list]:
    """The value of the stack output `certificates` (see the module docstring)."""
    return pulumi.Output.all(*[entry(c) for c in issued_certificates(pki, teams, registry)])
