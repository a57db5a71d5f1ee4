"""to_grid: a measurement at one wavelength onto a model grid at another, through Q."""

import numpy as np
import pytest

from xrdid.readers import Pattern, PatternError, to_grid
from xrdid.readers.pattern import finalise

LAM_M, LAM_G = 1.5406, 0.7297


def tt(q, lam):
    return np.degrees(2 * np.arcsin(q * lam / (4 * np.pi)))


def peak_pattern(q0=3.0, lam=LAM_M, lo=10.0, hi=80.0, n=3501, width_q=0.01, noise=0.0, seed=0):
    x = np.linspace(lo, hi, n)
    q = 4 * np.pi * np.sin(np.radians(x / 2)) / lam
    y = 10.0 + 1000.0 * np.exp(-0.5 * ((q - q0) / width_q) ** 2)
    y += np.random.default_rng(seed).normal(0, noise, n)
    return finalise(x, y, axis="two_theta", wavelength_A=lam, path="mem.xy")


def test_peak_lands_at_the_same_q_and_coverage_is_masked():
    grid = np.linspace(2.0, 90.0, 4401)  # 0.02°
    y, mask = to_grid(peak_pattern(), grid, LAM_G)
    assert y.dtype == np.float32 and mask.dtype == bool and y.shape == mask.shape == grid.shape
    assert grid[np.argmax(y)] == pytest.approx(tt(3.0, LAM_G), abs=0.02)
    # The measurement covers 10–80° at Cu, i.e. Q 0.71–5.27 Å⁻¹: a much shorter 2θ range at 0.73 Å.
    q_lo, q_hi = (4 * np.pi * np.sin(np.radians(np.array([10.0, 80.0]) / 2)) / LAM_M)
    covered = grid[mask]
    assert covered[0] == pytest.approx(tt(q_lo, LAM_G), abs=0.03)
    assert covered[-1] == pytest.approx(tt(q_hi, LAM_G), abs=0.03)
    assert np.all(y[~mask] == 0)
    assert np.all(np.diff(np.flatnonzero(mask)) == 1)  # one contiguous covered stretch


def test_fine_measurement_is_averaged_not_aliased():
    # A 0.001° noisy measurement onto a 0.1° grid: each grid value is a mean of ~100 points.
    pat = peak_pattern(n=70001, noise=20.0, width_q=0.05)
    grid = np.arange(5.0, 90.0, 0.1)
    y, mask = to_grid(pat, grid, LAM_M)
    flat = mask & (np.abs(4 * np.pi * np.sin(np.radians(grid / 2)) / LAM_M - 3.0) > 0.5)
    assert np.std(y[flat]) < 5.0  # point sampling would keep the full noise σ = 20
    assert np.mean(y[flat]) == pytest.approx(10.0, abs=1.0)
    # The peak area survives resampling (same wavelength, so the same 2θ axis).
    area_meas = np.trapezoid(pat.y - 10.0, pat.x)
    area_grid = np.trapezoid(np.where(mask, y - 10.0, 0.0), grid)
    assert area_grid == pytest.approx(area_meas, rel=0.03)


def test_coarse_measurement_is_interpolated():
    x = np.linspace(10.0, 80.0, 71)  # 1° steps
    pat = finalise(x, 2.0 * x, axis="two_theta", wavelength_A=LAM_M, path="lin.xy")
    grid = np.linspace(10.0, 80.0, 701)
    y, mask = to_grid(pat, grid, LAM_M)
    assert mask.all()
    np.testing.assert_allclose(y, 2.0 * grid, rtol=1e-4)


def test_gap_in_measurement_is_masked():
    x = np.concatenate([np.linspace(10, 30, 201), np.linspace(40, 60, 201)])
    pat = finalise(x, np.ones_like(x), axis="two_theta", wavelength_A=LAM_M, path="gap.xy")
    grid = np.linspace(5, 70, 651)
    y, mask = to_grid(pat, grid, LAM_M)
    assert not mask[(grid > 30.2) & (grid < 39.8)].any()
    assert mask[(grid > 10.2) & (grid < 29.8)].all() and mask[(grid > 40.2) & (grid < 59.8)].all()
    assert np.all(y[~mask] == 0)


def test_q_and_d_patterns_need_no_wavelength():
    q = np.linspace(1.0, 5.0, 401)
    yq = np.exp(-0.5 * ((q - 3.0) / 0.02) ** 2)
    grid = np.linspace(5, 60, 2751)
    for pat in (
        Pattern(q, yq, "q", None, "q.xy", {}),
        finalise(2 * np.pi / q[::-1], yq[::-1], axis="d", path="d.xy"),
    ):
        y, _mask = to_grid(pat, grid, LAM_G)
        assert grid[np.argmax(y)] == pytest.approx(tt(3.0, LAM_G), abs=0.03)


def test_two_theta_without_any_wavelength_is_an_error():
    pat = finalise(np.linspace(10, 80, 100), np.ones(100), axis="two_theta", path="nolam.xy")
    with pytest.raises(PatternError, match=r"nolam\.xy.*--wavelength"):
        to_grid(pat, np.linspace(5, 90, 100), LAM_G)
    _y, mask = to_grid(pat, np.linspace(5, 90, 100), LAM_G, wavelength_A=LAM_M)
    assert mask.any()
