"""A real OCI registry for the host lab's registry-trust proof: Debian's `docker-registry` (distribution
2.8.2), extracted into the lab cache (never installed on the machine), run inside the registry host serving
TLS on 443 with the program's registry certificate and key; plus a tiny OCI image built locally (one layer
holding Debian's static busybox, no outside pull) pushed into it through the registry HTTP API v2.

    files = registry_files(cert_pem, key_pem)       # {host path: (bytes, mode)}: binary, config, cert, key
    argv = start_command()                          # run it inside the registry host
    digest = push_test_image(hostname, address, ca_pem, "library/lab-busybox", "1")

The lab registry has no authentication (Harbor's projects and robot accounts are not reproduced): it proves
that hosts trust the registry's certificate through certs.d / hosts.toml with the cluster CA, and that an
image pushed there can be pulled, nothing about Harbor itself.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import socket
import ssl
import subprocess
import tarfile
import urllib.parse
from pathlib import Path
from typing import Any

from lab.mirror import CACHE

PACKAGE = "docker-registry"
BUSYBOX_PACKAGE = "busybox-static"
BINARY = "/usr/local/sbin/docker-registry"
CONFIG_DIR = "/etc/containercloud-lab/registry"
CONFIG = f"{CONFIG_DIR}/config.yml"
DATA_DIR = "/var/lib/containercloud-lab/registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _extracted(package: str, path: str, cache: Path = CACHE) -> Path:
    """`path` from Debian `package`, downloaded (apt-get download) and extracted (dpkg-deb -x) into the cache."""
    debs, root = cache / "debs", cache / f"debian-{package}"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{package}_*.deb")):
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True, capture_output=True)
    target = root / path.lstrip("/")
    if not target.exists():
        deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return target


def registry_binary(cache: Path = CACHE) -> Path:
    return _extracted(PACKAGE, "/usr/bin/docker-registry", cache)


def config_yml(address: str = "", port: int = 443, config_dir: str = CONFIG_DIR, data_dir: str = DATA_DIR) -> str:
    """distribution 2.8 configuration: filesystem storage, TLS with the program's registry certificate."""
    return json.dumps({
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {"filesystem": {"rootdirectory": data_dir}, "delete": {"enabled": True}},
        "http": {"addr": f"{address}:{port}",
                 "tls": {"certificate": f"{config_dir}/tls.crt", "key": f"{config_dir}/tls.key"}},
    }, indent=2) + "\n"  # JSON is YAML: distribution reads it as its YAML config


def registry_files(cert_pem: str, key_pem: str, address: str = "", port: int = 443,
                   cache: Path = CACHE) -> dict[str, tuple[bytes, int]]:
    """What the lab places in the registry host: {path: (content, mode)}."""
    return {
        BINARY: (registry_binary(cache).read_bytes(), 0o755),
        CONFIG: (config_yml(address, port).encode(), 0o644),
        f"{CONFIG_DIR}/tls.crt": (cert_pem.encode(), 0o644),
        f"{CONFIG_DIR}/tls.key": (key_pem.encode(), 0o600),
    }


def start_command(binary: str = BINARY, config: str = CONFIG) -> list[str]:
    """The registry's command line inside the host (it needs DATA_DIR to exist)."""
    return [binary, "serve", config]


# --- a tiny OCI image, built here ------------------------------------------------------------------------

def _layer(busybox: bytes) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        d = tarfile.TarInfo("bin")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(d)
        f = tarfile.TarInfo("bin/busybox")
        f.size, f.mode = len(busybox), 0o755
        tar.addfile(f, io.BytesIO(busybox))
        for applet in ("sh", "sleep", "echo", "cat"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_image(cache: Path = CACHE) -> tuple[bytes, dict[str, bytes]]:
    """(manifest, {digest: blob}) of an OCI image: Debian's static busybox as /bin/busybox, /bin/sh."""
    busybox = _extracted(BUSYBOX_PACKAGE, "/bin/busybox", cache).read_bytes()
    layer = _layer(busybox)
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh", "-c", "echo container-cloud lab; sleep 3600"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": _digest(layer), "size": len(layer)}],
    }, sort_keys=True).encode()
    return manifest, {_digest(config): config, _digest(layer): layer}


# --- pushing over TLS, verifying the registry's certificate against the CA -------------------------------

class _Connection(http.client.HTTPSConnection):
    """HTTPS to `address` while verifying the certificate for `hostname` (no /etc/hosts needed)."""

    def __init__(self, hostname: str, address: str, port: int, context: ssl.SSLContext):
        super().__init__(hostname, port, context=context, timeout=30)
        self._address = address
        self._ctx = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


def _request(conn: _Connection, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn.request(method, path, body=body or None, headers={"Content-Length": str(len(body)), **(headers or {})})
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def push_test_image(hostname: str, address: str, ca_pem: str, repository: str = "library/lab-busybox",
                    tag: str = "1", port: int = 443, cache: Path = CACHE) -> str:
    """Push the test image to https://hostname:port (connecting to `address`), trusting only `ca_pem`;
    return the manifest digest the registry reports."""
    ctx = ssl.create_default_context(cadata=ca_pem)
    manifest, blobs = test_image(cache)
    conn = _Connection(hostname, address, port, ctx)
    try:
        status, _, _ = _request(conn, "GET", "/v2/")
        if status != 200:
            raise RuntimeError(f"registry {hostname}: GET /v2/ answered {status}")
        for digest, blob in blobs.items():
            status, _, _ = _request(conn, "HEAD", f"/v2/{repository}/blobs/{digest}")
            if status == 200:
                continue
            status, headers, body = _request(conn, "POST", f"/v2/{repository}/blobs/uploads/")
            if status != 202:
                raise RuntimeError(f"registry {hostname}: upload start answered {status}: {body[:200]!r}")
            parts = urllib.parse.urlsplit(headers["location"])
            location = parts.path + (f"?{parts.query}" if parts.query else "")
            sep = "&" if "?" in location else "?"
            status, _, body = _request(conn, "PUT", f"{location}{sep}digest={digest}", blob,
                                       {"Content-Type": "application/octet-stream"})
            if status != 201:
                raise RuntimeError(f"registry {hostname}: blob {digest} answered {status}: {body[:200]!r}")
        status, headers, body = _request(conn, "PUT", f"/v2/{repository}/manifests/{tag}", manifest,
                                         {"Content-Type": OCI_MANIFEST})
        if status != 201:
            raise RuntimeError(f"registry {hostname}: manifest answered {status}: {body[:200]!r}")
        return headers.get("docker-content-digest", _digest(manifest))
    finally:
        conn.close()


def manifest_digest(hostname: str, address: str, ca_pem: str, repository: str, tag: str,
                    port: int = 443) -> tuple[int, str, Any]:
    """(status, Docker-Content-Digest, manifest) of repository:tag, read back over verified TLS."""
    conn = _Connection(hostname, address, port, ssl.create_default_context(cadata=ca_pem))
    try:
        status, headers, body = _request(conn, "GET", f"/v2/{repository}/manifests/{tag}",
                                         headers={"Accept": OCI_MANIFEST})
        return status, headers.get("docker-content-digest", ""), json.loads(body or b"{}")
    finally:
        conn.close()
