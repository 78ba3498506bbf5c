"""`python -m lab --stack dev|ha`: the host lab's phases for a stack (needs root)."""

from __future__ import annotations

import argparse
import os
import sys

from lab import bare
from lab.run import LabFailure, print_summary, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    parser.add_argument("--stack", default="dev", choices=["dev", "ha"])
    parser.add_argument("--unhide", action="append", default=[], metavar="GROUP",
                        help="leave a lab/bare.py group of tools visible in the hosts (default: all hidden)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the lab needs root (network namespaces, mounts): run it as root", file=sys.stderr)
        return 2
    try:
        if args.unhide:
            print(f"NOTE: hosts are NOT bare: {args.unhide} left visible (--unhide)")
        hide = True if not args.unhide else sorted(set(bare.GROUPS) - set(args.unhide))
        result = run(args.stack, hide=hide)
    except LabFailure as err:
        print(f"\nLAB FAILED ({args.stack}): {err}", file=sys.stderr)
        return 1
    print_summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
