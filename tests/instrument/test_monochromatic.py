"""Augment.monochromatic_probability: some patterns without the secondary line (Cu Kα2)."""

from __future__ import annotations

import math

import numpy as np
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
