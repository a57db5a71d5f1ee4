"""Is a measured mixture's miss the search's or the model's? The fit with the true set injected.

    python benchmarks/mixture_oracle.py [--split tune] [--data ../shared/data] [--setting NAME=VALUE ...]

Each mixture of the split is fitted twice with the same library (so the same foreign-peak mask and χ² floor,
and criteria that compare): as ``xrdid phases`` does, and with the true set — one library entry per findable
true phase (the one the first fit found where it found one, else the first reference listed), each placed
by the fit's own ``_add_phase`` at d scale 1 in turn — added to the hypotheses that get the full refinement.
Printed per mixture (JSON lines): both answers with their criteria and whether each is exact, and the
injected set after its full refinement (what the pruning leaves of it, and its criterion). Where the answer
with the truth injected is the true set, the search lost it; where it is the first answer again, the
criterion or the pruning prefers that answer, and no search setting will change it. Choose settings on
``tune`` only (see eval_mixtures.py).
"""

from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _answer(fit, refs) -> dict:
    from xrdid.mixtures.evaluate import score_mixture

    sc = score_mixture(refs, [(p.id, p.weight_fraction) for p in fit.phases], None)
    return {"criterion": round(fit.criterion, 1), "exact": sc.exact,
            "phases": [[p.id, round(p.weight_fraction, 3)] for p in fit.phases]}


def main(argv: list[str] | None = None) -> int:
    from eval_synthetic_mixtures import add_setting_arguments, settings_from

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--split", choices=("held_out", "tune", "all"), default="tune")
    add_setting_arguments(ap)
    args = ap.parse_args(argv)

    from xrdid.mixtures import default_cache_dir, identify_phases, load_library
    from xrdid.mixtures import fit as F
    from xrdid.mixtures.evaluate import split_of
    from xrdid.readers import read_pattern
    from xrdid.simulate.sticks import d_min_for

    st = settings_from(args)
    mix_dir = args.data / "mixtures"
    with open(mix_dir / "labels.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if args.split == "all" or split_of(r["id"]) == args.split]
    two_theta_max = max(float(r["two_theta_max"]) for r in rows)
    lam_max = max(float(r["kalpha2_A"] or r["wavelength_A"]) for r in rows)
    lam1 = sorted({float(r["wavelength_A"]) for r in rows})
    library = load_library(args.data / "library", d_min_for(lam_max, two_theta_max) / (1 + st.d_scale_range),
                           cache_dir=default_cache_dir(), wavelength_A=lam1[0])
    index = {p.id: k for k, p in enumerate(library.phases)}

    truth: list[int] = []
    injected: dict = {}
    worth_refining, final = F._worth_refining, F._final

    def with_truth(m, ranked, st_, ne):
        out = worth_refining(m, ranked, st_, ne)
        if not truth or not ranked:
            return out
        empty = np.zeros((0, m.y.size))
        _a, _b, calc0, chi2_0 = m.linear(empty)
        h = F._Hyp([], ranked[0].g, empty, np.zeros(0), calc0, chi2_0)
        bounds = F.Bounds(d_scale=st_.d_scale_range, aniso=2 * st_.lattice_sigma)
        grid = F._screen_columns(m, m.fwhm_deg, st_)[0]
        for idx in truth:
            h = F._add_phase(m, h, idx, 1.0, st_, bounds, grid[1] - grid[0]) or h
        injected.update(hypothesis=h, placed=[library.phases[p.index].id for p in h.phases])
        return [*out, h]

    def recording_final(m, h, st_, bounds, glob_kinds, ne, **kw):
        """The fit's own full refinement; for the injected set, what its pruning leaves and its criterion."""
        f = final(m, h, st_, bounds, glob_kinds, ne, **kw)
        if h is injected.get("hypothesis"):
            injected.update(refined=[library.phases[p.index].id for p in f.phases], criterion=round(F._crit(m, f, ne), 1))
        return f

    F._worth_refining, F._final = with_truth, recording_final
    try:
        for r in rows:
            refs = [[Path(c).name for c in ref.split("|") if c] for ref in r["reference_cifs"].split(";")]
            pat = read_pattern(mix_dir / r["xy"], wavelength_A=float(r["wavelength_A"]))
            ka2 = float(r["kalpha2_A"]) if r["kalpha2_A"] else None
            ratio = float(r["kalpha2_ratio"]) if r.get("kalpha2_ratio") else None

            truth.clear()
            injected.clear()
            first = identify_phases(pat.x, pat.y, pat.wavelength_A, library, kalpha2_A=ka2, kalpha2_ratio=ratio,
                                    settings=st)
            found = {p.id for p in first.phases}
            for ref in refs:
                pick = [c for c in ref if c in found] or [c for c in ref if c in index]
                if pick:
                    truth.append(index[pick[0]])
            second = first
            if truth:
                second = identify_phases(pat.x, pat.y, pat.wavelength_A, library, kalpha2_A=ka2,
                                         kalpha2_ratio=ratio, settings=st)
            print(json.dumps({"id": r["id"], "true": r["phases"].split(";"), "findable": len(truth),
                              "answer": _answer(first, refs), "with_truth_injected": _answer(second, refs),
                              "injected": {k: v for k, v in injected.items() if k != "hypothesis"}}), flush=True)
    finally:
        F._worth_refining, F._final = worth_refining, final
    return 0


if __name__ == "__main__":
    sys.exit(main())
