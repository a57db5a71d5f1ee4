"""Evaluate `xrdid phases` on the measured mixtures of ../shared/data/mixtures against ../shared/data/library.

    python benchmarks/eval_mixtures.py [--split held_out|tune|all] [--data ../shared/data] [--only SUBSTRING]
                                       [--json OUT] [--elements-from-labels] [--displacement-b B] [--beam-min-coverage C] [--max-lattice-departure D]
                                       [--max-march-dollase R] [--min-line-support F] [--strong-line-relative F]
                                       [--setting NAME=VALUE ...]

The development mixtures are split once by a fixed rule (xrdid.mixtures.evaluate.split_of: the parity
of SHA-256 of the mixture id): the fit's settings may be chosen on ``tune`` only; ``held_out`` is what
is reported. Per mixture: true phases (with the library candidates each may match; '|' = polymorph
alternatives, "(-)" = no reference in the library, so not findable), phases found, whether the set is
exact, the weight-fraction error where it is and the labels give fractions, Rwp, the verdict and the
runtime. Then the totals (scoring: xrdid.mixtures.evaluate).

The wavelength and the Kα2 line are passed as the CLI's --wavelength would be (the .xy files state
none; the labels give the line). The library is loaded once (its load time printed separately);
runtime per pattern is the fit alone, one BLAS thread. ``--elements-from-labels`` gives each fit the
chemistry a user who weighed the precursors knows (`xrdid phases --elements`): the library restricted
to the elements of the label's phase names; reported apart from the plain run. ``--beam-min-coverage``,
``--max-lattice-departure``, ``--max-march-dollase`` (``inf``: no such test), ``--min-line-support``,
``--strong-line-relative``: FitSettings' (to compare a setting with the default); ``--setting NAME=VALUE``:
any other FitSettings field (a number, true / false, or none).
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_synthetic_mixtures import add_setting_arguments, settings_from


def precursor_elements(names: list[str]) -> set[str]:
    """Element symbols in the precursor names of a label ("La(OH)3", "Bi2O3-alpha", "NaAlO2-1.5H2O")."""
    import re

    from pymatgen.core import Element

    return {e for n in names for e in re.findall(r"[A-Z][a-z]?", n) if Element.is_valid_symbol(e)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--split", choices=("held_out", "tune", "all"), default="held_out")
    ap.add_argument("--only", default=None, help="evaluate mixtures whose id contains this")
    ap.add_argument("--json", type=Path, default=None, help="write per-mixture results here")
    ap.add_argument("--elements-from-labels", action="store_true",
                    help="restrict the library per mixture to the elements of its weighed precursors (the labels' "
                         "phase names), as `xrdid phases --elements` would")
    ap.add_argument("--anomalous", action=argparse.BooleanOptionalAction, default=True,
                    help="library sticks with the elements' anomalous dispersion at the patterns' Kα1 line "
                         "(load_library wavelength_A; default, as `xrdid phases`)")
    ap.add_argument("--displacement-b", type=float, default=None, metavar="B",
                    help="library sticks with a Debye–Waller factor: the CIFs' own displacement parameters, else B "
                         "(Å²) (load_library displacement_B; default: none, B = 0)")
    add_setting_arguments(ap)
    ap.add_argument("--shared-derivatives", nargs="*", default=None, metavar="KIND",
                    help="set xrdid.mixtures.refine.SHARED_KINDS: the refined parameter kinds (q r size strain width ka2) "
                         "whose derivative columns come from one shared-profile render (default: its own, q r size "
                         "width ka2; the flag alone: none, a render per parameter)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from xrdid.mixtures import default_cache_dir, identify_phases, load_library, refine

    if args.shared_derivatives is not None:
        refine.SHARED_KINDS = tuple(args.shared_derivatives)
    from xrdid.mixtures.evaluate import score_mixture, split_of, summarise
    from xrdid.readers import read_pattern
    from xrdid.simulate.sticks import d_min_for

    mix_dir = args.data / "mixtures"
    with open(mix_dir / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    if args.split != "all":
        rows = [r for r in rows if split_of(r["id"]) == args.split]
    if args.only:
        rows = [r for r in rows if args.only in r["id"]]
    settings = settings_from(args)
    t = time.perf_counter()
    # One d_min for all: the largest 2θ of any pattern, the longest line, the largest d scale searched.
    two_theta_max = max(float(r["two_theta_max"]) for r in rows)
    lam_max = max(float(r["kalpha2_A"] or r["wavelength_A"]) for r in rows)
    d_min = d_min_for(lam_max, two_theta_max) / (1 + settings.d_scale_range)
    lam1 = sorted({float(r["wavelength_A"]) for r in rows})
    if args.anomalous and lam1[-1] / lam1[0] - 1 > 0.001:
        ap.error(f"--anomalous needs one wavelength for the split, got {lam1}")
    library = load_library(args.data / "library", d_min, cache_dir=default_cache_dir(),
                           wavelength_A=lam1[0] if args.anomalous else None, displacement_B=args.displacement_b)
    print(f"library: {len(library)} phases loaded in {time.perf_counter() - t:.1f} s ({len(library.errors)} failed); "
          f"split {args.split}: {len(rows)} mixtures")

    scores, times, out = [], [], []
    for r in rows:
        names = r["phases"].split(";")
        refs = [[Path(c).name for c in ref.split("|") if c] for ref in r["reference_cifs"].split(";")]
        fracs = [float(f) for f in r["weight_fractions"].split(";")] if r["weight_fractions"] else None
        pat = read_pattern(mix_dir / r["xy"], wavelength_A=float(r["wavelength_A"]))
        ka2 = float(r["kalpha2_A"]) if r["kalpha2_A"] else None
        ratio = float(r["kalpha2_ratio"]) if r.get("kalpha2_ratio") else None
        lib = library.restricted_to(precursor_elements(names)) if args.elements_from_labels else library
        fit = identify_phases(pat.x, pat.y, pat.wavelength_A, lib, kalpha2_A=ka2, kalpha2_ratio=ratio,
                              settings=settings)
        sc = score_mixture(refs, [(p.id, p.weight_fraction) for p in fit.phases], fracs)
        scores.append(sc)
        times.append(fit.seconds)
        found_desc = []
        for p, j in zip(fit.phases, sc.matched):
            alts = ", ".join(a["id"].split("__")[-1] for a in p.alternatives)
            found_desc.append(f"{p.formula}[{p.id.split('__')[-1]}]{'' if j is not None else '✗'} {p.weight_fraction:.2f}"
                              f" c{p.confidence:.2f}" + (f" (or {alts})" if alts else ""))
        truth = ", ".join(f"{n}{'' if ref else '(-)'}" + (f" {f:.2f}" if fracs else "")
                          for n, ref, f in zip(names, refs, fracs or [None] * len(names)))
        print(f"\n{r['id']}\n  true : {truth}\n  found: {'; '.join(found_desc) or '-'}")
        print(f"  exact {'yes' if sc.exact else 'no '}  right {sc.n_right}/{sc.n_found}  findable found "
              f"{sc.n_recalled}/{sc.n_findable}" + (f"  wt error {sc.wt_error:.1f} wt%" if sc.wt_error is not None else "")
              + f"  Rwp {fit.rwp:.4f} (bg only {fit.rwp_background_only:.4f})  {fit.seconds:.1f} s")
        where = ", ".join(f"{p['two_theta_deg']:.2f}" for p in fit.unexplained[:6])
        print(f"  verdict: {fit.verdict}" + (f"; unexplained peaks at {where}°" if fit.unexplained else ""))
        for h in fit.superstructure:
            print(f"  hint: {h['text']}")
        if fit.stand_ins:
            print(f"  withdrawn: {'; '.join(f'{p.formula}[{p.id.split(chr(95) * 2)[-1]}]' for p in fit.stand_ins)}")
        out.append({"id": r["id"], "split": split_of(r["id"]), "true": names, "refs": refs, "nominal": fracs,
                    "fit": fit.to_dict(), "score": sc.__dict__})
        sys.stdout.flush()

    s = summarise(scores)
    print(f"\n== totals ({args.split}) ==")
    print(f"findable phases found {s['findable_found']}/{s['findable']} = {s['recall']:.3f}; "
          f"predicted phases right {s['right']}/{s['found']} = {s['precision']:.3f}; "
          f"exact sets {s['exact']}/{s['mixtures']} = {s['exact_fraction']:.3f}")
    print(f"wt-fraction error where the set is exact (and fractions known): {s['wt_error_wt_pct']:.2f} wt% "
          f"over {s['wt_error_mixtures']} mixtures")
    print(f"runtime per pattern: median {np.median(times):.2f} s, max {np.max(times):.2f} s "
          "(the first pattern on a grid includes the screening renders)")
    if args.json:
        args.json.write_text(json.dumps({"summary": s, "mixtures": out}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
