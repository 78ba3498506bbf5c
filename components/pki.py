"""ClusterPki: the cluster's three CAs, the service-account key pair and every certificate, with pulumi-tls.

Every certificate is described by a `CertSpec` (plain data from the inventory), so the component's
props carry the whole plan — names, SANs, usages, validity — for the policy pack to check at preview.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_tls as tls

from components.config import Host, Settings

CA_USES = ["cert_signing", "crl_signing"]
SERVER_USES = ["digital_signature", "key_encipherment", "server_auth"]
CLIENT_USES = ["digital_signature", "key_encipherment", "client_auth"]
PEER_USES = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]
USES = {"server": SERVER_USES, "client": CLIENT_USES, "peer": PEER_USES}

CAS = {
    "kubernetes": "kubernetes-ca",
    "etcd": "etcd-ca",
    "front-proxy": "kubernetes-front-proxy-ca",
}


@dataclass(frozen=True)
class KeySpec:
    algorithm: str = "RSA"
    rsa_bits: int = 2048
    ecdsa_curve: str = "P256"


@dataclass(frozen=True)
class CertSpec:
    """One leaf certificate: `kind` is server, client or peer (server + client)."""

    name: str
    ca: str
    common_name: str
    kind: str
    organization: Optional[str] = None
    dns_names: list[str] = field(default_factory=list)
    ip_addresses: list[str] = field(default_factory=list)
    validity_hours: Optional[int] = None

    @property
    def uses(self) -> list[str]:
        return USES[self.kind]


@dataclass(frozen=True)
class Issued:
    """One certificate as the stack output `certificates` lists it (components/certificates.py)."""

    name: str
    ca: str  # the CA that signed it (a CA names itself)
    common_name: str
    early_renewal_hours: int
    not_after: pulumi.Output[str]  # pulumi-tls validity_end_time (RFC 3339)
    ready_for_renewal: pulumi.Output[bool]  # pulumi-tls: inside early_renewal_hours of not_after

    @staticmethod
    def of(name: str, ca: str, common_name: str, early_renewal_hours: int,
           cert: tls.LocallySignedCert | tls.SelfSignedCert) -> Issued:
        return Issued(name, ca, common_name, early_renewal_hours, cert.validity_end_time, cert.ready_for_renewal)


@dataclass
class KeyPair:
    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]  # secret
    issued: Optional[Issued] = None  # None for the service-account key pair (no certificate)


@dataclass(frozen=True)
class ClusterPkiArgs:
    key: KeySpec
    ca_validity_hours: int
    cert_validity_hours: int
    early_renewal_hours: int
    certificates: list[CertSpec]

    @staticmethod
    def from_settings(s: Settings) -> ClusterPkiArgs:
        return ClusterPkiArgs(
            key=KeySpec(s.key_algorithm, s.rsa_bits, s.ecdsa_curve),
            ca_validity_hours=s.ca_validity_hours,
            cert_validity_hours=s.cert_validity_hours,
            early_renewal_hours=s.cert_early_renewal_hours,
            certificates=cluster_certificates(s),
        )


def apiserver_sans(s: Settings) -> tuple[list[str], list[str]]:
    dns = [h.name for h in s.control_plane_hosts]
    dns += ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster",
            f"kubernetes.default.svc.{s.cluster_domain}", "localhost"]
    ips = [h.address for h in s.control_plane_hosts] + [s.kubernetes_service_ip, "127.0.0.1"]
    if s.api_load_balancer_name:
        dns.append(s.api_load_balancer_name)
    if s.api_load_balancer_address:
        ips.append(s.api_load_balancer_address)
    return _unique(dns), _unique(ips)


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def cluster_certificates(s: Settings) -> list[CertSpec]:
    """Every certificate of the Kubernetes PKI table, plus the registry's and Rancher's."""
    dns, ips = apiserver_sans(s)
    specs = [
        CertSpec("kube-apiserver", "kubernetes", "kube-apiserver", "server", dns_names=dns, ip_addresses=ips),
        CertSpec("apiserver-kubelet-client", "kubernetes", "kube-apiserver-kubelet-client", "client",
                 organization="system:masters"),
        CertSpec("apiserver-etcd-client", "etcd", "kube-apiserver-etcd-client", "client"),
        CertSpec("etcd-healthcheck-client", "etcd", "kube-etcd-healthcheck-client", "client"),
        CertSpec("front-proxy-client", "front-proxy", "front-proxy-client", "client"),
        CertSpec("kube-controller-manager", "kubernetes", "system:kube-controller-manager", "client"),
        CertSpec("kube-scheduler", "kubernetes", "system:kube-scheduler", "client"),
        CertSpec("kube-proxy", "kubernetes", "system:kube-proxy", "client"),
        CertSpec("admin", "kubernetes", "kubernetes-admin", "client", organization="system:masters"),
    ]
    for h in s.etcd_hosts:
        sans = dict(dns_names=[h.name, "localhost"], ip_addresses=[h.address, "127.0.0.1"])
        specs.append(CertSpec(f"etcd-server-{h.name}", "etcd", "kube-etcd", "peer", **sans))  # type: ignore[arg-type]
        specs.append(CertSpec(f"etcd-peer-{h.name}", "etcd", "kube-etcd-peer", "peer", **sans))  # type: ignore[arg-type]
    specs += [kubelet_certificate(h) for h in s.node_hosts]
    specs.append(_registry_cert(s))
    specs.append(_rancher_cert(s))
    return specs


def kubelet_name(host: str) -> str:
    """The spec name of a node's kubelet certificate (its resources: `<name>-key`, `-csr`, `-cert`)."""
    return f"kubelet-{host}"


def kubelet_certificate(h: Host) -> CertSpec:
    """One certificate per node, as kubernetes-the-hard-way issues it: the kubelet's client identity for the
    Node authorizer (CN `system:node:<name>`, O `system:nodes`) in its kubeconfig, and its serving certificate
    (`tlsCertFile`) with the node's name and address as SANs, which the apiserver verifies against
    `--kubelet-certificate-authority` when it connects (InternalIP first). clientAuth + serverAuth."""
    return CertSpec(kubelet_name(h.name), "kubernetes", f"system:node:{h.name}", "peer",
                    organization="system:nodes", dns_names=[h.name], ip_addresses=[h.address])


def _registry_cert(s: Settings) -> CertSpec:
    dns = _unique([s.registry_hostname] + [h.name for h in s.registry_hosts])
    ips = [h.address for h in s.registry_hosts]
    if s.registry_load_balancer_address:
        ips.append(s.registry_load_balancer_address)
    return CertSpec("registry", "kubernetes", s.registry_hostname, "server", dns_names=dns, ip_addresses=ips)


def _rancher_cert(s: Settings) -> CertSpec:
    dns = _unique([s.rancher_hostname] + [h.name for h in s.rancher_hosts])
    ips = [h.address for h in s.rancher_hosts]
    return CertSpec("rancher", "kubernetes", s.rancher_hostname, "server", dns_names=dns, ip_addresses=ips)


def private_key(name: str, spec: KeySpec, parent: pulumi.Resource) -> tls.PrivateKey:
    if spec.algorithm == "ECDSA":
        return tls.PrivateKey(name, algorithm="ECDSA", ecdsa_curve=spec.ecdsa_curve,
                              opts=pulumi.ResourceOptions(parent=parent))
    return tls.PrivateKey(name, algorithm="RSA", rsa_bits=spec.rsa_bits, opts=pulumi.ResourceOptions(parent=parent))


def issue_certificate(spec: CertSpec, ca: KeyPair, key_spec: KeySpec, validity_hours: int,
                      early_renewal_hours: int, parent: pulumi.Resource) -> KeyPair:
    """Key, CSR and CA-signed certificate for `spec`; used by ClusterPki and by TeamAccess."""
    opts = pulumi.ResourceOptions(parent=parent)
    key = private_key(f"{spec.name}-key", key_spec, parent)
    subject = tls.CertRequestSubjectArgs(common_name=spec.common_name, organization=spec.organization)
    csr = tls.CertRequest(
        f"{spec.name}-csr",
        private_key_pem=key.private_key_pem,
        subject=subject,
        dns_names=spec.dns_names or None,
        ip_addresses=spec.ip_addresses or None,
        opts=opts,
    )
    cert = tls.LocallySignedCert(
        f"{spec.name}-cert",
        cert_request_pem=csr.cert_request_pem,
        ca_cert_pem=ca.cert_pem,
        ca_private_key_pem=ca.key_pem,
        allowed_uses=spec.uses,
        validity_period_hours=spec.validity_hours or validity_hours,
        early_renewal_hours=early_renewal_hours,
        set_subject_key_id=True,
        opts=opts,
    )
    return KeyPair(cert.cert_pem, pulumi.Output.secret(key.private_key_pem),
                   Issued.of(spec.name, spec.ca, spec.common_name, early_renewal_hours, cert))


class ClusterPki(pulumi.ComponentResource):
    """Kubernetes CA, etcd CA, front-proxy CA, service-account keys, and the certificates of `args`."""

    cas: dict[str, KeyPair]
    certs: dict[str, KeyPair]
    service_account: KeyPair  # cert_pem holds the public key

    def __init__(self, name: str, args: ClusterPkiArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("containercloud:pki:ClusterPki", name, _props(args), opts)
        self.args = args
        self.cas = {ca: self._ca(ca, cn) for ca, cn in CAS.items()}
        sa = private_key("service-account-key", args.key, self)
        self.service_account = KeyPair(sa.public_key_pem, pulumi.Output.secret(sa.private_key_pem))
        self.certs = {
            spec.name: issue_certificate(spec, self.cas[spec.ca], args.key, args.cert_validity_hours,
                                         args.early_renewal_hours, self)
            for spec in args.certificates
        }
        self.register_outputs({
            "caCertificates": {ca: pair.cert_pem for ca, pair in self.cas.items()},
            "serviceAccountPublicKey": self.service_account.cert_pem,
        })

    def _ca(self, ca: str, common_name: str) -> KeyPair:
        key = private_key(f"{ca}-ca-key", self.args.key, self)
        cert = tls.SelfSignedCert(
            f"{ca}-ca-cert",
            private_key_pem=key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(common_name=common_name),
            is_ca_certificate=True,
            allowed_uses=CA_USES,
            validity_period_hours=self.args.ca_validity_hours,
            early_renewal_hours=self.args.early_renewal_hours,
            set_subject_key_id=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return KeyPair(cert.cert_pem, pulumi.Output.secret(key.private_key_pem),
                       Issued.of(f"{ca}-ca", ca, common_name, self.args.early_renewal_hours, cert))

    def issued(self) -> list[Issued]:
        """The CAs, then every certificate they signed here."""
        pairs = [*self.cas.values(), *self.certs.values()]
        return [p.issued for p in pairs if p.issued is not None]

    def ca_bundle(self, ca: str) -> pulumi.Output[str]:
        return self.cas[ca].cert_pem


def _props(args: ClusterPkiArgs) -> dict[str, Any]:
    """Config-derived, known at preview: what the policy pack reads."""
    return {
        "keyAlgorithm": args.key.algorithm,
        "rsaBits": args.key.rsa_bits,
        "ecdsaCurve": args.key.ecdsa_curve,
        "caValidityHours": args.ca_validity_hours,
        "certValidityHours": args.cert_validity_hours,
        "earlyRenewalHours": args.early_renewal_hours,
        "certificates": [_cert_props(c, args.cert_validity_hours) for c in args.certificates],
    }


def _cert_props(c: CertSpec, default_validity: int) -> dict[str, Any]:
    return {
        "name": c.name,
        "ca": c.ca,
        "commonName": c.common_name,
        "organization": c.organization,
        "kind": c.kind,
        "usages": c.uses,
        "dnsNames": c.dns_names,
        "ipAddresses": c.ip_addresses,
        "validityHours": c.validity_hours or default_validity,
    }
