"""ClusterPki: real certificates from the harness, checked with openssl and cryptography."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from offline.engine import ProgramRun, run_program

CA_NAMES = {"kubernetes": "kubernetes-ca", "etcd": "etcd-ca", "front-proxy": "kubernetes-front-proxy-ca"}


@pytest.fixture(scope="module", params=["dev", "ha"])
def run(request: pytest.FixtureRequest) -> ProgramRun:
    result = run_program(request.param)
    assert result.error is None, result.error
    return result


def _pki_props(run: ProgramRun) -> dict[str, Any]:
    (component,) = run.of_type("containercloud:pki:ClusterPki")
    return component.plain_inputs


def _certs(run: ProgramRun) -> dict[str, str]:
    """The ClusterPki's leaf certificates by spec name (teams issue their own elsewhere)."""
    return {r.name[: -len("-cert")]: _out(r, "certPem")
            for r in run.of_type("tls:index/locallySignedCert:LocallySignedCert") if r.parent.endswith("::pki")}


def _out(reg: Any, key: str) -> str:
    from offline.engine.mocks import unwrap

    return unwrap(reg.outputs[key])


def _cas(run: ProgramRun) -> dict[str, str]:
    return {r.name[: -len("-ca-cert")]: _out(r, "certPem")
            for r in run.of_type("tls:index/selfSignedCert:SelfSignedCert")}


def _openssl_verify(tmp: Path, ca_pem: str, cert_pem: str, purpose: str | None = None) -> subprocess.CompletedProcess:
    ca, cert = tmp / "ca.pem", tmp / "cert.pem"
    ca.write_text(ca_pem)
    cert.write_text(cert_pem)
    cmd = ["openssl", "verify", "-x509_strict", "-CAfile", str(ca)]
    if purpose:
        cmd += ["-purpose", purpose]
    return subprocess.run([*cmd, str(cert)], capture_output=True, text=True, timeout=30)


def test_three_distinct_cas(run: ProgramRun) -> None:
    cas = _cas(run)
    assert set(cas) == set(CA_NAMES)
    loaded = {name: x509.load_pem_x509_certificate(pem.encode()) for name, pem in cas.items()}
    assert len({c.public_key().public_bytes(*_spki()) for c in loaded.values()}) == 3
    for name, cert in loaded.items():
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CA_NAMES[name]
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.key_cert_sign and usage.crl_sign and not usage.key_encipherment


def _spki() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


def test_every_certificate_verifies_against_its_own_ca_only(run: ProgramRun, tmp_path: Path) -> None:
    cas, certs = _cas(run), _certs(run)
    specs = {c["name"]: c for c in _pki_props(run)["certificates"]}
    assert set(certs) == set(specs)
    for name, pem in certs.items():
        spec = specs[name]
        purpose = "sslclient" if spec["kind"] == "client" else "sslserver"
        ok = _openssl_verify(tmp_path, cas[spec["ca"]], pem, purpose)
        assert ok.returncode == 0, f"{name}: {ok.stdout} {ok.stderr}"
        for other in set(cas) - {spec["ca"]}:
            bad = _openssl_verify(tmp_path, cas[other], pem)
            assert bad.returncode != 0, f"{name} verified against the {other} CA"


def _subject(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def test_subjects_usages_and_sans(run: ProgramRun) -> None:
    certs = _certs(run)
    for spec in _pki_props(run)["certificates"]:
        cert = x509.load_pem_x509_certificate(certs[spec["name"]].encode())
        assert _subject(cert, NameOID.COMMON_NAME) == [spec["commonName"]]
        assert _subject(cert, NameOID.ORGANIZATION_NAME) == ([spec["organization"]] if spec["organization"] else [])
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
        ekus = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        expected = {"server": {ExtendedKeyUsageOID.SERVER_AUTH}, "client": {ExtendedKeyUsageOID.CLIENT_AUTH},
                    "peer": {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}}[spec["kind"]]
        assert ekus == expected, spec["name"]
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        if spec["dnsNames"] or spec["ipAddresses"]:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(spec["dnsNames"])
            assert sorted(str(a) for a in san.get_values_for_type(x509.IPAddress)) == sorted(spec["ipAddresses"])


def _sans(run: ProgramRun, name: str) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(_certs(run)[name].encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {str(a) for a in san.get_values_for_type(x509.IPAddress)}


def test_apiserver_sans_come_from_the_inventory(run: ProgramRun) -> None:
    dns, ips = _sans(run, "kube-apiserver")
    stack = run.stack
    assert {"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster",
            "kubernetes.default.svc.cluster.local"} <= dns
    assert str(ipaddress.ip_network("10.96.0.0/12")[1]) in ips
    if stack == "dev":
        assert "master-1" in dns and "198.51.100.11" in ips
    else:
        assert {"cp-1", "cp-2", "cp-3", "api.k8s.corp.example"} <= dns
        assert {"198.51.100.11", "198.51.100.12", "198.51.100.13", "198.51.100.100"} <= ips


def test_one_kubelet_certificate_per_node_is_its_client_and_serving_identity(run: ProgramRun, tmp_path: Path) -> None:
    """kubernetes-the-hard-way's node certificate: CN system:node:<name>, O system:nodes (the Node authorizer),
    clientAuth + serverAuth, SANs the node's name and address (the apiserver dials InternalIP and verifies
    the serving certificate against --kubelet-certificate-authority)."""
    from components.config import parse_settings

    s = parse_settings({k.split(":", 1)[1]: v for k, v in run.config.items()})
    certs, ca = _certs(run), _cas(run)["kubernetes"]
    assert not [n for n in certs if n.startswith(("kubelet-client-", "kubelet-server-"))]
    assert sorted(n for n in certs if n.startswith("kubelet-")) == sorted(f"kubelet-{h.name}" for h in s.node_hosts)
    for h in s.node_hosts:
        pem = certs[f"kubelet-{h.name}"]
        cert = x509.load_pem_x509_certificate(pem.encode())
        assert _subject(cert, NameOID.COMMON_NAME) == [f"system:node:{h.name}"]
        assert _subject(cert, NameOID.ORGANIZATION_NAME) == ["system:nodes"]
        ekus = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        assert ekus == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert _sans(run, f"kubelet-{h.name}") == ({h.name}, {h.address})
        for purpose in ("sslclient", "sslserver"):
            ok = _openssl_verify(tmp_path, ca, pem, purpose)
            assert ok.returncode == 0, f"{h.name} {purpose}: {ok.stdout} {ok.stderr}"
        host = subprocess.run(["openssl", "x509", "-noout", "-checkhost", h.name, "-checkip", h.address],
                              input=pem.encode(), capture_output=True, timeout=30).stdout.decode()
        assert "does match certificate" in host and "NOT" not in host, host
    # the stack output `certificates` lists one entry per node, with its identity
    listed = {c["name"]: c["commonName"] for c in run.outputs["certificates"] if c["name"].startswith("kubelet-")}
    assert listed == {f"kubelet-{h.name}": f"system:node:{h.name}" for h in s.node_hosts}
    # the three resources of each node's certificate, and nothing else per node in the PKI
    pki = [r for r in run.registrations if r.parent.endswith("::pki") and r.name.startswith("kubelet-")]
    assert len(pki) == 3 * len(s.node_hosts)


def _key(run: ProgramRun, name: str) -> str:
    (reg,) = [r for r in run.of_type("tls:index/privateKey:PrivateKey") if r.name == f"{name}-key"]
    return _out(reg, "privateKeyPem")


def _handshake(tmp: Path, ca: str, server: tuple[str, str], client: tuple[str, str], hostname: str) -> dict[str, Any]:
    """A real TLS 1.2+ handshake over a socket pair: the server requires a client certificate from `ca`, the
    client verifies the server's certificate against `ca` for `hostname` (an IP address checks the IP SANs).
    Returns the client certificate as the server saw it."""
    import socket
    import ssl
    import threading

    def files(tag: str, pair: tuple[str, str]) -> tuple[str, str]:
        (tmp / f"{tag}.crt").write_text(pair[0])
        (tmp / f"{tag}.key").write_text(pair[1])
        return str(tmp / f"{tag}.crt"), str(tmp / f"{tag}.key")

    (tmp / "ca.crt").write_text(ca)
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.load_cert_chain(*files("server", server))
    srv.verify_mode = ssl.CERT_REQUIRED
    srv.load_verify_locations(str(tmp / "ca.crt"))
    cli = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    cli.load_cert_chain(*files("client", client))
    cli.load_verify_locations(str(tmp / "ca.crt"))
    a, b = socket.socketpair()
    seen: dict[str, Any] = {}

    def serve() -> None:
        try:
            with srv.wrap_socket(a, server_side=True) as tls:
                seen.update(tls.getpeercert() or {})
        except ssl.SSLError as exc:  # the client refused the server's certificate: the caller expects that
            seen["error"] = str(exc)

    t = threading.Thread(target=serve)
    t.start()
    try:
        with cli.wrap_socket(b, server_hostname=hostname):
            pass
    finally:
        t.join(timeout=30)
        a.close()
        b.close()
    return seen


def test_the_kubelet_certificate_serves_the_apiserver_and_authenticates_to_it(run: ProgramRun, tmp_path: Path) -> None:
    """What the two connections do with it: the apiserver (apiserver-kubelet-client) dials a kubelet at its
    address and verifies the serving certificate against the Kubernetes CA (--kubelet-certificate-authority);
    the kubelet presents the same certificate to the apiserver, which sees system:node:<name> in system:nodes."""
    import ssl

    from components.config import parse_settings

    s = parse_settings({k.split(":", 1)[1]: v for k, v in run.config.items()})
    certs, ca = _certs(run), _cas(run)["kubernetes"]
    apiserver = (certs["kube-apiserver"], _key(run, "kube-apiserver"))
    apiserver_client = (certs["apiserver-kubelet-client"], _key(run, "apiserver-kubelet-client"))
    for h in s.node_hosts[:2]:
        kubelet = (certs[f"kubelet-{h.name}"], _key(run, f"kubelet-{h.name}"))
        for name in (h.address, h.name):  # InternalIP first, then Hostname (--kubelet-preferred-address-types)
            seen = _handshake(tmp_path, ca, kubelet, apiserver_client, name)
            assert ("commonName", "kube-apiserver-kubelet-client") in [a for rdn in seen["subject"] for a in rdn]
        with pytest.raises(ssl.SSLCertVerificationError):  # another node's address is refused
            other = next(o for o in s.node_hosts if o.name != h.name)
            _handshake(tmp_path, ca, kubelet, apiserver_client, other.address)
        seen = _handshake(tmp_path, ca, apiserver, kubelet, s.control_plane_hosts[0].address)
        subject = [a for rdn in seen["subject"] for a in rdn]
        assert ("commonName", f"system:node:{h.name}") in subject and ("organizationName", "system:nodes") in subject


def test_etcd_members(run: ProgramRun) -> None:
    certs = _certs(run)
    members = [n[len("etcd-server-"):] for n in certs if n.startswith("etcd-server-")]
    assert len(members) == (1 if run.stack == "dev" else 3)
    for member in members:
        dns, ips = _sans(run, f"etcd-peer-{member}")
        assert {member, "localhost"} == dns and "127.0.0.1" in ips


def test_private_keys_are_secret(run: ProgramRun) -> None:
    keys = run.of_type("tls:index/privateKey:PrivateKey")
    assert keys
    for key in keys:
        for field in ("privateKeyPem", "privateKeyPemPkcs8", "privateKeyOpenssh"):
            assert key.output_is_secret(field), f"{key.name}.{field} is not secret"
    for cert in run.of_type("tls:index/locallySignedCert:LocallySignedCert"):
        assert cert.input_is_secret("caPrivateKeyPem"), cert.name
    for csr in run.of_type("tls:index/certRequest:CertRequest"):
        assert csr.input_is_secret("privateKeyPem"), csr.name


def test_validity_and_renewal_windows_are_settings(run: ProgramRun) -> None:
    for ca in run.of_type("tls:index/selfSignedCert:SelfSignedCert"):
        assert ca.plain_inputs["validityPeriodHours"] == 87600
        assert ca.plain_inputs["earlyRenewalHours"] == 720
    for cert in run.of_type("tls:index/locallySignedCert:LocallySignedCert"):
        if cert.parent.endswith("::pki"):
            assert cert.plain_inputs["validityPeriodHours"] == 8760
            assert cert.plain_inputs["earlyRenewalHours"] == 720


def test_ecdsa_keys_when_configured() -> None:
    run = run_program("dev", overrides={"keyAlgorithm": "ECDSA", "ecdsaCurve": "P384"})
    assert run.error is None, run.error
    for key in run.of_type("tls:index/privateKey:PrivateKey"):
        assert key.plain_inputs["algorithm"] == "ECDSA" and key.plain_inputs["ecdsaCurve"] == "P384"
