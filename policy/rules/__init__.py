"""Policy rules: plain modules, importable as `rules.*` (pack) and `policy.rules.*` (program, tests)."""
