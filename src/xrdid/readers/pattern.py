"""The measured-pattern record, its validation, and the axis conversions.

Units: 2θ in degrees, Q in Å⁻¹, d in Å, wavelength λ in Å.

    Q = 4π sin θ / λ = 2π / d        (Bragg: λ = 2 d sin θ)

A 2θ pattern becomes a Q pattern only with a wavelength. That wavelength comes from the file where it
says so, else from the caller (``--wavelength`` / ``--instrument``); there is deliberately no Cu Kα
default, because a wrong λ silently shifts every peak.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

AXES = ("two_theta", "q", "d")
MIN_POINTS = 10
# Plausible X-ray/neutron wavelengths in Å: hard X-rays (~0.1 Å) to soft/long-wavelength neutrons.
WAVELENGTH_RANGE_A = (0.01, 20.0)
# Q beyond this (Å⁻¹) is not a powder diffraction pattern; total-scattering data stop near 50.
MAX_Q_INV_A = 100.0


class PatternError(ValueError):
    """A pattern file cannot be read or makes no sense; the message names the file and the problem."""


def _where(path: str | os.PathLike | None) -> str:
    return str(path) if path is not None else "<pattern>"


def check_wavelength(wavelength_A: float | None, path=None, what: str = "wavelength") -> float | None:
    """Return ``wavelength_A`` as float, or raise PatternError if it is not a plausible λ in Å."""
    if wavelength_A is None:
        return None
    try:
        lam = float(wavelength_A)
    except (TypeError, ValueError):
        raise PatternError(f"{_where(path)}: {what} {wavelength_A!r} is not a number") from None
    lo, hi = WAVELENGTH_RANGE_A
    if not np.isfinite(lam) or not lo <= lam <= hi:
        raise PatternError(
            f"{_where(path)}: {what} {lam!r} Å is outside the plausible range {lo}–{hi} Å"
            " (is it in nm or m instead of Å?)"
        )
    return lam


@dataclass
class Pattern:
    """One measured 1D powder pattern.

    ``x`` is strictly increasing (float64) in the units of ``axis``: ``"two_theta"`` (degrees),
    ``"q"`` (Å⁻¹) or ``"d"`` (Å). ``y`` is the intensity (float64, any scale, may be negative after
    background subtraction). ``wavelength_A`` is the λ the file states, or the caller's fallback
    (``meta["wavelength_source"]`` says which). ``meta`` holds what else the reader found (e.g.
    ``sigma`` as an array, ``kalpha2_A``, ``kalpha2_ratio``, ``format``, ``columns``).
    """

    x: np.ndarray
    y: np.ndarray
    axis: str
    wavelength_A: float | None = None
    path: str | None = None
    meta: dict = field(default_factory=dict)

    def q(self, wavelength_A: float | None = None) -> np.ndarray:
        """Q = 4π sin θ / λ in Å⁻¹ for each point of ``x`` (same order as ``x``).

        For a 2θ pattern λ is the file's, else ``wavelength_A``; with neither, PatternError. For a
        d pattern Q = 2π/d (so Q decreases along ``x``); a Q pattern is returned as is.
        """
        if self.axis == "q":
            return self.x.copy()
        if self.axis == "d":
            return 2.0 * np.pi / self.x
        lam = self.resolve_wavelength(wavelength_A)
        return 4.0 * np.pi * np.sin(np.radians(self.x) / 2.0) / lam

    def resolve_wavelength(self, wavelength_A: float | None = None) -> float:
        """λ in Å to convert this pattern with: the file's, else ``wavelength_A``, else PatternError."""
        if self.wavelength_A is not None:
            if wavelength_A is not None and abs(float(wavelength_A) - self.wavelength_A) > 1e-4:
                log.warning(
                    "%s: the file states λ = %g Å; using it, not the %g Å given",
                    _where(self.path), self.wavelength_A, wavelength_A,
                )
            return self.wavelength_A
        lam = check_wavelength(wavelength_A, self.path)
        if lam is None:
            raise PatternError(
                f"{_where(self.path)}: the x axis is 2θ but the file states no wavelength; "
                "give one with --wavelength Å or --instrument NAME (no default is assumed)"
            )
        return lam


def finalise(
    x, y, *, axis: str, path=None, wavelength_A: float | None = None, meta: dict | None = None,
    sigma=None,
) -> Pattern:
    """Validate raw columns and build a Pattern: float64, finite, ≥ MIN_POINTS, strictly increasing x
    (a strictly descending file is reversed), x within the physical range of its axis."""
    where = _where(path)
    meta = dict(meta or {})
    if axis not in AXES:
        raise PatternError(f"{where}: unknown x axis {axis!r}; expected one of {', '.join(AXES)}")
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise PatternError(f"{where}: {x.size} x values but {y.size} intensities")
    if x.size < MIN_POINTS:
        raise PatternError(
            f"{where}: only {x.size} data points; a powder pattern needs at least {MIN_POINTS}"
        )
    for name, arr in (("x", x), ("intensity", y)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise PatternError(
                f"{where}: {int(bad.sum())} non-finite (NaN/inf) {name} values, the first at point {i + 1}"
            )
    if sigma is not None:
        sigma = np.asarray(sigma, dtype=np.float64).ravel()
    dx = np.diff(x)
    if np.all(dx < 0):
        x, y = x[::-1].copy(), y[::-1].copy()
        sigma = sigma[::-1].copy() if sigma is not None else None
        meta["reversed"] = True
        dx = -dx[::-1]
    if not np.all(dx > 0):
        i = int(np.argmax(dx <= 0))
        kind = "a duplicate" if dx[i] == 0 else "a decreasing"
        raise PatternError(
            f"{where}: x is not monotonic: {kind} value {x[i + 1]:g} follows {x[i]:g} at point {i + 2}"
        )
    lo, hi = x[0], x[-1]
    if axis == "two_theta" and (lo < 0 or hi > 180):
        raise PatternError(
            f"{where}: 2θ runs {lo:g}–{hi:g}°, outside 0–180°; is the x axis really 2θ in degrees?"
        )
    if axis == "q" and (lo < 0 or hi > MAX_Q_INV_A):
        raise PatternError(
            f"{where}: Q runs {lo:g}–{hi:g} Å⁻¹, outside 0–{MAX_Q_INV_A:g} Å⁻¹; is the x axis really Q?"
        )
    if axis == "d" and lo <= 0:
        raise PatternError(f"{where}: d-spacings must be positive, found {lo:g} Å")
    if sigma is not None and sigma.shape == x.shape and np.all(np.isfinite(sigma)):
        meta["sigma"] = sigma
    return Pattern(
        x=x, y=y, axis=axis, wavelength_A=wavelength_A,
        path=str(path) if path is not None else None, meta=meta,
    )
