"""Phase identification on 2- and 3-phase mixtures simulated without any of xrdid's code.

    python benchmarks/eval_independent_mixtures.py [--per-size 15] [--seed 2026] [--min-fraction 0.1]
                                                   [--two-theta 10 90] [--peak-counts 10000 40000]
                                                   [--strain 0.003] [--data ../shared/data]
                                                   [--out results.jsonl]

The fitter's own synthetic mixtures (eval_synthetic_mixtures.py) are rendered by its own model, so an
error shared by both cancels. Here, as in tests/mixtures/test_independent_mixtures.py, the physics is
written out independently: sticks from pymatgen's XRDCalculator (|F|²·multiplicity·LP, unscaled), Cu
Kα1/Kα2 (ratio 0.5), phase intensities scaled by w/(V·M), Voigt peaks from scipy (Caglioti Gaussian
width, Scherrer Lorentzian width from a size of 50–300 nm per phase), each phase's lattice strained
isotropically by up to ±0.3 % (``--strain``), a zero shift of up to ±0.03°, a decaying background with an amorphous
hump, Poisson counts.

Library: 50 structures drawn (seeded) from ../shared/data/library, one per (formula, space group).
Mixtures: phases of distinct formula, Dirichlet(2) weight fractions, each ≥ --min-fraction. Scored per
size: exact sets, recall, precision, weight-fraction error (wt%) on exact sets, median seconds per
pattern (library loading included in the first only).

The fit is whichever ``xrdid`` Python imports, so the same mixtures can be given to another version of
the package: ``PYTHONPATH=<other checkout>/src python benchmarks/eval_independent_mixtures.py``.
"""

from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import csv
import json
import math
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CU = ((1.5405929, 1.0), (1.5444140, 0.5))
U, V, W = 0.006, -0.003, 0.003  # Caglioti Gaussian width, deg²


def pick_library(data: Path, folder: Path, size: int = 50, seed: int = 7) -> dict[str, dict]:
    rows = list(csv.DictReader((data / "library" / "index.csv").read_text().splitlines()))
    seen, unique = set(), []
    for r in rows:
        key = (r["formula"], r["spg_symprec_0p1"])
        if key not in seen:
            seen.add(key)
            unique.append(r)
    pick = sorted(random.Random(seed).sample(unique, size), key=lambda r: r["file"])
    folder.mkdir(parents=True, exist_ok=True)
    for r in pick:
        shutil.copy(data / "library" / r["file"], folder / r["file"])
    return {r["file"][:-4]: r for r in pick}


def simulate(structures: dict, x: np.ndarray, fractions: dict[str, float], rng, peak_counts, two_theta, strain_max=0.003) -> tuple:
    from pymatgen.analysis.diffraction.xrd import XRDCalculator
    from scipy.special import voigt_profile

    zero = float(rng.uniform(-0.03, 0.03))
    y = np.zeros_like(x)
    for name, w in fractions.items():
        s = structures[name].copy()
        strain = float(rng.uniform(-strain_max, strain_max))
        s.scale_lattice(s.volume * (1 + strain) ** 3)
        size = float(rng.uniform(50, 300))
        scale = w / (float(s.volume) * float(s.composition.weight))
        for lam, lw in CU:
            sticks = XRDCalculator(wavelength=lam).get_pattern(s, scaled=False, two_theta_range=(two_theta[0] - 2, two_theta[1] + 2))
            for c, a in zip(sticks.x, sticks.y):
                t = math.tan(math.radians(c / 2))
                fg = math.sqrt(U * t * t + V * t + W)
                fl = math.degrees(0.9 * lam / (10 * size * math.cos(math.radians(c / 2))))
                y += scale * lw * a * voigt_profile(x - c - zero, fg / (2 * math.sqrt(2 * math.log(2))), fl / 2)
    y *= float(rng.uniform(*peak_counts)) / y.max()
    y += (150 + rng.uniform(50, 300) * np.exp(-(x - two_theta[0]) / 10.0)
          + rng.uniform(0, 200) * np.exp(-0.5 * ((x - 25.0) / 4.0) ** 2))
    return rng.poisson(y).astype(float), zero


def make_mixtures(lib: dict, folder: Path, per_size: int, seed: int, min_fraction: float, two_theta, peak_counts,
                  strain_max: float = 0.003):
    from pymatgen.core import Structure

    structures = {k: Structure.from_file(str(folder.parent / "library" / f"{k}.cif")) for k in lib}
    names = sorted(structures)
    rng = np.random.default_rng(seed)
    x = np.arange(two_theta[0], two_theta[1], 0.02)
    truth = {}
    for n in (2, 3):
        for k in range(per_size):
            while True:
                chosen = list(rng.choice(names, n, replace=False))
                if len({lib[c]["formula"] for c in chosen}) == n:
                    break
            while True:
                w = rng.dirichlet([2.0] * n)
                if w.min() >= min_fraction:
                    break
            fractions = {c: float(v) for c, v in zip(chosen, w)}
            y, _ = simulate(structures, x, fractions, rng, peak_counts, two_theta, strain_max)
            mid = f"m{n}_{k:02d}"
            (folder / f"{mid}.xy").write_text("# wavelength: 1.5405929 A\n" + "".join(f"{a:.3f} {b:.0f}\n" for a, b in zip(x, y)))
            truth[mid] = {f"{c}.cif": v for c, v in fractions.items()}
    return truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-size", type=int, default=15)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--min-fraction", type=float, default=0.1)
    ap.add_argument("--two-theta", type=float, nargs=2, default=(10.0, 90.0))
    ap.add_argument("--peak-counts", type=float, nargs=2, default=(10000.0, 40000.0))
    ap.add_argument("--strain", type=float, default=0.003, help="largest isotropic lattice strain per phase (fraction)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, help="per-mixture results (JSON lines)")
    ap.add_argument("--anomalous", action=argparse.BooleanOptionalAction, default=True,
                    help="fit with the library's anomalous dispersion (default, as `xrdid phases`; these mixtures "
                         "are simulated without it)")
    args = ap.parse_args()
    if not (args.data / "library" / "index.csv").exists():
        raise SystemExit(f"{args.data / 'library' / 'index.csv'}: not found (the shared development data)")

    import xrdid
    from xrdid.mixtures import identify_in_pattern
    from xrdid.readers import read_pattern

    print(f"xrdid from {Path(xrdid.__file__).parent}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lib = pick_library(args.data, work / "library")
        (work / "xy").mkdir()
        truth = make_mixtures(lib, work / "xy", args.per_size, args.seed, args.min_fraction, args.two_theta,
                              args.peak_counts, args.strain)
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")
        rows = []
        for mid, true in truth.items():
            t0 = time.perf_counter()
            fit, _ = identify_in_pattern(read_pattern(work / "xy" / f"{mid}.xy"), work / "library",
                                         anomalous_dispersion=args.anomalous)
            found = {p.id: p.weight_fraction for p in fit.phases}
            rows.append({"id": mid, "true": true, "found": found, "seconds": time.perf_counter() - t0})
            print(mid, "exact" if set(found) == set(true) else "WRONG",
                  {k[:-4].split("__")[-1]: round(v, 3) for k, v in true.items()}, "->",
                  {k[:-4].split("__")[-1]: round(v, 3) for k, v in found.items()}, flush=True)
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print("| phases | exact sets | recall | precision | wt% error, exact sets (mean / max) | median s per pattern |")
    print("|---|---|---|---|---|---|")
    for n in (2, 3):
        sel = [r for r in rows if len(r["true"]) == n]
        hit = sum(len(set(r["true"]) & set(r["found"])) for r in sel)
        exact = [r for r in sel if set(r["true"]) == set(r["found"])]
        err = [100 * abs(r["found"][k] - v) for r in exact for k, v in r["true"].items()]
        print(f"| {n} | {len(exact)}/{len(sel)} | {hit}/{sum(len(r['true']) for r in sel)} | "
              f"{hit}/{sum(len(r['found']) for r in sel)} | "
              f"{statistics.mean(err) if err else float('nan'):.2f} / {max(err) if err else float('nan'):.2f} | "
              f"{statistics.median(r['seconds'] for r in sel):.1f} |")


if __name__ == "__main__":
    main()
