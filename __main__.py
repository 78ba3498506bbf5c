"""container-cloud: wires the components together and exports the stack outputs. Nothing else."""

import pulumi

from components.config import load_settings
from components.pki import ClusterPki, ClusterPkiArgs

settings, secrets = load_settings()

# --- PKI ---------------------------------------------------------------------------------------
pki = ClusterPki("pki", ClusterPkiArgs.from_settings(settings))

# --- host firewalls (issue 4) ---------------------------------------------------------------

# --- kubernetes: etcd, control plane, workers, add-ons (issue 3) -----------------------------

# --- registry: Harbor, registry trust, image mirror (issue 5) ---------------------------------

# --- rancher (issue 6) -----------------------------------------------------------------------

# --- teams (issue 7) -------------------------------------------------------------------------

# --- outputs ---------------------------------------------------------------------------------
pulumi.export("apiEndpoint", settings.api_endpoint)
pulumi.export("kubernetesCaCertificate", pki.ca_bundle("kubernetes"))
