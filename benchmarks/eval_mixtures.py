"""Evaluate `xrdid phases` on the 20 measured mixtures of ../shared/data/mixtures against ../shared/data/library.

    python benchmarks/eval_mixtures.py [--data ../shared/data] [--only SUBSTRING] [--json OUT]

Per mixture: true phases (with the library candidates each may match; '|' = polymorph alternatives,
"-" = no reference in the library, so not findable), phases found, precision and recall, weight-fraction
MAE against the nominal weighed fractions (where labels give them), Rwp and runtime. Then totals.

Scoring: a found phase is correct if its library file is one of the candidate CIFs of a true phase;
precision = correct / found; recall = true phases found / findable true phases (and / all true phases).
Weight-fraction MAE is over the true phases with a nominal fraction, the prediction for a true phase being
the summed fraction of the found phases matching it (0 if missed): "all" uses the nominal fractions as
weighed (phases absent from the library count as missed), "findable" renormalises the nominal fractions
over the phases that have a library reference, which is what a perfect fit against this library gives.
The wavelength is passed as the CLI's --wavelength would be (the .xy files state none). The library is
loaded once (its load time is printed separately); runtime per pattern is the fit alone.
"""

from __future__ import annotations

import os

# One BLAS thread: the fits use small dense problems, and on a shared machine threaded LAPACK is 10-60x slower.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--only", default=None, help="evaluate mixtures whose id contains this")
    ap.add_argument("--json", type=Path, default=None, help="write per-mixture results here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from xrdid.mixtures import identify_phases, load_library
    from xrdid.mixtures.fit import FitSettings
    from xrdid.readers import read_pattern
    from xrdid.simulate.sticks import d_min_for

    mix_dir = args.data / "mixtures"
    with open(mix_dir / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    if args.only:
        rows = [r for r in rows if args.only in r["id"]]
    settings = FitSettings()
    t = time.perf_counter()
    # One d_min for all: the largest 2θ of any pattern, the longest line, the largest d scale searched.
    two_theta_max = max(float(r["two_theta_max"]) for r in rows)
    lam_max = max(float(r["kalpha2_A"] or r["wavelength_A"]) for r in rows)
    from xrdid.mixtures import default_cache_dir

    d_min = d_min_for(lam_max, two_theta_max) / (1 + settings.d_scale_range)
    library = load_library(args.data / "library", d_min, cache_dir=default_cache_dir())
    print(f"library: {len(library)} phases loaded in {time.perf_counter() - t:.1f} s ({len(library.errors)} failed)")

    tot = {"tp": 0, "found": 0, "findable": 0, "true": 0, "recalled": 0}
    maes_all, maes_find, times, rwps, out = [], [], [], [], []
    for r in rows:
        names = r["phases"].split(";")
        refs = [[Path(c).name for c in ref.split("|") if c] for ref in r["reference_cifs"].split(";")]
        fracs = [float(f) for f in r["weight_fractions"].split(";")] if r["weight_fractions"] else None
        pat = read_pattern(mix_dir / r["xy"], wavelength_A=float(r["wavelength_A"]))
        ka2 = float(r["kalpha2_A"]) if r["kalpha2_A"] else None
        fit = identify_phases(pat.x, pat.y, pat.wavelength_A, library, kalpha2_A=ka2, settings=settings)
        times.append(fit.seconds)
        rwps.append(fit.rwp)
        pred = np.zeros(len(names))
        found_desc, tp = [], 0
        hit = set()
        for p in fit.phases:
            j = next((k for k, ref in enumerate(refs) if Path(p.id.split("#")[0]).name in ref), None)
            ok = j is not None
            tp += ok
            if ok:
                pred[j] += p.weight_fraction
                hit.add(j)
            found_desc.append(f"{p.formula}[{p.id.split('__')[-1]}]{'' if ok else '✗'} {p.weight_fraction:.2f} c{p.confidence:.2f}")
        findable = sum(1 for ref in refs if ref)
        tot["tp"] += tp
        tot["found"] += len(fit.phases)
        tot["findable"] += findable
        tot["true"] += len(names)
        tot["recalled"] += len(hit)
        mae_a = mae_f = None
        if fracs:
            mae_a = float(np.mean(np.abs(pred - np.array(fracs))))
            fmask = np.array([bool(ref) for ref in refs])
            if fmask.any():
                nf = np.array(fracs) * fmask
                nf = nf / nf.sum()
                mae_f = float(np.mean(np.abs(pred[fmask] - nf[fmask])))
            maes_all.append(mae_a)
            if mae_f is not None:
                maes_find.append(mae_f)
        truth = ", ".join(f"{n}{'' if ref else '(-)'}" + (f" {f:.2f}" if fracs else "") for n, ref, f in zip(names, refs, fracs or [None] * len(names)))
        prec = tp / len(fit.phases) if fit.phases else float("nan")
        rec = len(hit) / findable if findable else float("nan")
        print(f"\n{r['id']}\n  true : {truth}\n  found: {'; '.join(found_desc) or '-'}")
        print(f"  P {prec:.2f}  R {rec:.2f} ({len(hit)}/{findable} findable, {len(names)} true)"
              + (f"  wMAE all {mae_a:.3f}" if mae_a is not None else "")
              + (f" findable {mae_f:.3f}" if mae_f is not None else "")
              + f"  Rwp {fit.rwp:.4f} (bg only {fit.rwp_background_only:.4f})  zero {fit.zero_shift_deg:+.3f}°"
              + f"  Kα2 {fit.kalpha2_ratio if fit.kalpha2_ratio is None else round(fit.kalpha2_ratio, 2)}  {fit.seconds:.1f} s")
        out.append({"id": r["id"], "true": names, "refs": refs, "nominal": fracs, "fit": fit.to_dict(),
                    "precision": prec, "recall_findable": rec, "wmae_all": mae_a, "wmae_findable": mae_f})
        sys.stdout.flush()

    print("\n== totals ==")
    print(f"mixtures {len(rows)}; found {tot['found']}, correct {tot['tp']}: precision {tot['tp'] / max(tot['found'], 1):.3f}")
    print(f"recall {tot['recalled']}/{tot['findable']} findable = {tot['recalled'] / max(tot['findable'], 1):.3f}; "
          f"{tot['recalled']}/{tot['true']} of all true phases = {tot['recalled'] / max(tot['true'], 1):.3f}")
    if maes_all:
        print(f"weight-fraction MAE over {len(maes_all)} mixtures with nominal fractions: all {np.mean(maes_all):.3f}, "
              f"findable (renormalised) {np.mean(maes_find):.3f}")
    print(f"Rwp median {np.median(rwps):.4f}; runtime per pattern median {np.median(times):.1f} s, "
          f"max {np.max(times):.1f} s, total {np.sum(times):.0f} s (the first pattern on a grid includes screening renders)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
