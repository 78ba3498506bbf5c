"""The list of policies of the container-cloud pack (built by policy/__main__.py).

Every host-level rule reads what a host receives (each step's files, decoded from its Command by
policy/rules/artifacts/); Kubernetes objects and TLS resources are judged from their own inputs; the
HostFirewall rules check the structured flows against the zone matrix. Every rule is mandatory except
leaf-validity (a site may reasonably choose longer-lived leaves when it rotates by `pulumi up`; see pki.py).
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

from . import credentials, hardening, host_artifacts, network, pki, platform, rbac

PACK_NAME = "container-cloud"


def _resource(name: str, fn, level: EnforcementLevel = EnforcementLevel.MANDATORY) -> ResourceValidationPolicy:  # type: ignore[no-untyped-def]
    return ResourceValidationPolicy(name=name, description=(fn.__doc__ or name).strip(), validate=fn,
                                    enforcement_level=level)


POLICIES = [
    _resource("zone-matrix", network.validate_zone_matrix),
    _resource("overlay-nodes-only", network.validate_overlay_nodes_only),
    _resource("etcd-ports-members-only", network.validate_etcd_ports),
    _resource("no-any-source-inside", network.validate_no_any_source),
    _resource("cluster-ports-never-public", network.validate_cluster_ports_not_public),
    _resource("host-firewall-default-drop", network.validate_default_drop),
    StackValidationPolicy(
        name="every-host-firewalled",
        description=(network.validate_every_host_firewalled.__doc__ or "").strip(),
        validate=network.validate_every_host_firewalled,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    _resource("host-firewall-ruleset", host_artifacts.validate_firewall_ruleset),
    _resource("apiserver-hardening", host_artifacts.validate_apiserver_unit),
    _resource("etcd-hardening", host_artifacts.validate_etcd_unit),
    _resource("controller-manager-scheduler-hardening", host_artifacts.validate_controllers_units),
    _resource("kubelet-hardening", host_artifacts.validate_kubelet_files),
    _resource("registry-https-only", hardening.validate_registry_https),
    _resource("registry-tls-artifacts", host_artifacts.validate_registry_artifacts),
    _resource("docker-daemon-unix-socket-only", host_artifacts.validate_docker_daemon),
    _resource("rancher-server-tls", host_artifacts.validate_rancher_server),
    _resource("host-secret-files", host_artifacts.validate_secret_files),
    _resource("no-default-credentials", credentials.validate_credentials),
    _resource("pki-strength", pki.validate_pki),
    _resource("pki-no-issued-ca", pki.validate_no_issued_ca),
    _resource("leaf-validity", pki.validate_leaf_validity, EnforcementLevel.ADVISORY),
    _resource("rbac-no-anonymous", rbac.validate_rbac),
    _resource("rbac-least-privilege", rbac.validate_least_privilege),
    _resource("team-pod-security", rbac.validate_team_pod_security),
    _resource("no-credentials-in-configmaps", rbac.validate_configmap_credentials),
    _resource("robot-pull-only", platform.validate_robot_pull_only),
    _resource("directory-tls", platform.validate_directory_tls),
    _resource("headlamp-not-exposed", platform.validate_headlamp_not_exposed),
]
