"""High-fidelity mocks: pulumi-tls returns real keys and X.509 certificates, pulumi-random real strings.

Everything else echoes its inputs (that is what a provider's create returns for most properties).
Keys and certificates are built with `cryptography` from the resource's inputs exactly as the
pulumi-tls provider builds them: subject, SANs, key usages, CA flag, validity, issuer and signature.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import secrets
import string
import threading
from pathlib import Path
from typing import Any, Optional

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def unwrap(value: Any) -> Any:
    """Secret inputs arrive as {sig: secret, value: ...}; return the plain value, recursively."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            return unwrap(value.get("value"))
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


class KeyFactory:
    """Real keys, from a pool shared by every run in this process and cached on disk.

    RSA generation costs 30-70 ms a key, which would dominate runs of generated stacks with hundreds of
    nodes. So each run takes keys from a per-shape pool in order: the first `fresh_limit` keys of a
    shape in a run are distinct; past that a run reuses them round-robin. The pool is generated once
    and kept in `cache_dir` (build/harness-keys, git-ignored; test material, never deployed), so later
    runs and later test sessions load keys instead of generating them.
    """

    def __init__(self, fresh_limit: int = 96, cache_dir: Optional[Path] = None):
        self.fresh_limit = fresh_limit
        self.cache_dir = cache_dir if cache_dir is not None else _DEFAULT_CACHE
        self._used: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def make(self, algorithm: str, rsa_bits: int, curve: str) -> PrivateKey:
        shape = (algorithm, str(rsa_bits) if algorithm == "RSA" else curve)
        with self._lock:
            index = self._used.get(shape, 0)
            self._used[shape] = index + 1
        return _POOL.key(shape, index % self.fresh_limit, self.cache_dir)


class _KeyPool:
    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], list[PrivateKey]] = {}
        self._lock = threading.Lock()

    def key(self, shape: tuple[str, str], index: int, cache_dir: Optional[Path]) -> PrivateKey:
        with self._lock:
            keys = self._keys.get(shape)
            if keys is None:
                keys = self._keys[shape] = _load(shape, cache_dir)
            if index < len(keys):
                return keys[index]
        key = _generate(shape[0], int(shape[1]) if shape[0] == "RSA" else 0, shape[1])
        with self._lock:
            keys.append(key)
            _save(shape, keys, cache_dir)
            return keys[min(index, len(keys) - 1)]


def _cache_file(shape: tuple[str, str], cache_dir: Path) -> Path:
    return cache_dir / f"{shape[0]}-{shape[1]}.pem"


def _load(shape: tuple[str, str], cache_dir: Optional[Path]) -> list[PrivateKey]:
    if cache_dir is None or not _cache_file(shape, cache_dir).exists():
        return []
    text = _cache_file(shape, cache_dir).read_text()
    blocks = [b + "-----END PRIVATE KEY-----\n" for b in text.split("-----END PRIVATE KEY-----\n") if b.strip()]
    return [_load_key(b) for b in blocks]


def _save(shape: tuple[str, str], keys: list[PrivateKey], cache_dir: Optional[Path]) -> None:
    if cache_dir is None:
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = _cache_file(shape, cache_dir).with_suffix(".tmp")
    tmp.write_text("".join(_pem_private(k, serialization.PrivateFormat.PKCS8) for k in keys))
    tmp.chmod(0o600)
    tmp.replace(_cache_file(shape, cache_dir))


_POOL = _KeyPool()
_DEFAULT_CACHE = Path(__file__).resolve().parents[2] / "build" / "harness-keys"


_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P224": ec.SECP224R1, "P256": ec.SECP256R1, "P384": ec.SECP384R1, "P521": ec.SECP521R1,
}


def _generate(algorithm: str, rsa_bits: int, curve: str) -> PrivateKey:
    if algorithm == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if algorithm == "ECDSA":
        return ec.generate_private_key(_CURVES[curve]())  # type: ignore[abstract]
    if algorithm == "ED25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"tls.PrivateKey: unsupported algorithm {algorithm!r}")


def _pem_private(key: PrivateKey, fmt: serialization.PrivateFormat) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def private_key_outputs(key: PrivateKey) -> dict[str, Any]:
    pub = key.public_key()
    pub_pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    openssh = pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    legacy = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if not isinstance(key, ed25519.Ed25519PrivateKey)
        else serialization.PrivateFormat.PKCS8
    )
    return {
        "privateKeyPem": _pem_private(key, legacy),
        "privateKeyPemPkcs8": _pem_private(key, serialization.PrivateFormat.PKCS8),
        "privateKeyOpenssh": _pem_private(key, serialization.PrivateFormat.OpenSSH),
        "publicKeyPem": pub_pem.decode(),
        "publicKeyOpenssh": openssh + "\n",
        "publicKeyFingerprintSha256": "SHA256:" + hashlib.sha256(pub_pem).hexdigest(),
    }


def _name(subject: Optional[dict[str, Any]]) -> x509.Name:
    subject = subject or {}
    attrs = []
    fields = (
        ("country", NameOID.COUNTRY_NAME),
        ("province", NameOID.STATE_OR_PROVINCE_NAME),
        ("locality", NameOID.LOCALITY_NAME),
        ("organization", NameOID.ORGANIZATION_NAME),
        ("organizationalUnit", NameOID.ORGANIZATIONAL_UNIT_NAME),
        ("commonName", NameOID.COMMON_NAME),
    )
    for field, oid in fields:
        value = subject.get(field)
        if value:
            attrs.append(x509.NameAttribute(oid, value))
    # pulumi-tls 5.x also takes lists (organizations, ...), one attribute each
    for field, oid in (("organizations", NameOID.ORGANIZATION_NAME),
                       ("organizationalUnits", NameOID.ORGANIZATIONAL_UNIT_NAME)):
        for value in subject.get(field) or []:
            attrs.append(x509.NameAttribute(oid, value))
    return x509.Name(attrs)


_EKU = {
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
}
_KU_FIELDS = {
    "digital_signature": "digital_signature",
    "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment",
    "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
}


@functools.lru_cache(maxsize=4096)
def _load_key(pem: str) -> PrivateKey:
    # The keys are the harness's own: skip OpenSSL's costly RSA consistency check on every load.
    key = serialization.load_pem_private_key(pem.encode(), password=None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey))
    return key


def _sign_hash(key: PrivateKey) -> Optional[hashes.SHA256]:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _san(dns_names: list[str], ip_addresses: list[str], uris: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    return names


def build_certificate(inputs: dict[str, Any], subject: x509.Name, public_key: Any,
                      issuer_key: PrivateKey, issuer_cert: Optional[x509.Certificate],
                      sans: list[x509.GeneralName], now: dt.datetime) -> dict[str, Any]:
    uses = list(inputs.get("allowedUses") or [])
    is_ca = bool(inputs.get("isCaCertificate"))
    hours = int(inputs.get("validityPeriodHours") or 0)
    not_after = now + dt.timedelta(hours=hours)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    ku = {field: False for field in _KU_FIELDS.values()}
    for use in uses:
        if use in _KU_FIELDS:
            ku[_KU_FIELDS[use]] = True
    if any(ku.values()):
        builder = builder.add_extension(
            x509.KeyUsage(encipher_only=False, decipher_only=False, **ku), critical=True
        )
    ekus = [_EKU[u] for u in uses if u in _EKU]
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    cert = builder.sign(issuer_key, _sign_hash(issuer_key))  # type: ignore[arg-type]
    early = int(inputs.get("earlyRenewalHours") or 0)
    return {
        "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "validityStartTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "validityEndTime": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "readyForRenewal": now >= not_after - dt.timedelta(hours=early),
    }


def self_signed_cert(inputs: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    key = _load_key(inputs["privateKeyPem"])
    sans = _san(inputs.get("dnsNames") or [], inputs.get("ipAddresses") or [], inputs.get("uris") or [])
    out = build_certificate(inputs, _name(inputs.get("subject")), key.public_key(), key, None, sans, now)
    return {**inputs, **out, "keyAlgorithm": _algorithm(key)}


def cert_request(inputs: dict[str, Any]) -> dict[str, Any]:
    key = _load_key(inputs["privateKeyPem"])
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(inputs.get("subject")))
    sans = _san(inputs.get("dnsNames") or [], inputs.get("ipAddresses") or [], inputs.get("uris") or [])
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, _sign_hash(key))  # type: ignore[arg-type]
    return {**inputs, "certRequestPem": csr.public_bytes(serialization.Encoding.PEM).decode(),
            "keyAlgorithm": _algorithm(key)}


def locally_signed_cert(inputs: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    csr = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
    ca_cert = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
    ca_key = _load_key(inputs["caPrivateKeyPem"])
    try:
        sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = []
    out = build_certificate(inputs, csr.subject, csr.public_key(), ca_key, ca_cert, sans, now)
    return {**inputs, **out, "caKeyAlgorithm": _algorithm(ca_key)}


def _algorithm(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ECDSA"
    return "ED25519"


def random_password(inputs: dict[str, Any]) -> dict[str, Any]:
    length = int(inputs.get("length") or 16)
    alphabet = ""
    if inputs.get("upper", True):
        alphabet += string.ascii_uppercase
    if inputs.get("lower", True):
        alphabet += string.ascii_lowercase
    if inputs.get("numeric", True):
        alphabet += string.digits
    if inputs.get("special", True):
        alphabet += inputs.get("overrideSpecial") or "!@#$%&*()-_=+[]{}<>:?"
    result = "".join(secrets.choice(alphabet) for _ in range(length))
    return {**inputs, "result": result}


class HighFidelityMocks(pulumi.runtime.Mocks):
    """Real pulumi-tls and pulumi-random outputs; every other resource echoes its inputs."""

    def __init__(self, keys: Optional[KeyFactory] = None):
        self.keys = keys or KeyFactory()
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[Optional[str], dict]:
        inputs = unwrap(args.inputs)
        rid = f"{args.name}-id"
        typ = args.typ
        if typ == "tls:index/privateKey:PrivateKey":
            algorithm = inputs.get("algorithm", "RSA")
            key = self.keys.make(algorithm, int(inputs.get("rsaBits") or 2048), inputs.get("ecdsaCurve") or "P224")
            return rid, {**inputs, **private_key_outputs(key)}
        if typ == "tls:index/selfSignedCert:SelfSignedCert":
            return rid, self_signed_cert(inputs, self.now)
        if typ == "tls:index/certRequest:CertRequest":
            return rid, cert_request(inputs)
        if typ == "tls:index/locallySignedCert:LocallySignedCert":
            return rid, locally_signed_cert(inputs, self.now)
        if typ in ("random:index/randomPassword:RandomPassword", "random:index/randomString:RandomString"):
            return rid, random_password(inputs)
        if typ == "random:index/randomBytes:RandomBytes":
            raw = secrets.token_bytes(int(inputs.get("length") or 32))
            import base64
            return rid, {**inputs, "base64": base64.b64encode(raw).decode(), "hex": raw.hex()}
        if typ.startswith("command:remote:Command"):
            return rid, {**inputs, "stdout": "", "stderr": ""}
        return (rid if args.custom else None), inputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, Optional[list[tuple[str, str]]]]:
        return {}, None
