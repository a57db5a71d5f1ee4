"""Whole-pattern mixture fitting: greedy phase selection, joint refinement, weight fractions.

See :mod:`xrdid.mixtures` for the method and its formulas; this module is the implementation.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import lsq_linear

from xrdid.mixtures.library import Library
from xrdid.mixtures.profile import Optics, kalpha2_for, render_phase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitSettings:
    """Science choices of the fit; the defaults were chosen on the development mixtures (see the report)."""

    # Largest isotropic lattice-scale error |d_obs/d_lib − 1| searched per phase (DFT-relaxed references
    # are up to ~2 % too large; thermal expansion and solid solutions add ~0.5 %).
    d_scale_range: float = 0.025
    # Screening step in d scale, as a fraction of the estimated peak FWHM (deg), within these bounds.
    screen_step_per_fwhm: float = 0.01
    screen_step_bounds: tuple[float, float] = (0.0008, 0.004)
    # Points per estimated FWHM kept when the data are binned for fitting (fewer points, same information).
    points_per_fwhm: float = 8.0
    # Chebyshev background degree on the 2θ range.
    background_degree: int = 12
    # Candidates refined per greedy step (the best by screening gain), and the most phases reported.
    top_k: int = 3
    max_phases: int = 6
    # A phase is kept only if removing it raises χ² by at least this fraction of the full fit's χ² ...
    min_significance: float = 0.03
    # ... and at least this fraction of its calculated intensity lies under the data it is fitted to.
    min_coverage: float = 0.65
    # Starting crystallite size (nm); the instrumental width starts from the pattern's estimated FWHM.
    size_nm: float = 300.0
    # Levenberg–Marquardt iterations per greedy candidate and for the final fit.
    nfev_candidate: int = 6
    nfev_final: int = 25


@dataclass
class PhaseResult:
    id: str
    formula: str
    space_group: int | None
    weight_fraction: float
    confidence: float
    scale: float  # Rietveld scale factor S (intensity = S · |F|²m · LP), in the data's units
    d_scale: float  # refined d_obs / d_library (isotropic lattice scale)
    size_nm: float  # refined Scherrer crystallite size
    significance: float  # relative χ² increase when the phase is removed
    coverage: float  # fraction of its calculated intensity supported by the data

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class MixtureFit:
    phases: list[PhaseResult]
    rwp: float
    rexp: float
    gof: float
    rwp_background_only: float
    zero_shift_deg: float
    width_scale: float
    kalpha2_ratio: float | None
    wavelengths_A: tuple[float, ...]
    two_theta: np.ndarray = field(repr=False)
    y_obs: np.ndarray = field(repr=False)
    y_calc: np.ndarray = field(repr=False)
    background: np.ndarray = field(repr=False)
    seconds: float = 0.0
    steps: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "phases": [p.to_dict() for p in self.phases],
            "rwp": round(self.rwp, 6),
            "rexp": round(self.rexp, 6),
            "gof": round(self.gof, 4),
            "rwp_background_only": round(self.rwp_background_only, 6),
            "zero_shift_deg": round(self.zero_shift_deg, 5),
            "width_scale": round(self.width_scale, 4),
            "kalpha2_ratio": None if self.kalpha2_ratio is None else round(self.kalpha2_ratio, 4),
            "wavelengths_A": list(self.wavelengths_A),
            "two_theta_range_deg": [float(self.two_theta[0]), float(self.two_theta[-1])],
            "n_points": int(self.two_theta.size),
            "seconds": round(self.seconds, 3),
        }


def uniform_grid(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) on a uniform grid with the same ends and number of points (linear interpolation if needed)."""
    dx = np.diff(x)
    if np.all(np.abs(dx - dx.mean()) <= 1e-3 * dx.mean()):
        return np.linspace(x[0], x[-1], x.size), y
    g = np.linspace(x[0], x[-1], x.size)
    return g, np.interp(g, x, y)


def estimate_fwhm(x: np.ndarray, y: np.ndarray) -> float:
    """A typical peak FWHM (deg) from the autocorrelation of the background-subtracted pattern.

    The autocorrelation of a sum of Gaussians of FWHM Γ has FWHM √2·Γ near zero lag; overlapping peaks and
    Kα doublets make this an overestimate (~1.5×), which is what screening wants (tolerant columns).
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    step = (x[-1] - x[0]) / (x.size - 1)
    n = max(3, round(3.0 / step))
    bg = uniform_filter1d(minimum_filter1d(y, n, mode="nearest"), n, mode="nearest")
    sig = np.clip(uniform_filter1d(y, 3) - bg, 0.0, None)
    sig = sig - sig.mean()
    f = np.fft.rfft(sig, 2 * sig.size)
    ac = np.fft.irfft(f * np.conj(f))[: sig.size]
    if not ac[1] > 0:
        return 10 * step
    k = int(np.argmax(ac[1:] < 0.5 * ac[1])) + 1
    return float(max(2 * k * step / math.sqrt(2), 3 * step))


def _bin(x: np.ndarray, y: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of f consecutive points (the tail that does not fill a bin is dropped)."""
    n = (x.size // f) * f
    return x[:n].reshape(-1, f).mean(axis=1), y[:n].reshape(-1, f).mean(axis=1)


def _weights(y: np.ndarray) -> np.ndarray:
    """Counting-statistics weights 1/σ² = 1/y, with a floor so near-zero (or subtracted) points do not dominate."""
    top = float(np.max(np.abs(y))) or 1.0
    floor = max(float(np.percentile(y, 5)), 1e-3 * top, 1e-12)
    return 1.0 / np.maximum(y, floor)


def _chebyshev(grid: np.ndarray, degree: int) -> np.ndarray:
    t = 2.0 * (grid - grid[0]) / (grid[-1] - grid[0]) - 1.0
    return np.polynomial.chebyshev.chebvander(t, degree).T  # (K, N)


@dataclass
class _Phase:
    index: int  # into library.phases
    d_scale: float
    log_size: float


class _Model:
    """The measured pattern, the background basis and the rendering of phase states."""

    def __init__(self, grid, y, library: Library, optics: Optics, settings: FitSettings):
        self.grid, self.y, self.lib, self.optics, self.st = grid, y, library, optics, settings
        self.w = _weights(y)
        self.sw = np.sqrt(self.w)
        self.bg = _chebyshev(grid, settings.background_degree)
        self.doublet = len(optics.wavelengths_A) > 1

    def render(self, ph: _Phase, g: np.ndarray) -> np.ndarray:
        """g = (zero_deg, log width scale, Kα2 ratio)."""
        p = self.lib.phases[ph.index]
        return render_phase(
            p.d, p.f2m, self.grid, self.optics, d_scale=ph.d_scale, zero_deg=g[0], width_scale=math.exp(g[1]),
            size_nm=math.exp(ph.log_size), kalpha2_ratio=g[2], window_fwhm=6.0,
        )

    def linear(self, cols: np.ndarray):
        """Scales (≥ 0) and background coefficients minimising the weighted χ², by bounded least squares.

        Solved through the (k × k) Gram matrix of the column-normalised weighted design: its Cholesky
        factor R turns min |M c − b|² into the equivalent min |R c − R⁻ᵀMᵀb|², which is tiny (LAPACK on the
        N × k design is slow when BLAS threads fight for a loaded machine, and it is not needed).
        """
        n = cols.shape[0]
        A = np.vstack([cols, self.bg]) if n else self.bg
        norm = np.sqrt(((A * self.sw) ** 2).sum(axis=1))
        norm[norm == 0] = 1.0
        M = A / norm[:, None] * self.sw  # (k, N)
        b = self.y * self.sw
        G = M @ M.T
        G[np.diag_indices_from(G)] += 1e-10
        Mb = M @ b
        coef = np.linalg.solve(G, Mb)
        if n and coef[:n].min() < 0:
            R = np.linalg.cholesky(G).T  # G = RᵀR
            rhs = np.linalg.solve(R.T, Mb)
            lo = np.r_[np.zeros(n), np.full(self.bg.shape[0], -np.inf)]
            coef = lsq_linear(R, rhs, bounds=(lo, np.inf), method="bvls").x
        coef = coef / norm
        calc = coef @ A
        chi2 = float(np.sum(self.w * (self.y - calc) ** 2))
        return coef[:n], coef[n:], calc, chi2


def identify_phases(
    two_theta_deg: np.ndarray,
    y: np.ndarray,
    wavelength_A: float,
    library: Library,
    *,
    kalpha2_A: float | None = None,
    kalpha2_ratio: float | None = None,
    settings: FitSettings | None = None,
) -> MixtureFit:
    """Fit the pattern (2θ in degrees, intensities) as Σ S_i · phase_i + background; see :mod:`xrdid.mixtures`.

    ``wavelength_A`` is the (Kα1) wavelength. A doublet is modelled when ``kalpha2_A`` is given or the
    wavelength is a known anode's Kα1 (:data:`xrdid.mixtures.profile.KALPHA_LINES`); its intensity
    ratio is refined unless ``kalpha2_ratio`` fixes it (0 for monochromatic Kα1 data).
    """
    t0 = time.perf_counter()
    st = settings or FitSettings()
    x_full, y_full = uniform_grid(np.asarray(two_theta_deg, float), np.asarray(y, float))
    ka2 = kalpha2_A if kalpha2_A is not None else kalpha2_for(wavelength_A)
    if kalpha2_ratio == 0:
        ka2 = None
    optics = Optics(wavelengths_A=(wavelength_A,) if ka2 is None else (wavelength_A, ka2))
    # Typical FWHM, quantised (quarter octaves) so that patterns from one instrument share screening renders.
    fwhm = 2.0 ** (round(4 * math.log2(estimate_fwhm(x_full, y_full))) / 4)
    step = (x_full[-1] - x_full[0]) / (x_full.size - 1)
    factor = max(1, int(fwhm / (st.points_per_fwhm * step)))
    x, y = _bin(x_full, y_full, factor) if factor > 1 else (x_full, y_full)
    m = _Model(x, y, library, optics, st)
    fix_ratio = kalpha2_ratio is not None or ka2 is None
    # Instrument width scale whose Caglioti FWHM at 2θ = 35° is ~0.7 of the (over-)estimate.
    ws0 = (0.7 * fwhm / float(np.sqrt(_caglioti2(optics, 35.0)))) ** 2
    g = np.array([0.0, math.log(ws0), (0.5 if kalpha2_ratio is None else kalpha2_ratio) if ka2 else 0.0])
    log.debug("estimated FWHM %.3f°, bin factor %d, width scale %.1f", fwhm, factor, ws0)

    _, bgc, _calc0, chi2_bg = m.linear(np.zeros((0, x.size)))
    phases: list[_Phase] = []
    chi2 = chi2_bg
    steps = []
    screen = _screen_columns(m, fwhm)
    rejected: set[int] = set()
    while len(phases) < st.max_phases:
        scales, _, calc, chi2 = _solve(m, phases, g)
        resid = m.w * (y - calc)
        cands = _screen(m, screen, resid, phases, rejected)
        if not cands:
            break
        best = None
        for idx, s0 in cands[: st.top_k]:
            trial = [*phases, _Phase(idx, s0, math.log(_typical_size(phases, st)))]
            trial, g_t, chi2_t = _refine(m, trial, g, fix_ratio, st.nfev_candidate)
            if best is None or chi2_t < best[2]:
                best = (trial, g_t, chi2_t, idx)
        trial, g_t, chi2_t, idx = best
        stats = _phase_stats(m, trial, g_t)
        gain = (chi2 - chi2_t) / chi2
        steps.append({"added": library.phases[idx].id, "gain": gain, **stats[-1]})
        log.debug("step %d: %s gain %.4f sig %.4f cov %.3f", len(phases) + 1, library.phases[idx].id, gain,
                  stats[-1]["significance"], stats[-1]["coverage"])
        if gain < st.min_significance or stats[-1]["coverage"] < st.min_coverage:
            rejected.add(idx)
            if len(rejected) >= 2 * st.top_k:
                break
            continue
        phases, g, chi2 = trial, g_t, chi2_t

    # Final refinement, then prune phases that no longer earn their place (weakest first).
    while phases:
        phases, g, chi2 = _refine(m, phases, g, fix_ratio, st.nfev_final)
        stats = _phase_stats(m, phases, g)
        bad = [i for i, s in enumerate(stats) if s["significance"] < st.min_significance or s["coverage"] < st.min_coverage]
        if not bad:
            break
        worst = min(bad, key=lambda i: stats[i]["significance"])
        log.debug("pruning %s", library.phases[phases[worst].index].id)
        phases = phases[:worst] + phases[worst + 1 :]

    stats = _phase_stats(m, phases, g) if phases else []
    # Scales, background, Rwp on the full (unbinned) data with the refined nonlinear parameters.
    m_full = _Model(x_full, y_full, library, optics, st)
    _, _, _, chi2_bg = m_full.linear(np.zeros((0, x_full.size)))
    scales, bgc, calc, chi2 = _solve(m_full, phases, g)
    background = bgc @ m_full.bg
    x, y = x_full, y_full
    sum_wy2 = float(np.sum(m_full.w * y * y))
    n_par = len(phases) * 3 + m.bg.shape[0] + 3
    rwp = math.sqrt(chi2 / sum_wy2)
    rexp = math.sqrt(max(x.size - n_par, 1) / sum_wy2)
    results = []
    mass = []
    for ph, s, stt in zip(phases, scales, stats):
        p = library.phases[ph.index]
        mass.append(s * p.volume_A3 * ph.d_scale**3 * p.cell_mass_amu)
    total = sum(mass) or 1.0
    for ph, s, stt, mw in zip(phases, scales, stats, mass):
        p = library.phases[ph.index]
        results.append(PhaseResult(
            id=p.id, formula=p.formula, space_group=p.space_group, weight_fraction=float(mw / total),
            confidence=_confidence(stt), scale=float(s), d_scale=float(ph.d_scale), size_nm=float(math.exp(ph.log_size)),
            significance=float(stt["significance"]), coverage=float(stt["coverage"]),
        ))
    results.sort(key=lambda r: -r.weight_fraction)
    return MixtureFit(
        phases=results, rwp=rwp, rexp=rexp, gof=rwp / rexp, rwp_background_only=math.sqrt(chi2_bg / sum_wy2),
        zero_shift_deg=float(g[0]), width_scale=float(math.exp(g[1])),
        kalpha2_ratio=float(g[2]) if ka2 is not None else None, wavelengths_A=optics.wavelengths_A,
        two_theta=x, y_obs=y, y_calc=calc, background=background, seconds=time.perf_counter() - t0, steps=steps,
    )


def _confidence(stats: dict) -> float:
    """0–1: how much the fit needs the phase (significance, saturating near 10 % of χ²) × its coverage."""
    return float(min(1.0, stats["coverage"]) * (1.0 - math.exp(-stats["significance"] / 0.05)))


def _typical_size(phases: list[_Phase], st: FitSettings) -> float:
    return math.exp(float(np.median([p.log_size for p in phases]))) if phases else st.size_nm


def _solve(m: _Model, phases: list[_Phase], g):
    cols = np.array([m.render(p, g) for p in phases]) if phases else np.zeros((0, m.grid.size))
    return m.linear(cols)


def _phase_stats(m: _Model, phases: list[_Phase], g) -> list[dict]:
    """Per phase: significance (χ² rise on removal, relative) and coverage (calc intensity under the data)."""
    cols = np.array([m.render(p, g) for p in phases])
    scales, _bgc, calc, chi2 = m.linear(cols)
    out = []
    for i in range(len(phases)):
        others = np.delete(cols, i, axis=0)
        *_, chi2_wo = m.linear(others)
        contrib = scales[i] * cols[i]
        rest = m.y - (calc - contrib)
        tot = contrib.sum()
        cov = float(np.minimum(contrib, np.maximum(rest, 0.0)).sum() / tot) if tot > 0 else 0.0
        out.append({"significance": (chi2_wo - chi2) / chi2, "coverage": cov})
    return out


def _caglioti2(optics: Optics, two_theta_deg: float) -> float:
    U, V, W = optics.caglioti_uvw_deg2
    t = math.tan(math.radians(two_theta_deg) / 2)
    return U * t * t + V * t + W


def _screen_columns(m: _Model, fwhm: float):
    """Every library phase rendered at every screening d scale on every second grid point (cached per grid).

    Gaussian peaks of about the estimated FWHM (an overestimate) at 2θ = 35°; the d-scale step is
    ``screen_step_per_fwhm`` × FWHM, so a step moves a peak at 2θ ≈ 40° by about half a FWHM.
    Returns (scales, list of (S, N/2) arrays, coarse index).
    """
    st = m.st
    lo, hi = st.screen_step_bounds
    step = min(max(st.screen_step_per_fwhm * fwhm, lo), hi)
    n_half = math.ceil(st.d_scale_range / step)
    scales = 1.0 + step * np.arange(-n_half, n_half + 1)
    coarse = np.arange(0, m.grid.size, 2)
    ws = (fwhm / math.sqrt(_caglioti2(m.optics, 35.0))) ** 2
    key = (m.grid[0], m.grid[-1], m.grid.size, m.optics, st.d_scale_range, step, ws)
    if key not in m.lib.screen_cache:
        cols = []
        for p in m.lib.phases:
            c = render_phase(p.d, p.f2m, m.grid[coarse], m.optics, d_scale=scales, width_scale=ws,
                             size_nm=5000.0, kalpha2_ratio=0.5, window_fwhm=3.0)
            nrm = np.sqrt((c * c).sum(axis=1, keepdims=True))
            cols.append((c / np.maximum(nrm, 1e-300)).astype(np.float32))
        m.lib.screen_cache.clear()  # one grid at a time: bounded memory
        m.lib.screen_cache[key] = cols
    return scales, m.lib.screen_cache[key], coarse


def _screen(m: _Model, screen, resid_w: np.ndarray, phases: list[_Phase], rejected: set[int]):
    """Candidates ranked by the χ² drop of adding them alone to the current fit: (r·p)²/(p·W·p), r·p > 0.

    r = W(y − calc) is orthogonal to the current model's columns, so r·p is exact for the new column;
    the denominator leaves out the projection on the current columns (it can only raise the true gain).
    """
    scales, cols, coarse = screen
    # Pairwise bin sums put the residual on the coarse grid the columns were rendered on.
    n = coarse.size
    r = np.add.reduceat(resid_w, coarse)[:n].astype(np.float32)
    w = np.add.reduceat(m.w, coarse)[:n].astype(np.float32)
    taken = {p.index for p in phases}
    chosen = [(m.lib.phases[i].formula, m.lib.phases[i].space_group) for i in taken]
    out = []
    for i, c in enumerate(cols):
        if i in taken or i in rejected or (m.lib.phases[i].formula, m.lib.phases[i].space_group) in chosen:
            continue
        num = c @ r
        den = (c * c) @ w
        gain = np.where(num > 0, num * num / np.maximum(den, 1e-30), 0.0)
        j = int(np.argmax(gain))
        if gain[j] > 0:
            out.append((float(gain[j]), i, float(scales[j])))
    out.sort(reverse=True)
    return [(i, s) for _, i, s in out]


def _refine(m: _Model, phases: list[_Phase], g, fix_ratio: bool, max_iter: int):
    """Levenberg–Marquardt over the nonlinear parameters — per phase (d scale, log size), globally (zero
    shift, log width scale, Kα2 ratio) — with the scales and background solved exactly at every point
    (variable projection; Kaufman's Jacobian: derivative columns projected off the linear columns).
    Derivatives by finite differences that re-render only what a parameter changes; bounds by clipping.
    Returns (phases, globals, χ²)."""
    n = len(phases)
    R = m.st.d_scale_range
    n_glob = 2 if fix_ratio else 3
    lo = np.r_[np.full(n, 1 - R), np.full(n, math.log(3.0)), -0.3, math.log(0.1), 0.0][: 2 * n + n_glob]
    hi = np.r_[np.full(n, 1 + R), np.full(n, math.log(5000.0)), 0.3, math.log(5000.0), 0.6][: 2 * n + n_glob]
    theta = np.clip(np.r_[[p.d_scale for p in phases], [p.log_size for p in phases], g[:n_glob]], lo, hi)

    def unpack(t):
        gg = np.array(g, float)
        gg[:n_glob] = t[2 * n :]
        return [_Phase(p.index, float(t[i]), float(t[n + i])) for i, p in enumerate(phases)], gg

    def evaluate(t):
        phs, gg = unpack(t)
        cols = np.array([m.render(p, gg) for p in phs])
        a, _b, calc, chi2 = m.linear(cols)
        return cols, a, calc, chi2

    cols, a, calc, chi2 = evaluate(theta)
    lam = 1e-3
    for _ in range(max_iter):
        phs, gg = unpack(theta)
        total = a @ cols
        D = np.empty((theta.size, m.grid.size))
        for i, p in enumerate(phs):
            h = 1e-4
            D[i] = a[i] * (m.render(_Phase(p.index, p.d_scale + h, p.log_size), gg) - cols[i]) / h
            h = 0.05
            D[n + i] = a[i] * (m.render(_Phase(p.index, p.d_scale, p.log_size + h), gg) - cols[i]) / h
        D[2 * n] = -np.gradient(total, m.grid)  # a zero shift moves every peak: ∂/∂z = −∂/∂(2θ)
        for k in range(1, n_glob):
            g2 = gg.copy()
            g2[k] += 0.02
            D[2 * n + k] = (a @ np.array([m.render(p, g2) for p in phs]) - total) / 0.02
        # Weighted, projected off the span of the linear columns (phases and background).
        L = np.vstack([cols, m.bg]) * m.sw
        Dw = D * m.sw
        G = L @ L.T
        G[np.diag_indices_from(G)] += 1e-12 * np.trace(G) / G.shape[0]
        Dw = Dw - np.linalg.solve(G, L @ Dw.T).T @ L
        JtJ = Dw @ Dw.T
        Jtr = Dw @ (m.sw * (m.y - calc))
        improved = False
        for _ in range(6):
            Amat = JtJ + lam * np.diag(np.diag(JtJ) + 1e-30)
            try:
                step = np.linalg.solve(Amat, Jtr)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            t_new = np.clip(theta + step, lo, hi)
            c_new, a_new, calc_new, chi2_new = evaluate(t_new)
            if chi2_new < chi2:
                rel = (chi2 - chi2_new) / chi2
                theta, cols, a, calc, chi2 = t_new, c_new, a_new, calc_new, chi2_new
                lam = max(lam / 3, 1e-7)
                improved = True
                break
            lam *= 4
        if not improved or rel < 1e-5:
            break
    phs, gg = unpack(theta)
    return phs, gg, chi2
