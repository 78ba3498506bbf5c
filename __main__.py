"""container-cloud: wires the components together and exports the stack outputs. Nothing else."""

import pulumi
import pulumi_kubernetes

from components import evaluation, prerequisites, team_rancher, team_registry
from components.addons import ClusterAddons, ClusterAddonsArgs
from components.certificates import certificates_output
from components.config import load_settings
from components.control_plane import ControlPlane, ControlPlaneArgs
from components.directory import HARBOR_API_DIR, RANCHER_API_DIR, DirectoryAuth, DirectoryAuthArgs
from components.firewall import HostFirewall, HostFirewallArgs
from components.headlamp import Headlamp, HeadlampArgs
from components.ingress import IngressController, IngressControllerArgs
from components.pki import ClusterPki, ClusterPkiArgs
from components.rancher import RancherServer, RancherServerArgs
from components.registry import Harbor, HarborArgs
from components.smoke_test import SmokeTest, SmokeTestArgs
from components.team_access import TeamAccess, TeamAccessArgs
from components.team_rancher import TeamRancher, TeamRancherArgs
from components.team_registry import TeamRegistry, TeamRegistryArgs
from components.worker import worker_nodes

evaluation.collector_off()  # measured: README, Benchmark
settings, secrets = load_settings()  # every fault (types, rules, bill of materials) before any resource

# --- host prerequisites: checked on every host, in parallel, before anything else on any host -------------
host_prerequisites = prerequisites.first_on_every_host(settings, secrets.ssh_private_key)

# --- PKI -----------------------------------------------------------------------------------------
pki = ClusterPki("pki", ClusterPkiArgs.from_settings(settings))

# --- host firewalls ------------------------------------------------------------------------------
firewalls = [
    HostFirewall(f"{h.name}-firewall", HostFirewallArgs.from_settings(settings, h, secrets.ssh_private_key))
    for h in settings.hosts
]

# --- registry: Harbor, registry trust, image mirror ------------------------------------------------
registry = Harbor("registry", HarborArgs.from_settings(settings, secrets, pki))

# --- kubernetes: etcd, control plane (apiservers one at a time), nodes (batches), add-ons -----------
control_plane = ControlPlane("control-plane", ControlPlaneArgs(settings, pki, secrets.ssh_private_key,
                                                               registry.artifacts_ready))
nodes = worker_nodes(settings, pki, secrets.ssh_private_key, control_plane.api_ready,
                     control_plane.kube_proxy_kubeconfig)  # rolled out in maxUnavailableWorkers batches
cluster_name = f"{pulumi.get_project()}-{pulumi.get_stack()}"
cluster_provider = pulumi_kubernetes.Provider(  # the identifier keeps a renewed CA from replacing every object
    "cluster", kubeconfig=control_plane.admin_kubeconfig, cluster_identifier=cluster_name,
    opts=pulumi.ResourceOptions(depends_on=[control_plane.api_ready]),
)
addons = ClusterAddons("addons", ClusterAddonsArgs(settings, cluster_provider),
                       opts=pulumi.ResourceOptions(depends_on=[*(n.ready for n in nodes), *registry.ready]))

# --- rancher (an ingress controller first in helm mode) ----------------------------------------------
ingress = None
if settings.rancher_mode == "helm":
    ingress = IngressController("ingress", IngressControllerArgs(settings, cluster_provider,
                                                                 depends_on=[addons, *registry.ready]))
rancher = RancherServer("rancher", RancherServerArgs.from_settings(
    settings, secrets, pki, control_plane.admin_kubeconfig, api_ready=[control_plane.api_ready],
    registry_ready=registry.ready, kube_provider=cluster_provider, depends_on=[addons],
    cluster_name=cluster_name, ingress=ingress))

# --- headlamp (optional web view through the API server) -------------------------------------------
headlamp = Headlamp("headlamp", HeadlampArgs(settings, cluster_provider), opts=pulumi.ResourceOptions(
    depends_on=[addons, *registry.ready])) if settings.headlamp else None

# --- smoke test: nginx from Harbor on the DMZ workers, checked from an INSIDE host -------------------------
if settings.smoke_test:
    SmokeTest("smoke-test", SmokeTestArgs(settings, secrets.ssh_private_key, control_plane.admin_kubeconfig,
                                          depends_on=[addons, *(n.ready for n in nodes), *registry.ready]))

# --- directory: Harbor and Rancher log people in against LDAP / AD ------------------------------------
directory = None
if settings.directory.enabled:
    directory = DirectoryAuth("directory", DirectoryAuthArgs(
        settings, secrets.ssh_private_key, secrets.directory_bind_password, secrets.directory_admin_password,
        registry.api_files(HARBOR_API_DIR), rancher.api_files(RANCHER_API_DIR), rancher.api_script(RANCHER_API_DIR),
        rancher.args.import_host, harbor_ready=registry.ready, rancher_ready=[rancher.import_step]))

# --- teams ---------------------------------------------------------------------------------------
teams = [
    TeamAccess(t.name, TeamAccessArgs.from_settings(settings, t, cluster_provider, pki.cas["kubernetes"],
                                                    depends_on=[control_plane.api_ready]))
    for t in settings.teams
]
team_registries = [
    TeamRegistry(f"{t.args.team.name}-registry", TeamRegistryArgs(
        settings, t.args.team, secrets.ssh_private_key, registry.api_files(team_registry.api_dir(t.args.team.name)),
        cluster_provider, list(t.namespaces.values()), [*registry.ready, *(directory.ready if directory else [])]))
    for t in teams
]
if directory is not None:
    for t in teams:
        TeamRancher(f"{t.args.team.name}-rancher", TeamRancherArgs(
            settings, t.args.team, secrets.ssh_private_key, rancher.args.import_host,
            rancher.api_files(team_rancher.api_dir(t.args.team.name)),
            rancher.api_script(team_rancher.api_dir(t.args.team.name)), control_plane.admin_kubeconfig,
            [*t.namespaces.values(), rancher.import_step, *directory.ready]))

# --- outputs -------------------------------------------------------------------------------------
pulumi.export("apiEndpoint", settings.api_endpoint)
pulumi.export("kubernetesCaCertificate", pki.ca_bundle("kubernetes"))
pulumi.export("certificates", certificates_output(pki, teams, registry))  # names, expiry dates: not secret
pulumi.export("adminKubeconfig", control_plane.admin_kubeconfig)
pulumi.export("kubeconfigs", pulumi.Output.secret({t.args.team.name: t.kubeconfig for t in teams}))
pulumi.export("registryUrl", registry.url)
pulumi.export("registryAdminPassword", registry.admin_password)
pulumi.export("rancherUrl", rancher.url)
pulumi.export("rancherAdminPassword", rancher.admin_password)
pulumi.export("rancherClusterId", rancher.cluster_id)
pulumi.export("headlampUrl", headlamp.url if headlamp else "")
pulumi.export("teamPullCredentials", pulumi.Output.secret(
    {r.args.team.name: {"username": team_registry.robot_name(r.args.team.name), "password": r.robot_secret}
     for r in team_registries}))
