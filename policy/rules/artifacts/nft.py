"""nftables rulesets as `nft -f` loads them: chains (hook, policy) and their rules, with line numbers.

Understands the rule forms a host input filter uses: `ip/ip6 saddr <addr|{set}>`, `tcp/udp dport
<port|range|{set}>` (or, for a Docker-published port, `meta l4proto tcp ct original proto-dst <port>`),
`iifname`, `ct state`, ICMP types, a trailing `comment "..."` and the verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

_CHAIN = re.compile(r"^\s*chain\s+([\w-]+)\s*\{")
_HOOK = re.compile(r"\btype\s+\w+\s+hook\s+(\w+)\b")
_POLICY = re.compile(r"\bpolicy\s+(\w+)\s*;")
_COMMENT = re.compile(r'\s*comment\s+"([^"]*)"\s*$')
_SADDR = re.compile(r"\bip6?\s+saddr\s+(\{[^}]*\}|\S+)")
_DPORT = re.compile(r"\b(tcp|udp|th)\s+dport\s+(\{[^}]*\}|\S+)")
# a Docker-published port, matched before DNAT: `meta l4proto tcp ct original proto-dst 443`
_ORIGINAL_DPORT = re.compile(r"\bmeta\s+l4proto\s+(tcp|udp)\s+ct\s+original\s+proto-dst\s+(\{[^}]*\}|\S+)")
_VERDICT = re.compile(r"\b(accept|drop|reject|jump|goto|return)\b")


def _set(value: str) -> list[str]:
    return [v.strip() for v in value.strip("{} ").split(",") if v.strip()]


@dataclass(frozen=True)
class NftRule:
    line: int
    text: str
    saddr: Optional[list[str]]  # None: the rule matches any source address
    protocol: Optional[str]
    dports: list[str]
    verdict: Optional[str]
    iifname: Optional[str]
    comment: Optional[str] = None

    @property
    def baseline(self) -> bool:
        """Conntrack, loopback and ICMP-error rules every host filter carries."""
        return (self.text.startswith("ct state") or self.iifname == '"lo"'
                or bool(re.search(r"\bicmpv?6?\s+type\b", self.text)))


@dataclass
class NftChain:
    name: str
    line: int
    hook: Optional[str] = None
    policy: Optional[str] = None
    rules: list[NftRule] = field(default_factory=list)


def _rule(line: int, text: str) -> NftRule:
    comment = _COMMENT.search(text)
    body = _COMMENT.sub("", text)
    saddr = _SADDR.search(body)
    dport = _DPORT.search(body) or _ORIGINAL_DPORT.search(body)
    verdicts = _VERDICT.findall(body)
    iif = re.search(r"\biifname\s+(\S+)", body)
    return NftRule(line, body, _set(saddr.group(1)) if saddr else None, dport.group(1) if dport else None,
                   _set(dport.group(2)) if dport else [], verdicts[-1] if verdicts else None,
                   iif.group(1) if iif else None, comment.group(1) if comment else None)


def parse_ruleset(text: str) -> list[NftChain]:
    """The chains of a ruleset (every table), in order."""
    chains: list[NftChain] = []
    current: Optional[NftChain] = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if not raw.strip().startswith("#") else ""
        if not line:
            continue
        opened = _CHAIN.match(line)
        if opened:
            current = NftChain(opened.group(1), number)
            chains.append(current)
            continue
        if current is None:
            continue
        if line == "}":
            current = None
            continue
        hook, policy = _HOOK.search(line), _POLICY.search(line)
        if hook or policy:
            current.hook = hook.group(1) if hook else current.hook
            current.policy = policy.group(1) if policy else current.policy
            continue
        current.rules.append(_rule(number, line))
    return chains
