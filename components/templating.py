"""Jinja2 rendering of the host scripts, units and config files kept in components/templates/."""

from __future__ import annotations

import json
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        auto_reload=False,  # one process per run: no stat of the template file on every render (48 k at 1000 workers)
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    env.filters["json"] = json.dumps  # a JSON string (also valid YAML), without tojson's HTML escaping of <>&'
    env.filters["heredoc"] = lambda value: str(value)[:-1] if str(value).endswith("\n") else str(value)
    return env


def render(template: str, **values: Any) -> str:
    """Render `components/templates/<template>`; a missing variable is an error, never blank."""
    return _environment().get_template(template).render(**values)


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when available: same output, much faster


def to_yaml(doc: Any) -> str:
    """A config document as YAML, keys in the order given (kubeconfigs, kubelet and proxy configs)."""
    return yaml.dump(doc, Dumper=_DUMPER, sort_keys=False)
