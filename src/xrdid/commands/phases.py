"""`xrdid phases FILE --library CIF_DIR_OR_PARQUET [--wavelength Å] [--json] [--plot PNG]`: which library
phases a powder pattern contains, with weight fractions, confidence, the close alternatives, the peaks
nothing in the library explains, and the fit residual.

Whole-pattern fitting against every phase of the library (see ``xrdid.mixtures``): a beam of phase-set
hypotheses judged by a penalised criterion, each phase refined for its lattice (within its symmetry),
crystallite size, microstrain and March–Dollase texture, globally zero shift, sample displacement, peak
width and Kα2 ratio; Rietveld weight fractions W ∝ S·Z·M·V. The wavelength comes from the file where it
says so, else from --wavelength; there is no default. A Kα1 wavelength of a known anode (Cu 1.5406 Å,
Co, Mo …) is fitted as the Kα1/Kα2 doublet; the Kα2/Kα1 ratio is the file's when it states one (.xrdml),
else refined, unless --kalpha2-ratio fixes it (0: monochromatic Kα1). --elements restricts the
candidates to phases made of the given elements (those of the weighed precursors). Simulated library sticks are
cached under $XDG_CACHE_HOME/xrdid/phases (--no-cache to skip).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

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
    p.add_argument("--lattice-tolerance", type=float, default=None, metavar="FRACTION",
                   help="how far a cell may be from its reference, 1σ (default 0.005; ~0.01 for DFT references)")
    p.add_argument("--max-march-dollase", type=float, default=None, metavar="R",
                   help="a phase whose refined preferred orientation (March–Dollase r) ends outside 1/R..R is "
                        "taken for a stand-in for a phase the library lacks and dropped (default 1.67); raise "
                        "it, or 'inf', for strongly textured samples (plates below r 0.6)")
    p.add_argument("--grain-radius", type=float, default=None, metavar="UM",
                   help="radius of the powder's grains in µm: weight fractions corrected for micro-absorption "
                        "(Brindley; any wavelength of the Henke tables). 0: no correction (the default)")
    p.add_argument("--anomalous-dispersion", action=argparse.BooleanOptionalAction, default=True,
                   help="compute the library's intensities with the elements' anomalous dispersion f′ + i f″ at the "
                        "pattern's wavelength, as a measurement has them (default; under Cu Kα, Fe, Co and Ni scatter 1-3 "
                        "electrons less); --no-anomalous-dispersion: f0 alone, as most simulators")
    p.add_argument("--displacement-b", type=float, default=None, metavar="Å²",
                   help="a Debye–Waller factor in the library's intensities: each CIF's own displacement parameters "
                        "(B_iso, U_iso, anisotropic → equivalent), B Å² for atoms whose CIF states none (1.5 B for H). "
                        "Default: none (B = 0); 1.0 did not help the measured mixtures' weight fractions")
    p.add_argument("--elements", default=None, metavar="SYMBOLS",
                   help="only consider library phases made of these elements, e.g. 'In,La,Ti,O,H' "
                        "(those of the weighed precursors; default: the whole library)")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="write the fit's figure here (measured, fit, each phase, difference, tick marks)")
    p.set_defaults(run=run)


def run(args) -> int:
    from xrdid.mixtures import LibraryError, identify_in_pattern
    from xrdid.readers import PatternError, read_pattern

    if args.kalpha2_ratio is not None and not 0 <= args.kalpha2_ratio <= 1:
        log.error("--kalpha2-ratio must be between 0 and 1, got %g", args.kalpha2_ratio)
        return 2
    if args.max_phases is not None and args.max_phases < 1:
        log.error("--max-phases must be at least 1, got %d", args.max_phases)
        return 2
    if args.lattice_tolerance is not None and not 0 < args.lattice_tolerance <= 0.05:
        log.error("--lattice-tolerance must be in (0, 0.05], got %g", args.lattice_tolerance)
        return 2
    if args.max_march_dollase is not None and not args.max_march_dollase >= 1:
        log.error("--max-march-dollase must be at least 1 (r = 1: no texture), got %g", args.max_march_dollase)
        return 2
    if args.grain_radius is not None and not 0 <= args.grain_radius <= 100:
        log.error("--grain-radius must be between 0 and 100 µm, got %g", args.grain_radius)
        return 2
    if args.displacement_b is not None and not 0 <= args.displacement_b <= 10:
        log.error("--displacement-b must be between 0 and 10 Å², got %g", args.displacement_b)
        return 2
    if args.elements is not None:
        from xrdid.mixtures.library import parse_elements

        try:
            parse_elements(args.elements)
        except ValueError as e:
            log.error("--elements: %s", e)
            return 2
    try:
        pattern = read_pattern(args.file, wavelength_A=args.wavelength)
        fit, n_library = identify_in_pattern(
            pattern, args.library, wavelength_A=args.wavelength, kalpha2_ratio=args.kalpha2_ratio,
            max_phases=args.max_phases, use_cache=not args.no_cache, lattice_sigma=args.lattice_tolerance,
            elements=args.elements, max_march_dollase=args.max_march_dollase, grain_radius_um=args.grain_radius,
            anomalous_dispersion=args.anomalous_dispersion, displacement_B=args.displacement_b,
        )
    except PatternError as e:
        log.error("%s", e)
        return 1 if "wavelength" not in str(e) else 2
    except LibraryError as e:
        log.error("%s", e)
        return 2
    if args.plot:
        from xrdid.io import StorageError
        from xrdid.mixtures.plot import save_fit_figure

        try:
            save_fit_figure(fit, args.plot, title=str(args.file))
        except (StorageError, ValueError) as e:
            log.error("%s: cannot write the figure: %s", args.plot, e)
            return 1
    if args.json:
        out = {"file": str(args.file), "library": str(args.library), "n_library_phases": n_library, **fit.to_dict()}
        if args.plot:
            out["plot"] = str(args.plot)
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        sys.stdout.write(_table(args.file, fit))
    return 0


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
            if p.same_structure:
                lines.append(f"  {'':8}  {'':10}  the same structure as {', '.join(p.same_structure)} (not told apart)")
            for a in p.alternatives:
                lines.append(f"  {'':8}  {'':10}  or {a['formula']:<11} {a['space_group'] or '-':>4}  "
                             f"{'':7}  {a['id']} (criterion +{a['delta_criterion']:.1f})")
    for p in fit.stand_ins:
        lines.append(f"  withdrawn: {p.formula} ({p.space_group or '-'}) {p.id}, a stand-in for a phase the library lacks")
    lines.append(f"  {fit.verdict}")
    for h in fit.superstructure:
        lines.append(f"  hint: {h['text']}")
    for u in fit.unexplained:
        lines.append(f"  unexplained peak at 2θ {u['two_theta_deg']:8.3f}°: height {u['height']:.4g} "
                     f"({100 * u['relative_height']:.1f} % of the strongest), area {u['area']:.4g}")
    return "\n".join(lines) + "\n"
