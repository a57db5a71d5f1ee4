"""`xrdid serve` (placeholder until implemented)."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="not implemented yet")
    p.set_defaults(run=run)


def run(args) -> int:
    print("xrdid serve: not implemented yet", file=sys.stderr)
    return 2
