"""`xrdid phases FILE --library CIF_DIR_OR_PARQUET [--wavelength Å] [--json]`: which library phases a
powder pattern contains, with weight fractions, confidence and the fit residual.

Whole-pattern fitting against every phase of the library (see ``xrdid.mixtures``): greedy selection of
phases, joint refinement of lattice scale, crystallite size, zero shift, peak width and Kα2 ratio, and
Rietveld weight fractions W ∝ S·Z·M·V. The wavelength comes from the file where it says so, else from
--wavelength; there is no default. A Kα1 wavelength of a known anode (Cu 1.5406 Å, Co, Mo …) is fitted
as the Kα1/Kα2 doublet, its ratio refined unless --kalpha2-ratio fixes it (0: monochromatic Kα1).
Simulated library sticks are cached under $XDG_CACHE_HOME/xrdid/phases (--no-cache to skip).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "phases",
        help="phases in a mixture pattern, with weight fractions (whole-pattern fit to a library)",
        description=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("file", metavar="FILE", help="measured pattern (.xy, .xrdml, …)")
    p.add_argument("--library", required=True, metavar="CIF_DIR_OR_PARQUET",
                   help="reference phases: a folder of CIFs or a structures parquet (columns id, cif)")
    p.add_argument("--wavelength", type=float, metavar="Å",
                   help="X-ray wavelength (Kα1 for a tube) in Å, if the file states none")
    p.add_argument("--kalpha2-ratio", type=float, metavar="R",
                   help="fix the Kα2/Kα1 intensity ratio (default: refined; 0 for Kα1-only data)")
    p.add_argument("--max-phases", type=int, default=None, metavar="N", help="most phases to report (default 6)")
    p.add_argument("--json", action="store_true", help="one JSON object on standard output")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the library sticks cache")
    p.set_defaults(run=run)


def run(args) -> int:
    from dataclasses import replace

    from xrdid.mixtures import FitSettings, LibraryError, default_cache_dir, identify_phases, load_library
    from xrdid.readers import PatternError, read_pattern
    from xrdid.simulate.sticks import d_min_for

    if args.kalpha2_ratio is not None and not 0 <= args.kalpha2_ratio <= 1:
        log.error("--kalpha2-ratio must be between 0 and 1, got %g", args.kalpha2_ratio)
        return 2
    if args.max_phases is not None and args.max_phases < 1:
        log.error("--max-phases must be at least 1, got %d", args.max_phases)
        return 2
    try:
        pattern = read_pattern(args.file, wavelength_A=args.wavelength)
        lam = pattern.resolve_wavelength(args.wavelength)
        two_theta = _two_theta(pattern, lam)
    except PatternError as e:
        log.error("%s", e)
        return 1 if "wavelength" not in str(e) else 2

    settings = FitSettings() if args.max_phases is None else replace(FitSettings(), max_phases=args.max_phases)
    ka2 = pattern.meta.get("kalpha2_A")
    lam_long = max(lam, float(ka2) if ka2 else lam)
    d_min = d_min_for(lam_long, min(float(two_theta[-1]) + 1.0, 179.0)) / (1 + settings.d_scale_range)
    try:
        library = load_library(args.library, d_min, cache_dir=None if args.no_cache else default_cache_dir())
    except LibraryError as e:
        log.error("%s", e)
        return 2
    fit = identify_phases(two_theta, pattern.y, lam, library, kalpha2_A=float(ka2) if ka2 else None,
                          kalpha2_ratio=args.kalpha2_ratio, settings=settings)
    if args.json:
        out = {"file": str(args.file), "library": str(args.library), "n_library_phases": len(library), **fit.to_dict()}
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        sys.stdout.write(_table(args.file, fit))
    return 0


def _two_theta(pattern, lam: float):
    """The pattern's x axis as 2θ (deg) at ``lam`` (Å); Q and d patterns are converted, points beyond
    the Bragg limit dropped."""
    import numpy as np

    from xrdid.readers import PatternError

    if pattern.axis == "two_theta":
        return pattern.x
    q = pattern.q(lam)
    s = q * lam / (4 * math.pi)
    ok = s < 1
    if ok.sum() < 10:
        raise PatternError(f"{pattern.path}: fewer than 10 points are reachable at λ = {lam} Å")
    tt = np.degrees(2 * np.arcsin(s[ok]))
    order = np.argsort(tt)
    pattern.y = pattern.y[ok][order]
    return tt[order]


def _table(file, fit) -> str:
    lines = [
        f"{file}: {len(fit.phases)} phase(s); Rwp {fit.rwp:.4f} (background only {fit.rwp_background_only:.4f}), "
        f"Rexp {fit.rexp:.4f}, GoF {fit.gof:.2f}; zero shift {fit.zero_shift_deg:+.3f}°"
        + (f", Kα2/Kα1 {fit.kalpha2_ratio:.2f}" if fit.kalpha2_ratio is not None else ""),
    ]
    if fit.phases:
        lines.append(f"  {'weight %':>8}  {'confidence':>10}  {'formula':<14} {'SG':>4}  {'d scale':>7}  id")
        for p in fit.phases:
            lines.append(f"  {100 * p.weight_fraction:8.1f}  {p.confidence:10.2f}  {p.formula:<14} "
                         f"{p.space_group or '-':>4}  {p.d_scale:7.4f}  {p.id}")
    else:
        lines.append("  no library phase explains the pattern")
    return "\n".join(lines) + "\n"
