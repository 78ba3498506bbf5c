"""Rule 9: PKI strength, validity, usages and who may be system:masters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .common import CLUSTER_PKI, TEAM_ACCESS, as_int, get, items

Report = Callable[..., None]

PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
LOCALLY_SIGNED = "tls:index/locallySignedCert:LocallySignedCert"
CERT_REQUEST = "tls:index/certRequest:CertRequest"

MIN_RSA_BITS = 2048
CURVES = ("P256", "P384", "P521")
MAX_CA_HOURS = 87600  # 10 years
MAX_LEAF_HOURS = 17520  # 2 years
MASTERS = "system:masters"
MASTERS_CERTS = ("admin", "apiserver-kubelet-client")  # the cluster's own admin and apiserver->kubelet client
NODE_PREFIX = "system:node:"  # a kubelet's identity for the Node authorizer: CN system:node:<name>, O system:nodes
NODES = "system:nodes"


def key_problems(algorithm: Any, rsa_bits: Any, curve: Any) -> list[str]:
    algorithm = algorithm or "RSA"
    if algorithm == "RSA":
        bits = as_int(rsa_bits) if rsa_bits is not None else 2048
        if bits is None or bits < MIN_RSA_BITS:
            return [f"RSA key of {rsa_bits} bits; use {MIN_RSA_BITS} or more"]
    elif algorithm == "ECDSA":
        if (curve or "P224") not in CURVES:
            return [f"ECDSA curve {curve or 'P224 (the provider default)'}; use P256 or stronger"]
    elif algorithm != "ED25519":
        return [f"unknown key algorithm {algorithm!r}"]
    return []


def _organizations(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in items(value) if isinstance(v, str)]


def node_certificate_problems(what: str, common_name: Any, organization: Any, dns_names: Any,
                              ip_addresses: Any) -> list[str]:
    """A kubelet's certificate (CN system:node:<name>) is also its serving certificate: the Node authorizer
    needs O system:nodes, and the apiserver (dialing the node's InternalIP, verifying against
    --kubelet-certificate-authority) needs the node's name and an address among the SANs."""
    if not isinstance(common_name, str) or not common_name.startswith(NODE_PREFIX):
        return []
    node, problems = common_name[len(NODE_PREFIX):], []
    if _organizations(organization) != [NODES]:
        problems.append(f"{what} for {common_name} has O={_organizations(organization)}; the Node authorizer "
                        f"needs O={NODES}")
    if node not in items(dns_names):
        problems.append(f"{what} for {common_name} lacks the SAN DNS:{node}")
    if not [a for a in items(ip_addresses) if isinstance(a, str)]:
        problems.append(f"{what} for {common_name} has no IP SAN; the apiserver reaches kubelets by InternalIP")
    return problems


def _cluster_pki_problems(props: Any) -> list[str]:
    problems = key_problems(get(props, "keyAlgorithm"), get(props, "rsaBits"), get(props, "ecdsaCurve"))
    ca_hours = as_int(get(props, "caValidityHours"))
    if ca_hours is not None and ca_hours > MAX_CA_HOURS:
        problems.append(f"caValidityHours {ca_hours} exceeds 10 years ({MAX_CA_HOURS})")
    for cert in items(get(props, "certificates")):
        name, kind = get(cert, "name"), get(cert, "kind")
        usages = [u for u in items(get(cert, "usages")) if isinstance(u, str)]
        if kind in ("server", "peer") and "server_auth" not in usages:
            problems.append(f"certificate {name} ({kind}) lacks serverAuth")
        if kind in ("client", "peer") and "client_auth" not in usages:
            problems.append(f"certificate {name} ({kind}) lacks clientAuth")
        if MASTERS in _organizations(get(cert, "organization")) and name not in MASTERS_CERTS:
            problems.append(f"certificate {name} has O={MASTERS}; only {', '.join(MASTERS_CERTS)} may")
        common_name = get(cert, "commonName")
        problems += node_certificate_problems(f"certificate {name}", common_name, get(cert, "organization"),
                                              get(cert, "dnsNames"), get(cert, "ipAddresses"))
        if str(common_name).startswith(NODE_PREFIX) and not {"server_auth", "client_auth"} <= set(usages):
            problems.append(f"certificate {name} is a kubelet's client and serving certificate: it needs "
                            "client_auth and server_auth")
    return problems


def pki_problems(resource_type: str, name: str, props: Any) -> list[str]:
    if resource_type == PRIVATE_KEY:
        return key_problems(get(props, "algorithm"), get(props, "rsaBits"), get(props, "ecdsaCurve"))
    if resource_type == SELF_SIGNED and get(props, "isCaCertificate") is True:
        hours = as_int(get(props, "validityPeriodHours"))
        if hours is None or hours > MAX_CA_HOURS:
            return [f"CA validity {hours} hours exceeds 10 years ({MAX_CA_HOURS})"]
    if resource_type == CERT_REQUEST:
        orgs = _organizations(get(props, "subject", "organization"))
        allowed = {f"{c}-csr" for c in MASTERS_CERTS}
        masters = [f"certificate request with O={MASTERS}; only {', '.join(sorted(allowed))} may ask for it"]
        node = node_certificate_problems("certificate request", get(props, "subject", "commonName"),
                                         get(props, "subject", "organization"), get(props, "dnsNames"),
                                         get(props, "ipAddresses"))
        return (masters if MASTERS in orgs and name not in allowed else []) + node
    if resource_type == CLUSTER_PKI:
        return _cluster_pki_problems(props)
    if resource_type == TEAM_ACCESS and MASTERS in _organizations(get(props, "organization")):
        return [f"team certificate with O={MASTERS} would bypass RBAC"]
    return []


def validate_pki(args: Any, report: Report) -> None:
    """RSA >= 2048 or ECDSA >= P-256, CA validity <= 10 years, serverAuth on server certs, no stray system:masters,
    a kubelet's certificate (CN system:node:<name>) in system:nodes with its node's name and address as SANs."""
    for problem in pki_problems(args.resource_type, args.name, args.props):
        report(f"{args.name}: {problem}")


def validate_leaf_validity(args: Any, report: Report) -> None:
    """Leaf certificates live at most 2 years (advisory)."""
    if args.resource_type != LOCALLY_SIGNED:
        return
    hours = as_int(get(args.props, "validityPeriodHours"))
    if hours is not None and hours > MAX_LEAF_HOURS:
        report(f"{args.name}: leaf validity {hours} hours exceeds 2 years ({MAX_LEAF_HOURS})")


def validate_no_issued_ca(args: Any, report: Report) -> None:
    """An issued (locally signed) certificate is never a CA: a team or node certificate able to sign would mint
    system:masters certificates. Only the self-signed root CAs sign."""
    if args.resource_type != LOCALLY_SIGNED:
        return
    uses = [u for u in items(get(args.props, "allowedUses")) if isinstance(u, str)]
    if get(args.props, "isCaCertificate") is True:
        report(f"{args.name}: isCaCertificate is true; an issued certificate must not be a CA")
    if "cert_signing" in uses:
        report(f"{args.name}: allowedUses has cert_signing; an issued certificate must not sign certificates")
