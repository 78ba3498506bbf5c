"""Check every rendered artifact with the real tool: openssl, kubectl, systemd-analyze, nft, shellcheck,
kubernetes-validate."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import yaml
from cryptography import x509

from offline.engine import ProgramRun
from offline.engine.mocks import unwrap
from offline.hosts import PlacedFile, Step
from policy.rules.artifacts import expand_includes

UNIT_SUFFIXES = (".service", ".socket", ".timer", ".mount", ".path", ".target")
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
_EXEC = re.compile(r"^\s*Exec(?:Start|StartPre|StartPost|Stop|StopPost|Reload|Condition)\s*=\s*(.+)$", re.M)


@dataclass
class Check:
    name: str
    target: str
    status: str  # ok | failed | skipped
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)


def _tool(name: str) -> Optional[str]:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)),
                                      None)


@contextmanager
def _private_dir() -> Iterator[Path]:
    """A 0700 temp dir; its files are written 0600 and removed on exit."""
    with tempfile.TemporaryDirectory(prefix="offline-check-") as d:
        os.chmod(d, 0o700)
        yield Path(d)


def _write_private(path: Path, content: str | bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content.encode() if isinstance(content, str) else content)
    return path


# --- certificates -------------------------------------------------------------------------------

def pki_cas(run: ProgramRun) -> list[x509.Certificate]:
    """The CAs the program creates (self-signed CA certificates)."""
    cas = []
    for r in run.of_type("tls:index/selfSignedCert:SelfSignedCert"):
        out = unwrap(r.outputs)
        if out.get("isCaCertificate") and isinstance(out.get("certPem"), str):
            cas.append(x509.load_pem_x509_certificate(out["certPem"].encode()))
    return cas


def _pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.PEM)


def _issuer_ca(cert: x509.Certificate, cas: list[x509.Certificate]) -> Optional[x509.Certificate]:
    for ca in cas:
        if ca.subject == cert.issuer:
            return ca
    return None


def verify_chain(target: str, pem: str, cas: list[x509.Certificate], tmp: Path) -> Check:
    """`openssl verify` of the file's first certificate against its issuer among `cas`; the file's
    other certificates are offered as untrusted intermediates."""
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as err:
        return Check("openssl verify", target, "failed", f"not a PEM certificate file: {err}")
    leaf = certs[0]
    ca = _issuer_ca(leaf, cas)
    if ca is None:
        return Check("openssl verify", target, "failed",
                     f"issuer {leaf.issuer.rfc4514_string()} is none of the PKI's CAs")
    ca_file = _write_private(tmp / "ca.pem", _pem(ca))
    leaf_file = _write_private(tmp / "leaf.pem", _pem(leaf))
    cmd = ["openssl", "verify", "-CAfile", str(ca_file)]
    if len(certs) > 1:
        cmd += ["-untrusted", str(_write_private(tmp / "chain.pem", b"".join(_pem(c) for c in certs[1:])))]
    done = _run(cmd + [str(leaf_file)])
    ok = done.returncode == 0
    detail = f"signed by {ca.subject.rfc4514_string()}" if ok else (done.stdout + done.stderr).strip()
    return Check("openssl verify", target, "ok" if ok else "failed", detail)


# --- kubeconfigs --------------------------------------------------------------------------------

def is_kubeconfig(content: str) -> bool:
    if "kind: Config" not in content and '"kind": "Config"' not in content:
        return False
    try:
        doc = yaml.safe_load(content)
    except yaml.YAMLError:
        return False
    return isinstance(doc, dict) and doc.get("kind") == "Config" and "clusters" in doc


def check_kubeconfig(target: str, content: str, cas: list[x509.Certificate]) -> list[Check]:
    if not _tool("kubectl"):
        return [Check("kubectl config view", target, "skipped", "kubectl is not installed")]
    with _private_dir() as tmp:
        path = _write_private(tmp / "kubeconfig", content)
        done = _run(["kubectl", "config", "view", "--kubeconfig", str(path), "-o", "json", "--raw"])
        if done.returncode != 0:
            return [Check("kubectl config view", target, "failed", done.stderr.strip())]
        view = yaml.safe_load(done.stdout)
        problems, client_pem, ca_pem = _kubeconfig_problems(view)
        checks = [Check("kubectl config view", target, "failed" if problems else "ok",
                        "; ".join(problems) or f"context {view.get('current-context')}")]
        if client_pem and ca_pem:
            embedded = x509.load_pem_x509_certificates(ca_pem.encode())
            known = {c.fingerprint(_sha256()) for c in cas}
            if not all(c.fingerprint(_sha256()) in known for c in embedded):
                checks.append(Check("openssl verify", f"{target} (client certificate)", "failed",
                                    "the embedded CA is not one of the PKI's CAs"))
            else:
                checks.append(verify_chain(f"{target} (client certificate)", client_pem, embedded, tmp))
    return checks


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _kubeconfig_problems(view: dict[str, Any]) -> tuple[list[str], Optional[str], Optional[str]]:
    problems: list[str] = []
    contexts = {c["name"]: c.get("context", {}) for c in view.get("contexts") or []}
    current = contexts.get(view.get("current-context") or "")
    if current is None:
        return ["current-context names no context"], None, None
    cluster = next((c.get("cluster", {}) for c in view.get("clusters") or [] if c["name"] == current.get("cluster")),
                   None)
    user = next((u.get("user", {}) for u in view.get("users") or [] if u["name"] == current.get("user")), None)
    if cluster is None or user is None:
        return ["the current context names a missing cluster or user"], None, None
    if not str(cluster.get("server", "")).startswith("https://"):
        problems.append(f"server {cluster.get('server')!r} is not https")
    if cluster.get("insecure-skip-tls-verify"):
        problems.append("insecure-skip-tls-verify is set")
    ca = cluster.get("certificate-authority-data")
    if not ca:
        problems.append("no embedded CA (certificate-authority-data)")
    cert = user.get("client-certificate-data")
    if not cert and not user.get("token") and not user.get("tokenFile"):
        problems.append("the user has no client certificate")
    decode = lambda v: base64.b64decode(v).decode() if v else None  # noqa: E731
    return problems, decode(cert), decode(ca)


# --- systemd units ------------------------------------------------------------------------------

def _exec_paths(unit: str) -> list[str]:
    paths = []
    for line in _EXEC.findall(unit):
        first = line.split()[0].lstrip("@-:+!|")
        if first.startswith("/"):
            paths.append(first)
    return paths


def check_units(host: str, files: list[PlacedFile]) -> list[Check]:
    units = [f for f in files if f.path.endswith(UNIT_SUFFIXES) and f.content is not None and not f.secret]
    if not units:
        return []
    tool = _tool("systemd-analyze")
    if not tool or not SYSTEM_UNITS.is_dir():
        return [Check("systemd-analyze verify", f"{host}:{u.path}", "skipped", "systemd-analyze is not installed")
                for u in units]
    with tempfile.TemporaryDirectory(prefix="offline-units-") as d:
        root = Path(d)
        shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
        for f in files:
            if f.content is not None and not f.secret:
                target = root / f.path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(f.content)
                target.chmod(int(f.mode, 8) & 0o777)
        stubs = _stub_executables(root, units)
        done = _run([tool, "verify", f"--root={root}", *[u.path for u in units]])
        output = (done.stdout + done.stderr).strip()
        return [_unit_check(host, u, units, done.returncode, output, stubs) for u in units]


def _stub_executables(root: Path, units: list[PlacedFile]) -> list[str]:
    """The units' binaries are not installed here (and the host's own, like /usr/sbin/nft, are not part
    of what we render): stand-in executables let systemd-analyze check everything else."""
    stubs = []
    for u in units:
        for path in _exec_paths(u.content or ""):
            target = root / path.lstrip("/")
            if target.is_file() and os.access(target, os.X_OK):
                continue  # a rendered script the deployment places on the host
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                target.unlink()
            target.write_text("#!/bin/sh\nexit 0\n")
            target.chmod(0o755)
            stubs.append(path)
    return sorted(set(stubs))


def _unit_check(host: str, unit: PlacedFile, batch: list[PlacedFile], rc: int, output: str,
                stubs: list[str]) -> Check:
    target = f"{host}:{unit.path}"
    lines = output.splitlines()
    mine = [line for line in lines if Path(unit.path).name in line]
    anyone = [line for line in lines if any(Path(u.path).name in line for u in batch)]
    if mine:
        return Check("systemd-analyze verify", target, "failed", "\n".join(mine))
    if rc != 0 and not anyone:
        return Check("systemd-analyze verify", target, "failed", output or f"exit {rc}")
    note = f" (stand-in executables: {', '.join(stubs)})" if stubs else ""
    return Check("systemd-analyze verify", target, "ok", "verified in a temporary root" + note)


# --- nftables, shell ----------------------------------------------------------------------------

def is_ruleset(f: PlacedFile) -> bool:
    text = f.content or ""
    return f.path.endswith(".nft") or text.startswith("#!/usr/sbin/nft") or text.startswith("#!/sbin/nft")


def check_ruleset(target: str, content: str) -> Check:
    tool = _tool("nft")
    if not tool:
        return Check("nft -c -f", target, "skipped", "nft is not installed")
    with _private_dir() as tmp:
        path = _write_private(tmp / "ruleset.nft", content)
        done = _run([tool, "-c", "-f", str(path)])
    out = (done.stdout + done.stderr).strip()
    if done.returncode != 0 and "Operation not permitted" in out:
        return Check("nft -c -f", target, "skipped", "nft needs CAP_NET_ADMIN to check a ruleset: " + out)
    return Check("nft -c -f", target, "ok" if done.returncode == 0 else "failed", out)


def is_script(f: PlacedFile) -> bool:
    text = f.content or ""
    return f.path.endswith(".sh") or text.startswith(("#!/bin/bash", "#!/usr/bin/env bash", "#!/bin/sh"))


def check_script(target: str, content: str) -> Check:
    if not _tool("shellcheck"):
        return Check("shellcheck", target, "skipped", "shellcheck is not installed")
    with _private_dir() as tmp:
        path = _write_private(tmp / "script.sh", content)
        shell = [] if content.startswith("#!") else ["--shell=bash"]
        done = _run(["shellcheck", "--format=gcc", *shell, str(path)])
    out = (done.stdout + done.stderr).strip().replace(str(path), target)
    return Check("shellcheck", target, "ok" if done.returncode == 0 else "failed", out)


# --- everything ---------------------------------------------------------------------------------

def _output_kubeconfigs(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str) and is_kubeconfig(value):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _output_kubeconfigs(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _output_kubeconfigs(v, f"{path}[{i}]")


# --- Kubernetes objects: kubernetes-validate --strict against the pinned Kubernetes version's schemas ------
KUBERNETES_VALIDATE = "kubernetes-validate --strict"
NOT_OBJECTS = ("kubernetes:helm.sh/", "pulumi:providers:")


def _integral(value: Any) -> Any:
    """Mock inputs carry every number as a float (22 -> 22.0): back to ints where they are whole."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def applied_objects(run: ProgramRun) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object the program applies (typed pulumi-kubernetes resources), as the API gets it."""
    for r in run.registrations:
        if not r.type.startswith("kubernetes:") or r.type.startswith(NOT_OBJECTS):
            continue
        doc = _integral(unwrap(r.plain_inputs))
        meta = doc.get("metadata") or {}
        where = "/".join(p for p in (meta.get("namespace"), meta.get("name") or r.name) if p)
        yield f"kubernetes/{doc.get('kind')}/{where}", doc


def check_kubernetes_objects(run: ProgramRun) -> list[Check]:
    version = run.config.get("container-cloud:kubernetesVersion", "")
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
        import kubernetes_validate.utils  # noqa: F401 - the error classes
    except ImportError:
        return [Check(KUBERNETES_VALIDATE, "kubernetes objects", "skipped",
                      "kubernetes-validate is not installed (pip install -r requirements-dev.txt)")]
    return [check_kubernetes_object(kubernetes_validate, target, doc, version) for target, doc in applied_objects(run)]


def check_kubernetes_object(kv: Any, target: str, doc: dict[str, Any], version: str) -> Check:
    """One object against the strict schemas (unknown fields are errors) of Kubernetes `version`."""
    try:
        kv.validate(doc, version, strict=True)
    except kv.ValidationError as err:
        path = ".".join(str(p) for p in err.path)
        return Check(KUBERNETES_VALIDATE, target, "failed", f"{path}: {err.message}")
    except (kv.utils.SchemaNotFoundError, kv.utils.VersionNotSupportedError, kv.utils.InvalidSchemaError) as err:
        return Check(KUBERNETES_VALIDATE, target, "failed", str(err))
    except FileNotFoundError:  # 1.37.0 raises this for an apiVersion/kind without a schema at that version
        return Check(KUBERNETES_VALIDATE, target, "failed",
                     f"Kubernetes {version} has no schema for {doc.get('apiVersion')} {doc.get('kind')}")
    return Check(KUBERNETES_VALIDATE, target, "ok", f"schemas of Kubernetes {version}")


def check_all(run: ProgramRun, files: list[PlacedFile], steps: list[Step]) -> list[Check]:
    cas = pki_cas(run)
    checks: list[Check] = []
    for f in files:
        if f.content is None:
            continue
        target = f"hosts/{f.host}{f.path}" + (" [secret, checked in memory]" if f.secret else "")
        if "-----BEGIN CERTIFICATE-----" in f.content and not is_kubeconfig(f.content):
            with _private_dir() as tmp:
                checks.append(verify_chain(target, f.content, cas, tmp))
        elif is_kubeconfig(f.content):
            checks += check_kubeconfig(target, f.content, cas)
        elif is_ruleset(f):  # as `nft -f` loads it on the host: its includes are that host's placed files
            placed = {g.path: g.content for g in files if g.host == f.host and g.content is not None}
            checks.append(check_ruleset(target, expand_includes(f.content, placed)))
        elif is_script(f) and not f.secret:
            checks.append(check_script(target, f.content))
    for host in sorted({f.host for f in files}):
        checks += check_units(host, [f for f in files if f.host == host])
    for s in steps:
        checks.append(check_script(f"hosts/{s.host}/_steps/{s.name}.sh", s.script))
        checks.append(check_script(f"hosts/{s.host}/_steps/{s.name}.undo.sh", s.undo))
    checks += check_kubernetes_objects(run)
    for key, value in sorted(run.outputs.items()):
        for path, doc in _output_kubeconfigs(value, f"outputs.{key}"):
            checks += check_kubeconfig(path + (" [secret, checked in memory]" if key in run.secret_outputs else ""),
                                       doc, cas)
    return checks
