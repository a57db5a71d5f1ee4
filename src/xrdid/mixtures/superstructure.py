"""Unexplained peaks that index on a doubled cell of a phase found: a hint of a superstructure.

A phase the library lacks is often stood in for by a library phase on its sublattice: bixbyite In2O3
(a = 10.12 Å) by a cubic Zr2O of a = 5.09 Å, whose lines are In2O3's even-index ones. The fit then leaves
the missing phase's other lines unexplained, and they index on the stand-in's cell doubled. For each phase
found and each doubling of its cell's axes (seven), the unexplained peaks are matched to the reflections
of the larger cell that the phase's own cell lacks (no extinctions assumed), at the fit's zero shift and
displacement, within ``tol`` degrees; the count is judged against chance, the share of the scanned range
that those reflections cover (a binomial tail, Bonferroni over the doublings and phases). A hint reports
the phase, the doubling, the peaks matched and that probability; the fit then withdraws that phase from its
answer (``FitSettings.withdraw_superstructure_stand_ins``). A large or
low-symmetry cell covers most of the range, leaves nothing to judge, and gets no hint.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binom

from xrdid.indexing.lattice import hkl_box, metric_from_p6, p6_from_parameters

MULTIPLES = ((2, 1, 1), (1, 2, 1), (1, 1, 2), (2, 2, 1), (2, 1, 2), (1, 2, 2), (2, 2, 2))
MAX_CHANCE = 1e-3  # the largest Bonferroni-corrected chance probability reported
MIN_MATCHED = 4
MAX_COVERAGE = 0.5  # supercell reflections covering more of the range than this: nothing to judge
MAX_INDICES = 30  # indices of the doubled cell beyond this (a cell over ~15 Å at d 1 Å, whose doubled lines crowd the range): skipped
TOL_FWHM = 0.25  # a peak matches a reflection within this many FWHM (the fit's estimate)


def _doubled_reflections(cell, d_min_A: float):
    """(H, 1/d²) of every reflection of ``cell`` with all three axes doubled, d ≥ ``d_min_A``, one of each
    ±H pair; None when the indices needed exceed MAX_INDICES. Every doubling's reflections are among them."""
    hmax = np.floor(2 * np.asarray(cell[:3], float) / d_min_A).astype(int) + 1
    if np.any(hmax > MAX_INDICES):
        return None
    hkl = hkl_box(*(int(h) for h in hmax))
    inv_d2 = np.einsum("ij,jk,ik->i", hkl, metric_from_p6(p6_from_parameters(*cell)) / 4.0, hkl)
    keep = inv_d2 <= 1 / d_min_A**2
    return hkl[keep], inv_d2[keep]


def supercell_lines(cell, multiples, wavelength_A: float, d_min_A: float, doubled=None) -> np.ndarray:
    """2θ (deg, Bragg, sorted, distinct to 0.001°) of the reflections of ``cell`` with its axes multiplied by
    ``multiples`` (1 or 2 each) that the cell itself does not have, down to ``d_min_A``; None when the indices
    needed exceed MAX_INDICES. ``doubled``: _doubled_reflections(cell, d_min_A), when already computed."""
    doubled = _doubled_reflections(cell, d_min_A) if doubled is None else doubled
    if doubled is None:
        return None
    hkl, inv_d2 = doubled
    step = 2 // np.asarray(multiples)  # an axis not doubled takes only even indices of the doubled cell
    ok = np.all(hkl % step == 0, axis=1) & np.any(hkl % 2 != 0, axis=1)
    s = wavelength_A * np.sqrt(inv_d2[ok]) / 2
    s = s[s < 1]
    return np.unique(np.round(np.degrees(2 * np.arcsin(s)), 3))


def _coverage(centres: np.ndarray, lo: float, hi: float, tol: float) -> float:
    """Share of [lo, hi] within ``tol`` of any centre."""
    c = centres[(centres > lo - tol) & (centres < hi + tol)]
    if c.size == 0:
        return 0.0
    starts, ends = np.maximum(c - tol, lo), np.minimum(c + tol, hi)
    covered, cur_s, cur_e = 0.0, starts[0], ends[0]
    for s, e in zip(starts[1:], ends[1:]):
        if s > cur_e:
            covered += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    covered += cur_e - cur_s
    return float(covered / (hi - lo))


def hints(phases, unexplained: list[dict], *, wavelength_A: float, zero_deg: float, displacement_deg: float,
          two_theta_range: tuple[float, float], tol_deg: float) -> list[dict]:
    """Superstructure hints (see the module): ``phases`` with ``id``, ``formula`` and ``cell`` (a, b, c, α, β,
    γ); ``unexplained`` the fit's unexplained peaks (``two_theta_deg``). One doubling per phase (of those
    passing, the most peaks matched, then the larger cell), most significant first: [{id, formula,
    multiples, matched, unexplained, chance, text}] (text: :func:`describe`)."""
    peaks = np.array([u["two_theta_deg"] for u in unexplained], float)
    n = peaks.size
    if n < MIN_MATCHED or not phases:
        return []
    lo, hi = two_theta_range
    d_min = wavelength_A / (2 * math.sin(math.radians(min(hi, 179.0)) / 2))
    trials = len(MULTIPLES) * len(phases)
    out = []
    for p in phases:
        if not p.cell:
            continue
        best = None
        doubled = _doubled_reflections(p.cell, d_min)
        for mult in MULTIPLES:
            tt = supercell_lines(p.cell, mult, wavelength_A, d_min, doubled)
            if tt is None or tt.size == 0:
                continue
            th = np.radians(tt) / 2
            centres = tt + zero_deg + displacement_deg * np.cos(th)
            cover = _coverage(centres, lo, hi, tol_deg)
            if cover > MAX_COVERAGE:
                continue
            idx = np.searchsorted(centres, peaks)
            near = np.minimum(np.abs(peaks - centres[np.clip(idx - 1, 0, centres.size - 1)]),
                              np.abs(peaks - centres[np.clip(idx, 0, centres.size - 1)]))
            k = int(np.sum(near <= tol_deg))
            chance = min(1.0, float(binom.sf(k - 1, n, cover)) * trials) if k else 1.0
            # Of the doublings that pass, the one matching most peaks; on a tie the larger cell, whose lines
            # include the smaller's (a cubic stand-in's In2O3 peaks match its (2, 2, 1) and (2, 2, 2) alike).
            if k >= MIN_MATCHED and chance <= MAX_CHANCE and (best is None or k >= best["matched"]):
                best = {"id": p.id, "formula": p.formula, "multiples": list(mult), "matched": k, "unexplained": n,
                        "chance": float(f"{chance:.3g}")}
        if best:
            out.append({**best, "text": describe(best)})
    return sorted(out, key=lambda h: h["chance"])


def describe(h: dict) -> str:
    """One line for a hint, in words."""
    axes = ", ".join(a for a, m in zip("abc", h["multiples"]) if m == 2)
    return (f"{h['matched']} of the {h['unexplained']} unexplained peaks index on {h['formula']}'s cell doubled "
            f"along {axes} (chance {h['chance']:.1g}): a phase the library lacks on its sublattice "
            f"(a superstructure) may be present, with {h['formula']} standing in for it")
