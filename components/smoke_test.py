"""SmokeTest: `containercloud:k8s:SmokeTest` — proof that the cluster works after `up` (`smokeTest`).

One step on the first control-plane host (INSIDE), after the add-ons: `kubectl apply` of a namespace,
an nginx Deployment pinned to the DMZ workers (node affinity on `kubernetes.io/hostname`; every worker
when the stack has no DMZ worker) with the image from Harbor (`<registry>/system/nginx`, pulled over TLS
by containerd) and a NodePort Service; then it checks the rollout, the Service's ClusterIP and the
NodePort on every DMZ worker from this INSIDE host, and cluster DNS from inside the pod. Any failure
stops the `up` with `smoke test FAILED: <what>` and what the cluster says. The workload is deleted when
the script exits, pass or fail. It runs again when what it checks changes (nodes, image, settings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import yaml

from components import artifacts
from components.config import Host, Settings
from components.host_step import HostFile, HostStep, HostStepArgs, host_connection, needs_sudo
from components.templating import render

NAMESPACE = "containercloud-smoke"
WORK_DIR = "/etc/containercloud/smoke-test"
ROLLOUT_TIMEOUT = 300
RETRIES = 30
DMZ = "dmz"


def target_nodes(s: Settings) -> list[Host]:
    dmz = [h for h in s.worker_hosts if h.zone == DMZ]
    return dmz or list(s.worker_hosts)


def runner_host(s: Settings) -> Host:
    """The INSIDE host the checks run from: the first control-plane host."""
    return s.control_plane_hosts[0]


def workload(s: Settings) -> str:
    nodes = target_nodes(s)
    return render("smoke_test/workload.yaml.j2", namespace=NAMESPACE, replicas=min(len(nodes), 2),
                  nodes=[h.name for h in nodes], image=artifacts.image(s, "nginx"))


def workload_docs(s: Settings) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(workload(s)) if d]


def script(s: Settings) -> str:
    nodes = target_nodes(s)
    return render("smoke_test/run.sh.j2", kubeconfig=f"{WORK_DIR}/admin.kubeconfig", namespace=NAMESPACE,
                  manifest=f"{WORK_DIR}/workload.yaml", image=artifacts.image(s, "nginx"),
                  nodes=[h.name for h in nodes], node_addresses=nodes, timeout=ROLLOUT_TIMEOUT, retries=RETRIES,
                  cluster_domain=s.cluster_domain, dns_ip=s.cluster_dns_ip)


@dataclass(frozen=True)
class SmokeTestArgs:
    settings: Settings
    ssh_private_key: pulumi.Input[str]
    admin_kubeconfig: pulumi.Input[str]  # secret; written 0600 on the INSIDE host only
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)  # add-ons, nodes, image mirror


class SmokeTest(pulumi.ComponentResource):
    """nginx from Harbor on the DMZ workers, checked from an INSIDE host; fails the `up` when it does not work."""

    def __init__(self, name: str, args: SmokeTestArgs, opts: Optional[pulumi.ResourceOptions] = None):
        s = args.settings
        host = runner_host(s)
        super().__init__("containercloud:k8s:SmokeTest", name, {
            "host": host.name,
            "nodes": [h.name for h in target_nodes(s)],
            "image": artifacts.image(s, "nginx"),
            "namespace": NAMESPACE,
        }, opts)
        files = [HostFile(f"{WORK_DIR}/workload.yaml", workload(s)),
                 HostFile(f"{WORK_DIR}/admin.kubeconfig", args.admin_kubeconfig, "0600", secret=True)]
        self.step = HostStep(
            f"{name}-run",
            HostStepArgs(host=host.name, connection=host_connection(s, host, args.ssh_private_key),
                         script=script(s),
                         delete_script=render("smoke_test/undo.sh.j2", kubeconfig=f"{WORK_DIR}/admin.kubeconfig",
                                              namespace=NAMESPACE, work_dir=WORK_DIR),
                         files=files, use_sudo=needs_sudo(s, host)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)))
        self.register_outputs({"host": host.name})
