"""The "Certificates" section of `python -m offline preview`: every certificate's not-after date and those an
`up` would renew now (inside their early-renewal window), read from the offline run or, with `--state FILE`,
from a `pulumi stack export` of a real stack.

pulumi-tls (terraform-provider-tls `modifyPlanIfCertificateReadyForRenewal`) plans the replacement of a
certificate once `now >= validity_end_time - early_renewal_hours`; `due_for_renewal` applies that rule.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from cryptography import x509
from cryptography.x509.oid import NameOID

from offline.engine import ProgramRun
from offline.engine.mocks import SECRET_SIG, SECRET_VALUE

CERT_TYPES = ("tls:index/locallySignedCert:LocallySignedCert", "tls:index/selfSignedCert:SelfSignedCert")
CERT_SUFFIX = "-cert"  # the program names each certificate resource `<certificate>-cert`


@dataclass(frozen=True)
class CertDates:
    name: str
    common_name: str
    not_after: dt.datetime
    early_renewal_hours: int

    @property
    def renew_from(self) -> dt.datetime:
        return self.not_after - dt.timedelta(hours=self.early_renewal_hours)


def due_for_renewal(certs: Iterable[CertDates], now: dt.datetime) -> list[CertDates]:
    """The certificates a `pulumi up` at `now` replaces (pulumi-tls's rule above), soonest expiry first."""
    return sorted((c for c in certs if now >= c.renew_from), key=lambda c: (c.not_after, c.name))


class StateError(Exception):
    """The --state file is not a `pulumi stack export` this can read."""


def _plain(value: Any) -> Optional[Any]:
    """A state value, or None when it is a secret that the export left encrypted."""
    if isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE:
        if "plaintext" in value:  # `pulumi stack export --show-secrets`
            return json.loads(value["plaintext"])
        return value.get("value")  # the offline engine's wrapping; a ciphertext gives None
    return value


def from_outputs(name: str, outputs: dict[str, Any]) -> CertDates:
    """Dates of one pulumi-tls certificate from its outputs: the certificate itself when readable, else
    `validityEndTime` (then the common name is unknown)."""
    hours = int(_plain(outputs.get("earlyRenewalHours")) or 0)
    pem = _plain(outputs.get("certPem"))
    if pem:
        cert = x509.load_pem_x509_certificate(pem.encode())
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = str(names[0].value) if names else ""
        return CertDates(name, common_name, cert.not_valid_after_utc, hours)
    end = _plain(outputs.get("validityEndTime"))
    if not end:
        raise StateError(f"certificate {name}: neither certPem nor validityEndTime in its outputs")
    return CertDates(name, "?", dt.datetime.fromisoformat(end).astimezone(dt.UTC), hours)


def _short(name: str) -> str:
    return name.removesuffix(CERT_SUFFIX)


def from_run(run: ProgramRun) -> list[CertDates]:
    return [from_outputs(_short(r.name), r.outputs) for r in run.registrations if r.type in CERT_TYPES]


def load_state(path: Path) -> dict[str, Any]:
    """A `pulumi stack export` document: {"version": 3, "deployment": {"manifest", "resources": [...]}}."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StateError(f"{path}: {exc}") from exc
    resources = doc.get("deployment", {}).get("resources") if isinstance(doc, dict) else None
    if not isinstance(resources, list):
        raise StateError(f"{path}: no deployment.resources; expected the JSON `pulumi stack export` writes")
    return doc


def from_state(doc: dict[str, Any]) -> list[CertDates]:
    """The deployed certificates (resources pending deletion left out: they are already replaced)."""
    return [from_outputs(_short(r["urn"].rsplit("::", 1)[-1]), r.get("outputs") or {})
            for r in doc["deployment"]["resources"] if r.get("type") in CERT_TYPES and not r.get("delete")]


def _day(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def section(certs: list[CertDates], now: dt.datetime, source: str, note: str = "") -> Iterator[str]:
    yield ""
    yield f"Certificates: {len(certs)}, from {source}"
    if note:
        yield f"    {note}"
    yield f"    {'name':<34} {'common name':<34} {'not after':<21} renewed by an `up` from"
    for c in sorted(certs, key=lambda c: (c.not_after, c.name)):
        yield f"    {c.name:<34} {c.common_name:<34} {_day(c.not_after):<21} {_day(c.renew_from)}"
    due = due_for_renewal(certs, now)
    yield (f"  Expiring within their renewal window (not after - early renewal hours) at {_day(now)}: "
           f"{len(due) or 'none'}")
    for c in due:
        state = "EXPIRED" if now >= c.not_after else "expires"
        yield f"    {c.name}: {state} {_day(c.not_after)}, in its window since {_day(c.renew_from)}; an `up` renews it"
