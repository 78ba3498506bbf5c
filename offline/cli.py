"""Command line: `python -m offline preview --stack STACK [--out DIR] [--policy-pack DIR] [--show-secrets]
[--state FILE]`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Optional

from offline import certificates
from offline.checks import Check, check_all
from offline.engine import ProgramRun, run_program
from offline.engine.runner import PROJECT, ROOT
from offline.hosts import collect, write_hosts
from offline.plan import build_plan, leaked_private_keys, scrub
from offline.policy import run_policy
from offline.report import summary, tree


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m offline", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("preview", help="preview a stack offline: plan, policy, host files, artifact checks")
    pre.add_argument("--stack", required=True)
    pre.add_argument("--stack-file", type=Path, help="stack file (default: Pulumi.STACK.yaml at the project root)")
    pre.add_argument("--out", type=Path, help="output directory (default: build/STACK)")
    pre.add_argument("--policy-pack", type=Path, default=ROOT / "policy")
    pre.add_argument("--show-secrets", action="store_true",
                     help="also write private keys and passwords to the host trees (0600)")
    pre.add_argument("--no-policy", action="store_true", help="do not run the policy pack (reported as not run)")
    pre.add_argument("--no-tree", action="store_true", help="print the summary only")
    pre.add_argument("--state", type=Path, metavar="FILE",
                     help="a `pulumi stack export` of the real stack: list ITS certificates and those due for renewal")
    pre.add_argument("--program", type=Path, default=ROOT / "__main__.py", help=argparse.SUPPRESS)
    return p


def _write_json(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")


def preview(args: argparse.Namespace) -> int:
    out: Path = args.out or ROOT / "build" / args.stack
    stack_file: Optional[Path] = args.stack_file
    if stack_file is None and not (ROOT / f"Pulumi.{args.stack}.yaml").is_file():
        print(f"error: no stack file Pulumi.{args.stack}.yaml", file=sys.stderr)
        return 2
    try:
        state = certificates.load_state(args.state) if args.state else None
    except certificates.StateError as exc:
        print(f"error: --state {exc}", file=sys.stderr)
        return 2
    run = run_program(args.stack, stack_file=stack_file.resolve() if stack_file else None,
                      program=args.program.resolve())
    if run.error is not None:
        print(f"error: the program failed for stack {args.stack}:\n{run.error}", file=sys.stderr)
        return 1
    if out.exists():
        shutil.rmtree(out)
    (out / "hosts").mkdir(parents=True)
    plan = build_plan(run, PROJECT)
    checks: list[Check] = []
    leaks = leaked_private_keys(plan)
    checks.append(Check("no private key in plan.json", "plan.json", "failed" if leaks else "ok",
                        "plain private keys at: " + ", ".join(leaks) if leaks else ""))
    _write_json(out / "plan.json", scrub(plan))
    policy = run_policy(args.policy_pack.resolve(), run.registrations, skip=args.no_policy)
    _write_json(out / "policy.json", {"violations": policy.violations})
    files, steps = collect(run)
    conflicts = write_hosts(out / "hosts", files, steps, args.show_secrets)
    checks += [Check("host file conflict", c.split(" ")[0], "failed", c) for c in conflicts]
    checks += check_all(run, files, steps)
    _write_json(out / "checks.json", {"checks": [c.as_dict() for c in checks]})
    if not args.no_tree:
        for line in tree(run, PROJECT):
            print(line)
    for line in summary(run, files, policy, checks):
        print(line)
    for line in _certificates(run, state, args.state):
        print(line)
    print(f"\nWrote {os.path.relpath(out)}/plan.json, policy.json, checks.json and hosts/")
    failed = [c for c in checks if c.status == "failed"]
    # a pack that was asked for and could not run is a failure, not a pass
    return 1 if policy.mandatory or failed or not (policy.ran or args.no_policy) else 0


def _certificates(run: ProgramRun, state: Optional[dict], path: Optional[Path]) -> list[str]:
    now = dt.datetime.now(dt.UTC)
    if state is None:
        note = ("(issued now by the mocks: these are the dates a fresh `pulumi up` would give, so none is inside "
                "its window; --state FILE lists a real stack's)")
        return list(certificates.section(certificates.from_run(run), now, "this offline run", note))
    written = state["deployment"].get("manifest", {}).get("time", "time unknown")
    return list(certificates.section(certificates.from_state(state), now, f"{path} (`pulumi stack export`)",
                                     f"(the deployed certificates; the export was written {written})"))


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    # the program's pulumi.log.warn (config warnings) reaches the root logger under mocks: show it as the CLI would
    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.WARNING, stream=sys.stderr)
    if args.command == "preview":
        return preview(args)
    return 2
