"""The ``xrdid`` command line: ``simulate``, ``predict``, ``index``, ``phases``, ``serve``.

Each subcommand lives in ``xrdid.commands.<name>`` with ``add_parser(subparsers)`` and ``run(args) -> int``;
this module only wires them together and configures logging (the one entry point that does).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = ("simulate", "predict", "index", "phases", "serve")


def build_parser() -> argparse.ArgumentParser:
    from xrdid import __version__

    parser = argparse.ArgumentParser(
        prog="xrdid",
        description="Space group, crystal system and phases from a powder X-ray diffraction pattern.",
    )
    parser.add_argument("--version", action="version", version=f"xrdid {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"xrdid.commands.{name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
