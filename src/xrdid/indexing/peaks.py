r"""Peak search on a measured (or rendered) powder pattern: the peak list that indexing starts from.

Steps, for a pattern on any axis (2θ, Q or d) at any wavelength:

1. **Angles.** A 2θ pattern keeps its wavelength λ (the file's, else the caller's; never a default). A Q or
   d pattern is put on the 2θ scale of a virtual wavelength (its largest Q at 2θ = 150°), and zero-shift
   refinement is then off (a zero shift is an angle error; Q and d data have none to refine). The data are
   resampled onto a uniform 2θ grid of their median step.
2. **Background**: SNIP (Ryan et al., Nucl. Instrum. Meth. B 34 (1988) 396) on the log-log-sqrt transform
   of the intensities, clipping window ``background_window_deg``; it follows smooth curves and humps wider
   than the window and leaves peaks alone.
3. **Kα₂.** For a laboratory tube wavelength (Cu, Co, Fe, Cr, Mo, Ag Kα₁ or the Kα₁/Kα₂ mean) ``kalpha2 =
   "auto"`` looks for the doublet: at the strongest high-angle peaks, the intensity where their Kα₂ line
   would be, relative to their height (median ≥ 0.25 → doublet; too few resolved peaks to tell → doublet,
   as tube data mostly are, and stripping a Kα₁-only pattern costs little). A doublet is stripped (Rachinger, J. Sci.
   Instrum. 25 (1948) 254: y₁(2θ) = y(2θ) − R·y₁(2θ₁) from low to high angle, 2θ₁ the Kα₁ angle whose Kα₂
   line falls at 2θ, R = 0.5), and positions refer to Kα₁. ``"strip"`` forces it, ``"none"`` skips it.
4. **Peaks**: local maxima of the Savitzky–Golay-smoothed pattern with a prominence of at least
   ``prominence_sigma`` × the local noise σ and ``min_relative`` of the strongest. σ² = a + b·y, counting
   statistics on any intensity scale plus a constant, fitted to the scatter of the data about a smooth
   off the peaks (:func:`_noise_model`: on them, lines a few steps wide, the smooth's misfit is not
   noise) and extrapolated to them, so a weak line on the background needs less than a shoulder on a
   strong peak.
4b. **Matched filter** (``matched_sigma`` > 0, off by default): the background-subtracted pattern is
   correlated with a Gaussian of the pattern's own line width (the median FWHM of the peaks of step 4) —
   the filter that maximises a lone line's signal-to-noise — and its local maxima whose prominence is at
   least ``matched_sigma`` × the filtered noise (σ·√Σk², k the unit-sum kernel) join the list, where no peak
   of step 4 lies within one FWHM. A weak line's area, not its single noisiest point, then decides; the
   step-4 list is kept as it is (the filter blurs close lines into one).
5. **Positions and uncertainties**: a weighted least-squares parabola through the points above half the
   peak's height (at least 3, at most ±FWHM/2 around the maximum) of the unsmoothed data; the position is
   its vertex, σ from the fit's covariance scaled by its residual (never below step/10). Intensity is the
   background-subtracted height × FWHM (∝ area for a fixed shape).

What is left out: profile fitting of overlapped peaks (two lines closer than ~FWHM/2 come out as one, at
their centroid), and Kα₂ modelling inside a fit (stripping is what is done).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from xrdid.readers import Pattern, PatternError

# Kα₁, Kα₂ (Å) of laboratory tubes (International Tables C, Table 4.2.2.1; Hölzer et al. 1997 for Cu).
TUBES = {
    "Cu": (1.5405929, 1.5444140),
    "Co": (1.788965, 1.792850),
    "Fe": (1.936042, 1.939980),
    "Cr": (2.289760, 2.293663),
    "Mo": (0.709317, 0.713607),
    "Ag": (0.5594075, 0.563798),
}
KALPHA2_RATIO = 0.5
PROMINENCE_SIGMA = 5.0
MIN_RELATIVE = 0.004
# Matched-filter detection (step 4b of the module docstring): weak lines whose height × width stands out of
# the noise by this many σ of the filtered pattern join the list; 0 = off (the default; benchmarks/README.md,
# thirteenth round).
MATCHED_FILTER_SIGMA = 0.0
BACKGROUND_WINDOW_DEG = 1.5
# Virtual wavelength for Q or d data: the largest Q lands at this 2θ.
_VIRTUAL_MAX_TWO_THETA = 150.0


class IndexingError(ValueError):
    """A pattern cannot be searched for peaks or indexed; the message names the file and the reason."""


@dataclass
class PeakList:
    """Observed peaks, by increasing angle.

    ``two_theta`` (°) on the scale of ``wavelength_A`` (Kα₁ when a doublet was stripped), ``sigma`` their
    standard uncertainties (°), ``fwhm`` (°), ``height`` and ``intensity`` (background-subtracted height and
    height × FWHM, arbitrary units). ``angular``: the x axis was measured in 2θ, so a zero shift is
    meaningful. ``range_deg``: the 2θ range searched. ``kalpha2``: "stripped", "none" or "not a tube line".
    """

    two_theta: np.ndarray
    sigma: np.ndarray
    fwhm: np.ndarray
    height: np.ndarray
    intensity: np.ndarray
    wavelength_A: float
    range_deg: tuple[float, float]
    angular: bool = True
    kalpha2: str = "none"
    source: str = "<pattern>"
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.two_theta)

    @property
    def d(self) -> np.ndarray:
        return self.wavelength_A / (2 * np.sin(np.radians(self.two_theta) / 2))

    def to_dict(self) -> dict:
        return {
            "two_theta": [round(float(v), 5) for v in self.two_theta], "sigma": [round(float(v), 5) for v in self.sigma],
            "d_A": [round(float(v), 5) for v in self.d], "intensity": [round(float(v), 4) for v in self.intensity / max(self.intensity.max(initial=0), 1e-300) * 100],
            "wavelength_A": self.wavelength_A, "kalpha2": self.kalpha2,
        }

    @classmethod
    def from_positions(cls, two_theta, wavelength_A: float, *, intensity=None, sigma=None, fwhm=None, angular: bool = True) -> PeakList:
        """A peak list given directly (2θ in degrees at ``wavelength_A``), e.g. from another program."""
        tt = np.asarray(two_theta, np.float64)
        order = np.argsort(tt)
        tt = tt[order]
        n = len(tt)

        def col(v, default):
            return np.asarray(v, np.float64)[order] if v is not None else np.full(n, default)

        inten = col(intensity, 1.0)
        return cls(tt, col(sigma, 0.003), col(fwhm, 0.08), inten, inten, float(wavelength_A),
                   (float(tt.min(initial=0)), float(tt.max(initial=180))), angular=angular)


def tube_of(wavelength_A: float, tol: float = 0.003) -> str | None:
    """The tube whose Kα₁ or Kα mean is ``wavelength_A`` (within ``tol`` Å), else None."""
    for name, (a1, a2) in TUBES.items():
        if abs(wavelength_A - a1) <= tol or abs(wavelength_A - (2 * a1 + a2) / 3) <= tol:
            return name
    return None


def snip_background(y: np.ndarray, half_window: int) -> np.ndarray:
    """SNIP background (module docstring) with clipping windows 1 … ``half_window`` points."""
    y = np.asarray(y, np.float64)
    offset = min(float(y.min()), 0.0)
    v = np.log(np.log(np.sqrt(y - offset + 1.0) + 1.0) + 1.0)
    n = len(v)
    for m in range(1, max(1, min(half_window, (n - 1) // 2)) + 1):
        mean = 0.5 * (v[: n - 2 * m] + v[2 * m :])
        v[m : n - m] = np.minimum(v[m : n - m], mean)
    out = (np.exp(np.exp(v) - 1.0) - 1.0) ** 2 - 1.0 + offset
    return out


def strip_kalpha2(two_theta: np.ndarray, y: np.ndarray, lam1: float, lam2: float, ratio: float = KALPHA2_RATIO) -> np.ndarray:
    """Rachinger stripping (module docstring) on a uniform 2θ grid; returns the Kα₁-only pattern."""
    tt = np.asarray(two_theta, np.float64)
    s = np.sin(np.radians(tt) / 2) * lam1 / lam2
    src = 2 * np.degrees(np.arcsin(np.clip(s, 0, 1)))  # the Kα₁ angle whose Kα₂ line falls at tt
    step = tt[1] - tt[0]
    pos = (src - tt[0]) / step
    j = np.floor(pos).astype(np.int64)
    f = pos - j
    out = np.asarray(y, np.float64).copy()
    ok = j >= 0
    # Each point depends only on points at least (tt − src)/step ≥ ~1 step below it; a Python loop over
    # the points is a few ms for a typical scan.
    first = int(np.argmax(ok)) if ok.any() else len(tt)
    jl, fl = j.tolist(), f.tolist()
    o = out.tolist()
    n = len(o)
    for i in range(first, n):
        a = jl[i]
        if a + 1 < i:
            o[i] -= ratio * (o[a] * (1 - fl[i]) + o[a + 1] * fl[i])
        elif a < i:
            o[i] -= ratio * o[a]
    return np.asarray(o)


def _uniform(tt: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    steps = np.diff(tt)
    step = float(np.median(steps))
    if np.allclose(steps, step, rtol=1e-3):
        return tt, y
    grid = np.arange(tt[0], tt[-1] + step / 2, step)
    return grid, np.interp(grid, tt, y)


def _noise_model(y: np.ndarray, smooth: np.ndarray, floor: float, quiet: np.ndarray | None = None,
                 level: np.ndarray | None = None) -> np.ndarray:
    """Per-point noise σ with var = a + b·y (counting statistics on any scale, plus a constant): a and b by
    least squares on the medians of the squared residuals from a smoothed pattern, binned by intensity.
    The residual of a 5-point quadratic Savitzky–Golay smooth has variance 0.514 σ² and a squared normal
    has median 0.455 of its mean, hence the factor.

    ``quiet``: the points off the peaks (:func:`_quiet`), where the residual is noise alone; on a peak two
    or three steps wide the smooth cannot follow the profile and its misfit, not noise, dominates the
    residual (it made a and b several times too large on coarse scans, hiding weak lines). The fit then
    uses those points only, and the peaks' noise is extrapolated. When their levels span less than a factor
    of two, a constant and a counting term cannot be told apart and counting statistics (a = 0) are
    assumed, the larger of the two on the peaks. ``level``: the intensity the noise is evaluated at (default
    the smooth; the caller passes it at least the background, as the smooth rings below it beside sharp lines)."""
    e2 = (y - smooth) ** 2
    use = np.flatnonzero(quiet) if quiet is not None and int(np.count_nonzero(quiet)) >= 100 else np.arange(len(y))
    order = use[np.argsort(smooth[use])]
    bins = np.array_split(order, min(20, max(len(use) // 50, 1)))
    xs = np.array([np.median(smooth[b]) for b in bins])
    vs = np.array([np.median(e2[b]) for b in bins]) / (0.455 * 0.514)
    if len(use) < len(y) and (xs[0] <= 0 or xs[-1] < 2 * xs[0]):
        a, b = 0.0, float(np.median(vs / np.maximum(xs, 1e-300))) if xs[0] > 0 else 0.0
    else:
        A = np.column_stack([np.ones_like(xs), xs])
        coef, *_ = np.linalg.lstsq(A, vs, rcond=None)
        a, b = max(coef[0], 0.0), max(coef[1], 0.0)
    if a == 0 and b == 0:
        a = float(np.median(vs))
    return np.sqrt(np.maximum(a + b * np.maximum(level if level is not None else smooth, 0), floor**2))


def _quiet(r_smooth: np.ndarray, sigma: float, step: float) -> np.ndarray:
    """Points off the peaks: the smoothed background-subtracted pattern under 5 σ (the pattern's typical
    noise, :func:`_noise_sigma`), and no such peak point within 0.1° (a peak's flanks)."""
    peak = (r_smooth > 5 * sigma).astype(np.float64)
    half = max(2, round(0.1 / step))
    near = np.convolve(peak, np.ones(2 * half + 1), mode="same") > 0
    return ~near


def _noise_sigma(r: np.ndarray) -> float:
    # A noiseless (simulated) pattern has σ = 0: the relative threshold alone then decides.
    return max(float(1.4826 * np.median(np.abs(np.diff(r))) / math.sqrt(2.0)), 1e-9 * float(np.ptp(r)), 1e-300)


def _has_doublet(tt, r, lam1, lam2, sigma) -> bool | None:
    """Does the background-subtracted pattern show Kα₂ lines (module docstring, step 3)? None: too few
    resolved peaks to tell."""
    from scipy.signal import find_peaks

    step = tt[1] - tt[0]
    at, props = find_peaks(r, prominence=max(10 * sigma, 0.02 * np.ptp(r)))
    if len(at) == 0:
        return None
    theta = np.radians(tt[at]) / 2
    tt2 = 2 * np.degrees(np.arcsin(np.clip(np.sin(theta) * lam2 / lam1, 0, 1)))
    sep = tt2 - tt[at]
    # Peaks whose doublet is resolved: separation above 3 steps; the strongest 12 of them.
    widths = np.maximum(props["right_bases"] - props["left_bases"], 1) * step
    use = np.flatnonzero((sep > 3 * step) & (sep < widths))
    if len(use) < 2:
        use = np.flatnonzero(sep > 3 * step)
    if len(use) < 2:
        return None
    use = use[np.argsort(-r[at[use]])][:12]
    ratios = np.interp(tt2[use], tt, r) / r[at[use]]
    return bool(np.median(ratios) >= 0.25)


def _matched_peaks(r: np.ndarray, smooth: np.ndarray, noise: np.ndarray, at: np.ndarray, step: float, n_sigma: float,
                   floor: float) -> dict[int, tuple[float, float, float, float]]:
    """The lines the matched filter finds (module docstring, step 4b) that ``at`` lacks: grid index → (offset of
    the position from it and its σ, both in steps; height; FWHM in steps)."""
    from scipy.signal import find_peaks as _find
    from scipy.signal import peak_widths

    if len(at):
        fwhm = float(np.median(peak_widths(np.maximum(smooth, 0.0), at, rel_height=0.5)[0]))
    else:
        fwhm = 0.04 / step
    fwhm = max(fwhm, 2.0)
    s = fwhm / (2 * math.sqrt(2 * math.log(2)))
    half = max(2, math.ceil(3 * s))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / s) ** 2)
    k /= k.sum()
    if len(k) >= len(r):
        return {}
    f = np.convolve(r, k, mode="same")
    sf = noise * math.sqrt(float(k @ k))
    # A Gaussian line of the kernel's width keeps 1/√2 of its height under the filter.
    cand, _ = _find(f, prominence=np.maximum(n_sigma * sf, floor / math.sqrt(2.0)))
    out = {}
    for c in cand:
        if c < half or c > len(r) - 1 - half or (len(at) and np.min(np.abs(at - c)) <= fwhm):
            continue
        # Position: the vertex of the parabola through the filtered pattern's three top points; its σ the
        # line's width over its signal-to-noise ratio (Cramér–Rao for a Gaussian line, to a factor ~1).
        den = f[c - 1] - 2 * f[c] + f[c + 1]
        v = 0.5 * (f[c - 1] - f[c + 1]) / den if den < 0 else 0.0
        out[int(c)] = (float(np.clip(v, -1, 1)), fwhm / max(float(f[c] / sf[c]), 1.0), math.sqrt(2.0) * float(f[c]), fwhm)
    return out


def find_peaks(
    pattern: Pattern, *, wavelength_A: float | None = None, kalpha2: str = "auto", prominence_sigma: float = PROMINENCE_SIGMA,
    min_relative: float = MIN_RELATIVE, background_window_deg: float = BACKGROUND_WINDOW_DEG, max_peaks: int = 80,
    matched_sigma: float | None = None,
) -> PeakList:
    """The peaks of ``pattern`` (module docstring). ``wavelength_A`` is used for a 2θ pattern whose file
    states none; a 2θ pattern with neither raises IndexingError naming the file."""
    from scipy.signal import find_peaks as _find
    from scipy.signal import peak_widths, savgol_filter

    where = pattern.path or "<pattern>"
    if kalpha2 not in ("auto", "strip", "none"):
        raise ValueError(f"kalpha2 must be auto, strip or none, not {kalpha2!r}")
    x, y = np.asarray(pattern.x, np.float64), np.asarray(pattern.y, np.float64)
    if x.shape != y.shape or len(x) < 10 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise IndexingError(f"{where}: a pattern needs ≥ 10 finite (x, intensity) points of equal count")
    angular = pattern.axis == "two_theta"
    if angular:
        try:
            lam = pattern.resolve_wavelength(wavelength_A)
        except PatternError as exc:
            raise IndexingError(str(exc)) from None
        tt = x
    else:
        q = 2 * np.pi / x if pattern.axis == "d" else x
        order = np.argsort(q)
        q, y = q[order], y[order]
        lam = float(4 * np.pi * math.sin(math.radians(_VIRTUAL_MAX_TWO_THETA / 2)) / q.max())
        tt = 2 * np.degrees(np.arcsin(np.clip(q * lam / (4 * np.pi), 0, 1)))
        keep = np.concatenate([[True], np.diff(tt) > 0])
        tt, y = tt[keep], y[keep]
    tt0, y0 = tt, y  # the measured points: their noise is independent, the resampled grid's is not
    tt, y = _uniform(tt, y)
    step = float(tt[1] - tt[0])
    if np.ptp(y) <= 0:
        raise IndexingError(f"{where}: the intensities are constant; there are no peaks to index")
    bg = snip_background(y, max(2, round(background_window_deg / step)))
    r = y - bg
    sigma = _noise_sigma(r)
    kind = "not a tube line"
    tube = tube_of(lam) if angular else None
    if tube is not None and kalpha2 != "none":
        lam1, lam2 = TUBES[tube]
        if kalpha2 == "strip" or _has_doublet(tt, r, lam1, lam2, sigma) is not False:
            r = strip_kalpha2(tt, r, lam1, lam2)
            lam, kind = lam1, "stripped"
        else:
            kind = "none"
    elif kalpha2 == "strip":
        raise IndexingError(f"{where}: λ = {lam:g} Å is no known Kα line; cannot strip Kα₂")
    win = max(5, round(0.04 / step) | 1)
    smooth = savgol_filter(r, win, 2) if win < len(r) else r
    top = float(np.max(smooth))
    # Noise of the measured intensities (before background subtraction): larger on peaks for counts.
    # Estimated on the measured points and carried to the grid: resampling by linear interpolation averages
    # neighbouring points' noise (by up to half its variance), which would make it look smaller than the
    # smooth's.
    y_smooth = savgol_filter(y0, 5, 2) if len(y0) > 5 else y0
    bg0 = np.interp(tt0, tt, bg)
    noise = _noise_model(y0, y_smooth, 1e-9 * float(np.ptp(y0)), _quiet(y_smooth - bg0, _noise_sigma(y0 - bg0), step),
                         np.maximum(y_smooth, bg0))
    if tt0 is not tt:  # resampled
        noise = np.interp(tt, tt0, noise)
    if kind == "stripped":
        noise = noise * math.sqrt(1 + KALPHA2_RATIO**2)
    prom = np.maximum(prominence_sigma * noise, max(min_relative * top, 1e-300))
    at, _ = _find(smooth, prominence=prom)
    keep = (at >= 2) & (at <= len(r) - 3)
    at = at[keep]
    matched_sigma = MATCHED_FILTER_SIGMA if matched_sigma is None else matched_sigma
    if matched_sigma > 0:
        matched = _matched_peaks(r, smooth, noise, at, step, matched_sigma, max(min_relative * top, 1e-300))
        at = np.union1d(at, np.fromiter(matched, np.int64, len(matched)))
    else:
        matched = {}
    if len(at) == 0:
        return PeakList(*(np.zeros(0) for _ in range(5)), wavelength_A=lam, range_deg=(float(tt[0]), float(tt[-1])),
                        angular=angular, kalpha2=kind, source=where)
    # Strongest max_peaks, then by angle.
    if len(at) > max_peaks:
        at = np.sort(at[np.argsort(-smooth[at])[:max_peaks]])
    # Half height above the larger of the bases, on the smooth clipped at zero: the negative lobes a
    # Savitzky–Golay smooth leaves beside a line only a few steps wide are no base (they stretched a weak
    # neighbour's width, and so its position fit, over a degree).
    plain = np.array([int(a) not in matched for a in at], bool)
    widths = np.empty(len(at))
    if plain.any():
        widths[plain] = peak_widths(np.maximum(smooth, 0.0), at[plain], rel_height=0.5)[0] * step
    widths[~plain] = [matched[int(a)][3] * step for a in at[~plain]]  # the filter's: the pattern's line width
    pos, err, height = [], [], []
    for i, a in enumerate(at):
        half = max(1, round(widths[i] / (2 * step)))
        lo, hi = max(0, a - half), min(len(r), a + half + 1)
        xs, ys = tt[lo:hi] - tt[a], r[lo:hi]
        sel = ys >= 0.5 * r[a]
        if sel.sum() < 3:
            sel = np.ones_like(sel)
        p0, e0 = tt[a], step / 2
        if sel.sum() >= 3:
            X = np.column_stack([np.ones(sel.sum()), xs[sel], xs[sel] ** 2])
            coef, *_ = np.linalg.lstsq(X, ys[sel], rcond=None)
            _, b, c = coef
            if c < 0:
                v = -b / (2 * c)
                if abs(v) <= max(widths[i], 2 * step):
                    res = ys[sel] - X @ coef
                    dof = max(sel.sum() - 3, 1)
                    s2 = max(float(res @ res) / dof, sigma * sigma)
                    cov = s2 * np.linalg.pinv(X.T @ X)
                    # x0 = −b/2c: ∂x0/∂b = −1/2c, ∂x0/∂c = b/2c².
                    g = np.array([0.0, -1 / (2 * c), b / (2 * c * c)])
                    p0 = tt[a] + v
                    e0 = math.sqrt(max(float(g @ cov @ g), 0.0))
        h = max(float(r[a]), 0.0)
        if int(a) in matched:  # the filter's estimate: the raw top of a weak line is mostly noise
            v, e, h, _ = matched[int(a)]
            p0, e0 = tt[a] + v * step, e * step
        pos.append(p0)
        err.append(max(e0, step / 10))
        height.append(max(h, 0.0))
    pos, err, height = np.asarray(pos), np.asarray(err), np.asarray(height)
    fwhm = np.maximum(widths, step)
    return PeakList(pos, err, fwhm, height, height * fwhm, wavelength_A=lam, range_deg=(float(tt[0]), float(tt[-1])),
                    angular=angular, kalpha2=kind, source=where, meta={"noise_sigma": sigma, "step_deg": step})
