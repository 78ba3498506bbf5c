"""Parsers for what a host receives: the files and script of a step, decoded from its `command:remote:Command`
(`steps`).

One small parser per format, used by the policy pack (policy/rules/host_artifacts.py, network.py) and
importable by offline/ and the tests (`policy.rules.artifacts`): systemd unit files parsed into the daemon's
flags, and `docker run` lines of a step script (`units`), the nftables ruleset as `nft -f` loads it (`nft`;
tests/test_policies.py checks it against nft itself), and YAML / TOML / JSON documents (`documents`). Every
parser reports line numbers, so a finding can say where the problem is.
"""

from .documents import load_json, load_toml, load_yaml, yaml_line
from .files import HostFile, holds_credentials, host_files
from .nft import NftChain, NftRule, expand_includes, included_paths, parse_ruleset, parse_sets
from .units import Command, Flag, effective, exec_start, shell_commands

__all__ = [
    "Command", "Flag", "HostFile", "NftChain", "NftRule", "effective", "exec_start", "expand_includes",
    "holds_credentials", "host_files", "included_paths", "load_json", "load_toml", "load_yaml", "parse_ruleset",
    "parse_sets", "shell_commands", "yaml_line",
]
