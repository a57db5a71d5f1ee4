"""`xrdid phases` (placeholder until implemented)."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("phases", help="not implemented yet")
    p.set_defaults(run=run)


def run(args) -> int:
    print("xrdid phases: not implemented yet", file=sys.stderr)
    return 2
