"""Phase identification on synthetic mixtures of 2–5 phases, and its speed against a 100-phase library.

    python benchmarks/eval_synthetic_mixtures.py [--phases 2 3 4 5] [--per-size 10] [--seed 0]
                                                 [--library-size 100] [--data ../shared/data]
                                                 [--withhold-one] [--beam-min-coverage C] [--max-lattice-departure D]
                                                 [--max-march-dollase R] [--min-line-support F] [--strong-line-relative F]
                                                 [--setting NAME=VALUE ...] [--dump OUT.jsonl]
                                                 [--anomalous [--fit-plain]] [--displacement-b B [--fit-b0]]

The library: the reference CIFs of ../shared/data/library (90), topped up to ``--library-size`` with
pymatgen's AFLOW prototypes (real structures, every crystal system; all of them when the shared data
are absent). Mixtures: xrdid.mixtures.synthetic (random library phases of distinct formula and space
group, Dirichlet weight fractions ≥ 8 wt%, lattice departures of 0.2 %, sizes, strain, texture for 30 %
of the phases, zero shift, displacement, Cu Kα1/Kα2, backgrounds with amorphous humps, Poisson noise),
seeded. Scoring as for the measured mixtures (xrdid.mixtures.evaluate): exact sets, recall, precision,
weight-fraction error where the set is exact. ``--withhold-one``: one phase of each mixture (drawn
with the mixture) is left out of the library the fit sees, with every library phase of its formula and
space group, and scored as not findable: the measured mixtures' situation, where a phase the library
lacks leaves peaks that a wrong phase may stand in for (each mixture then has its own library, so its
time includes that library's screening renders). ``--beam-min-coverage``, ``--max-lattice-departure``,
``--max-march-dollase`` (``inf``: no such test), ``--min-line-support``, ``--strong-line-relative``: FitSettings';
``--setting NAME=VALUE``: any other FitSettings field. ``--dump``: per mixture, the truth and the phases
found (with each phase's lines, see fit.line_support), as JSON lines.

Speed: seconds per pattern (one BLAS thread, the library's screening renders built once beforehand),
and as a ratio to a reference measured in the same run on the same core: rendering every library
phase once on the pattern grid (the unit of work the fit repeats), so the ratio holds on a loaded
machine. The target is < 1 s per pattern on an idle core.
"""

from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def build_library(data: Path, size: int, folder: Path) -> None:
    """``size`` CIFs in ``folder``: the shared library's, then AFLOW prototypes (first by tag)."""
    n = 0
    lib = data / "library"
    if lib.is_dir():
        for f in sorted(lib.glob("*.cif"))[:size]:
            shutil.copy(f, folder / f.name)
            n += 1
    if n < size:
        from check_exactness import prototype_structures

        for tag, s in sorted(prototype_structures(max_sites=40), key=lambda t: t[0]):
            if n >= size:
                break
            s.to(filename=str(folder / f"{tag.replace(':', '_').replace('/', '_')}.cif"))
            n += 1


def with_settings(settings, pairs: list[str]):
    """``settings`` with ``NAME=VALUE`` fields replaced (VALUE a number, inf, true / false, or none for None)."""
    for pair in pairs:
        name, value = pair.split("=", 1)
        if not hasattr(settings, name):
            raise SystemExit(f"--setting: FitSettings has no field {name!r}")
        old, v = getattr(settings, name), value.lower()
        if v == "none":
            new = None
        elif isinstance(old, bool) or v in ("true", "false"):
            new = v == "true"
        else:
            # An integer literal for a field now None (an optional count) stays an integer.
            new = int(value) if isinstance(old, int) or (old is None and value.lstrip("-").isdigit()) else float(value)
        settings = replace(settings, **{name: new})
    return settings


# FitSettings fields with a flag of their own (--beam-min-coverage …); --setting NAME=VALUE reaches any field.
SETTING_FLAGS = ("beam_min_coverage", "max_lattice_departure", "min_line_support", "strong_line_relative", "max_march_dollase")


def add_setting_arguments(ap) -> None:
    """The fit's settings a run may change (to compare a setting with the default)."""
    for name in SETTING_FLAGS:
        ap.add_argument("--" + name.replace("_", "-"), type=float, default=None)
    ap.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                    help="any other FitSettings field (a number, or none); repeatable")


def settings_from(args):
    """FitSettings with the flags of :func:`add_setting_arguments` applied."""
    from xrdid.mixtures.fit import FitSettings

    settings = FitSettings()
    for name in SETTING_FLAGS:
        if getattr(args, name) is not None:
            settings = replace(settings, **{name: getattr(args, name)})
    return with_settings(settings, args.setting)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phases", type=int, nargs="+", default=[2, 3, 4, 5])
    ap.add_argument("--per-size", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--library-size", type=int, default=100)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--withhold-one", action="store_true", help="leave one phase of each mixture out of the library")
    add_setting_arguments(ap)
    ap.add_argument("--anomalous", action="store_true",
                    help="library sticks (simulated and fitted) with anomalous dispersion at Cu Kα1")
    ap.add_argument("--fit-plain", action="store_true",
                    help="with --anomalous: simulate with the dispersion, fit with the plain sticks (the same mixtures)")
    ap.add_argument("--displacement-b", type=float, default=None, metavar="B",
                    help="library sticks (simulated and fitted) with a Debye–Waller factor: the CIFs' own displacement "
                         "parameters, else B Å² (load_library displacement_B)")
    ap.add_argument("--fit-b0", action="store_true",
                    help="with --displacement-b: simulate with it, fit with B = 0 (the same mixtures, the same dispersion)")
    ap.add_argument("--grain-radius", type=float, default=None, metavar="UM",
                    help="simulate micro-absorption: each phase's intensity times Brindley's τ of spheres of this "
                         "radius (µm); the fit corrects for it only with --setting brindley_radius_um=UM")
    ap.add_argument("--dump", type=Path, default=None, help="per-mixture results (JSON lines: truth, phases found)")
    args = ap.parse_args(argv)

    from render_reference import render_reference

    from xrdid.mixtures import identify_phases, load_library
    from xrdid.mixtures.evaluate import score_mixture, summarise
    from xrdid.mixtures.library import Library
    from xrdid.mixtures.profile import Optics
    from xrdid.mixtures.synthetic import draw_phases, synthetic_mixture
    from xrdid.simulate.sticks import d_min_for

    settings = settings_from(args)
    with tempfile.TemporaryDirectory() as tmp:
        build_library(args.data, args.library_size, Path(tmp))
        d_min = d_min_for(1.5444, 100.0) / (1 + settings.d_scale_range)
        lam = 1.540598 if args.anomalous else None
        library = load_library(tmp, d_min, wavelength_A=lam, displacement_B=args.displacement_b)
        fit_library = library
        if args.fit_plain:
            fit_library = load_library(tmp, d_min)
        elif args.fit_b0:
            fit_library = load_library(tmp, d_min, wavelength_A=lam)
    print(f"library: {len(library)} phases ({len(library.errors)} failed)")

    rng = np.random.default_rng(args.seed)
    cases = []
    for n in args.phases:
        for _ in range(args.per_size):
            idx, w = draw_phases(library, n, rng)
            mix = synthetic_mixture(library, idx, w, rng, grain_radius_um=args.grain_radius)
            lib, truth = fit_library, [[pid] for pid in mix.phase_ids]
            if args.withhold_one:
                k = int(rng.integers(n))
                gone = (library.phases[idx[k]].formula, library.phases[idx[k]].space_group)
                lib = Library([p for p in fit_library.phases if (p.formula, p.space_group) != gone], library.source,
                              library.d_min_A, [])
                truth[k] = []
            cases.append((n, mix, lib, truth))

    # Warm-up: the screening renders of this grid (shared by every pattern on it) and the imports.
    x0, y0 = cases[0][1].two_theta, cases[0][1].y
    identify_phases(x0, y0, 1.5405929, fit_library, settings=settings)
    optics = Optics((1.5405929, 1.544414))

    def reference() -> float:
        t = time.perf_counter()
        for p in library.phases:
            render_reference(p.d, p.f2m, x0, optics, width_scale=4.0, size_nm=100.0)  # frozen: see its module
        return time.perf_counter() - t

    refs = [reference()]
    by_n: dict[int, list] = {}
    times = []
    dumped: list[dict] = []
    for n, mix, lib, truth in cases:
        t = time.perf_counter()
        fit = identify_phases(mix.two_theta, mix.y, 1.5405929, lib, settings=settings)
        times.append(time.perf_counter() - t)
        refs.append(reference())
        sc = score_mixture(truth, [(p.id, p.weight_fraction) for p in fit.phases], mix.weight_fractions)
        by_n.setdefault(n, []).append(sc)
        if args.dump:
            dumped.append({"n": n, "truth": truth, "nominal": list(map(float, mix.weight_fractions)),
                           "phases": [p.to_dict() for p in fit.phases], "matched": sc.matched, "exact": sc.exact,
                           "superstructure": fit.superstructure, "stand_ins": [p.id for p in fit.stand_ins]})
        if not sc.exact:
            print(f"  {n} phases, not exact: true {sorted(mix.phase_ids)}; found {sorted(p.id for p in fit.phases)}")
    print(f"\n{'phases':>6} {'n':>3} {'exact':>7} {'recall':>7} {'precision':>9} {'wt err (wt%)':>12}")
    for n, scores in by_n.items():
        s = summarise(scores)
        print(f"{n:>6} {s['mixtures']:>3} {s['exact_fraction']:>7.2f} {s['recall']:>7.2f} {s['precision']:>9.2f} "
              f"{s['wt_error_wt_pct']:>12.2f}")
    if args.dump:
        args.dump.write_text("".join(json.dumps(d) + "\n" for d in dumped))
    ref = float(np.median(refs))
    t_med = float(np.median(times))
    print(f"\nspeed: {t_med:.2f} s per pattern (median; max {max(times):.2f} s) against {len(library)} phases; "
          f"reference (render every library phase once) {ref:.3f} s; ratio {t_med / ref:.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
