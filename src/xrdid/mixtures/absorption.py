r"""Micro-absorption of a powder mixture (Brindley, Phil. Mag. 36 (1945) 347): the correction to weight fractions.

In a mixture of phases of different linear absorption coefficients μ_i, a grain of a strongly absorbing
phase diffracts less than its volume would, because the beam it diffracts is absorbed inside the grain
itself. Brindley's particle absorption factor

.. math:: \tau_i = \frac{1}{V_i}\int \exp[-(\mu_i - \bar\mu)\,x]\,dV_i

(x the beam's path inside the grain, :math:`\bar\mu` the solids' volume-weighted mean) scales the phase's
intensity, so the weight fraction is :math:`W_i \propto S_i Z_i M_i V_i / \tau_i`. Here the grain is a
sphere of radius R and the path through a point is the chord through it along one direction (in and out
along a line): :math:`\tau = 3\int_0^1 t^2 e^{-2(\mu_i-\bar\mu)Rt}\,dt` (τ ≈ 1 − 1.5 ΔμR for small ΔμR).

Mass attenuation coefficients: photo-absorption from the Henke tables (B. L. Henke, E. M. Gullikson and
J. C. Davis, At. Data Nucl. Data Tables 54 (1993) 181; f2 as ``periodictable`` packages and interpolates
it), μ/ρ = 2 r_e λ f2 N_A / A at any wavelength in the tables' range, H–U. Coherent and Compton scattering
are left out (a few % of μ at Cu Kα for light elements).
"""

from __future__ import annotations

import math

import numpy as np

# Classical electron radius (cm) and Avogadro's number.
R_E_CM = 2.8179403262e-13
N_A = 6.02214076e23

AMU_G = 1.66053906660e-24

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(32)
_T = 0.5 * (_NODES + 1.0)
_WT = 0.5 * _WEIGHTS


def mass_attenuation(formula: str, wavelength_A: float) -> float | None:
    """μ/ρ (cm²/g) of a compound from its elements' photo-absorption (f2) at the wavelength; None when the
    wavelength is outside the tables or an element has none."""
    from pymatgen.core import Composition

    from xrdid.simulate.dispersion import anomalous_for

    f = anomalous_for(wavelength_A)
    if f is None:
        return None
    total, mu = 0.0, 0.0
    for el, amount in Composition(formula).items():
        if el.symbol not in f:
            return None
        mass = amount * float(el.atomic_mass)
        total += mass
        # Cross-section per atom σ = 2 r_e λ f2 (cm²); μ/ρ = N_A Σ n σ / Σ n A.
        mu += amount * 2.0 * R_E_CM * wavelength_A * 1e-8 * f[el.symbol][1] * N_A
    return mu / total if total > 0 else None


def linear_attenuation(formula: str, cell_mass_amu: float, volume_A3: float, wavelength_A: float) -> float | None:
    """μ (cm⁻¹) of a phase: μ/ρ times the density of its cell (mass in amu, volume in Å³)."""
    mr = mass_attenuation(formula, wavelength_A)
    if mr is None or volume_A3 <= 0:
        return None
    return mr * cell_mass_amu * AMU_G / (volume_A3 * 1e-24)


def brindley_tau(dmu_r: np.ndarray | float) -> np.ndarray:
    """Brindley's particle absorption factor τ of a sphere for (μ_i − μ̄)·R (dimensionless; may be negative)."""
    x = np.asarray(dmu_r, float)[..., None]
    return 3.0 * np.sum(_WT * _T**2 * np.exp(-2.0 * x * _T), axis=-1)


def brindley_taus(weights: np.ndarray, mu: np.ndarray, density: np.ndarray, radius_um: float) -> np.ndarray:
    """Each phase's τ (:func:`brindley_tau`) in a powder of these weight fractions, grains of ``radius_um`` (µm):
    μ̄ is the volume-weighted mean of ``mu`` (cm⁻¹) over the solids (``density`` g/cm³)."""
    v = np.asarray(weights, float) / np.asarray(density, float)
    mbar = float(np.sum(v * mu) / v.sum())
    return brindley_tau((np.asarray(mu, float) - mbar) * radius_um * 1e-4)


def brindley_fractions(raw: np.ndarray, mu: np.ndarray, density: np.ndarray, radius_um: float, iterations: int = 20) -> np.ndarray:
    """Weight fractions corrected for micro-absorption.

    raw: the uncorrected weight fractions (S Z M V, normalised); mu: each phase's linear attenuation
    coefficient (cm⁻¹); density: g/cm³; radius_um: the grains' radius (µm), the same for every phase.
    μ̄ is the volume-weighted mean over the solids, from the corrected fractions (iterated to a fixed point).
    """
    raw = np.asarray(raw, float)
    if raw.size == 0 or radius_um <= 0:
        return raw
    w = raw / raw.sum()
    for _ in range(iterations):
        new = raw / brindley_taus(w, mu, density, radius_um)
        new = new / new.sum()
        if np.max(np.abs(new - w)) < 1e-10:
            w = new
            break
        w = new
    return w


def density_g_cm3(cell_mass_amu: float, volume_A3: float) -> float:
    return cell_mass_amu * AMU_G / (volume_A3 * 1e-24) if volume_A3 > 0 else math.nan
