"""Offline preview: run the program under the high-fidelity mocks, the real policy pack over its analyzer
protocol, render every host's files and check them with the real tools — no Pulumi CLI needed.

    python -m offline preview --stack dev [--out build/dev] [--policy-pack policy] [--show-secrets]
"""
