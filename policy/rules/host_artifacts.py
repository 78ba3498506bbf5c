"""Host-level rules that judge what a host receives: the files of every step (its `command:remote:Command`).

The authority is the artifact: unit files are parsed into the daemon's flags, config files (kubelet,
kube-scheduler, harbor.yml, containerd hosts.toml, docker daemon.json) are parsed as the daemon reads them,
and the nftables ruleset is read as `nft -f` loads it (policy/rules/artifacts/). Component props that
restate intent are never what is judged here.

Sources: the CIS Kubernetes Benchmark item numbers are those of kube-bench `cfg/cis-1.12`
(aquasecurity/kube-bench a73ce378, master.yaml, etcd.yaml, node.yaml); the zone rules are the project's
design (README "Zones"); Harbor: harbor.yml.tmpl of goharbor/harbor v2.13 ("https" block, `ssl_mode`);
Docker: docs.docker.com "Protect the Docker daemon socket".

A file whose content is unknown at preview (built from provider outputs) is skipped, never guessed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Optional
from urllib.parse import urlsplit

from .artifacts import (
    Command,
    HostFile,
    NftRule,
    effective,
    holds_credentials,
    host_files,
    included_paths,
    load_json,
    load_toml,
    load_yaml,
    parse_ruleset,
    parse_sets,
    shell_commands,
)
from .artifacts import yaml_line as _yaml_line
from .artifacts.steps import step_of
from .common import HOST_FIREWALL, as_int, get

Report = Callable[..., None]

UNITS = "/etc/systemd/system/"
APISERVER_UNIT = UNITS + "kube-apiserver.service"
ETCD_UNIT = UNITS + "etcd.service"
CONTROLLER_UNIT = UNITS + "kube-controller-manager.service"
SCHEDULER_UNIT = UNITS + "kube-scheduler.service"
KUBELET_UNIT = UNITS + "kubelet.service"
DOCKER_UNIT = UNITS + "docker.service"
DOCKER_DAEMON_JSON = "/etc/docker/daemon.json"
NODE_PORT_LIMITS = (30000, 32767)
CLUSTER_PORTS = {2379: "etcd client", 2380: "etcd peer", 10250: "kubelet API", 10257: "kube-controller-manager",
                 10259: "kube-scheduler", 8472: "flannel VXLAN", 4789: "flannel VXLAN (RKE2)"}


def _files(args: Any) -> dict[str, HostFile]:
    step = step_of(args)
    return {f.path: f for f in host_files(step)} if step is not None else {}


def _command(files: dict[str, HostFile], path: str) -> Optional[tuple[HostFile, Command]]:
    """The command systemd runs for the unit at `path`: the unit's ExecStart=, or a drop-in's that replaces it."""
    found = effective(path, {p: f.content for p, f in files.items() if f.content is not None})
    return (files[found[0]], found[1]) if found else None


def _where(f: HostFile, line: int) -> str:
    return f"{f.host} {f.path}:{line}"


def _is_false(value: Optional[str]) -> bool:
    return value is not None and value.lower() == "false"


def _is_true(value: Optional[str]) -> bool:
    return value is not None and value.lower() == "true"


def _csv(value: Optional[str]) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


# --- kube-apiserver (CIS 1.2) -------------------------------------------------------------------------

_APISERVER_REQUIRED = (
    ("kubelet-client-certificate", "1.2.4", "the apiserver authenticates to kubelets with a client certificate"),
    ("kubelet-client-key", "1.2.4", "the apiserver authenticates to kubelets with a client certificate"),
    ("kubelet-certificate-authority", "1.2.5", "the apiserver verifies the kubelets' serving certificates"),
    ("audit-log-path", "1.2.16", "API requests are audited"),
    ("service-account-key-file", "1.2.22", "service account tokens are verified against our key"),
    ("etcd-certfile", "1.2.23", "the apiserver authenticates to etcd with a client certificate"),
    ("etcd-keyfile", "1.2.23", "the apiserver authenticates to etcd with a client certificate"),
    ("tls-cert-file", "1.2.24", "the API is served over TLS"),
    ("tls-private-key-file", "1.2.24", "the API is served over TLS"),
    ("client-ca-file", "1.2.25", "client certificates are verified"),
    ("etcd-cafile", "1.2.26", "the apiserver verifies etcd's certificate"),
    ("encryption-provider-config", "1.2.27", "Secrets are encrypted at rest in etcd"),
)
_AUDIT_MINIMUM = (("audit-log-maxage", 30, "1.2.17"), ("audit-log-maxbackup", 10, "1.2.18"),
                  ("audit-log-maxsize", 100, "1.2.19"))


def apiserver_unit_problems(f: HostFile, cmd: Command) -> list[str]:
    problems = []

    def bad(names: tuple[str, ...], text: str) -> None:
        problems.append(f"{_where(f, cmd.line_of(*names))}: {text}")

    if not _is_false(cmd.get("anonymous-auth")):
        bad(("anonymous-auth",), f"--anonymous-auth is {cmd.get('anonymous-auth') or 'unset (true)'}; must be false "
                                  "(CIS 1.2.1)")
    for flag in ("token-auth-file", "basic-auth-file"):
        if cmd.get(flag) is not None:
            bad((flag,), f"--{flag} is set; static credential files are not allowed (CIS 1.2.2)")
    modes = _csv(cmd.get("authorization-mode"))
    if "AlwaysAllow" in modes:
        bad(("authorization-mode",), "--authorization-mode includes AlwaysAllow (CIS 1.2.6)")
    for mode, item in (("Node", "1.2.7"), ("RBAC", "1.2.8")):
        if mode not in modes:
            bad(("authorization-mode",), f"--authorization-mode {','.join(modes) or 'unset'} lacks {mode} (CIS {item})")
    enabled, disabled = _csv(cmd.get("enable-admission-plugins")), _csv(cmd.get("disable-admission-plugins"))
    if "AlwaysAdmit" in enabled:
        bad(("enable-admission-plugins",), "admission plugin AlwaysAdmit is enabled (CIS 1.2.10)")
    if "NodeRestriction" not in enabled:
        bad(("enable-admission-plugins",), "admission plugin NodeRestriction is not enabled (CIS 1.2.14)")
    for plugin, item in (("ServiceAccount", "1.2.12"), ("NamespaceLifecycle", "1.2.13")):
        if plugin in disabled:
            bad(("disable-admission-plugins",), f"admission plugin {plugin} is disabled (CIS {item})")
    if not _is_false(cmd.get("profiling")):
        bad(("profiling",), f"--profiling is {cmd.get('profiling') or 'unset (true)'}; must be false (CIS 1.2.15)")
    for flag, item, why in _APISERVER_REQUIRED:
        if not cmd.get(flag):
            bad((flag,), f"--{flag} is not set; {why} (CIS {item})")
    for flag, minimum, item in _AUDIT_MINIMUM:
        value = as_int(cmd.get(flag))
        if cmd.get("audit-log-path") and (value is None or value < minimum):
            bad((flag,), f"--{flag} is {cmd.get(flag) or 'unset'}; keep at least {minimum} (CIS {item})")
    if _is_false(cmd.get("service-account-lookup")):
        bad(("service-account-lookup",), "--service-account-lookup is false (CIS 1.2.21)")
    insecure = cmd.get("insecure-port")
    if (insecure is not None and insecure != "0") or cmd.get("insecure-bind-address") is not None:
        bad(("insecure-port", "insecure-bind-address"), "the insecure HTTP port is configured; it must stay off")
    for url in _csv(cmd.get("etcd-servers")):
        if not url.startswith("https://"):
            bad(("etcd-servers",), f"--etcd-servers {url} is not https; etcd is reached only over mTLS (CIS 2.2)")
    node_ports = cmd.get("service-node-port-range")
    if node_ports is not None and not _node_ports_ok(node_ports):
        bad(("service-node-port-range",), f"--service-node-port-range {node_ports} leaves 30000-32767 "
                                          "(NodePorts would shadow host services)")
    return problems


def _node_ports_ok(value: str) -> bool:
    low, _, high = value.partition("-")
    lo, hi = as_int(low), as_int(high or low)
    return lo is not None and hi is not None and NODE_PORT_LIMITS[0] <= lo <= hi <= NODE_PORT_LIMITS[1]


def validate_apiserver_unit(args: Any, report: Report) -> None:
    """kube-apiserver as its unit file starts it: CIS 1.2 (anonymous auth off, Node,RBAC, admission plugins,
    profiling off, audit log, kubelet/etcd TLS, encryption at rest), no insecure port, etcd over https."""
    found = _command(_files(args), APISERVER_UNIT)
    if found:
        for problem in apiserver_unit_problems(*found):
            report(problem)


# --- etcd (CIS 2) ---------------------------------------------------------------------------------------------


def _url_host(url: str) -> str:
    return (urlsplit(url).hostname or "").strip("[]")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _members(cmd: Command) -> set[str]:
    """The member addresses of --initial-cluster and the advertised URLs: where etcd may listen."""
    urls = [m.split("=", 1)[-1] for m in _csv(cmd.get("initial-cluster"))]
    urls += _csv(cmd.get("advertise-client-urls")) + _csv(cmd.get("initial-advertise-peer-urls"))
    return {h for h in map(_url_host, urls) if h and not _unspecified(h)}


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


_ETCD_TLS = (
    ("cert-file", "2.1"), ("key-file", "2.1"), ("trusted-ca-file", "2.2"),
    ("peer-cert-file", "2.4"), ("peer-key-file", "2.4"), ("peer-trusted-ca-file", "2.5"),
)


def etcd_unit_problems(f: HostFile, cmd: Command) -> list[str]:
    problems = []

    def bad(names: tuple[str, ...], text: str) -> None:
        problems.append(f"{_where(f, cmd.line_of(*names))}: {text}")

    for flag, item in (("client-cert-auth", "2.2"), ("peer-client-cert-auth", "2.5")):
        if not _is_true(cmd.get(flag)):
            bad((flag,), f"--{flag} is {cmd.get(flag) or 'unset (false)'}; must be true (CIS {item})")
    for flag, item in (("auto-tls", "2.3"), ("peer-auto-tls", "2.6")):
        if _is_true(cmd.get(flag)):
            bad((flag,), f"--{flag}=true: self-signed certificates nobody verifies (CIS {item})")
    for flag, item in _ETCD_TLS:
        if not cmd.get(flag):
            bad((flag,), f"--{flag} is not set (CIS {item})")
    members = _members(cmd)
    for flag in ("listen-client-urls", "listen-peer-urls", "advertise-client-urls", "initial-advertise-peer-urls"):
        for url in _csv(cmd.get(flag)):
            host = _url_host(url)
            if not url.startswith("https://"):
                bad((flag,), f"--{flag} {url} is plain http; clients and peers use TLS (CIS 2.1, 2.4)")
            elif flag.startswith("listen") and not _loopback(host) and host not in members:
                bad((flag,), f"--{flag} {url} listens beyond the member's own INSIDE address and loopback "
                             f"(members: {', '.join(sorted(members)) or 'none'}; zone design)")
    for url in _csv(cmd.get("listen-metrics-urls")):
        if not _loopback(_url_host(url)):
            bad(("listen-metrics-urls",), f"--listen-metrics-urls {url} serves metrics beyond loopback")
    return problems


def validate_etcd_unit(args: Any, report: Report) -> None:
    """etcd as its unit file starts it: client and peer certificate auth, no auto-TLS, https URLs only, listening
    only on the member's own address and loopback (CIS 2.1-2.6, zone design)."""
    found = _command(_files(args), ETCD_UNIT)
    if found:
        for problem in etcd_unit_problems(*found):
            report(problem)


# --- controller-manager and scheduler (CIS 1.3, 1.4) --------------------------------------------------------


def controller_problems(f: HostFile, cmd: Command) -> list[str]:
    problems = []

    def bad(names: tuple[str, ...], text: str) -> None:
        problems.append(f"{_where(f, cmd.line_of(*names))}: {text}")

    if not _is_false(cmd.get("profiling")):
        bad(("profiling",), f"--profiling is {cmd.get('profiling') or 'unset (true)'}; must be false (CIS 1.3.2)")
    if not _is_true(cmd.get("use-service-account-credentials")):
        bad(("use-service-account-credentials",), "--use-service-account-credentials is not true (CIS 1.3.3)")
    for flag, item in (("service-account-private-key-file", "1.3.4"), ("root-ca-file", "1.3.5")):
        if not cmd.get(flag):
            bad((flag,), f"--{flag} is not set (CIS {item})")
    bind = cmd.get("bind-address")
    if bind is None or not _loopback(bind):
        bad(("bind-address",), f"--bind-address is {bind or 'unset (0.0.0.0)'}; port 10257 must listen on "
                               "127.0.0.1 only (CIS 1.3.7)")
    return problems


def scheduler_problems(f: HostFile, cmd: Command, files: dict[str, HostFile]) -> list[str]:
    problems = []
    bind = cmd.get("bind-address")
    if bind is None or not _loopback(bind):
        problems.append(f"{_where(f, cmd.line_of('bind-address'))}: --bind-address is {bind or 'unset (0.0.0.0)'}; "
                        "port 10259 must listen on 127.0.0.1 only (CIS 1.4.2)")
    profiling = cmd.get("profiling")
    config_path = cmd.get("config")
    config = files.get(config_path or "")
    if profiling is None and config is not None and config.content is not None:
        doc = load_yaml(config.content)
        enabled = doc.get("enableProfiling") if isinstance(doc, Mapping) else None
        if enabled is not False:
            problems.append(f"{config.host} {config.path}:{_yaml_line(config.content, 'enableProfiling')}: "
                            f"enableProfiling is {enabled if enabled is not None else 'unset (true)'}; must be false "
                            "(CIS 1.4.1)")
    elif not _is_false(profiling) and (config is None or config.content is not None):
        problems.append(f"{_where(f, cmd.line_of('profiling'))}: --profiling is {profiling or 'unset (true)'}; "
                        "must be false (CIS 1.4.1)")
    return problems


def validate_controllers_units(args: Any, report: Report) -> None:
    """kube-controller-manager and kube-scheduler as their units start them: loopback only, profiling off,
    per-controller service account credentials (CIS 1.3.2-1.3.7, 1.4.1-1.4.2)."""
    files = _files(args)
    found = _command(files, CONTROLLER_UNIT)
    if found:
        for problem in controller_problems(*found):
            report(problem)
    found = _command(files, SCHEDULER_UNIT)
    if found:
        for problem in scheduler_problems(found[0], found[1], files):
            report(problem)


# --- kubelet (CIS 4.2) ------------------------------------------------------------------------------------


def _dig(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(key)
    return doc


def kubelet_problems(unit: HostFile, cmd: Command, files: dict[str, HostFile]) -> list[str]:
    problems = []
    config = files.get(cmd.get("config") or "")
    text = config.content if config else None
    doc = load_yaml(text) if text is not None else {}
    if config is not None and text is None:
        return []  # unknown at preview
    if not isinstance(doc, Mapping):
        return [f"{_where(config or unit, 1)}: the kubelet configuration is not a YAML mapping"]

    def at(key: str, flag: str) -> str:
        if cmd.get(flag) is not None:
            return _where(unit, cmd.line_of(flag))
        return f"{unit.host} {config.path if config else unit.path}:{_yaml_line(text, key)}"

    anonymous = cmd.get("anonymous-auth") or str(_dig(doc, "authentication", "anonymous", "enabled")).lower()
    anonymous = "unset (true)" if anonymous == "none" else anonymous
    if anonymous != "false":
        problems.append(f"{at('anonymous', 'anonymous-auth')}: anonymous authentication is {anonymous}; must be "
                        "false (CIS 4.2.1)")
    if (cmd.get("authentication-token-webhook") or str(_dig(doc, "authentication", "webhook", "enabled")).lower()) \
            != "true":
        problems.append(f"{at('webhook', 'authentication-token-webhook')}: webhook authentication is off; the "
                        "apiserver cannot authenticate callers (CIS 4.2.1, 4.2.2)")
    mode = cmd.get("authorization-mode") or _dig(doc, "authorization", "mode")
    if mode != "Webhook":
        problems.append(f"{at('mode', 'authorization-mode')}: authorization mode is {mode}; use Webhook, never "
                        "AlwaysAllow (CIS 4.2.2)")
    if not (cmd.get("client-ca-file") or _dig(doc, "authentication", "x509", "clientCAFile")):
        problems.append(f"{at('x509', 'client-ca-file')}: no client CA file; client certificates are not "
                        "verified (CIS 4.2.3)")
    read_only = cmd.get("read-only-port") or _dig(doc, "readOnlyPort")
    if read_only is not None and as_int(read_only) != 0:
        problems.append(f"{at('readOnlyPort', 'read-only-port')}: read-only port {read_only} serves the kubelet "
                        "API without authentication; must be 0 (CIS 4.2.4)")
    idle = cmd.get("streaming-connection-idle-timeout") or _dig(doc, "streamingConnectionIdleTimeout")
    if idle is not None and str(idle).strip() in ("0", "0s", "0m0s"):
        problems.append(f"{at('streamingConnectionIdleTimeout', 'streaming-connection-idle-timeout')}: streaming "
                        "connections never time out (CIS 4.2.5)")
    if str(cmd.get("make-iptables-util-chains") or _dig(doc, "makeIPTablesUtilChains")).lower() == "false":
        problems.append(f"{at('makeIPTablesUtilChains', 'make-iptables-util-chains')}: makeIPTablesUtilChains is "
                        "false (CIS 4.2.6)")
    if not ((cmd.get("tls-cert-file") or _dig(doc, "tlsCertFile"))
            and (cmd.get("tls-private-key-file") or _dig(doc, "tlsPrivateKeyFile"))):
        problems.append(f"{at('tlsCertFile', 'tls-cert-file')}: no serving certificate from our CA (tlsCertFile, "
                        "tlsPrivateKeyFile); the apiserver cannot verify the kubelet (CIS 1.2.5)")
    return problems


def validate_kubelet_files(args: Any, report: Report) -> None:
    """kubelet as its unit and config.yaml configure it: anonymous auth off, webhook authn/authz, client CA,
    read-only port 0, streaming timeout, iptables chains, serving certificate (CIS 4.2.1-4.2.6)."""
    files = _files(args)
    found = _command(files, KUBELET_UNIT)
    if found:
        for problem in kubelet_problems(found[0], found[1], files):
            report(problem)


# --- the host firewall as loaded (zone design) ----------------------------------------------------------


def _ruleset_problems(f: HostFile, includes: Optional[dict[str, str]] = None) -> list[str]:
    """What is wrong with the ruleset in `f`, loaded with `includes` (path -> text).

    A rule takes its sources from named sets (components/firewall.py): the set contents are judged where they
    are known — a ruleset whose `include`d members file is given (the HostFirewall's props carry both files),
    or a set-only members file on its own (no element may be any source). A ruleset judged without its
    include (the ruleset step alone) is judged on its structure; a set it uses that nothing it loads could
    define fails closed."""
    assert f.content is not None
    chains = [c for c in parse_ruleset(f.content, includes) if c.hook == "input"]
    if not chains and not parse_ruleset(f.content, includes):
        return _members_problems(f, includes)
    if not chains:
        return [f"{_where(f, 1)}: the ruleset has no input base chain; the host accepts everything"]
    unresolved = bool(included_paths(f.content)) and includes is None  # the sets come from a file not given
    problems = []
    for chain in chains:
        if chain.policy != "drop":
            problems.append(f"{_where(f, chain.line)}: input chain {chain.name} has policy "
                            f"{chain.policy or 'accept (default)'}; must be drop (zone design)")
        for rule in chain.rules:
            if rule.verdict != "accept" or rule.baseline:
                continue
            problems += _accept_problems(f, rule, unresolved)
    return problems


def _members_problems(f: HostFile, includes: Optional[dict[str, str]]) -> list[str]:
    assert f.content is not None
    problems = []
    for name, elements in parse_sets(f.content, includes).items():
        anywhere = [e for e in elements if e.endswith("/0") or e in ("0.0.0.0", "::")]
        if anywhere:
            problems.append(f"{_where(f, 1)}: set {name} holds {anywhere[0]} (any source; zone design)")
    return problems


def _accept_problems(f: HostFile, rule: NftRule, unresolved: bool) -> list[str]:
    ports = ",".join(rule.dports) or "every port"
    if rule.saddr is None:
        return [f"{_where(f, rule.line)}: `{rule.text}` accepts {ports} from any source; every "
                "accept names its source networks (zone design)"]
    if rule.missing_sets and not unresolved:
        return [f"{_where(f, rule.line)}: `{rule.text}` takes its sources from {', '.join(rule.missing_sets)}, "
                "which the loaded ruleset does not define; its sources cannot be judged (fail closed)"]
    saddr = [s for s in rule.saddr if s not in rule.missing_sets]
    anywhere = [s for s in saddr if s.endswith("/0") or s in ("0.0.0.0", "::")]
    problems = []
    if anywhere:
        problems.append(f"{_where(f, rule.line)}: `{rule.text}` accepts {ports} from {anywhere[0]} "
                        "(any source; zone design)")
    for port in _cluster_ports(rule.dports):
        wide = [s for s in saddr if _prefix(s) < 16 or (port in (2379, 2380) and _prefix(s) < 32)]
        if wide and not anywhere:
            problems.append(f"{_where(f, rule.line)}: {CLUSTER_PORTS[port]} port {port} accepts "
                            f"{', '.join(wide)}; only named hosts may reach it (zone design)")
    return problems


def _prefix(source: str) -> int:
    try:
        return ipaddress.ip_network(source, strict=False).prefixlen
    except ValueError:
        return 0


def _cluster_ports(dports: list[str]) -> Iterator[int]:
    for value in dports:
        low, _, high = value.partition("-")
        lo, hi = as_int(low), as_int(high or low)
        if lo is not None and hi is not None:
            yield from (p for p in CLUSTER_PORTS if lo <= p <= hi)


def validate_firewall_ruleset(args: Any, report: Report) -> None:
    """The nftables ruleset a host loads: input policy drop; every accept names its sources; no any-source rule;
    etcd only from single hosts; kubelet, controller, scheduler and VXLAN ports never from wide networks.
    Named sets are read with their contents: the HostFirewall's ruleset file with its members file."""
    for f in _files(args).values():
        if f.path.endswith(".nft") and f.content is not None:
            for problem in _ruleset_problems(f):
                report(problem)
    loaded = _firewall_files(args)
    if loaded is not None:
        for problem in _ruleset_problems(*loaded):
            report(problem)


def _firewall_files(args: Any) -> Optional[tuple[HostFile, dict[str, str]]]:
    """A HostFirewall's ruleset file and the files it includes (its members file), as its props carry them."""
    if args.resource_type != HOST_FIREWALL:
        return None
    ruleset, members, host = get(args.props, "rulesetFile"), get(args.props, "members"), get(args.props, "host")
    if not isinstance(ruleset, str):
        return None
    paths = included_paths(ruleset)
    includes = {paths[0]: members} if paths and isinstance(members, str) else {}
    return HostFile(str(host), "firewall.nft", "0600", False, ruleset), includes


# --- registry clients and Harbor -------------------------------------------------------------------------


def hosts_toml_problems(f: HostFile) -> list[str]:
    doc = load_toml(f.content)
    if doc is None:
        return [f"{_where(f, 1)}: not valid TOML; containerd would ignore the registry's TLS settings"]
    problems = []
    server = doc.get("server")
    if isinstance(server, str) and not server.startswith("https://"):
        problems.append(f"{_where(f, 1)}: server = {server!r} is not https (registry over https only)")
    hosts = doc.get("host")
    for url, entry in (hosts.items() if isinstance(hosts, Mapping) else []):
        if not str(url).startswith("https://"):
            problems.append(f"{f.host} {f.path}: [host.{url!r}] is not https (registry over https only)")
        if isinstance(entry, Mapping) and entry.get("skip_verify") is True:
            problems.append(f"{f.host} {f.path}: [host.{url!r}] skip_verify = true; the registry is trusted "
                            "through our CA")
    return problems


def harbor_yml_problems(f: HostFile) -> list[str]:
    doc = load_yaml(f.content)
    if not isinstance(doc, Mapping):
        return [f"{_where(f, 1)}: harbor.yml is not a YAML mapping"]
    problems = []
    https = doc.get("https")
    if not isinstance(https, Mapping) or not https.get("certificate") or not https.get("private_key"):
        problems.append(f"{_where(f, _yaml_line(f.content, 'https') or 1)}: harbor.yml has no https block with "
                        "certificate and private_key; Harbor would serve plain http (Harbor: Configure HTTPS)")
    ssl_mode = _dig(doc, "external_database", "harbor", "ssl_mode")
    if isinstance(doc.get("external_database"), Mapping) and ssl_mode not in ("require", "verify-ca", "verify-full"):
        problems.append(f"{_where(f, _yaml_line(f.content, 'ssl_mode') or 1)}: external_database ssl_mode is "
                        f"{ssl_mode}; Harbor HA reaches PostgreSQL over TLS (require or stricter)")
    return problems


def docker_problems(files: dict[str, HostFile]) -> list[str]:
    problems = []
    found = _command(files, DOCKER_UNIT)
    if found:
        f, cmd = found
        for flag in cmd.values("H", "host"):
            if not flag.value.startswith(("unix://", "fd://")):
                problems.append(f"{_where(f, flag.line)}: dockerd listens on {flag.value}; root-equivalent API "
                                "on the network (Docker: Protect the Docker daemon socket)")
    for f in files.values():
        if f.path.startswith(UNITS) and "docker" in f.path and f.path.endswith(".socket") and f.content:
            for number, line in enumerate(f.content.splitlines(), 1):
                key, _, value = line.strip().partition("=")
                if key.strip() == "ListenStream" and value.strip() and not value.strip().startswith("/"):
                    problems.append(f"{_where(f, number)}: ListenStream={value.strip()} exposes the Docker API on "
                                    "the network (Docker: Protect the Docker daemon socket)")
    daemon = files.get(DOCKER_DAEMON_JSON)
    if daemon is not None and daemon.content is not None:
        doc = load_json(daemon.content)
        hosts = doc.get("hosts") if isinstance(doc, Mapping) else None
        for value in hosts if isinstance(hosts, list) else []:
            if not str(value).startswith(("unix://", "fd://")):
                problems.append(f"{daemon.host} {daemon.path}: \"hosts\" has {value}; root-equivalent API on the "
                                "network (Docker: Protect the Docker daemon socket)")
    return problems


def validate_registry_artifacts(args: Any, report: Report) -> None:
    """containerd hosts.toml over https without skip_verify; harbor.yml with its https block and PostgreSQL over
    TLS (Harbor HA)."""
    files = _files(args)
    for f in files.values():
        if f.content is None:
            continue
        if f.path.endswith("/hosts.toml"):
            problems = hosts_toml_problems(f)
        elif f.path.endswith(HARBOR_CONFIGS):
            problems = harbor_yml_problems(f)
        else:
            continue
        for problem in problems:
            report(problem)
    if _installs_harbor(args) and not any(f.path.endswith(HARBOR_CONFIGS) and f.content is not None
                                          for f in files.values()):
        host = args.props.get("host", "?")
        report(f"{host}: the step runs Harbor's install.sh but ships no readable harbor.yml or harbor.yml.in; its "
               "https block cannot be checked (fail closed)")


# harbor.yml as Harbor reads it, or the program's harbor.yml.in (the same file, "<secret:NAME>" for each password)
HARBOR_CONFIGS = ("/harbor.yml", "/harbor.yml.in")


def _installs_harbor(args: Any) -> bool:
    step = step_of(args)
    return step is not None and "./install.sh" in step["script"]


def validate_docker_daemon(args: Any, report: Report) -> None:
    """dockerd listens only on its unix socket (unit `-H` flags, daemon.json `hosts`, a docker .socket unit's
    ListenStream): a TCP socket is a root-equivalent API on the network."""
    for problem in docker_problems(_files(args)):
        report(problem)


# --- secrets in the right place -------------------------------------------------------------------------

def _mode(mode: str) -> int:
    try:
        return int(mode, 8)
    except ValueError:
        return 0o777


def validate_secret_files(args: Any, report: Report) -> None:
    """Private keys and credential-bearing kubeconfigs reach hosts only as secret files (stdin, never the plan)
    with mode 0600 or stricter (CIS 1.1.13, 4.1.5)."""
    for f in _files(args).values():
        what = holds_credentials(f.content) if f.content is not None else None
        if what and not f.secret:
            report(f"{f.host} {f.path}: holds {what} but is not marked secret; it would appear in the plan and "
                   "the create command")
        if (f.secret or what) and _mode(f.mode) & 0o077:
            report(f"{f.host} {f.path}: mode {f.mode} lets others read a secret file; use 0600 (CIS 1.1.13, 4.1.5)")


# --- Rancher server in docker mode -----------------------------------------------------------------------

RANCHER_SSL = ("/etc/rancher/ssl/cert.pem", "/etc/rancher/ssl/key.pem")


def _container_port(publish: str) -> Optional[int]:
    """The container port of a `-p [ip:][host:]container[/proto]` value."""
    return as_int(publish.split("/", 1)[0].rsplit(":", 1)[-1])


def rancher_problems(host: str, script: str) -> list[str]:
    problems = []
    for cmd in shell_commands(script, "docker run"):
        if not any("rancher/rancher:" in a for a in cmd.args):
            continue
        for flag in cmd.values("p", "publish"):
            if _container_port(flag.value) == 80:
                problems.append(f"{host} step script:{flag.line}: docker run publishes Rancher's plain-http port "
                                f"({flag.value}); Rancher is reached on 443 only, 80 only behind a TLS-terminating "
                                "load balancer (Rancher: Port requirements)")
        targets = {v.value.split(":")[1] for v in cmd.values("v", "volume") if v.value.count(":") >= 1}
        missing = [t for t in RANCHER_SSL if t not in targets]
        if missing:
            problems.append(f"{host} step script:{cmd.line}: Rancher runs without {', '.join(missing)}; it would "
                            "serve a certificate it generated itself, not one from our CA (Rancher: docker install "
                            "with certificates signed by a private CA)")
        if cmd.get("no-cacerts") is not None:
            problems.append(f"{host} step script:{cmd.line_of('no-cacerts')}: --no-cacerts: agents would not be "
                            "given our CA to verify Rancher")
    return problems


def validate_rancher_server(args: Any, report: Report) -> None:
    """Rancher in docker mode, as the step script runs it: only 443 published (no plain-http 80), our
    certificate and key mounted, no --no-cacerts."""
    step = step_of(args)
    if step is None:
        return
    script, host = step["script"], step["host"]
    if "docker run" in script:
        for problem in rancher_problems(str(host), script):
            report(problem)
