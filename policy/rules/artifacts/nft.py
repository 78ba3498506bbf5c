"""nftables rulesets as `nft -f` loads them: chains (hook, policy) and their rules, with line numbers.

Understands the rule forms a host input filter uses: `ip/ip6 saddr <addr|{set}>`, `tcp/udp dport
<port|range|{set}>` (or, for a Docker-published port, `meta l4proto tcp ct original proto-dst <port>`),
`iifname`, `ct state`, ICMP types, a trailing `comment "..."` and the verdict.

Named sets: a rule's `ip saddr @name` is read as the elements the set holds once the file is loaded — the
set's own `elements = { ... }`, then `flush set <family> <table> <name>` and `add element <family> <table>
<name> { ... }` statements in file order (one `nft -f` is one transaction: what counts is the end state).
`include "path"` is expanded from `includes` (path -> text), as nft does. A rule that uses a set the loaded
text never defines keeps `@name` in `saddr` and lists it in `missing_sets`: a check must fail closed on it.
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
_SET_DEF = re.compile(r"^\s*set\s+([\w-]+)\s*\{(.*)$")
_SET_ELEMENTS = re.compile(r"\belements\s*=\s*\{([^}]*)\}")
_FLUSH = re.compile(r"^\s*flush\s+set\s+\w+\s+[\w-]+\s+([\w-]+)\s*$")
_ADD_ELEMENT = re.compile(r"^\s*add\s+element\s+\w+\s+[\w-]+\s+([\w-]+)\s*\{([^}]*)\}\s*$")
_INCLUDE = re.compile(r'^\s*include\s+"([^"]+)"\s*$')
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
    missing_sets: list[str] = field(default_factory=list)  # `@name` references no loaded set defines

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


def included_paths(text: str) -> list[str]:
    """The files a ruleset `include`s."""
    return [m.group(1) for m in (_INCLUDE.match(line) for line in text.splitlines()) if m]


def expand_includes(text: str, includes: Optional[dict[str, str]] = None) -> str:
    """`text` with each `include "path"` line replaced by includes[path] (left as it is when not given)."""
    out = []
    for raw in text.splitlines():
        found = _INCLUDE.match(raw)
        out.append(includes[found.group(1)].rstrip("\n") if found and includes and found.group(1) in includes
                   else raw)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _set_statement(line: str, sets: dict[str, list[str]]) -> bool:
    """Apply a set definition, flush or add-element line to `sets`; whether the line was one."""
    defined, flushed, added = _SET_DEF.match(line), _FLUSH.match(line), _ADD_ELEMENT.match(line)
    if defined:
        elements = _SET_ELEMENTS.search(defined.group(2))
        sets.setdefault(defined.group(1), [])
        sets[defined.group(1)] += _set(elements.group(1)) if elements else []
    elif flushed:
        sets[flushed.group(1)] = []
    elif added:
        sets.setdefault(added.group(1), []).extend(_set(added.group(2)))
    return bool(defined or flushed or added)


def _resolve(chains: list[NftChain], sets: dict[str, list[str]]) -> None:
    for chain in chains:
        for i, rule in enumerate(chain.rules):
            if rule.saddr is None or not any(a.startswith("@") for a in rule.saddr):
                continue
            resolved: list[str] = []
            missing: list[str] = []
            for a in rule.saddr:
                name = a[1:] if a.startswith("@") else None
                if name is None:
                    resolved.append(a)
                elif name in sets:
                    resolved += sets[name]
                else:
                    resolved.append(a)
                    missing.append(a)
            chain.rules[i] = NftRule(rule.line, rule.text, resolved, rule.protocol, rule.dports, rule.verdict,
                                     rule.iifname, rule.comment, missing)


def parse_sets(text: str, includes: Optional[dict[str, str]] = None) -> dict[str, list[str]]:
    """The named sets a ruleset defines, with the elements they hold once it is loaded."""
    sets: dict[str, list[str]] = {}
    for raw in expand_includes(text, includes).splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.strip().startswith("#") else ""
        if line:
            _set_statement(line, sets)
    return sets


def parse_ruleset(text: str, includes: Optional[dict[str, str]] = None) -> list[NftChain]:
    """The chains of a ruleset (every table), in order, with named-set references resolved."""
    chains: list[NftChain] = []
    sets: dict[str, list[str]] = {}
    current: Optional[NftChain] = None
    for number, raw in enumerate(expand_includes(text, includes).splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if not raw.strip().startswith("#") else ""
        if not line:
            continue
        if current is None and _set_statement(line, sets):
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
    _resolve(chains, sets)
    return chains
