"""The CrossGuard policy pack. `policy/__main__.py` builds the pack; the rules live in `policy.rules`.

This package marker lets the program import the port catalogue as `policy.rules.ports`; the Pulumi
CLI runs the pack with `policy/` as its directory, where the same modules import as `rules.*`.
"""
