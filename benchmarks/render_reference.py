"""The unit of work of the speed benchmarks' same-run reference, frozen.

benchmarks/phases_speed.py times, before and after every fit, rendering every library phase once on the
pattern's grid, to put the fit's time in proportion to what the machine does at that moment. When that
reference called the fit's own renderer, making the renderer faster made the reference faster too and the
ratio hid the gain; this is a copy of ``xrdid.mixtures.profile.render_phase`` as it was at commit e7d2eb3
(before it was made faster), so that the reference is the same work whichever version of the fit is timed.
"""

from __future__ import annotations

import math

import numpy as np

from xrdid.instrument.render import _tch
from xrdid.mixtures.profile import Optics

_SCHERRER_K = 0.9
_LN2 = math.log(2.0)
_DEG = 180.0 / math.pi


def render_reference(
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
    """xrdid.mixtures.profile.render_phase as it was at commit e7d2eb3 (same arguments, same result)."""
    grid = np.asarray(grid, dtype=np.float64)
    scales = np.atleast_1d(np.asarray(d_scale, dtype=np.float64))
    S, N = scales.size, grid.size
    step = (grid[-1] - grid[0]) / (N - 1)
    out = np.zeros(S * N)
    d = np.asarray(d, dtype=np.float64)
    f2m = np.asarray(f2m, dtype=np.float64)
    keep = (d > 0) & (f2m > 0)
    d, f2m = d[keep], f2m[keep]
    if d.size == 0:
        return out.reshape(S, N) if np.ndim(d_scale) else out
    U, V, W = (width_scale * c for c in optics.caglioti_uvw_deg2)
    km = optics.polarisation_k * math.cos(math.radians(optics.monochromator_two_theta_deg)) ** 2
    lines = [(optics.wavelengths_A[0], 1.0)]
    if len(optics.wavelengths_A) > 1 and kalpha2_ratio > 0:
        lines.append((optics.wavelengths_A[1], float(kalpha2_ratio)))
    dd = (scales[:, None] * d[None, :]).ravel()
    row = np.repeat(np.arange(S), d.size)
    ff = np.tile(f2m, S)
    size_A = 10.0 * max(float(size_nm), 1e-3)
    # Gaussian FWHM² of one grid bin (a measured point averages over its bin) and a floor of 1.2 steps,
    # as the training renderer, so that a peak's sum over the grid does not alias.
    bin_g2 = 8 * _LN2 * step**2 / 12
    min_g2 = (1.2 * step) ** 2
    strain_deg = 4.0 * _DEG * max(float(strain), 0.0)
    cols = []
    for lam, wgt in lines:
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
        area = wgt * ff * lp
        half = window_fwhm * gam
        vis = ok & (centre + half > grid[0]) & (centre - half < grid[-1]) & (area > 0)
        cols.append((centre[vis], area[vis], gam[vis], eta[vis], row[vis]))
    centre, area, gam, eta, rows = (np.concatenate(c) for c in zip(*cols))
    if centre.size == 0:
        return out.reshape(S, N) if np.ndim(d_scale) else out
    pos = (centre - grid[0]) / step
    h_pts = np.minimum(np.ceil(window_fwhm * gam / step), 4096).astype(np.int64)
    # Peaks grouped by window size (powers of 1.5), so each group is one dense (peaks × window) block.
    bucket = np.ceil(np.log(np.maximum(h_pts, 3)) / math.log(1.5)).astype(np.int64)
    for b in np.unique(bucket):
        sel = np.flatnonzero(bucket == b)
        h = int(h_pts[sel].max())
        for c0 in range(0, sel.size, max(1, (1 << 18) // (2 * h + 1))):
            sl = sel[c0 : c0 + max(1, (1 << 18) // (2 * h + 1))]
            i0 = np.rint(pos[sl]).astype(np.int64)
            idx = i0[:, None] + np.arange(-h, h + 1)[None, :]
            x = (idx - pos[sl, None]) * (2.0 * step / gam[sl, None])  # 2(2θ − c)/Γ
            x2 = x * x
            e = eta[sl, None]
            prof = e / (1.0 + x2) + (1.0 - e) * math.sqrt(math.pi * _LN2) * np.exp(-_LN2 * x2)
            prof *= (np.abs(idx - pos[sl, None]) <= h_pts[sl, None])
            # Area-exact: the window sum (× step) is the peak's area, wherever it falls between points.
            norm = prof.sum(axis=1, keepdims=True) * step
            prof *= area[sl, None] / np.maximum(norm, 1e-300)
            inside = (idx >= 0) & (idx < N)
            flat = (rows[sl, None] * N + idx)[inside]
            out += np.bincount(flat, weights=prof[inside], minlength=S * N)
    out = out.reshape(S, N)
    return out if np.ndim(d_scale) else out[0]
