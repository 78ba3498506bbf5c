"""Parsers for what a host receives: the files and script of a `containercloud:host:HostStep`.

One small parser per format, shared by the policy pack (policy/rules/host_artifacts.py) and the offline
preview (offline/): systemd unit files parsed into the daemon's flags (`units`), the nftables ruleset as
`nft -f` loads it (`nft`), and YAML / TOML / JSON documents (`documents`). Every parser reports line
numbers, so a finding can say where the problem is.
"""

from .documents import load_json, load_toml, load_yaml, yaml_line
from .files import HostFile, holds_credentials, host_files
from .nft import NftChain, NftRule, parse_ruleset
from .units import Command, Flag, effective, exec_start

__all__ = [
    "Command", "Flag", "HostFile", "NftChain", "NftRule", "effective", "exec_start", "holds_credentials", "host_files",
    "load_json", "load_toml", "load_yaml", "parse_ruleset", "yaml_line",
]
