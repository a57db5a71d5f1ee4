"""Put a measured pattern onto the model's 2θ grid, through Q.

A model is trained on a fixed 2θ grid at its own wavelength λ_g. A measurement at λ_m maps onto it
through the momentum transfer, which does not depend on the wavelength:

    Q = 4π sin(2θ_m / 2) / λ_m = 4π sin(2θ_g / 2) / λ_g

Resampling is the average of the measurement's piecewise-linear interpolant over each grid bin (bin
edges halfway between grid points). When the measurement is much finer than the grid this is a
boxcar average that keeps peak areas and does not alias noise; when it is coarser it reduces to
linear interpolation at the grid point. Intensities are kept as measured (per-point values, no
Jacobian and no normalisation: the model normalises its input).

Grid points outside the measured Q range, or inside a gap in the measurement (a step more than five
times the median step, e.g. between detector modules), are masked: y = 0 and mask = False there.
Nothing is extrapolated.
"""

from __future__ import annotations

import logging

import numpy as np

from .pattern import Pattern, PatternError, check_wavelength

log = logging.getLogger(__name__)
GAP_FACTOR = 5.0


def _cumulative(q: np.ndarray, y: np.ndarray, e: np.ndarray) -> np.ndarray:
    """∫ from q[0] to e of the linear interpolant of (q, y), for e within [q[0], q[-1]]."""
    seg = np.concatenate([[0.0], np.cumsum(np.diff(q) * (y[1:] + y[:-1]) / 2.0)])
    j = np.clip(np.searchsorted(q, e, side="right") - 1, 0, q.size - 2)
    ye = np.interp(e, q, y)
    return seg[j] + (e - q[j]) * (y[j] + ye) / 2.0


def to_grid(
    pattern: Pattern,
    two_theta_grid_deg: np.ndarray,
    grid_wavelength_A: float,
    *,
    wavelength_A: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``pattern`` onto ``two_theta_grid_deg`` (degrees, at ``grid_wavelength_A`` Å).

    ``wavelength_A`` is the measurement's λ if the file did not state one (needed for 2θ patterns
    only). Returns ``(y, mask)``: float32 intensities on the grid and a bool array, True where the
    measurement covers the grid point; y is 0 where mask is False.
    """
    grid = np.asarray(two_theta_grid_deg, dtype=np.float64)
    lam_g = check_wavelength(grid_wavelength_A, pattern.path, "grid wavelength")
    if lam_g is None:
        raise PatternError("to_grid: grid_wavelength_A is required")
    if grid.ndim != 1 or grid.size < 2 or not np.all(np.diff(grid) > 0):
        raise ValueError("two_theta_grid_deg must be a 1D strictly increasing array of ≥ 2 angles")
    if grid[0] < 0 or grid[-1] > 180:
        raise ValueError("two_theta_grid_deg must lie within 0–180°")

    q_grid = 4.0 * np.pi * np.sin(np.radians(grid) / 2.0) / lam_g
    q = pattern.q(wavelength_A)
    y = np.asarray(pattern.y, dtype=np.float64)
    order = np.argsort(q)  # d patterns run backwards in Q
    q, y = q[order], y[order]

    mask = (q_grid >= q[0]) & (q_grid <= q[-1])
    dq = np.diff(q)
    big = np.flatnonzero(dq > GAP_FACTOR * np.median(dq))
    for i in big:
        mask &= ~((q_grid > q[i]) & (q_grid < q[i + 1]))
    out = np.zeros(grid.size, dtype=np.float32)
    if not mask.any():
        log.warning(
            "%s: the measurement (Q %.3g–%.3g Å⁻¹) does not overlap the model grid (Q %.3g–%.3g Å⁻¹)",
            pattern.path, q[0], q[-1], q_grid[0], q_grid[-1],
        )
        return out, mask

    # Bin edges halfway between grid points (in Q, where the resampling happens), clipped to the data.
    mid = (q_grid[1:] + q_grid[:-1]) / 2.0
    lo = np.concatenate([[q_grid[0] - (mid[0] - q_grid[0])], mid])
    hi = np.concatenate([mid, [q_grid[-1] + (q_grid[-1] - mid[-1])]])
    # A bin only partly inside the data (at either end) takes the point value: averaging over the
    # covered part alone would bias it by half a bin along any slope.
    whole = (lo >= q[0]) & (hi <= q[-1])
    lo, hi = np.clip(lo, q[0], q[-1]), np.clip(hi, q[0], q[-1])
    width = np.where(whole, hi - lo, 1.0)
    area = _cumulative(q, y, hi) - _cumulative(q, y, lo)
    avg = np.where(whole, area / width, np.interp(q_grid, q, y))
    out[mask] = avg[mask].astype(np.float32)
    return out, mask
