#!/usr/bin/python3
"""Strict lab stand-in for a Kubernetes binary that no registry we reach ships (kube-apiserver,
kube-controller-manager, kube-scheduler, kubelet, kube-proxy). Python 3 standard library (+ PyYAML,
Debian's python3-yaml, to read the YAML config files); runs under a Type=simple systemd unit.

Strict: it refuses to start (exit 1, naming the fault) on a flag that binary does not have at the pinned
version, a flag value that does not parse, a file a flag names that is missing, a private key or kubeconfig
readable by group/other, or a config file with a field its apiVersion/kind does not know. Then it serves
the health endpoints the real binary serves, over TLS with the certificate from its flags:
  kube-apiserver           --bind-address:--secure-port  /healthz /livez /readyz /version; client certificates
                           verified against --client-ca-file; no certificate -> 401 (--anonymous-auth=false);
                           /readyz answers 200 only once GET <etcd>/health over mTLS (--etcd-*) succeeded.
  kube-controller-manager  127.0.0.1:10257 /healthz (self-signed serving cert, as the real one without
  kube-scheduler           127.0.0.1:10259 /healthz  --tls-cert-file; made with openssl)
  kubelet                  healthzBindAddress:healthzPort (http) /healthz; address:port (10250) TLS with
                           tlsCertFile, clients verified against authentication.x509.clientCAFile
  kube-proxy               healthzBindAddress (http) /healthz /livez; metricsBindAddress (http) /metrics
It does NOT do the binary's work (no API objects, no pods, no iptables rules).

The lab's mirror builder (lab/standins/__init__.py) embeds the binary's flag list and the known config
fields below (DATA); run from the source tree it reads them from lab/standins/flags/ and fields.json.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import socketserver
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

DATA: Optional[dict[str, Any]] = None  # replaced by the mirror builder
KUBERNETES_VERSION = "1.35.4"  # replaced by the mirror builder


class Refused(Exception):
    """A reason to refuse to start."""


# --- data -------------------------------------------------------------------------------------------

def load_data(name: str) -> dict[str, Any]:
    if DATA is not None:
        return DATA
    here = Path(__file__).resolve().parent
    return {"name": name, "flags": parse_flag_list((here / "flags" / f"{name}.flags").read_text()),
            "partial": "PARTIAL" in (here / "flags" / f"{name}.flags").read_text().split("\n", 1)[0],
            "fields": json.loads((here / "fields.json").read_text())}


def parse_flag_list(text: str) -> dict[str, str]:
    flags = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, kind = line.split()
            flags[name] = kind
    return flags


# --- flags ------------------------------------------------------------------------------------------

BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
         "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}
DURATION = re.compile(r"^[-+]?(0|(\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$")


def parse_args(argv: list[str], known: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """pflag-style: --name=value, --name value, --bool; -v N / -h. Returns (flags, problems)."""
    flags: dict[str, str] = {}
    problems: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg in ("-h",):
            arg = "--help"
        if arg.startswith("-v") and not arg.startswith("--"):
            arg = "--v" + ("=" + arg[3:] if arg.startswith("-v=") else "")
        if not arg.startswith("--"):
            problems.append(f"unexpected argument {arg!r} (this binary takes flags only)")
            continue
        name, eq, value = arg[2:].partition("=")
        kind = known.get(name)
        if kind is None:
            problems.append(f"unknown flag: --{name}")
            continue
        if not eq:
            if kind == "bool":
                value = "true"
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                problems.append(f"flag needs an argument: --{name}")
                continue
        problem = check_value(name, kind, value)
        if problem:
            problems.append(problem)
        flags[name] = value
    return flags, problems


def check_value(name: str, kind: str, value: str) -> Optional[str]:
    bad = f'invalid argument "{value}" for "--{name}" flag'
    if kind == "bool" and value not in BOOLS:
        return f"{bad}: strconv.ParseBool: parsing {value!r}: invalid syntax"
    if kind == "int" and not re.fullmatch(r"[-+]?\d+", value):
        return f"{bad}: not an integer"
    if kind == "float":
        try:
            float(value)
        except ValueError:
            return f"{bad}: not a number"
    if kind == "duration" and not DURATION.match(value):
        return f"{bad}: time: invalid duration {value!r}"
    if kind == "ip" and value and not is_ip(value):
        return f"{bad}: not an IP address"
    return None


def is_ip(value: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, value)
            return True
        except OSError:
            pass
    return False


def boolean(flags: dict[str, str], name: str, default: bool) -> bool:
    return BOOLS[flags[name]] if name in flags else default


# --- files ------------------------------------------------------------------------------------------

def need_file(path: str, what: str, problems: list[str], secret: bool = False) -> Optional[str]:
    """The file's text, or None with a problem recorded (missing, unreadable, or too open for a secret)."""
    p = Path(path)
    if not p.is_file():
        problems.append(f"{what}: {path}: no such file")
        return None
    mode = stat.S_IMODE(p.stat().st_mode)
    if secret and mode & 0o077:
        problems.append(f"{what}: {path} has mode {mode:04o}; a private key or credential must not be "
                        f"readable by group or others (0600)")
    try:
        return p.read_text()
    except (OSError, UnicodeDecodeError) as err:
        problems.append(f"{what}: {path}: {err}")
        return None


def need_pem(path: str, what: str, problems: list[str], kind: str) -> None:
    """kind: cert (a certificate), key (a private key, 0600), pub (a public key, certificate or key)."""
    text = need_file(path, what, problems, secret=kind == "key")
    if text is None:
        return
    markers = {"cert": ("-----BEGIN CERTIFICATE-----",), "key": ("PRIVATE KEY-----",),
               "pub": ("PUBLIC KEY-----", "-----BEGIN CERTIFICATE-----", "PRIVATE KEY-----")}[kind]
    if not any(m in text for m in markers):
        problems.append(f"{what}: {path} holds no PEM {kind}")


def load_yaml(text: str, path: str, problems: list[str]) -> Any:
    try:
        import yaml  # Debian python3-yaml: present on the lab hosts (the machine's lower layer)
    except ImportError:
        problems.append(f"{path}: cannot read YAML: python3-yaml is not installed on this host")
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        problems.append(f"{path}: not valid YAML: {err}")
        return None


def check_fields(obj: Any, spec: Any, where: str, problems: list[str]) -> None:
    """Every key of `obj` must be known to `spec` (None = any value; dict = known keys; [dict] = list of)."""
    if spec is None:
        return
    if isinstance(spec, list):
        if obj is None:
            return
        if not isinstance(obj, list):
            problems.append(f"{where}: expected a list")
            return
        for i, item in enumerate(obj):
            check_fields(item, spec[0], f"{where}[{i}]", problems)
        return
    if obj is None:
        return
    if not isinstance(obj, dict):
        problems.append(f"{where}: expected an object")
        return
    for key, value in obj.items():
        if key not in spec:
            problems.append(f'{where}: unknown field "{key}"')
        else:
            check_fields(value, spec[key], f"{where}.{key}", problems)


def load_config(path: str, what: str, expected: str, data: dict[str, Any], problems: list[str],
                secret: bool = False) -> dict[str, Any]:
    """Parse a config file of apiVersion/kind `expected`, strict on fields."""
    text = need_file(path, what, problems, secret)
    if text is None:
        return {}
    obj = load_yaml(text, path, problems)
    if not isinstance(obj, dict):
        if obj is not None:
            problems.append(f"{what}: {path}: not a YAML object")
        return {}
    got = f"{obj.get('apiVersion')}/{obj.get('kind')}"
    if got != expected:
        problems.append(f"{what}: {path}: apiVersion/kind is {got}, expected {expected}")
        return obj
    check_fields(obj, data["fields"][expected], path, problems)
    return obj


def check_kubeconfig(path: str, what: str, data: dict[str, Any], problems: list[str]) -> None:
    cfg = load_config(path, what, "v1/Config", data, problems, secret=True)
    if not cfg:
        return
    contexts = {c.get("name"): c.get("context") or {} for c in cfg.get("contexts") or []}
    current = cfg.get("current-context")
    if current not in contexts:
        problems.append(f"{what}: {path}: current-context {current!r} is not one of its contexts")
        return
    ctx = contexts[current]
    clusters = {c.get("name"): c.get("cluster") or {} for c in cfg.get("clusters") or []}
    users = {u.get("name"): u.get("user") or {} for u in cfg.get("users") or []}
    if ctx.get("cluster") not in clusters:
        problems.append(f"{what}: {path}: context {current!r} names no cluster of the file")
    elif not str(clusters[ctx["cluster"]].get("server", "")).startswith("https://"):
        problems.append(f"{what}: {path}: cluster server must be an https:// URL")
    if ctx.get("user") not in users:
        problems.append(f"{what}: {path}: context {current!r} names no user of the file")


# --- per binary: which flags name which files ----------------------------------------------------------

CERTS = {
    "kube-apiserver": {
        "client-ca-file": "cert", "tls-cert-file": "cert", "tls-private-key-file": "key",
        "etcd-cafile": "cert", "etcd-certfile": "cert", "etcd-keyfile": "key",
        "kubelet-certificate-authority": "cert", "kubelet-client-certificate": "cert", "kubelet-client-key": "key",
        "proxy-client-cert-file": "cert", "proxy-client-key-file": "key", "requestheader-client-ca-file": "cert",
        "service-account-key-file": "pub", "service-account-signing-key-file": "key", "peer-ca-file": "cert",
        "oidc-ca-file": "cert",
    },
    "kube-controller-manager": {
        "client-ca-file": "cert", "requestheader-client-ca-file": "cert", "root-ca-file": "cert",
        "service-account-private-key-file": "key", "cluster-signing-cert-file": "cert",
        "cluster-signing-key-file": "key", "tls-cert-file": "cert", "tls-private-key-file": "key",
    },
    "kube-scheduler": {"client-ca-file": "cert", "requestheader-client-ca-file": "cert", "tls-cert-file": "cert",
                       "tls-private-key-file": "key"},
    "kubelet": {},
    "kube-proxy": {},
}
KUBECONFIGS = ("kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig", "bootstrap-kubeconfig")
CONFIGS = {  # flag -> (apiVersion/kind, secret)
    "kube-apiserver": {"audit-policy-file": ("audit.k8s.io/v1/Policy", False),
                       "encryption-provider-config": ("apiserver.config.k8s.io/v1/EncryptionConfiguration", True)},
    "kube-scheduler": {"config": ("kubescheduler.config.k8s.io/v1/KubeSchedulerConfiguration", False)},
    "kubelet": {"config": ("kubelet.config.k8s.io/v1beta1/KubeletConfiguration", False)},
    "kube-proxy": {"config": ("kubeproxy.config.k8s.io/v1alpha1/KubeProxyConfiguration", False)},
    "kube-controller-manager": {},
}


def check_files(name: str, flags: dict[str, str], data: dict[str, Any],
                problems: list[str]) -> dict[str, dict[str, Any]]:
    for flag, kind in CERTS[name].items():
        if flags.get(flag):
            for path in flags[flag].split(","):
                need_pem(path, f"--{flag}", problems, kind)
    for flag in KUBECONFIGS:
        if flags.get(flag):
            check_kubeconfig(flags[flag], f"--{flag}", data, problems)
    configs = {}
    for flag, (kind, secret) in CONFIGS[name].items():
        if flags.get(flag):
            configs[flag] = load_config(flags[flag], f"--{flag}", kind, data, problems, secret)
    if name == "kube-apiserver":
        for flag in ("token-auth-file", "admission-control-config-file", "authentication-config",
                     "authorization-config", "egress-selector-config-file", "tracing-config-file"):
            if flags.get(flag):
                need_file(flags[flag], f"--{flag}", problems, secret=flag == "token-auth-file")
        log = flags.get("audit-log-path")
        if log and log != "-" and not Path(log).parent.is_dir():
            problems.append(f"--audit-log-path: directory {Path(log).parent} does not exist")
    config_files(name, configs, data, problems)
    return configs


def config_files(name: str, configs: dict[str, dict[str, Any]], data: dict[str, Any], problems: list[str]) -> None:
    """Files named inside config files."""
    cfg = configs.get("config") or {}
    if name == "kubelet" and cfg:
        for field, kind in (("tlsCertFile", "cert"), ("tlsPrivateKeyFile", "key")):
            if cfg.get(field):
                need_pem(cfg[field], f"KubeletConfiguration.{field}", problems, kind)
        ca = ((cfg.get("authentication") or {}).get("x509") or {}).get("clientCAFile")
        if ca:
            need_pem(ca, "KubeletConfiguration.authentication.x509.clientCAFile", problems, "cert")
    if name in ("kube-scheduler", "kube-proxy") and cfg:
        kc = (cfg.get("clientConnection") or {}).get("kubeconfig")
        if kc:
            check_kubeconfig(kc, f"{cfg.get('kind')}.clientConnection.kubeconfig", data, problems)


def check_required(name: str, flags: dict[str, str], configs: dict[str, dict[str, Any]], problems: list[str]) -> None:
    """What the real binary refuses to start without (the subset a stand-in can judge)."""
    if name == "kube-apiserver":
        for flag in ("etcd-servers", "service-account-issuer", "service-account-key-file",
                     "service-account-signing-key-file", "tls-cert-file", "tls-private-key-file"):
            if not flags.get(flag):
                problems.append(f"--{flag} must be specified")
        if flags.get("insecure-port"):
            problems.append("--insecure-port was removed")
    if name == "kubelet" and not flags.get("config"):
        problems.append("--config: this lab stand-in needs the KubeletConfiguration file")
    if name == "kube-proxy" and not flags.get("config"):
        problems.append("--config: this lab stand-in needs the KubeProxyConfiguration file")
    if name == "kubelet":
        auth = (configs.get("config") or {}).get("authentication") or {}
        if (auth.get("anonymous") or {}).get("enabled") is not False:
            pass  # allowed by the real kubelet; the stand-in then answers anonymous requests


# --- serving ----------------------------------------------------------------------------------------

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, family: int = socket.AF_INET):
        self.address_family = family
        super().__init__(address, handler)


def tls_context(cert: str, key: str, client_ca: Optional[str], min_version: str = "") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)  # fails when the key does not match the certificate
    if min_version:
        ctx.minimum_version = {"VersionTLS10": ssl.TLSVersion.TLSv1, "VersionTLS11": ssl.TLSVersion.TLSv1_1,
                               "VersionTLS12": ssl.TLSVersion.TLSv1_2,
                               "VersionTLS13": ssl.TLSVersion.TLSv1_3}[min_version]
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def handler(routes: dict[str, Any], need_client_cert: bool) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            path = self.path.split("?", 1)[0]
            if need_client_cert and not self.connection.getpeercert():  # type: ignore[attr-defined]
                return self.reply(401, json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                   "message": "Unauthorized", "reason": "Unauthorized",
                                                   "code": 401}), "application/json")
            route = routes.get(path)
            if route is None:
                return self.reply(404, "404 page not found\n")
            code, body = route()
            self.reply(code, body, "application/json" if body.startswith("{") else "text/plain; charset=utf-8")

        def reply(self, code: int, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
            raw = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, fmt: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    return Handler


def serve(host: str, port: int, routes: dict[str, Any], ctx: Optional[ssl.SSLContext] = None,
          need_client_cert: bool = False) -> Server:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = Server((host, port), handler(routes, need_client_cert), family)
    if ctx is not None:
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    log(f"serving {'https' if ctx else 'http'}://{host}:{port} {sorted(routes)}")
    return srv


def ok() -> tuple[int, str]:
    return 200, "ok"


def log(message: str) -> None:
    sys.stderr.write(f"{NAME}[lab stand-in]: {message}\n")
    sys.stderr.flush()


def version_route() -> tuple[int, str]:
    return 200, json.dumps({"major": "1", "minor": KUBERNETES_VERSION.split(".")[1],
                            "gitVersion": f"v{KUBERNETES_VERSION}", "platform": "linux/amd64",
                            "labStandIn": True})


def self_signed(host: str) -> tuple[str, str]:
    """A self-signed serving certificate, as the real controller-manager/scheduler make without --tls-cert-file."""
    directory = tempfile.mkdtemp(prefix=f"{NAME}-serving-")
    cert, key = f"{directory}/serving.crt", f"{directory}/serving.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "365", "-subj", f"/CN={host}@{int(time.time())}",
                    "-addext", f"subjectAltName=IP:{host}" if is_ip(host) else f"subjectAltName=DNS:{host}"],
                   check=True, capture_output=True)
    return cert, key


# --- kube-apiserver: etcd over mTLS ------------------------------------------------------------------

class Etcd:
    def __init__(self, flags: dict[str, str]):
        self.servers = [s for s in flags["etcd-servers"].split(",") if s]
        self.ctx = ssl.create_default_context(cafile=flags.get("etcd-cafile") or None)
        if flags.get("etcd-certfile"):
            self.ctx.load_cert_chain(flags["etcd-certfile"], flags.get("etcd-keyfile"))
        self.healthy = False
        self.last_error = "not checked yet"

    def check(self) -> bool:
        errors = []
        for server in self.servers:
            try:
                with urllib.request.urlopen(f"{server.rstrip('/')}/health", context=self.ctx, timeout=2) as r:
                    body = json.loads(r.read() or b"{}")
                if str(body.get("health")) == "true":
                    self.healthy, self.last_error = True, ""
                    return True
                errors.append(f"{server}: {body}")
            except Exception as err:  # noqa: BLE001 - any failure means not ready; keep the reason
                errors.append(f"{server}: {err}")
        self.healthy, self.last_error = False, "; ".join(errors)
        return False

    def watch(self) -> None:
        while True:
            was = self.healthy
            self.check()
            if self.healthy != was:
                log("etcd reachable over mTLS" if self.healthy else f"etcd not reachable: {self.last_error}")
            time.sleep(1 if not self.healthy else 5)


def run_apiserver(flags: dict[str, str]) -> list[Server]:
    etcd = Etcd(flags)
    threading.Thread(target=etcd.watch, daemon=True).start()

    def readyz() -> tuple[int, str]:
        if etcd.healthy:
            return 200, "ok"
        return 500, f"[-]etcd failed: {etcd.last_error}\nreadyz check failed\n"

    def livez() -> tuple[int, str]:
        return 200, "ok"

    routes = {"/healthz": readyz, "/livez": livez, "/readyz": readyz, "/version": version_route}
    ctx = tls_context(flags["tls-cert-file"], flags["tls-private-key-file"], flags.get("client-ca-file"),
                      flags.get("tls-min-version", ""))
    anonymous = boolean(flags, "anonymous-auth", True)
    host = flags.get("bind-address", "0.0.0.0") or "0.0.0.0"
    return [serve(host, int(flags.get("secure-port", "6443")), routes, ctx, need_client_cert=not anonymous)]


def run_controller(flags: dict[str, str], default_port: int) -> list[Server]:
    host = flags.get("bind-address", "0.0.0.0") or "0.0.0.0"
    if flags.get("tls-cert-file"):
        cert, key = flags["tls-cert-file"], flags["tls-private-key-file"]
    else:
        cert, key = self_signed("127.0.0.1" if host in ("0.0.0.0", "::") else host)
    ctx = tls_context(cert, key, flags.get("client-ca-file"), flags.get("tls-min-version", ""))
    # /healthz, /readyz, /livez are in --authorization-always-allow-paths by default: answered without a client cert
    routes = {"/healthz": ok, "/livez": ok, "/readyz": ok}
    return [serve(host, int(flags.get("secure-port", str(default_port))), routes, ctx)]


def wait_runtime(endpoint: str, seconds: int = 30) -> None:
    path = endpoint.removeprefix("unix://")
    deadline = time.time() + seconds
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(path)
            return
        except OSError as err:
            if time.time() > deadline:
                raise Refused(f"containerRuntimeEndpoint {endpoint}: cannot connect ({err})") from err
            time.sleep(1)


def run_kubelet(flags: dict[str, str], cfg: dict[str, Any]) -> list[Server]:
    wait_runtime(cfg.get("containerRuntimeEndpoint") or "unix:///run/containerd/containerd.sock")
    servers = []
    healthz_port = int(cfg.get("healthzPort", 10248))
    if healthz_port:
        servers.append(serve(cfg.get("healthzBindAddress", "127.0.0.1"), healthz_port, {"/healthz": ok}))
    auth = cfg.get("authentication") or {}
    anonymous = bool((auth.get("anonymous") or {}).get("enabled", False))
    ca = (auth.get("x509") or {}).get("clientCAFile")
    if not cfg.get("tlsCertFile"):
        raise Refused("KubeletConfiguration.tlsCertFile: the lab stand-in serves only with the given certificate")
    ctx = tls_context(cfg["tlsCertFile"], cfg["tlsPrivateKeyFile"], ca, cfg.get("tlsMinVersion", ""))
    servers.append(serve(cfg.get("address", "0.0.0.0"), int(cfg.get("port", 10250)), {"/healthz": ok}, ctx,
                         need_client_cert=not anonymous))
    return servers


def host_port(value: str, default_port: int) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port or default_port)


# kubernetes cmd/kube-proxy/app/server_linux.go: platformApplyDefaults turns an empty mode into "iptables";
# platformCheckSupported, for isIPTablesBased modes (iptables, ipvs), asks utiliptables' Present() of the
# IPv4 and the IPv6 runner (iptables / ip6tables listing nat POSTROUTING) and fails when neither works:
#     err = fmt.Errorf("iptables is not available on this host")
IPTABLES_MODES = ("", "iptables", "ipvs")
IPTABLES_MISSING = "iptables is not available on this host"


def iptables_present(binary: str) -> bool:
    path = shutil.which(binary)
    if path is None:
        return False
    done = subprocess.run([path, "-w", "5", "-t", "nat", "-S", "POSTROUTING"], capture_output=True, timeout=30)
    return done.returncode == 0


def check_proxy_platform(cfg: dict[str, Any]) -> None:
    """Refuse as kube-proxy does when its mode needs iptables and no iptables runner is present."""
    if (cfg.get("mode") or "") in IPTABLES_MODES and not any(map(iptables_present, ("iptables", "ip6tables"))):
        raise Refused(IPTABLES_MISSING)


def run_proxy(cfg: dict[str, Any]) -> list[Server]:
    check_proxy_platform(cfg)
    servers = []
    healthz = cfg.get("healthzBindAddress", "0.0.0.0:10256")
    if healthz:
        servers.append(serve(*host_port(healthz, 10256), {"/healthz": ok, "/livez": ok}))
    metrics = cfg.get("metricsBindAddress", "127.0.0.1:10249")
    if metrics:
        servers.append(serve(*host_port(metrics, 10249), {"/metrics": lambda: (200, "# lab stand-in\n")}))
    return servers


# --- main ---------------------------------------------------------------------------------------------

NAME = "kube-standin"


def start(name: str, argv: list[str]) -> list[Server]:
    data = load_data(name)
    flags, problems = parse_args(argv, data["flags"])
    if data.get("partial"):
        problems = [p + f" (note: the lab's {name} flag list is partial)" if p.startswith("unknown flag") else p
                    for p in problems]
    if "help" in flags or "version" in flags:
        print(f"Kubernetes v{KUBERNETES_VERSION} (lab stand-in {name})")
        raise SystemExit(0)
    configs = check_files(name, flags, data, problems) if not problems else {}
    check_required(name, flags, configs, problems)
    if problems:
        raise Refused("\n".join(problems))
    if name == "kube-apiserver":
        return run_apiserver(flags)
    if name == "kube-controller-manager":
        return run_controller(flags, 10257)
    if name == "kube-scheduler":
        return run_controller(flags, 10259)
    if name == "kubelet":
        return run_kubelet(flags, configs["config"])
    return run_proxy(configs["config"])


def main(argv: list[str]) -> int:
    global NAME
    NAME = (DATA or {}).get("name") or os.environ.get("STANDIN_NAME") or Path(argv[0]).name
    if NAME not in CERTS:
        sys.stderr.write(f"lab stand-in: unknown binary name {NAME!r} (one of {', '.join(CERTS)})\n")
        return 1
    try:
        start(NAME, argv[1:])
    except Refused as err:
        for line in str(err).splitlines():
            sys.stderr.write(f"{NAME}: error: {line}\n")
        return 1
    except (OSError, ssl.SSLError, subprocess.CalledProcessError) as err:
        sys.stderr.write(f"{NAME}: error: {err}\n")
        return 1
    log(f"v{KUBERNETES_VERSION} started")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
