"""Host prerequisites: `<host>-prerequisites`, a HostStep — the first step on every host.

It checks what every later step assumes: Debian 12 or 13 (the scripts use apt, dpkg and systemd), x86_64
(every binary is linux-amd64), cgroup v2 on Kubernetes nodes and Docker hosts (kubelet 1.35 defaults
`failCgroupV1: true` and refuses to start on v1), and the Debian packages the host's roles need. With
`installHostPackages` the missing packages are installed with apt-get from the host's configured
repositories (in an air gap, its internal mirror); otherwise the step fails with one message naming
the host and every missing package.

"Before anything else on its host": every host's check runs in parallel. The platform hosts' checks (every
host that is not only a worker: a number that does not grow with the cluster) meet in one gate resource (on
the deployer, no SSH), and every remote command and upload on a platform host, and every deployer-side
command, depends on the gate: a failed platform check stops the whole stack before any host changes. A
worker's own commands and uploads depend on that worker's check instead (they reach the platform through
the API-ready step, which waits for the gate). So no resource depends, even transitively, on O(workers)
checks: the SDK's cycle check (`pulumi/runtime/resource_cycle_breaker.py`) walks everything a dependency
depends on, once per declared dependency, and a gate over every host made that walk O(hosts) per step,
O(hosts²) per program (measured: 418 walks of ~167 resources through `master-1-api-ready` at 100 workers).
The price: a worker's failed check stops only its own steps by the graph; `pulumi up` then starts no new
step anywhere (its default: in-flight steps complete; `--continue-on-error` lets the others go on), so
another worker that passed its check may already have run its first steps (docs/upstream.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_command as command

from components import host_step
from components.config import Host, Settings
from components.host_step import HostStep, HostStepArgs, host_connection, needs_sudo
from components.templating import render

OLD_TYPE = "containercloud:host:HostPrerequisites"  # the wrapper component before issue 16 (aliased)
DEBIAN_RELEASES = ("12", "13")
ARCHITECTURE = "x86_64"
GATED_TYPES = ("command:remote:Command", "command:remote:CopyToRemote", "command:local:Command")


@dataclass(frozen=True)
class Package:
    name: str  # the Debian package
    reason: str  # why the host needs it (the upstream source)
    needed: Callable[[Settings, Host], bool]


def _node(s: Settings, h: Host) -> bool:
    return h.is_node


def runs_docker(s: Settings, h: Host) -> bool:
    """The host runs the docker engine (the registry hosts; Rancher's hosts in docker mode)."""
    return h.has("registry") or (h.has("rancher") and s.rancher_mode == "docker")


def _nfs(s: Settings, h: Host) -> bool:
    return h.has("registry") and s.registry_mode == "ha" and s.registry_shared_storage.startswith("nfs:")


PACKAGES: tuple[Package, ...] = (
    Package("ca-certificates", "curl's https to the artifacts mirror (Debian: not in a minimal install)",
            lambda s, h: True),
    Package("curl", "artifact fetch and the Harbor/Rancher API calls of the host scripts", lambda s, h: True),
    Package("nftables", "the host firewall is loaded with nft -f (components/firewall.py)", lambda s, h: True),
    Package("iptables", "kube-proxy in iptables mode refuses to start without it "
                        "(kubernetes cmd/kube-proxy/app/server_linux.go); flannel's masquerade rules", _node),
    Package("iptables", "dockerd (static tarball) programs its nat/filter rules with iptables", runs_docker),
    Package("jq", "the Harbor health wait reads /api/v2.0/health as JSON (registry/harbor.sh.j2)",
            lambda s, h: h.has("registry")),
    Package("nfs-common", "mount.nfs for Harbor HA's shared storage (registrySharedStorage nfs:...)", _nfs),
)


def packages(s: Settings, host: Host) -> list[Package]:
    """The packages `host` needs, each once, with the first reason that applies."""
    out: dict[str, Package] = {}
    for p in PACKAGES:
        if p.name not in out and p.needed(s, host):
            out[p.name] = p
    return list(out.values())


def needs_cgroup_v2(s: Settings, host: Host) -> bool:
    return _node(s, host) or runs_docker(s, host)


def script(s: Settings, host: Host) -> str:
    return render("prerequisites/check.sh.j2", host=host.name, releases=DEBIAN_RELEASES, arch=ARCHITECTURE,
                  cgroup_v2=needs_cgroup_v2(s, host), packages=[p.name for p in packages(s, host)],
                  install=s.install_host_packages)


def _old_parent(name: str) -> str:
    """The URN of the check's `containercloud:host:HostStep` component in the oldest stacks, under the
    `containercloud:host:HostPrerequisites` component that wrapped it until issue 16."""
    return (f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{OLD_TYPE}${host_step.OLD_TYPE}"
            f"::{name}")


def check(s: Settings, h: Host, ssh_private_key: pulumi.Input[str]) -> HostStep:
    """The host's check, a step at the top of the stack. Stacks created before issue 16 hold its Command under
    a `HostStep` component, itself under the `HostPrerequisites` wrapper in the oldest stacks: the aliases
    (the step's own, and this one) make `pulumi up` adopt the Command, not delete it (a delete would run the
    step's undo on the host) and create a new one."""
    name = f"{h.name}-prerequisites"
    return HostStep(name, HostStepArgs(
        host=h.name, connection=host_connection(s, h, ssh_private_key), script=script(s, h),
        delete_script="# installed packages stay: other software on the host may use them\n",
        use_sudo=needs_sudo(s, h)), pulumi.ResourceOptions(aliases=[pulumi.Alias(parent=_old_parent(name))]))


def gate(checks: list[HostStep]) -> command.local.Command:
    """One resource on the deployer that completes once every platform host passed its check."""
    return command.local.Command(
        "host-prerequisites", create="echo every platform host passed its prerequisites",
        opts=pulumi.ResourceOptions(depends_on=[c.command for c in checks]))


def only_worker(h: Host) -> bool:
    """A host whose only role is worker: its steps wait for its own check, not for the gate."""
    return set(h.roles) == {"worker"}


def _after(barrier: pulumi.Resource, own: dict[str, pulumi.Resource], args: pulumi.ResourceTransformationArgs
           ) -> Optional[pulumi.ResourceTransformationResult]:
    """Every remote command, upload and deployer-side command registered after the barrier waits for it, but
    the Commands of a worker-only host's steps, which wait for that worker's own check (`own`: host name ->
    check; the host from `host_step.building_for`, as the transformation runs inside the step's construction)."""
    if args.type_ not in GATED_TYPES:
        return None
    first = own.get(host_step.building_for() or "", barrier)
    return pulumi.ResourceTransformationResult(
        args.props, pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(depends_on=[first])))


def first_on_every_host(s: Settings, ssh_private_key: pulumi.Input[str]) -> command.local.Command:
    """The prerequisite check of every host, the platform hosts' gate, and a stack transformation that makes
    every command and upload registered after it depend on the gate, or on its worker's own check. Call it
    before any other component (a component's children inherit the transformations registered before the
    component was constructed): __main__.py does, as its first resource."""
    checks = {h.name: check(s, h, ssh_private_key) for h in s.hosts}
    barrier = gate([checks[h.name] for h in s.hosts if not only_worker(h)])
    own: dict[str, pulumi.Resource] = {h.name: checks[h.name].command for h in s.hosts if only_worker(h)}
    pulumi.runtime.register_stack_transformation(functools.partial(_after, barrier, own))
    return barrier
