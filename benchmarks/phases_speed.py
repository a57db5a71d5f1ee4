"""Speed of `xrdid phases` on the measured development mixtures against a 100-phase library.

    python benchmarks/phases_speed.py [--library-size 100] [--limit N] [--only ID ...] [--profile OUT.prof]
                                      [--data ../shared/data] [--shared-derivatives KIND ...]
                                      [--setting NAME=VALUE ...]

The library: the 90 reference CIFs of ../shared/data/library topped up to ``--library-size`` with
pymatgen's AFLOW prototypes (as benchmarks/eval_synthetic_mixtures.py). The patterns: the measured
mixtures of ../shared/data/mixtures (both halves: speed is not tuned on accuracy), fitted as `xrdid
phases` fits each pattern once the library is loaded (xrdid.mixtures.identify_phases, one BLAS thread).
A warm-up fit on the first pattern builds the screening renders of the instrument's grid first (shared
by every later pattern on that grid, as in a folder run); its time is printed separately.

Reference measured in the same run, on the same core, before and after every pattern: rendering every
library phase once on the pattern's grid (the unit of work a fit repeats), with a frozen copy of the
renderer (benchmarks/render_reference.py), so that the reference does not speed up with the fit. The ratio fit / reference is
what holds on a loaded machine; the target is < 1 s per pattern on an idle core. Both wall-clock and
process CPU time are printed (CPU time is what one core spends, whatever else the machine runs).
"""

from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--library-size", type=int, default=100)
    ap.add_argument("--limit", type=int, default=None, help="time only the first N mixtures")
    ap.add_argument("--only", nargs="+", default=None, metavar="ID",
                    help="time only the mixtures whose id contains one of these strings (after --limit)")
    ap.add_argument("--profile", type=Path, default=None, help="write a cProfile of the timed fits here")
    ap.add_argument("--anomalous", action="store_true", help="library sticks with anomalous dispersion at Cu Kα1")
    ap.add_argument("--shared-derivatives", nargs="*", default=None, metavar="KIND",
                    help="set xrdid.mixtures.refine.SHARED_KINDS (q r size strain width ka2: derivative columns from "
                         "one shared-profile render; default q r size width ka2; the flag alone: none)")
    ap.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                    help="a FitSettings field for the timed fits (a number, true / false, or none); repeatable")
    args = ap.parse_args(argv)

    from eval_synthetic_mixtures import build_library, with_settings
    from render_reference import render_reference

    from xrdid.mixtures import identify_phases, load_library, refine
    from xrdid.mixtures.fit import FitSettings
    from xrdid.mixtures.profile import Optics
    from xrdid.readers import read_pattern
    from xrdid.simulate.sticks import d_min_for

    if args.shared_derivatives is not None:
        refine.SHARED_KINDS = tuple(args.shared_derivatives)
    mix_dir = args.data / "mixtures"
    if not (mix_dir / "labels.csv").is_file():
        print(f"no measured mixtures under {mix_dir}", file=sys.stderr)
        return 1
    with open(mix_dir / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))[: args.limit]
    if args.only:
        rows = [r for r in rows if any(o in r["id"] for o in args.only)]
    settings = with_settings(FitSettings(), args.setting)
    with tempfile.TemporaryDirectory() as tmp:
        build_library(args.data, args.library_size, Path(tmp))
        d_min = d_min_for(1.5444, max(float(r["two_theta_max"]) for r in rows)) / (1 + settings.d_scale_range)
        library = load_library(tmp, d_min, wavelength_A=1.540598 if args.anomalous else None)
    print(f"library: {len(library)} phases ({len(library.errors)} failed); {len(rows)} measured mixtures")

    pats = []
    for r in rows:
        p = read_pattern(mix_dir / r["xy"], wavelength_A=float(r["wavelength_A"]))
        ka2 = float(r["kalpha2_A"]) if r["kalpha2_A"] else None
        ratio = float(r["kalpha2_ratio"]) if r.get("kalpha2_ratio") else None
        pats.append((r["id"], p, ka2, ratio))

    def fit(p, ka2, ratio):
        return identify_phases(p.x, p.y, p.wavelength_A, library, kalpha2_A=ka2, kalpha2_ratio=ratio,
                               settings=settings)

    def reference(x) -> tuple[float, float]:
        optics = Optics((1.5405929, 1.544414))
        t, c = time.perf_counter(), time.process_time()
        for ph in library.phases:
            render_reference(ph.d, ph.f2m, x, optics, width_scale=4.0, size_nm=100.0)
        return time.perf_counter() - t, time.process_time() - c

    t = time.perf_counter()
    fit(*pats[0][1:])
    print(f"warm-up (imports, screening renders of the grid): {time.perf_counter() - t:.2f} s")

    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile(time.process_time)
    times, refs, cpu, cpu_refs = [], [], [], []
    for pid, p, ka2, ratio in pats:
        r0 = reference(p.x)
        if prof:
            prof.enable()
        t, c = time.perf_counter(), time.process_time()
        f = fit(p, ka2, ratio)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        if prof:
            prof.disable()
        r1 = reference(p.x)
        times.append(dt)
        cpu.append(dc)
        refs.append(0.5 * (r0[0] + r1[0]))
        cpu_refs.append(0.5 * (r0[1] + r1[1]))
        print(f"  {dt:6.2f} s wall, {dc:6.2f} s CPU  ratio {dt / refs[-1]:5.1f}  {len(f.phases)} phases  {pid}", flush=True)
    if prof:
        prof.dump_stats(str(args.profile))
    for what, t_, r_ in (("wall", times, refs), ("CPU", cpu, cpu_refs)):
        ratios = np.array(t_) / np.array(r_)
        print(f"\n{what}: {np.median(t_):.2f} s per pattern (median; mean {np.mean(t_):.2f}, max {max(t_):.2f} s) "
              f"against {len(library)} phases; reference (render every library phase once) {np.median(r_):.3f} s "
              f"median; ratio median {np.median(ratios):.2f}× (mean {np.mean(ratios):.2f}, max {ratios.max():.2f}×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
