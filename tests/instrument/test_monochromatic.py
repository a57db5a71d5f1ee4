"""Augment.monochromatic_probability: some patterns without the secondary line (Cu Kα2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xrdid.instrument import Augment, Renderer, get_instrument
from xrdid.instrument.presets import CU_KA1_A, CU_KA2_A
from xrdid.instrument.render import StickBatch

QUIET = {
    "lattice_strain_frac": (0, 0), "crystallite_size_nm": (2000, 2000), "microstrain_frac": (0, 0), "caglioti_scale": (0.5, 0.5),
    "zero_shift_deg": (0, 0), "sample_displacement_um": (0, 0), "intensity_jitter_rel": (0, 0), "texture_probability": 0.0,
    "impurity_peaks": (0, 0), "background_rel": (0, 0), "peak_counts": (1e9, 1e9), "gaussian_noise_rel": (0, 0), "crop_probability": 0.0,
}


def _two_theta(lam: float, d: float) -> float:
    return 2 * math.degrees(math.asin(lam / (2 * d)))


def _kalpha2_share(y: np.ndarray, grid: np.ndarray, d: float) -> float:
    """Intensity at the Kα2 position relative to the Kα1 peak."""
    i1 = np.argmin(np.abs(grid - _two_theta(CU_KA1_A, d)))
    i2 = np.argmin(np.abs(grid - _two_theta(CU_KA2_A, d)))
    return float(y[i2] / y[i1])


def test_monochromatic_patterns_lose_the_kalpha2_peak_only():
    inst = get_instrument({"preset": "cu", "two_theta_min_deg": 100, "two_theta_max_deg": 120, "n_points": 4001})
    d = 0.95  # 2θ ≈ 108°: Kα1 and Kα2 ~0.5° apart
    batch = StickBatch(torch.full((64, 1), d), torch.ones(64, 1))
    grid = inst.grid()
    both, _ = Renderer(inst, Augment(monochromatic_probability=0.0, **QUIET))(batch, torch.Generator().manual_seed(0))
    mono, _ = Renderer(inst, Augment(monochromatic_probability=1.0, **QUIET))(batch, torch.Generator().manual_seed(0))
    half, _ = Renderer(inst, Augment(monochromatic_probability=0.5, **QUIET))(batch, torch.Generator().manual_seed(0))
    assert _kalpha2_share(both[0].numpy(), grid, d) > 0.4  # the doublet: Kα2 is half of Kα1
    assert _kalpha2_share(mono[0].numpy(), grid, d) < 0.01
    shares = np.array([_kalpha2_share(row.numpy(), grid, d) for row in half])
    assert 10 < (shares < 0.01).sum() < 54 and ((shares < 0.01) | (shares > 0.4)).all()


def test_huge_counts_without_background_stay_finite():
    # Profile tails are a hair below zero after float rounding; at 1e9 counts with no background and no
    # read noise that used to reach sqrt(negative) in the counting noise and turn whole patterns into NaN.
    inst = get_instrument({"preset": "cu", "two_theta_min_deg": 100, "two_theta_max_deg": 120, "n_points": 4001})
    batch = StickBatch(torch.full((16, 1), 0.95), torch.ones(16, 1))
    y, _ = Renderer(inst, Augment(**QUIET))(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(y).all() and float(y.max()) == 1.0


def test_other_wavelength_gives_that_wavelengths_intensities():
    # Two sticks rendered on a Cu grid as if measured at MARS (0.7297 Å, k = 0.05): their ratio is the
    # ratio of the Lorentz-polarisation factors at the MARS angles, not at the Cu ones.
    inst = get_instrument({"preset": "cu", "n_points": 8501})
    d = [3.0, 1.2]
    batch = StickBatch(torch.tensor([d]), torch.ones(1, 2))
    mars = dict(QUIET, monochromatic_probability=1.0, other_wavelength_probability=1.0,
                other_wavelength_A=(0.7297, 0.7297), other_polarisation_k=(0.05, 0.05))
    plain, _ = Renderer(inst, Augment(**dict(QUIET, monochromatic_probability=1.0)))(batch, torch.Generator().manual_seed(0))
    other, _ = Renderer(inst, Augment(**mars))(batch, torch.Generator().manual_seed(0))
    grid = inst.grid()

    def height(y, dd):
        i = np.argmin(np.abs(grid - _two_theta(CU_KA1_A, dd)))
        return float(y[0, i - 3 : i + 4].max())

    def lp(lam, dd, k):
        t = math.asin(lam / (2 * dd))
        return (1 + k * math.cos(2 * t) ** 2) / ((1 + k) * math.sin(t) ** 2 * math.cos(t))

    plain_ratio = height(plain, d[1]) / height(plain, d[0])
    other_ratio = height(other, d[1]) / height(other, d[0])
    expected = (lp(0.7297, d[1], 0.05) / lp(0.7297, d[0], 0.05)) / (lp(CU_KA1_A, d[1], 1.0) / lp(CU_KA1_A, d[0], 1.0))
    assert other_ratio / plain_ratio == pytest.approx(expected, rel=0.02)
    # A reflection that does not exist at the longer wavelength disappears.
    long, _ = Renderer(inst, Augment(**dict(mars, other_wavelength_A=(2.5, 2.5))))(batch, torch.Generator().manual_seed(0))
    assert height(long, d[1]) < 1e-3
