"""Rule 8: no default or weak credentials.

`random:index/randomPassword:RandomPassword` needs length >= 16; any prop whose key names a password,
secret or token and whose value is a literal known at preview must not be a vendor default nor
shorter than 16 characters; no text (config files, scripts) may assign a vendor default password.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .common import as_int, get, walk, walk_strings

Report = Callable[..., None]

RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
MIN_LENGTH = 16
DEFAULTS = ("harbor12345", "admin", "password", "changeme", "rancher")
SECRET_KEY = re.compile(r"(password|passwd|secret|token)$", re.IGNORECASE)
REDACTED = re.compile(r"^(\[[a-z -]+\]|\*+)$", re.IGNORECASE)  # "[secret]": a component's redaction marker
_DEFAULT_ALT = "Harbor12345|admin|password|changeme|rancher"
DEFAULT_ASSIGNMENT = (
    re.compile(rf"""(?i)[\w.-]*(?:password|passwd)["']?\s*[:=]\s*["']?(?:{_DEFAULT_ALT})["']?(?=\s|$|,|;)"""),
    re.compile(rf"""(?i)--(?:[\w-]*-)?password(?:=|\s+)["']?(?:{_DEFAULT_ALT})["']?(?=\s|$)"""),
    re.compile(r"Harbor12345"),
)


def credential_problems(resource_type: str, props: Any) -> list[str]:
    problems = []
    if resource_type == RANDOM_PASSWORD:
        length = as_int(get(props, "length"))
        if length is not None and length < MIN_LENGTH:
            problems.append(f"RandomPassword length {length} is below {MIN_LENGTH}")
    for path, key, value in walk(props):
        if not isinstance(value, str) or not SECRET_KEY.search(key) or REDACTED.match(value):
            continue
        if value.lower() in DEFAULTS:
            problems.append(f"{path} is a vendor default credential")
        elif len(value) < MIN_LENGTH:
            problems.append(f"{path} is a literal credential shorter than {MIN_LENGTH} characters")
    for path, text in walk_strings(props):
        for pattern in DEFAULT_ASSIGNMENT:
            if pattern.search(text):
                problems.append(f"{path or 'value'} assigns a vendor default password")
                break
    return problems


def validate_credentials(args: Any, report: Report) -> None:
    """No default or weak credentials (Harbor12345, admin, ... or shorter than 16 characters)."""
    for problem in credential_problems(args.resource_type, args.props):
        report(f"{args.name}: {problem}")
