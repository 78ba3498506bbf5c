"""The list of policies of the container-cloud pack (built by policy/__main__.py)."""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

from . import credentials, hardening, network, pki, rbac

PACK_NAME = "container-cloud"


def _resource(name: str, fn, level: EnforcementLevel = EnforcementLevel.MANDATORY) -> ResourceValidationPolicy:  # type: ignore[no-untyped-def]
    return ResourceValidationPolicy(name=name, description=(fn.__doc__ or name).strip(), validate=fn,
                                    enforcement_level=level)


POLICIES = [
    _resource("zone-matrix", network.validate_zone_matrix),
    _resource("etcd-ports-members-only", network.validate_etcd_ports),
    _resource("no-any-source-inside", network.validate_no_any_source),
    _resource("host-firewall-default-drop", network.validate_default_drop),
    StackValidationPolicy(
        name="every-host-firewalled",
        description=(network.validate_every_host_firewalled.__doc__ or "").strip(),
        validate=network.validate_every_host_firewalled,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    _resource("apiserver-hardening", hardening.validate_apiserver),
    _resource("kubelet-hardening", hardening.validate_kubelet),
    _resource("registry-https-only", hardening.validate_registry_https),
    _resource("no-default-credentials", credentials.validate_credentials),
    _resource("pki-strength", pki.validate_pki),
    _resource("leaf-validity", pki.validate_leaf_validity, EnforcementLevel.ADVISORY),
    _resource("rbac-no-anonymous", rbac.validate_rbac),
]
