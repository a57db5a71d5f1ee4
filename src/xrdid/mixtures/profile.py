r"""Absolute-scale rendering of one phase's sticks on a measured 2θ grid (numpy).

The physics is that of :mod:`xrdid.instrument.render` (same Lorentz–polarisation, Caglioti Gaussian
width, Scherrer Lorentzian width, Thompson–Cox–Hastings pseudo-Voigt from its ``_tch``, Kα1/Kα2 lines), but the result is
*not* normalised: a reflection of spacing d and :math:`|F|^2 m` (``f2m``) contributes, for each line
λ_k of weight w_k, a peak of area

.. math:: A = w_k \, |F|^2 m \, LP(θ_k), \qquad LP = \frac{1 + k\cos^2 2θ_M \cos^2 2θ}{(1 + k\cos^2 2θ_M)\sin^2θ\cosθ}

(intensity × degrees 2θ), so the scale factor fitted to a rendered column is the Rietveld scale S of
that phase and weight fractions follow from :math:`W_i ∝ S_i Z_i M_i V_i` (see :mod:`xrdid.mixtures`).

Differences from the training renderer, all for fitting: the peak position gets an isotropic lattice
scale (d → d·s) and a zero shift; each peak is evaluated on a window of ±``window_fwhm`` FWHM and
rescaled so that its sum over the window times the grid step equals A exactly (area, not height, is
what the weight fractions need); the grid can be any uniform 2θ grid; and many scale factors ``s``
(:func:`render_phase`) or many phases with their own size and strain (:func:`render_phases`, what the
refinement and the screening use) can be rendered in one vectorised call, as rows of the output. A row
is the very numbers (to the last bit) of that row rendered alone: its peaks are evaluated, summed and
accumulated in the same order and cut into the same pieces, so the fit's answers do not depend on what
was rendered together. The peaks of a call are evaluated as one flat run of values, each on its own
window (the grid points within ±h of its centre): numpy's per-call cost, not the arithmetic, is most of a
small render's time.

:func:`render_derivatives` gives weighted derivative columns of a render (one per refined parameter) from
one evaluation of each peak's profile: the moves of the peaks' centres, widths, η and areas times the
profile's analytic derivatives, accumulated by one sparse product.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from xrdid.instrument.render import _tch

_SCHERRER_K = 0.9
_LN2 = math.log(2.0)
_DEG = 180.0 / math.pi

# Kα1, Kα2 (Å) of common tube anodes (Hölzer et al., Phys. Rev. A 56 (1997) 4554; ITC Vol. C 4.2.2).
# A wavelength within 2e-4 Å of a Kα1 line is modelled as that doublet, with the Kα2/Kα1 ratio refined.
KALPHA_LINES = {
    "Cu": (1.5405929, 1.5444140),
    "Co": (1.7889970, 1.7928350),
    "Fe": (1.9360410, 1.9399730),
    "Cr": (2.2897260, 2.2936510),
    "Mo": (0.7093171, 0.7135900),
    "Ag": (0.5594218, 0.5638131),
}


def kalpha2_for(wavelength_A: float, tol_A: float = 2e-4) -> float | None:
    """The Kα2 wavelength (Å) of the anode whose Kα1 is ``wavelength_A``, else None (a single line)."""
    for ka1, ka2 in KALPHA_LINES.values():
        if abs(wavelength_A - ka1) <= tol_A:
            return ka2
    return None


@dataclass(frozen=True)
class Optics:
    """What is common to every phase of one pattern.

    wavelengths_A: (λ1,) or (Kα1, Kα2) in Å; the Kα2 weight is the ``kalpha2_ratio`` fit parameter.
    caglioti_uvw_deg2: instrumental Gaussian FWHM² = U tan²θ + V tanθ + W (deg²) before ``width_scale``.
    polarisation_k, monochromator_two_theta_deg: as :class:`xrdid.instrument.Instrument`.
    """

    wavelengths_A: tuple[float, ...]
    caglioti_uvw_deg2: tuple[float, float, float] = (0.004, -0.002, 0.002)
    polarisation_k: float = 1.0
    monochromator_two_theta_deg: float = 0.0


def render_phase(
    d: np.ndarray,
    f2m: np.ndarray,
    grid: np.ndarray,
    optics: Optics,
    *,
    d_scale=1.0,
    zero_deg: float = 0.0,
    displacement_deg: float = 0.0,
    width_scale: float = 1.0,
    size_nm: float = 200.0,
    strain: float = 0.0,
    kalpha2_ratio: float = 0.5,
    window_fwhm: float = 8.0,
) -> np.ndarray:
    """Pattern of one phase on the uniform 2θ ``grid`` (deg), intensity per degree (area-exact).

    ``d_scale`` may be a scalar or a 1-D array of S lattice scales; the result is (N,) or (S, N).
    Peak positions: 2θ_Bragg + ``zero_deg`` + ``displacement_deg`` · cos θ (a flat sample displaced by s
    from the goniometer axis of radius R shifts peaks by −2s cosθ/R rad: ``displacement_deg`` is that
    −2s/R in degrees). Widths: ``width_scale`` multiplies the Caglioti U, V, W (the instrument's Gaussian);
    microstrain ε = Δd/d adds a Gaussian FWHM 4ε tanθ (rad); ``size_nm`` is the Scherrer crystallite size of
    the Lorentzian FWHM Kλ/(L cosθ) (K = 0.9); the two are combined by Thompson–Cox–Hastings.
    """
    scales = np.atleast_1d(np.asarray(d_scale, dtype=np.float64))
    d, f2m = _positive(d, f2m)
    kw = {"zero_deg": zero_deg, "displacement_deg": displacement_deg, "width_scale": width_scale,
          "kalpha2_ratio": kalpha2_ratio, "window_fwhm": window_fwhm}
    if scales.size == 1:
        out = _render(scales[0] * d, f2m, None, 1, grid, optics, size_A=_size_A(size_nm),
                      strain_deg=_strain_deg(strain), **kw)
    else:
        out = _render((scales[:, None] * d[None, :]).ravel(), np.tile(f2m, scales.size),
                      np.repeat(np.arange(scales.size), d.size), scales.size, grid, optics, size_A=_size_A(size_nm),
                      strain_deg=_strain_deg(strain), **kw)
    return out if np.ndim(d_scale) else out[0]


def render_phases(
    sticks: list[tuple[np.ndarray, np.ndarray]],
    grid: np.ndarray,
    optics: Optics,
    *,
    size_nm,
    strain,
    zero_deg: float = 0.0,
    displacement_deg: float = 0.0,
    width_scale: float = 1.0,
    kalpha2_ratio: float = 0.5,
    window_fwhm: float = 8.0,
) -> np.ndarray:
    """Several phases at once, (P, N): row i is exactly ``render_phase(*sticks[i], grid, optics,
    size_nm=size_nm[i], strain=strain[i], ...)`` (the same numbers to the last bit), with the per-call
    work shared. ``sticks``: (d, f2m) per phase, d in Å at the lattice to render."""
    kw = {"zero_deg": zero_deg, "displacement_deg": displacement_deg, "width_scale": width_scale,
          "kalpha2_ratio": kalpha2_ratio, "window_fwhm": window_fwhm}
    if len(sticks) == 1:
        return render_phase(*sticks[0], grid, optics, size_nm=size_nm[0], strain=strain[0], **kw)[None, :]
    ds, fs, rows = [], [], []
    for d, f2m in sticks:
        d, f2m = _positive(d, f2m)
        ds.append(d)
        fs.append(f2m)
        rows.append(d.size)
    counts = np.array(rows, dtype=np.int64)
    return _render(np.concatenate(ds) if ds else np.zeros(0), np.concatenate(fs) if fs else np.zeros(0),
                   np.repeat(np.arange(len(sticks)), counts), len(sticks), grid, optics,
                   size_A=np.repeat([_size_A(v) for v in size_nm], counts),
                   strain_deg=np.repeat([_strain_deg(v) for v in strain], counts), **kw)


def _positive(d, f2m) -> tuple[np.ndarray, np.ndarray]:
    """Sticks as float64 arrays, those with d ≤ 0 or |F|²m ≤ 0 left out."""
    d = np.asarray(d, dtype=np.float64)
    f2m = np.asarray(f2m, dtype=np.float64)
    keep = (d > 0) & (f2m > 0)
    return (d, f2m) if keep.all() else (d[keep], f2m[keep])


def _size_A(size_nm: float) -> float:
    return 10.0 * max(float(size_nm), 1e-3)


def _strain_deg(strain: float) -> float:
    return 4.0 * _DEG * max(float(strain), 0.0)


def _render(dd, ff, row, n_rows: int, grid, optics: Optics, *, size_A, strain_deg, zero_deg, displacement_deg,
            width_scale, kalpha2_ratio, window_fwhm) -> np.ndarray:
    """Sticks (d in Å, |F|²m) rendered into ``n_rows`` rows: stick j into row ``row[j]`` (None: one row).
    ``size_A``, ``strain_deg``: scalars, or one value per stick. Returns (n_rows, N)."""
    grid = np.asarray(grid, dtype=np.float64)
    N = grid.size
    step = (grid[-1] - grid[0]) / (N - 1)
    if dd.size == 0:
        return np.zeros((n_rows, N))
    lines, centre, area, gam, eta, half, vis = _peaks(
        dd, ff, grid, optics, step, size_A=size_A, strain_deg=strain_deg, zero_deg=zero_deg,
        displacement_deg=displacement_deg, width_scale=width_scale, kalpha2_ratio=kalpha2_ratio, window_fwhm=window_fwhm)
    every = bool(vis.all())  # most renders: no peak to leave out, a flat view instead of a selection
    if every:
        centre, area, gam, eta, half = centre.ravel(), area.ravel(), gam.ravel(), eta.ravel(), half.ravel()
    else:
        centre, area, gam, eta, half = centre[vis], area[vis], gam[vis], eta[vis], half[vis]
    if centre.size == 0:
        return np.zeros((n_rows, N))
    pos = (centre - grid[0]) / step
    h_pts = np.minimum(np.ceil(half / step), 4096).astype(np.int64)
    # Window points off the grid are accumulated in padding either side and cut off at the end, rather
    # than masked out one by one.
    h_max = int(h_pts.max())
    pad = max(0, h_max + 1 - math.floor(pos.min()))
    width = pad + max(N, math.ceil(pos.max()) + h_max + 2)
    if row is None:
        offset = None
    else:
        rowv = row if lines == 1 else np.concatenate([row] * lines)  # each wavelength's peaks, rows alike
        if not every:
            rowv = rowv[vis.ravel()]
        if n_rows > 1 and (rowv[1:] < rowv[:-1]).any():
            # Each row's peaks together, in their order (the order in which a render of that row alone sums them).
            order = np.argsort(rowv, kind="stable")
            rowv, pos, gam, eta, area, h_pts = rowv[order], pos[order], gam[order], eta[order], area[order], h_pts[order]
        offset = rowv * width + pad
    # Every peak's window, the grid points within ±h of its centre, as one flat run of values.
    first = np.ceil(pos - h_pts).astype(np.int64)
    n_pts = np.floor(pos + h_pts).astype(np.int64) - first + 1
    ends = np.cumsum(n_pts)
    c_g = math.sqrt(math.pi * _LN2)
    out = None
    for p0, p1 in _pieces(ends, None if row is None else rowv):
        sl = slice(p0, p1)
        n = n_pts[sl]
        e0 = int(ends[p0 - 1]) if p0 else 0
        # Window point k of a peak is grid point first + k: a run 0, 1, … over the piece less each window's
        # start. The point's offset from the centre, idx − pos, is taken in floating point (exact integers):
        # the same numbers as from int64 indices, without the mixed-type subtraction's conversion.
        # (ndarray.repeat: np.repeat's dispatch costs as much as the work on a small render.)
        run = _run(int(ends[p1 - 1]) - e0)
        back = first[sl] - (ends[sl] - n - e0)
        u = back.astype(np.float64).repeat(n)
        u += run[1]
        u -= pos[sl].repeat(n)
        x2 = u * (2.0 * step / gam[sl]).repeat(n)  # x = 2(2θ − c)/Γ
        x2 *= x2
        e = eta[sl]
        # η/(1 + x²) + (1 − η)·√(π ln2)·exp(−ln2 x²), in place.
        prof = np.multiply(x2, -_LN2)
        np.exp(prof, out=prof)
        prof *= ((1.0 - e) * c_g).repeat(n)
        x2 += 1.0
        prof += np.divide(e.repeat(n), x2, out=x2)
        # Area-exact: the window sum (× step) is the peak's area, wherever it falls between points.
        norm = np.add.reduceat(prof, ends[sl] - n - e0) * step
        prof *= (area[sl] / np.maximum(norm, 1e-300)).repeat(n)
        idx = (back + (pad if offset is None else offset[sl])).repeat(n)
        idx += run[0]
        acc = np.bincount(idx, weights=prof, minlength=n_rows * width)
        # (The first piece's sums are the output: 0 + v is v for the sums of non-negative values here.)
        if out is None:
            out = acc
        else:
            out += acc
    return np.ascontiguousarray(out.reshape(n_rows, width)[:, pad : pad + N])


def _peaks(dd, ff, grid, optics: Optics, step: float, *, size_A, strain_deg, zero_deg, displacement_deg, width_scale,
           kalpha2_ratio, window_fwhm):
    """Every peak of the sticks (d in Å, |F|²m) as (number of lines, centre, area, FWHM Γ, η, window half-width,
    visible), each (lines, sticks), the Kα1 row first. ``size_A``, ``strain_deg``, ``width_scale``: scalars or
    one value per stick. The numbers :func:`_render` renders (the same arithmetic)."""
    U, V, W = (width_scale * c for c in optics.caglioti_uvw_deg2)
    km = optics.polarisation_k * math.cos(math.radians(optics.monochromator_two_theta_deg)) ** 2
    lams, wgts = [optics.wavelengths_A[0]], [1.0]
    if len(optics.wavelengths_A) > 1 and kalpha2_ratio > 0:
        lams.append(optics.wavelengths_A[1])
        wgts.append(float(kalpha2_ratio))
    # Gaussian FWHM² of one grid bin (a measured point averages over its bin) and a floor of 1.2 steps,
    # as the training renderer, so that a peak's sum over the grid does not alias.
    bin_g2 = 8 * _LN2 * step**2 / 12
    min_g2 = (1.2 * step) ** 2
    # Both lines at once: rows of (lines, reflections); flattened, the Kα1 peaks come first.
    lam = np.array(lams)[:, None]
    s = lam / (2.0 * dd)
    ok = s < 1.0
    theta = np.arcsin(np.minimum(s, 1.0 - 1e-9))
    sin_t, cos_t = np.sin(theta), np.cos(theta)
    tan_t = sin_t / cos_t
    cos2t = 1.0 - 2.0 * sin_t * sin_t
    lp = (1.0 + km * cos2t * cos2t) / ((1.0 + km) * sin_t * sin_t * cos_t)
    centre = 2.0 * _DEG * theta + zero_deg + displacement_deg * cos_t
    g2 = np.maximum(U * tan_t * tan_t + V * tan_t + W + bin_g2 + (strain_deg * tan_t) ** 2, min_g2)
    gam_l = _DEG * _SCHERRER_K * lam / (size_A * cos_t)
    gam, eta = _tch(np.sqrt(g2), gam_l)
    area = np.array(wgts)[:, None] * ff * lp
    half = window_fwhm * gam
    vis = ok & (centre + half > grid[0]) & (centre - half < grid[-1]) & (area > 0)
    return len(lams), centre, area, gam, eta, half, vis


# Values (peaks × window points) per piece of a render: bounds its memory. The pieces of one row (phase)
# are what its sums depend on, so render_phase and render_phases cut them alike.
_CHUNK_VALUES = 1 << 18

# 0, 1, 2, … (int64 and float64), grown on demand and shared by every render: the window points' offsets
# from the start of a piece (a slice of these costs nothing; a fresh arange costs a pass over the piece).
_RUN: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0))


def _run(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(0 … n−1 as int64, the same as float64), read-only views of the shared run."""
    global _RUN
    run = _RUN
    if run[0].size < n:
        size = max(n, 2 * run[0].size, 1 << 16)
        i = np.arange(size, dtype=np.int64)
        f = i.astype(np.float64)
        i.flags.writeable = False
        f.flags.writeable = False
        run = _RUN = (i, f)
    return run[0][:n], run[1][:n]


def _pieces(ends: np.ndarray, rowv: np.ndarray | None):
    """(first, end) peak of each piece of a render, ``ends`` being the peaks' cumulative window sizes (rows
    contiguous). A row is cut every _CHUNK_VALUES values from its own start, whatever else is rendered with it;
    whole pieces of different rows are packed together up to _CHUNK_VALUES values, never two of one row."""
    if int(ends[-1]) <= _CHUNK_VALUES:
        yield 0, ends.size
        return
    starts = np.concatenate([[0], ends[:-1]])
    if rowv is None:
        piece = starts // _CHUNK_VALUES
        yield from itertools.pairwise([0, *(np.flatnonzero(np.diff(piece)) + 1).tolist(), ends.size])
        return
    new_row = np.diff(rowv) != 0
    row_first = np.concatenate([[0], np.flatnonzero(new_row) + 1])
    row_of = np.concatenate([[0], np.cumsum(new_row)])
    piece = (starts - starts[row_first][row_of]) // _CHUNK_VALUES
    units = [0, *(np.flatnonzero(new_row | (np.diff(piece) != 0)) + 1).tolist(), ends.size]
    c0, size = 0, 0
    for u0, u1 in itertools.pairwise(units):
        n = int(ends[u1 - 1] - starts[u0])
        if u0 > c0 and (size + n > _CHUNK_VALUES or rowv[u0] == rowv[u0 - 1]):
            yield c0, u0
            c0, size = u0, 0
        size += n
    yield c0, ends.size


def _csc_matvecs(n_row, n_col, n_vecs, indptr, indices, data, X, Y) -> None:
    """Y += A X for the sparse A (n_row × n_col) of compressed columns (indptr, indices, data), X and Y dense
    (C order): scipy's own kernel, without building a sparse matrix object (its checks cost more than the
    product on a refinement's few columns)."""
    try:
        from scipy.sparse._sparsetools import csc_matvecs
    except ImportError:  # pragma: no cover - a scipy that moved it
        from scipy.sparse import csc_matrix

        Y += csc_matrix((data, indices, indptr), shape=(n_row, n_col)) @ X
        return
    csc_matvecs(n_row, n_col, n_vecs, indptr, indices, data, np.ascontiguousarray(X).ravel(), Y.ravel())


def render_derivatives(sticks: dict, n: int, col: np.ndarray, coef: np.ndarray, n_cols: int, grid: np.ndarray,
                       optics: Optics, *, zero_deg: float = 0.0, displacement_deg: float = 0.0,
                       kalpha2_ratio: float = 0.5, window_fwhm: float = 8.0, line2=None) -> np.ndarray:
    r"""Weighted derivative columns of a render, (n_cols, N), each peak's profile computed once.

    ``sticks``: per-stick arrays ``d`` (Å), ``f2m``, ``size_A``, ``strain_deg``, ``width_scale`` (see
    :func:`_render`) and ``src``: first the sticks as rendered (``n`` of them, ``src`` 0 … n−1), then one
    entry m per moved stick, base stick ``src[m]`` with one parameter moved by a step, for column ``col[m − n]``
    at weight ``coef[m − n]``. Column k is
    :math:`\sum_m coef_m (y_{src_m}' - y_{src_m})` linearised in the peak's centre c, FWHM Γ, η and area A:
    the moves of those four (per peak, from the two stick states) times the exact derivatives of the
    area-exact rendered profile (the window normalisation included), on the base peak's window. A finite
    difference of two renders is this plus terms of second order in the step. ``line2``: (column, per-stick
    coefficient) for the Kα2 ratio, the Kα2 peaks alone (the render is linear in the ratio).

    Per window point the profile and its derivatives in x = 2(2θ − c)/Γ and η are computed once, and the
    columns accumulated in one sparse product (points × 4 peaks' bases by 4 peaks × columns)."""
    grid = np.asarray(grid, dtype=np.float64)
    N = grid.size
    step = (grid[-1] - grid[0]) / (N - 1)
    src = sticks["src"][n:]
    out = np.zeros((n_cols, N))
    if n == 0 or (src.size == 0 and line2 is None):
        return out
    kw = {"zero_deg": zero_deg, "displacement_deg": displacement_deg, "kalpha2_ratio": kalpha2_ratio,
          "window_fwhm": window_fwhm}
    lines, centre, area, gam, eta, half, vis = _peaks(
        sticks["d"], sticks["f2m"], grid, optics, step, size_A=sticks["size_A"], strain_deg=sticks["strain_deg"],
        width_scale=sticks["width_scale"], **kw)
    # Moves of each perturbed peak (lines, m) against its base peak.
    b = (slice(None), src)
    p = (slice(None), slice(n, None))
    d_c, d_g, d_e = centre[p] - centre[b], gam[p] - gam[b], eta[p] - eta[b]
    area_b = area[:, :n]
    with np.errstate(divide="ignore", invalid="ignore"):
        d_la = np.where(area[b] > 0, area[p] / area[b] - 1.0, 0.0)
    vis = vis[:, :n]
    centre, area, gam, eta, half = centre[:, :n][vis], area_b[vis], gam[:, :n][vis], eta[:, :n][vis], half[:, :n][vis]
    P = centre.size
    if P == 0:
        return out
    peak_of = np.full(vis.shape, -1, np.int64)  # (line, stick) → visible peak
    peak_of[vis] = np.arange(P)
    pos = (centre - grid[0]) / step
    h_pts = np.minimum(np.ceil(half / step), 4096).astype(np.int64)
    h_max = int(h_pts.max())
    pad = max(0, h_max + 1 - math.floor(pos.min()))
    width = pad + max(N, math.ceil(pos.max()) + h_max + 2)
    first = np.ceil(pos - h_pts).astype(np.int64)
    n_pts = np.floor(pos + h_pts).astype(np.int64) - first + 1
    ends = np.cumsum(n_pts)
    starts = ends - n_pts
    T = int(ends[-1])
    run = _run(T)
    back = first - starts
    idx = back.repeat(n_pts)
    idx += run[0]
    idx += pad
    x = back.astype(np.float64).repeat(n_pts)
    x += run[1]
    x -= pos.repeat(n_pts)
    x *= (2.0 * step / gam).repeat(n_pts)  # x = 2(2θ − c)/Γ
    # The raw profile g = η L + (1 − η) G (L = 1/(1 + x²), G = √(π ln2)·exp(−ln2 x²)) and its derivatives
    # ∂g/∂η = L − G, ∂g/∂x = −2x (η L² + (1 − η) ln2 G), written into one array of four bases, each
    # multiplied per peak (in the coefficients) by what turns it into the rendered peak's derivative.
    bases = np.empty((4, T))
    g, gx, xgx, ge = bases
    x2 = np.multiply(x, x, out=xgx)
    G = np.multiply(x2, -_LN2, out=g)
    np.exp(G, out=G)
    G *= math.sqrt(math.pi * _LN2)
    x2 += 1.0
    L = np.divide(1.0, x2, out=x2)
    e = eta.repeat(n_pts)
    np.subtract(L, G, out=ge)
    L *= L
    G *= _LN2
    L -= G  # L² − ln2 G
    L *= e
    L += G  # η L² + (1 − η) ln2 G
    np.multiply(L, x, out=gx)  # −½ ∂g/∂x
    G *= 1.0 / _LN2
    np.multiply(e, ge, out=e)
    np.add(G, e, out=g)
    np.multiply(gx, x, out=xgx)
    sums = np.add.reduceat(bases, starts, axis=1) * step  # (4, P)
    norm = np.maximum(sums[0], 1e-300)
    scale = area / norm  # the render's peak is scale·g
    # Moves of c (deg), Γ (deg), η and log A: the peak changes by scale·(∂g/∂x ∂x + ∂g/∂η dη) + dlogA·scale·g
    # less scale·g times the relative change of its window sum (the render keeps that sum the area).
    # ∂x/∂c = −2/Γ, ∂x/∂Γ = −x/Γ; ∂g/∂x = −2 gx.
    f_c = 4.0 * scale / gam
    f_g = 2.0 * scale / gam
    r_c, r_g, r_e = f_c * sums[1] / norm, f_g * sums[2] / norm, scale * sums[3] / norm
    C = np.zeros((4, P, n_cols))
    for ln in range(lines):
        pk = peak_of[ln, src]
        ok = pk >= 0
        pk, cc, w = pk[ok], col[ok], coef[ok]
        dc, dg, de = d_c[ln, ok] * w, d_g[ln, ok] * w, d_e[ln, ok] * w
        C[1, pk, cc] = dc * f_c[pk]
        C[2, pk, cc] = dg * f_g[pk]
        C[3, pk, cc] = de * scale[pk]
        C[0, pk, cc] = scale[pk] * d_la[ln, ok] * w - (dc * r_c[pk] + dg * r_g[pk] + de * r_e[pk])
    if line2 is not None and lines > 1:
        k, w2 = line2
        pk = peak_of[1]
        ok = pk >= 0
        C[0, pk[ok], k] += scale[pk[ok]] * np.broadcast_to(w2, n)[ok] / kalpha2_ratio
    indptr = np.concatenate([[0], ends])
    acc = np.zeros((width, n_cols))
    for B, Cb in zip(bases, C):
        if Cb.any():
            _csc_matvecs(width, P, n_cols, indptr, idx, B, Cb, acc)
    return np.ascontiguousarray(acc[pad : pad + N].T)
