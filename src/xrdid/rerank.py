r"""Re-rank a classifier's top-k space groups by how well each group's allowed reflections index the peaks.

Groups of one lattice differ mainly by systematic absences (Fm-3m and Fd-3m; Pm-3m and Im-3m), which a
CNN sees only through weak or missing low-angle peaks. Here each candidate group gets a quick lattice fit
that may use *only* the reflections its reflection conditions allow, and its score is

    score(g) = log p_cnn(g) + w · (matched(g) − β · missing(g))

* **Peaks** (:func:`find_peaks`): local maxima of the pattern with a prominence of at least
  ``PROMINENCE_SIGMA`` × the noise (σ from the median absolute first difference, robust to peaks) and
  at least ``MIN_RELATIVE`` of the strongest; positions refined by a parabola through the top three points.
  Positions become x = 1/d² = 4 sin²θ / λ₁², λ₁ the primary wavelength; a line of a weaker wavelength λ
  (Cu Kα₂) appears at x·(λ/λ₁)², so it may *explain* an observed peak but is never expected to be seen,
  and a peak lying where a stronger peak's Kα₂ line falls is dropped as that peak's companion.
* **Lattice models**: 1/d² is linear in the reciprocal metric, x = m(hkl) · p, with
  cubic m = (h²+k²+l²), p = (1/a²); tetragonal m = (h²+k², l²); trigonal and hexagonal (hexagonal axes,
  R groups included) m = (4/3 (h²+hk+k²), l²); orthorhombic m = (h², k², l²), p = (1/a², 1/b², 1/c²).
  Monoclinic and triclinic groups are not fitted (indexing them is a search of its own): they keep their
  CNN score plus ``w · unfitted``, a constant chosen with the weights.
* **Absences** (:func:`allowed_forms`): from the general position of pyxtal's ``Group(n)`` (standard
  setting, centring translations included). For operations (R, t), x ↦ Rx + t, a reflection h is
  systematically absent when Σ over the operations with hR = h of exp(2πi h·t) vanishes (the sum of a
  character over the stabiliser of h: zero unless every phase is 1). Reflections with the same m — the
  same d for every cell of the lattice, e.g. 300 and 221 in cubic — form one line, present when any of
  them is allowed. Site-specific absences (Si's 222) are not group absences and stay allowed.
* **Fit**: seeds from assigning each set of ``n_params`` peaks among the first few to distinct low-index
  forms (a linear solve each); every seed is scored cheaply on the low-index allowed forms, the best are
  refined by weighted least squares on x (weights making residuals 2θ errors) over the matched peaks,
  matching within ``tol_deg`` in 2θ. The cell kept maximises matched − β₀·missing with β₀ = ``BETA_FIT``.
* **matched**: the √intensity-weighted fraction of the first ``n_peaks`` observed peaks lying within
  ``tol_deg`` of an allowed line. **missing**: the fraction of allowed lines (lines closer than the
  tolerance merged) from the start of the covered range up to the ``n_window``-th observed peak that have
  no observed peak within the tolerance — absences are what tell the groups apart, so allowed low-angle
  lines that are not seen count against a group.

What is left out: intensities (no structure model, so no Rietveld-like test), zero shift and sample
displacement (absorbed by the tolerance), cells longer than ``MAX_CELL_A``, and monoclinic/triclinic
fits. The weights ``WEIGHTS`` were chosen on half of the AFLOW prototypes with the shipped checkpoint and
evaluated on the other half and on measured patterns: see ``benchmarks/rerank.py`` and
``benchmarks/README.md``; retune them there for another checkpoint.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from xrdid.labels import crystal_system, space_group_symbol

# Peak finder: minimum prominence in units of the noise σ, and relative to the strongest peak.
PROMINENCE_SIGMA = 8.0
MIN_RELATIVE = 0.01
# Matching tolerance in 2θ (degrees): zero shift and sample displacement of the augmentation reach ±0.05° each.
TOL_DEG = 0.1
# Observed peaks (lowest angles first) used for the matched fraction, and the window for missing lines.
N_PEAKS = 20
N_WINDOW = 10
# Miller-index bound of the reflections considered, and the longest cell edge tried (Å).
HMAX = 12
MAX_CELL_A = 30.0
MIN_CELL_A = 1.5
# Seeds refined per group.
KEEP_SEEDS = 12
# β₀ used to choose a group's cell.
BETA_FIT = 0.5


@dataclass(frozen=True)
class Weights:
    """score = log p + w · (matched − beta · missing); groups not fitted get w · unfitted."""

    w: float = 12.0
    beta: float = 1.0
    unfitted: float = 0.0


# Chosen on the validation half of the AFLOW prototypes with the shipped checkpoint (benchmarks/rerank.py,
# --draws 2; w = 12, beta = 0.5 for the first checkpoint, w = 12, beta = 1 for the current one); w sat at
# the top of the grid searched both times.
WEIGHTS = Weights()

_MODELS = {"cubic": "cubic", "tetragonal": "tetragonal", "trigonal": "hexagonal", "hexagonal": "hexagonal", "orthorhombic": "orthorhombic"}
_N_PARAMS = {"cubic": 1, "tetragonal": 2, "hexagonal": 2, "orthorhombic": 3}


def lattice_model(number: int) -> str | None:
    """The metric model fitted for a space group, or None (monoclinic, triclinic: not fitted)."""
    return _MODELS.get(crystal_system(number))


def _coefficients(hkl: np.ndarray, model: str) -> np.ndarray:
    h, k, l = (hkl[:, i].astype(np.float64) for i in range(3))
    if model == "cubic":
        return (h * h + k * k + l * l)[:, None]
    if model == "tetragonal":
        return np.column_stack([h * h + k * k, l * l])
    if model == "hexagonal":
        return np.column_stack([4.0 / 3.0 * (h * h + h * k + k * k), l * l])
    if model == "orthorhombic":
        return np.column_stack([h * h, k * k, l * l])
    raise ValueError(f"no lattice model {model!r}")


@lru_cache(maxsize=1)
def _hkl(hmax: int) -> np.ndarray:
    r = np.arange(-hmax, hmax + 1)
    hkl = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    return hkl[np.any(hkl != 0, axis=1)]


@cache
def allowed_reflections(number: int, hmax: int = HMAX) -> np.ndarray:
    """Boolean mask over ``_hkl(hmax)``: True where the group's reflection conditions allow hkl."""
    from pyxtal.symmetry import Group

    hkl = _hkl(hmax)
    total = np.zeros(len(hkl), np.complex128)
    for op in Group(int(number)).Wyckoff_positions[0].ops:
        rot = np.rint(op.rotation_matrix).astype(np.int64)
        fixed = np.all(hkl @ rot == hkl, axis=1)
        total[fixed] += np.exp(2j * np.pi * (hkl[fixed] @ np.asarray(op.translation_vector, np.float64)))
    return np.abs(total) > 1e-6


@cache
def _forms(model: str, hmax: int = HMAX) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct m vectors of the lattice model, the index of each reflection's form, and each form's
    smallest max-|index| (how 'low' it is, for seeding)."""
    hkl = _hkl(hmax)
    m = _coefficients(hkl, model)
    forms, inverse = np.unique(np.round(m, 6), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.full(len(forms), hmax + 1)
    np.minimum.at(order, inverse, np.abs(hkl).max(axis=1))
    return forms, inverse, order


@cache
def allowed_forms(number: int, hmax: int = HMAX) -> tuple[np.ndarray, np.ndarray]:
    """(m vectors of the group's lattice model, allowed mask per form) — see the module docstring."""
    model = lattice_model(number)
    if model is None:
        raise ValueError(f"space group {number} ({crystal_system(number)}) has no lattice model here")
    forms, inverse, _ = _forms(model, hmax)
    allowed = np.zeros(len(forms), bool)
    np.logical_or.at(allowed, inverse, allowed_reflections(number, hmax))
    return forms, allowed


# ---------------------------------------------------------------------------------------------- peaks


@dataclass
class Peaks:
    """Observed peaks: 2θ (degrees, on the primary wavelength's scale) and prominences, by angle."""

    two_theta: np.ndarray
    height: np.ndarray
    covered_deg: tuple[float, float]


def find_peaks(two_theta: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None, *,
               prominence_sigma: float = PROMINENCE_SIGMA, min_relative: float = MIN_RELATIVE) -> Peaks:
    """Peaks of a pattern on an evenly spaced 2θ grid; ``mask`` (nonzero = measured) limits the search."""
    from scipy.signal import find_peaks as _scipy_find_peaks

    tt = np.asarray(two_theta, np.float64)
    y = np.asarray(y, np.float64)
    covered = np.ones(len(y), bool) if mask is None else np.asarray(mask) > 0
    if covered.sum() < 5:
        return Peaks(np.zeros(0), np.zeros(0), (float(tt[0]), float(tt[-1])))
    idx = np.flatnonzero(covered)
    lo, hi = idx[0], idx[-1]
    seg = y[lo : hi + 1]
    sigma = 1.4826 * np.median(np.abs(np.diff(seg))) / math.sqrt(2.0)
    top = np.ptp(seg)
    prom = max(prominence_sigma * sigma, min_relative * top, 1e-12)
    at, props = _scipy_find_peaks(seg, prominence=prom)
    # A peak within two points of the covered range's edges may be the edge itself.
    keep = (at >= 2) & (at <= len(seg) - 3)
    at, height = at[keep], props["prominences"][keep]
    left, mid, right = seg[at - 1], seg[at], seg[at + 1]
    curv = left - 2 * mid + right
    shift = np.where(curv < 0, 0.5 * (left - right) / np.where(curv < 0, curv, -1.0), 0.0)
    step = tt[1] - tt[0]
    pos = tt[lo + at] + np.clip(shift, -0.5, 0.5) * step
    return Peaks(pos, height, (float(tt[lo]), float(tt[hi])))


def _x_of(two_theta_deg, wavelength_A: float) -> np.ndarray:
    """1/d² (Å⁻²) of a 2θ on the primary wavelength: 4 sin²θ / λ²."""
    return 4.0 * np.sin(np.radians(np.asarray(two_theta_deg, np.float64)) / 2.0) ** 2 / wavelength_A**2


def _dx_d2theta(two_theta_deg, wavelength_A: float) -> np.ndarray:
    """d(1/d²)/d(2θ) per degree: 2 sin 2θ / λ² · π/180."""
    return 2.0 * np.sin(np.radians(np.asarray(two_theta_deg, np.float64))) / wavelength_A**2 * math.pi / 180.0


# ------------------------------------------------------------------------------------------------ fit


@dataclass
class Fit:
    """A group's best cell: lengths in Å (a; a, c; a, b, c), matched and missing fractions (module doc)."""

    number: int
    cell_A: tuple[float, ...]
    matched: float
    missing: float
    n_matched: int

    def to_dict(self) -> dict:
        return {"cell_A": [round(v, 4) for v in self.cell_A], "matched": round(self.matched, 4),
                "missing": round(self.missing, 4), "n_matched": self.n_matched}


class _Observed:
    """Observed peaks in x = 1/d² on the primary wavelength, with tolerances and weights."""

    def __init__(self, peaks: Peaks, wavelengths_A, line_weights, tol_deg: float, n_peaks: int, n_window: int):
        w = np.asarray(line_weights, np.float64)
        lam = np.asarray(wavelengths_A, np.float64)
        self.lam1 = float(lam[np.argmax(w)])
        # Other lines of the source (Kα₂) appear at x·(λ/λ₁)².
        self.ratios = np.array(sorted({1.0, *((lam / self.lam1) ** 2).tolist()}))
        # A peak where a stronger one's weaker-wavelength line falls (its Kα₂ companion) is no peak of its own.
        x_all = _x_of(peaks.two_theta, self.lam1)
        tol_all = tol_deg * _dx_d2theta(peaks.two_theta, self.lam1)
        h = peaks.height
        companion = np.zeros(len(x_all), bool)
        for r in self.ratios[self.ratios != 1.0]:
            near = np.abs(x_all[:, None] - r * x_all[None, :]) <= tol_all[:, None]
            companion |= (near & (h[None, :] > h[:, None])).any(axis=1)
        keep = np.flatnonzero(~companion)[:n_peaks]
        tt = peaks.two_theta[keep]
        self.x = x_all[keep]
        self.tol = tol_all[keep]
        self.weight = np.sqrt(np.maximum(h[keep], 0.0))
        self.weight = self.weight / self.weight.sum() if self.weight.sum() > 0 else np.full(len(tt), 1.0 / max(len(tt), 1))
        self.x_lo = float(_x_of(peaks.covered_deg[0], self.lam1))
        self.x_window = float(self.x[min(n_window, len(self.x)) - 1] + self.tol[min(n_window, len(self.x)) - 1]) if len(self.x) else 0.0
        self.tol_deg = tol_deg
        self.n = len(tt)


def _match(lines: np.ndarray, obs: _Observed):
    """For each observed peak: index of the nearest line (over all source lines) and whether within tolerance,
    and the ratio (wavelength line) it was matched with."""
    best_d = np.full(obs.n, np.inf)
    best_i = np.zeros(obs.n, np.int64)
    best_r = np.ones(obs.n)
    order = np.argsort(lines)
    s = lines[order]
    if len(s) == 0:
        return best_i, np.zeros(obs.n, bool), best_r
    for r in obs.ratios:
        j = np.clip(np.searchsorted(s * r, obs.x), 1, len(s) - 1)
        left, right = s[j - 1] * r, s[j] * r
        pick = np.where(np.abs(obs.x - left) <= np.abs(obs.x - right), j - 1, j)
        dist = np.abs(obs.x - s[pick] * r)
        better = dist < best_d
        best_d[better], best_i[better], best_r[better] = dist[better], order[pick[better]], r
    return best_i, best_d <= obs.tol, best_r


def _evaluate(p: np.ndarray, forms: np.ndarray, obs: _Observed) -> tuple[float, float, int, np.ndarray, np.ndarray, np.ndarray]:
    x = forms @ p
    # Lines beyond the last observed peak matter for neither term.
    x_max = (obs.x[-1] + obs.tol[-1]) if obs.n else 0.0
    use = x <= x_max
    lines, sub = x[use], forms[use]
    idx, ok, ratio = _match(lines, obs)
    matched = float(obs.weight[ok].sum())
    # Missing: primary-wavelength lines in [covered start, window end], merged within the tolerance.
    win = np.sort(lines[(lines >= obs.x_lo) & (lines <= obs.x_window)])
    missing = 0.0
    if len(win):
        tol_w = obs.tol_deg * _dx_d2theta(2 * np.degrees(np.arcsin(np.clip(np.sqrt(win) * obs.lam1 / 2, 0, 1))), obs.lam1)
        cluster = np.concatenate([[0], np.cumsum(np.diff(win) > tol_w[1:])])
        n_clusters = int(cluster[-1]) + 1
        seen_line = np.zeros(len(win), bool)
        if obs.n:
            near = np.abs(win[:, None] - obs.x[None, :]) <= np.maximum(tol_w[:, None], obs.tol[None, :])
            seen_line = near.any(axis=1)
        seen = np.zeros(n_clusters, bool)
        np.logical_or.at(seen, cluster, seen_line)
        missing = float((~seen).sum()) / n_clusters
    m = sub[idx] if len(sub) else np.zeros((obs.n, forms.shape[1]))
    return matched, missing, int(ok.sum()), m, ok, ratio


def _refine(p: np.ndarray, forms: np.ndarray, obs: _Observed, iterations: int = 3) -> np.ndarray:
    """Weighted least squares of p on the peaks matched to allowed lines (residuals in 2θ)."""
    n_params = len(p)
    deriv = _dx_d2theta(2 * np.degrees(np.arcsin(np.clip(np.sqrt(obs.x) * obs.lam1 / 2, 0, 1))), obs.lam1)
    for _ in range(iterations):
        _, _, n_ok, m, ok, ratio = _evaluate(p, forms, obs)
        if n_ok < n_params + 1:
            break
        A = m[ok] * ratio[ok, None] / deriv[ok, None]
        b = obs.x[ok] / deriv[ok]
        new, *_ = np.linalg.lstsq(A, b, rcond=None)
        if not np.all(new > 0) or np.allclose(new, p, rtol=1e-9):
            break
        p = new
    return p


def _seeds(model: str, obs: _Observed, n_first: int) -> np.ndarray:
    """Candidate p from assigning n_params of the first ``n_first`` peaks to distinct low-index forms."""
    n_params = _N_PARAMS[model]
    forms, _, order = _forms(model)
    max_index = {"cubic": 6, "tetragonal": 3, "hexagonal": 3, "orthorhombic": 2}[model]
    low = forms[order <= max_index]
    if model == "cubic":
        low = low[low[:, 0] <= 50]
    elif model in ("tetragonal", "hexagonal"):
        low = low[(low[:, 1] <= 16) & (low[:, 0] <= 13)]
    else:
        low = low[low.sum(axis=1) <= 6]  # h+k+l ≤ 3 with indices ≤ 2, roughly
    if obs.n < n_params:
        return np.zeros((0, n_params))
    peak_sets = list(itertools.combinations(range(min(n_first, obs.n)), n_params))
    form_sets = np.array(list(itertools.permutations(range(len(low)), n_params)))
    A = low[form_sets]  # (F, n, n)
    good = np.abs(np.linalg.det(A)) > 1e-9
    out = []
    for ps in peak_sets:
        b = obs.x[list(ps)]
        sol = np.linalg.solve(A[good], np.broadcast_to(b, (good.sum(), n_params))[..., None])[..., 0]
        out.append(sol)
    p = np.concatenate(out)
    p = p[np.all(p > 1.0 / MAX_CELL_A**2, axis=1) & np.all(p < 1.0 / MIN_CELL_A**2, axis=1)]
    if len(p) == 0:
        return p
    _, first = np.unique(np.round(np.log(p), 3), axis=0, return_index=True)
    return p[np.sort(first)]


class _Seeds:
    """A pattern's seeds for one lattice model, with which observed peaks each low-index form is near.

    ``bits[s, f]`` has bit i set when form f of seed s lies within the tolerance of observed peak i (the
    first ``_N_SCREEN`` peaks); computed once per pattern, so screening a group is a few array passes."""

    def __init__(self, model: str, obs: _Observed):
        self.p = _seeds(model, obs, n_first={"cubic": 4, "tetragonal": 5, "hexagonal": 5, "orthorhombic": 5}[model])
        forms, _, order = _forms(model)
        self.low = order <= 3
        X = self.p @ forms[self.low].T  # (S, F)
        n = min(obs.n, _N_SCREEN)
        self.bits = np.zeros(X.shape, np.int32)
        for i in range(n):
            self.bits |= (np.abs(X - obs.x[i]) <= obs.tol[i]).astype(np.int32) << i
        self.inwin = (X >= obs.x_lo) & (X <= obs.x[n - 1] + obs.tol[n - 1]) if n else np.zeros(X.shape, bool)
        codes = np.arange(1 << n)
        self.weight_of = ((codes[:, None] >> np.arange(n)) & 1) @ obs.weight[:n] if n else np.zeros(1)

    def screen(self, allowed: np.ndarray, keep: int) -> np.ndarray:
        """The ``keep`` seeds that best explain the first peaks with the group's allowed low-index forms."""
        if len(self.p) <= keep:
            return self.p
        a = allowed[self.low]
        bits, inwin = self.bits[:, a], self.inwin[:, a]
        hit = self.weight_of[np.bitwise_or.reduce(bits, axis=1)]
        miss = (inwin & (bits == 0)).sum(axis=1) / np.maximum(inwin.sum(axis=1), 1)
        return self.p[np.argsort(-(hit - BETA_FIT * miss), kind="stable")[:keep]]


_N_SCREEN = 10


def fit_group(number: int, peaks: Peaks, *, wavelengths_A, line_weights=None, tol_deg: float = TOL_DEG,
              n_peaks: int = N_PEAKS, n_window: int = N_WINDOW, seeds: dict | None = None) -> Fit | None:
    """The best cell of ``number``'s lattice using only its allowed reflections (module doc); None when the
    group is not fitted (monoclinic, triclinic) or too few peaks were found. ``seeds``: a cache shared
    between the groups of one pattern."""
    model = lattice_model(number)
    n_params = _N_PARAMS.get(model, 0)
    if model is None or len(peaks.two_theta) < n_params + 1:
        return None
    line_weights = line_weights if line_weights is not None else [1.0] * len(wavelengths_A)
    obs = _Observed(peaks, wavelengths_A, line_weights, tol_deg, n_peaks, n_window)
    cache = seeds if seeds is not None else {}
    if model not in cache:
        cache[model] = _Seeds(model, obs)
    if len(cache[model].p) == 0:
        return None
    forms, allowed = allowed_forms(number)
    f_allowed = forms[allowed]
    best = None
    for p in cache[model].screen(allowed, keep=KEEP_SEEDS):
        p = _refine(p, f_allowed, obs)
        matched, missing, n_ok, *_ = _evaluate(p, f_allowed, obs)
        score = matched - BETA_FIT * missing
        if best is None or score > best[0] + 1e-12:
            best = (score, p, matched, missing, n_ok)
    if best is None:
        return None
    _, p, matched, missing, n_ok = best
    lengths = tuple(float(1.0 / math.sqrt(v)) for v in p)
    return Fit(number=int(number), cell_A=lengths, matched=matched, missing=missing, n_matched=n_ok)


def fit_candidates(numbers, two_theta, y, mask=None, *, wavelengths_A, line_weights=None, tol_deg: float = TOL_DEG) -> dict[int, Fit | None]:
    """:func:`fit_group` for each space group of ``numbers`` on one pattern (peaks found once)."""
    peaks = find_peaks(two_theta, y, mask)
    cache: dict = {}
    return {int(n): fit_group(int(n), peaks, wavelengths_A=wavelengths_A, line_weights=line_weights, tol_deg=tol_deg, seeds=cache)
            for n in numbers}


def combined_score(log_p: float, fit: Fit | None, weights: Weights = WEIGHTS) -> float:
    """log p + w · (matched − β · missing), or log p + w · unfitted for a group without a fit."""
    f = weights.unfitted if fit is None else fit.matched - weights.beta * fit.missing
    return float(log_p + weights.w * f)


def rerank(candidates, two_theta, y, mask=None, *, wavelengths_A, line_weights=None, weights: Weights = WEIGHTS,
           tol_deg: float = TOL_DEG) -> list[dict]:
    """Re-order ``candidates`` [(number, probability)…] of one pattern by :func:`combined_score`.

    Returns dicts {number, symbol, probability (the classifier's, unchanged), score, fit (or None)}, best first.
    """
    numbers = [int(n) for n, _ in candidates]
    fits = fit_candidates(numbers, two_theta, y, mask, wavelengths_A=wavelengths_A, line_weights=line_weights, tol_deg=tol_deg)
    out = []
    for n, prob in candidates:
        fit = fits[int(n)]
        out.append({
            "number": int(n), "symbol": space_group_symbol(int(n)), "probability": float(prob),
            "score": combined_score(math.log(max(float(prob), 1e-30)), fit, weights),
            "fit": fit.to_dict() if fit is not None else None,
        })
    out.sort(key=lambda r: -r["score"])
    return out
