"""One module per CLI subcommand: ``add_parser(subparsers)`` registers it and sets ``run``."""

from __future__ import annotations


def add_pattern_arguments(p, files_help: str) -> None:
    """The pattern files and where their wavelength comes from (``--wavelength`` or ``--instrument``, one of
    them), as `predict` and `index` take them."""
    from xrdid.instrument import PRESETS

    p.add_argument("files", nargs="+", metavar="FILE", help=files_help)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--wavelength", type=float, metavar="Å", help="X-ray wavelength in Å (for 2θ files that state none)")
    src.add_argument("--instrument", choices=sorted(PRESETS), help="instrument preset giving the wavelength")


def wavelength_of(args) -> float | None:
    """The wavelength in Å that ``--wavelength`` or ``--instrument`` gives (None: the files must state it)."""
    from xrdid.instrument import PRESETS

    return PRESETS[args.instrument].wavelength_A if args.instrument else args.wavelength
