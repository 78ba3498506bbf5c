"""YAML, TOML and JSON documents a host receives, parsed leniently (None when not parseable)."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any, Optional

import yaml


def load_yaml(text: Optional[str]) -> Any:
    if text is None:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def load_toml(text: Optional[str]) -> Optional[dict[str, Any]]:
    if text is None:
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def load_json(text: Optional[str]) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def yaml_line(text: Optional[str], key: str) -> int:
    """The first line (1-based) where `key:` appears in a YAML text; 0 when absent."""
    if text is None:
        return 0
    pattern = re.compile(rf"^\s*-?\s*{re.escape(key)}\s*:")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.search(line):
            return number
    return 0
