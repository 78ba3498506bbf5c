"""The container-cloud policy pack. Run by `pulumi preview --policy-pack policy` (cwd policy/).

Constructing PolicyPack starts the analyzer gRPC server and never returns: keep it the only thing here.
"""

from pulumi_policy import PolicyPack
from rules.pack import PACK_NAME, POLICIES  # type: ignore[import-not-found]

PolicyPack(name=PACK_NAME, policies=POLICIES)
