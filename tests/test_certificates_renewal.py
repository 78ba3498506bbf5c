"""Certificate renewal (issue 15): the stack output `certificates`, the "Certificates" section of the offline
preview and its `--state FILE` (a `pulumi stack export`), on real X.509 certificates; and what a renewal at
`up` re-issues and restarts, in which order."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components.certificates import renew_from, utc
from offline.certificates import CERT_TYPES, due_for_renewal, from_outputs, from_run, section
from offline.engine import ProgramRun, run_program
from offline.engine.mocks import SECRET_SIG, SECRET_VALUE, HighFidelityMocks, build_certificate
from offline.engine.runner import ROOT
from tests.k8s_support import COMMAND, command_graph, files_by_host, reaches, short

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
YEAR, WINDOW = 8760, 720  # the defaults: certValidityHours, certEarlyRenewalHours


def certificate(common_name: str, issued: dt.datetime, hours: int = YEAR, early: int = WINDOW) -> dict[str, Any]:
    """pulumi-tls SelfSignedCert outputs for a real certificate issued at `issued` (the offline engine's
    builder, as `pulumi up` would have made it then)."""
    key = ec.generate_private_key(ec.SECP256R1())
    inputs = {"validityPeriodHours": hours, "earlyRenewalHours": early, "allowedUses": ["server_auth"]}
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return {**inputs, **build_certificate(inputs, subject, key.public_key(), key, None, [], issued)}


def test_due_for_renewal_on_real_certificates() -> None:
    inside = from_outputs("inside", certificate("kube-apiserver", NOW - dt.timedelta(hours=YEAR - 660)))
    outside = from_outputs("outside", certificate("kube-scheduler", NOW - dt.timedelta(hours=YEAR - 760)))
    expired = from_outputs("expired", certificate("kube-proxy", NOW - dt.timedelta(hours=YEAR + 24)))
    # the dates come from the certificates themselves
    assert inside.common_name == "kube-apiserver"
    assert inside.not_after == NOW + dt.timedelta(hours=660)
    assert outside.renew_from == NOW + dt.timedelta(hours=760 - WINDOW)
    assert due_for_renewal([outside, inside, expired], NOW) == [expired, inside]
    # pulumi-tls renews from the first instant of the window (`time to early renewal <= 0`)
    assert due_for_renewal([outside], outside.renew_from) == [outside]
    assert due_for_renewal([outside], outside.renew_from - dt.timedelta(seconds=1)) == []
    lines = list(section([outside, inside, expired], NOW, "test"))
    assert lines[-2] == ("    expired: EXPIRED 2026-11-23 12:00 UTC, in its window since 2026-10-24 12:00 UTC; "
                         "an `up` renews it")
    assert lines[-1].startswith("    inside: expires 2026-12-22 00:00 UTC, in its window since 2026-11-22 00:00 UTC")
    assert "at 2026-11-24 12:00 UTC: 2" in lines[-3]


def test_not_after_as_the_real_provider_writes_it() -> None:
    """terraform-provider-tls stores NotAfter with Go's time.MarshalText (RFC 3339 with nanoseconds and the
    machine's offset); the stack output gives it in UTC, and renewFrom the hours before."""
    assert utc("2027-11-24T15:03:36.123456789+01:00") == "2027-11-24T14:03:36Z"
    assert renew_from("2027-11-24T14:03:36Z", WINDOW) == "2027-10-25T14:03:36Z"


def _short(name: str) -> str:
    return name.removesuffix("-cert")


@pytest.mark.parametrize("stack", ["dev", "ha"])
def test_stack_output_lists_every_certificate(stack: str, request: pytest.FixtureRequest) -> None:
    run: ProgramRun = request.getfixturevalue(stack)
    assert "certificates" not in run.secret_outputs
    listed = {c["name"]: c for c in run.outputs["certificates"]}
    issued = {_short(r.name): r for r in run.registrations if r.type in CERT_TYPES}
    assert set(listed) == set(issued) and len(listed) == len(run.outputs["certificates"])
    assert {"kubernetes-ca", "etcd-ca", "front-proxy-ca", "kube-apiserver", "team-payments"} <= set(listed)
    if stack == "ha":
        assert "registry-token" in listed  # Harbor's token-service certificate, issued by the Harbor component
    for name, entry in listed.items():
        cert = x509.load_pem_x509_certificate(issued[name].outputs["certPem"].encode())
        assert entry["commonName"] == cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        not_after = dt.datetime.fromisoformat(entry["notAfter"])
        assert not_after == cert.not_valid_after_utc
        assert dt.datetime.fromisoformat(entry["renewFrom"]) == not_after - dt.timedelta(hours=WINDOW)
        assert entry["readyForRenewal"] is False
        assert entry["ca"] in ("kubernetes", "etcd", "front-proxy")


def test_offline_section_says_none_is_due(dev: ProgramRun) -> None:
    certs = from_run(dev)
    assert len(certs) == len(dev.outputs["certificates"])
    lines = list(section(certs, dt.datetime.now(dt.UTC), "this offline run"))
    assert lines[-1].endswith(": none")
    assert any(line.split()[:2] == ["kube-apiserver", "kube-apiserver"] for line in lines)


# --- --state: a hand-made `pulumi stack export` ------------------------------------------------------------

def _secret(ciphertext: str) -> dict[str, str]:
    """A secret as `pulumi stack export` writes it without --show-secrets."""
    return {SECRET_SIG: SECRET_VALUE, "ciphertext": ciphertext}


def _resource(typ: str, name: str, outputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    parent = "urn:pulumi:prod::container-cloud::containercloud:pki:ClusterPki::pki"
    return {"urn": f"urn:pulumi:prod::container-cloud::containercloud:pki:ClusterPki${typ}::{name}",
            "custom": True, "id": "1", "type": typ, "inputs": {}, "outputs": outputs, "parent": parent, **extra}


def export(now: dt.datetime) -> dict[str, Any]:
    """The shape of `pulumi stack export` (deployment version 3: deployment.manifest, .secrets_providers,
    .resources[] with urn, custom, id, type, inputs, outputs, parent; secrets as ciphertext objects)."""
    local, self_signed = CERT_TYPES
    apiserver = certificate("kube-apiserver", now - dt.timedelta(hours=YEAR - 100))  # 100 h left: due
    apiserver["caPrivateKeyPem"] = _secret("AAAA")
    ca = certificate("kubernetes-ca", now - dt.timedelta(hours=24), hours=87600)  # fresh: not due
    team = {"earlyRenewalHours": WINDOW, "certPem": _secret("BBBB"),  # unreadable: validityEndTime is used
            "validityEndTime": (now + dt.timedelta(hours=200)).astimezone(dt.timezone(dt.timedelta(hours=1)))
            .isoformat(timespec="microseconds")}
    replaced = certificate("kube-apiserver", now - dt.timedelta(hours=YEAR + 1))  # old side of a replacement
    return {"version": 3, "deployment": {
        "manifest": {"time": "2026-11-20T09:00:00.000000001Z", "magic": "0" * 64, "version": "v3.272.0"},
        "secrets_providers": {"type": "passphrase", "state": {"salt": "v1:AAAA"}},
        "resources": [
            {"urn": "urn:pulumi:prod::container-cloud::pulumi:pulumi:Stack::container-cloud-prod",
             "custom": False, "type": "pulumi:pulumi:Stack", "outputs": {}},
            _resource(self_signed, "kubernetes-ca-cert", ca),
            _resource(local, "kube-apiserver-cert", apiserver),
            _resource(local, "team-payments-cert", team),
            _resource(local, "kube-apiserver-cert", replaced, delete=True),
            _resource("tls:index/privateKey:PrivateKey", "kube-apiserver-key", {"privateKeyPem": _secret("CCCC")}),
        ]}}


def preview(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "offline", "preview", "--stack", "dev", "--out", str(tmp / "out"),
                           "--no-tree", "--no-policy", *args],
                          cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)


def test_state_lists_the_deployed_certificates_due_for_renewal(tmp_path: Path) -> None:
    state = tmp_path / "prod.json"
    state.write_text(json.dumps(export(dt.datetime.now(dt.UTC)), indent=4))
    done = preview(tmp_path, "--state", str(state))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = done.stdout[done.stdout.index("\nCertificates: "):]
    assert text.startswith(f"\nCertificates: 3, from {state} (`pulumi stack export`)"), text
    assert "written 2026-11-20T09:00:00.000000001Z" in text
    due = text[text.index("  Expiring within their renewal window"):].splitlines()
    assert due[0].endswith(": 2"), due
    # soonest expiry first: the apiserver's 100 h left, then the team's 200 h
    assert due[1].startswith("    kube-apiserver: expires ") and due[2].startswith("    team-payments: expires ")
    assert "kubernetes-ca" not in "\n".join(due)
    listing = text[:text.index("  Expiring")]
    assert "    team-payments                      ?" in listing  # common name unknown: certPem was encrypted


def test_state_that_is_not_an_export_is_refused_before_the_program_runs(tmp_path: Path) -> None:
    bad = tmp_path / "outputs.json"
    bad.write_text(json.dumps({"apiEndpoint": "https://x:6443"}))  # `pulumi stack output --json`, not an export
    done = preview(tmp_path, "--state", str(bad))
    assert done.returncode == 2
    assert "no deployment.resources; expected the JSON `pulumi stack export` writes" in done.stderr
    assert not (tmp_path / "out").exists()
    done = preview(tmp_path, "--state", str(tmp_path / "missing.json"))
    assert done.returncode == 2 and "No such file" in done.stderr


# --- renewal at `up`: what is in its window is re-issued and restarts in the rolling order -----------------

class RenewingState(pulumi.runtime.Mocks):
    """The engine's state across two `up`s: a resource whose inputs are unchanged keeps its outputs (same keys,
    same certificates), except a certificate inside its early-renewal window at the mocks' clock, which
    pulumi-tls replaces (offline.certificates.due_for_renewal's rule)."""

    def __init__(self) -> None:
        self.inner = HighFidelityMocks()
        self.kept: dict[tuple[str, str], tuple[str, Any, dict[str, Any]]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[Any, dict[str, Any]]:
        key, inputs = (args.typ, args.name), json.dumps(args.inputs, sort_keys=True, default=str)
        kept = self.kept.get(key)
        if kept is not None and kept[0] == inputs and not self._due(args.typ, kept[2]):
            return kept[1], dict(kept[2])
        rid, state = self.inner.new_resource(args)
        self.kept[key] = (inputs, rid, dict(state))
        return rid, state

    def _due(self, typ: str, outputs: dict[str, Any]) -> bool:
        return typ in CERT_TYPES and bool(due_for_renewal([from_outputs(typ, outputs)], self.inner.now))

    def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
        return self.inner.call(args)


def _commands(run: ProgramRun) -> dict[str, str]:
    return {short(r.urn): json.dumps(r.inputs, sort_keys=True, default=str) for r in run.of_type(COMMAND)}


def test_renewal_at_up_reissues_the_leaves_and_restarts_their_users_in_the_rolling_order() -> None:
    state = RenewingState()
    first = run_program("ha", mocks=state)
    state.inner.now += dt.timedelta(hours=YEAR - WINDOW)  # a year later, the first instant of the leaves' window
    second = run_program("ha", mocks=state)
    assert first.error is None and second.error is None, (first.error, second.error)
    before = {c["name"]: c["notAfter"] for c in first.outputs["certificates"]}
    after = {c["name"]: c for c in second.outputs["certificates"]}
    for name, old in before.items():
        if name.endswith("-ca"):  # the CAs are 10 years from their window: kept
            assert after[name]["notAfter"] == old
        else:  # every leaf was due: re-issued for another year
            assert after[name]["notAfter"] > old and after[name]["readyForRenewal"] is False, name
    old_files, new_files = files_by_host(first), files_by_host(second)
    for host, files in new_files.items():  # same CAs on every host: old and new leaves trust each other mid-roll
        for path in (p for p in files if p.endswith("ca.crt")):
            assert files[path] == old_files[host][path], (host, path)
    old, new = _commands(first), _commands(second)
    changed = {name for name in new if old.get(name) != new[name]}
    cps, nodes = ["cp-1", "cp-2", "cp-3"], ["worker-1", "worker-5", "rancher-2", "cp-3"]
    assert {f"{h}-{s}" for h in cps for s in ("etcd", "kube-apiserver", "controllers")} <= changed
    assert {f"{h}-kubelet" for h in nodes} <= changed
    assert not {f"{h}-{s}" for h in nodes for s in ("firewall", "prerequisites", "runtime")} & changed
    # the order is the upgrade's (docs/upgrade.md): etcd members and apiservers one after the other, and each
    # node's kubelet after its batch's drain step on the drain host
    urns = {short(r.urn): r.urn for r in second.of_type(COMMAND)}
    graph = command_graph(second)
    for a, b in (("cp-1", "cp-2"), ("cp-2", "cp-3")):
        for s in ("etcd", "kube-apiserver"):
            assert reaches(graph, urns[f"{b}-{s}"], urns[f"{a}-{s}"]), f"{b}-{s} does not wait for {a}-{s}"
    gates = sorted(n for n in changed if n.startswith("cp-1-rollout-batch-"))
    assert len(gates) == 10  # ha has 11 nodes: every batch holds one, every batch rolls
    for node in nodes:
        assert any(reaches(graph, urns[f"{node}-kubelet"], urns[g]) for g in gates), node


def _openssl_verify(tmp: Path, ca_pem: str, leaf_pem: str) -> bool:
    (tmp / "ca.pem").write_text(ca_pem)
    (tmp / "leaf.pem").write_text(leaf_pem)
    return subprocess.run(["openssl", "verify", "-CAfile", str(tmp / "ca.pem"), str(tmp / "leaf.pem")],
                          capture_output=True, check=False).returncode == 0


def test_a_renewed_ca_keeps_its_key_so_old_and_new_leaves_verify_against_either(tmp_path: Path) -> None:
    """What docs/renewal.md says of a CA inside its window: pulumi-tls re-signs the CA certificate with the same
    PrivateKey resource, so trust holds across the roll; a CA with a NEW key (a rotation) does not."""
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes-ca")])
    uses = {"isCaCertificate": True, "allowedUses": ["cert_signing", "crl_signing"], "validityPeriodHours": 87600}
    leaf_uses = {"allowedUses": ["digital_signature", "server_auth"], "validityPeriodHours": YEAR}

    def ca(signing_key: Any, issued: dt.datetime) -> x509.Certificate:
        pem = build_certificate(uses, name, signing_key.public_key(), signing_key, None, [], issued)["certPem"]
        return x509.load_pem_x509_certificate(pem.encode())

    def leaf(issuer: x509.Certificate, signing_key: Any, issued: dt.datetime) -> str:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        return str(build_certificate(leaf_uses, subject, leaf_key.public_key(), signing_key, issuer, [],
                                     issued)["certPem"])

    later = dt.datetime.now(dt.UTC).replace(microsecond=0)  # openssl verifies at the real time
    first = later - dt.timedelta(hours=87600 - WINDOW)  # the old CA's first day: it is now inside its window
    old_ca, renewed_ca, rotated_ca = ca(key, first), ca(key, later), ca(other, later)
    pem = {c: c.public_bytes(serialization.Encoding.PEM).decode() for c in (old_ca, renewed_ca, rotated_ca)}
    old_leaf, new_leaf = leaf(old_ca, key, later - dt.timedelta(hours=24)), leaf(renewed_ca, key, later)
    assert _openssl_verify(tmp_path, pem[renewed_ca], old_leaf)
    assert _openssl_verify(tmp_path, pem[old_ca], new_leaf)
    assert not _openssl_verify(tmp_path, pem[rotated_ca], old_leaf)


def test_a_renewed_ca_does_not_replace_the_kubernetes_provider() -> None:
    """pulumi-kubernetes replaces its provider (and with it every object it manages) when the kubeconfig's
    active cluster changes, e.g. a re-signed CA's certificate-authority-data, unless `clusterIdentifier`
    is set: then only a change of the identifier replaces it (provider.go DiffConfig). The program sets a
    stable identifier, the stack's cluster name, on every Kubernetes provider."""
    run = run_program("dev")
    providers = run.of_type("pulumi:providers:kubernetes")
    assert providers
    for p in providers:
        assert p.plain_inputs.get("clusterIdentifier") == "container-cloud-dev", p.name
