"""container-cloud: wires the components together and exports the stack outputs. Nothing else."""

import pulumi

from components import artifacts
from components.config import load_settings
from components.pki import ClusterPki, ClusterPkiArgs

settings, secrets = load_settings()
artifacts.binaries(settings)  # refuse a version without an upstream digest before any resource

# --- PKI ---------------------------------------------------------------------------------------
pki = ClusterPki("pki", ClusterPkiArgs.from_settings(settings))

# --- host firewalls (issue 4) ---------------------------------------------------------------
from components.firewall import HostFirewall, HostFirewallArgs  # noqa: E402

firewalls = [
    HostFirewall(f"{h.name}-firewall", HostFirewallArgs.from_settings(settings, h, secrets.ssh_private_key))
    for h in settings.hosts
]

# --- kubernetes: etcd, control plane, workers, add-ons (issue 3) -----------------------------
import pulumi_kubernetes  # noqa: E402

from components.addons import ClusterAddons, ClusterAddonsArgs  # noqa: E402
from components.control_plane import ControlPlane, ControlPlaneArgs  # noqa: E402
from components.worker import WorkerNode, WorkerNodeArgs  # noqa: E402

control_plane = ControlPlane("control-plane", ControlPlaneArgs(settings, pki, secrets.ssh_private_key))
workers = [
    WorkerNode(h.name, WorkerNodeArgs(settings, h, pki, secrets.ssh_private_key, control_plane.api_ready,
                                      settings.control_plane_hosts[0]))
    for h in settings.node_hosts
]
cluster_provider = pulumi_kubernetes.Provider(
    "cluster", kubeconfig=control_plane.admin_kubeconfig,
    opts=pulumi.ResourceOptions(depends_on=[control_plane.api_ready]),
)
addons = ClusterAddons("addons", ClusterAddonsArgs(settings, cluster_provider),
                       opts=pulumi.ResourceOptions(depends_on=[w.ready for w in workers]))
pulumi.export("adminKubeconfig", control_plane.admin_kubeconfig)

# --- registry: Harbor, registry trust, image mirror (issue 5) ---------------------------------
from components.registry import Harbor, HarborArgs  # noqa: E402

registry = Harbor("registry", HarborArgs.from_settings(settings, secrets, pki))
pulumi.export("registryUrl", registry.url)
pulumi.export("registryAdminPassword", registry.admin_password)

# --- rancher (issue 6) -----------------------------------------------------------------------
from components.ingress import IngressController, IngressControllerArgs  # noqa: E402
from components.rancher import RancherServer, RancherServerArgs  # noqa: E402

ingress = None
if settings.rancher_mode == "helm":
    ingress = IngressController("ingress", IngressControllerArgs(settings, cluster_provider,
                                                                 depends_on=[addons, *registry.ready]))
rancher = RancherServer("rancher", RancherServerArgs.from_settings(
    settings, secrets, pki, control_plane.admin_kubeconfig, api_ready=[control_plane.api_ready],
    registry_ready=registry.ready, kube_provider=cluster_provider, depends_on=[addons],
    cluster_name=f"{pulumi.get_project()}-{pulumi.get_stack()}", ingress=ingress))
pulumi.export("rancherUrl", rancher.url)
pulumi.export("rancherAdminPassword", rancher.admin_password)
pulumi.export("rancherClusterId", rancher.cluster_id)

# --- teams (issue 7) -------------------------------------------------------------------------
from components.team_access import TeamAccess, TeamAccessArgs  # noqa: E402

teams = [
    TeamAccess(t.name, TeamAccessArgs.from_settings(settings, t, cluster_provider, pki.cas["kubernetes"],
                                                    depends_on=[control_plane.api_ready]))
    for t in settings.teams
]
pulumi.export("kubeconfigs", pulumi.Output.secret({t.args.team.name: t.kubeconfig for t in teams}))

# --- outputs ---------------------------------------------------------------------------------
pulumi.export("apiEndpoint", settings.api_endpoint)
pulumi.export("kubernetesCaCertificate", pki.ca_bundle("kubernetes"))
