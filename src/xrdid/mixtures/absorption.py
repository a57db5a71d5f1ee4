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
J. C. Davis, At. Data Nucl. Data Tables 54 (1993) 181; f2 as packaged by ``periodictable`` 2.1.0),
μ/ρ = 2 r_e λ f2 N_A / A, at the Kα1 lines of Cr, Fe, Co, Cu, Mo and Ag, Z = 1–92. Coherent and Compton
scattering are left out (a few % of μ at Cu Kα for light elements).
"""

from __future__ import annotations

import math

import numpy as np

# Kα1 wavelengths (Å) of the tabulated columns.
WAVELENGTHS_A = (2.28970, 1.93604, 1.78897, 1.540598, 0.709319, 0.559421)

# Element: μ/ρ (cm²/g) at each wavelength of WAVELENGTHS_A.
MASS_ATTENUATION = {
    "H": (0.02217, 0.01253, 0.009582, 0.005764, 0.0003995, 0.0001746),
    "He": (0.2005, 0.1135, 0.08689, 0.05251, 0.003875, 0.001761),
    "Li": (0.9348, 0.536, 0.4126, 0.2515, 0.01889, 0.008401),
    "Be": (3.227, 1.876, 1.451, 0.8919, 0.06938, 0.03147),
    "B": (7.052, 4.124, 3.198, 1.972, 0.1494, 0.06702),
    "C": (14.72, 8.673, 6.747, 4.179, 0.3212, 0.1446),
    "N": (23.75, 14.08, 10.99, 6.854, 0.5527, 0.253),
    "O": (37.63, 22.45, 17.57, 11.02, 0.9158, 0.4229),
    "F": (50.69, 30.49, 23.96, 15.13, 1.303, 0.6054),
    "Ne": (72.65, 44.01, 34.69, 22.03, 1.958, 0.9172),
    "Na": (90.77, 55.16, 43.56, 27.8, 2.572, 1.222),
    "Mg": (125.1, 76.56, 60.67, 38.98, 3.737, 1.789),
    "Al": (148.2, 91.24, 72.5, 46.81, 4.594, 2.206),
    "Si": (189.9, 117.4, 93.42, 60.49, 6.027, 2.914),
    "P": (228.7, 142, 113.3, 73.66, 7.486, 3.642),
    "S": (275.3, 172, 137.5, 89.79, 9.306, 4.547),
    "Cl": (312.7, 196.2, 157.2, 103, 10.84, 5.325),
    "Ar": (354.4, 223.5, 179.4, 118, 12.59, 6.202),
    "K": (438.5, 278, 224.3, 147.6, 16.29, 8.058),
    "Ca": (503, 320.4, 258.4, 171.2, 18.93, 9.407),
    "Sc": (536.5, 345.8, 280.3, 186.7, 20.49, 10.18),
    "Ti": (577.2, 375.6, 305, 204, 22.7, 11.32),
    "V": (74.17, 409, 333.8, 225.1, 25.59, 12.8),
    "Cr": (82.73, 438.9, 359.7, 244.5, 28.45, 14.43),
    "Mn": (93.34, 59.57, 393.6, 269.6, 31.98, 16.12),
    "Fe": (107.8, 68.02, 54.79, 300.5, 36.48, 18.46),
    "Co": (117.1, 73.95, 59.63, 316.1, 39.3, 19.96),
    "Ni": (141.2, 88.96, 71.37, 46.69, 45.97, 23.45),
    "Cu": (150.5, 94.84, 76.14, 50, 48.67, 24.93),
    "Zn": (168.5, 106.3, 85.43, 56.27, 53.81, 27.66),
    "Ga": (179.7, 113.5, 91.25, 60.15, 56.83, 29.37),
    "Ge": (197.1, 124.5, 100.1, 66.21, 61.7, 32),
    "As": (216.8, 137, 110.3, 73.01, 67.02, 34.93),
    "Se": (232.3, 146.7, 118.1, 78.21, 70.13, 36.75),
    "Br": (257.5, 162.8, 131.1, 86.91, 76.87, 40.46),
    "Kr": (265.6, 167.4, 134.6, 89.06, 77.86, 41.17),
    "Rb": (291.6, 183.9, 147.9, 97.86, 83.62, 44.59),
    "Sr": (323.7, 205.4, 165.7, 110.1, 91.07, 48.86),
    "Y": (356.2, 227.9, 184.6, 124, 97.58, 52.79),
    "Zr": (383.4, 243.6, 196.5, 130.7, 15.32, 56.12),
    "Nb": (412.4, 263.5, 211.8, 140.2, 16.45, 59.35),
    "Mo": (437.8, 279.1, 224.9, 149.6, 17.58, 62.4),
    "Tc": (465, 296.6, 239.6, 159.6, 18.77, 65.36),
    "Ru": (490.3, 313.5, 253.4, 168.8, 19.82, 67.31),
    "Rh": (536, 342.8, 277.2, 184.9, 21.9, 11.31),
    "Pd": (564.8, 362.9, 293.7, 195.8, 22.87, 11.9),
    "Ag": (594.5, 382.3, 309.5, 206.7, 24.42, 12.68),
    "Cd": (631.3, 405.9, 328.8, 219.9, 26.22, 13.57),
    "In": (644.2, 415.5, 336.9, 225.7, 27, 13.99),
    "Sn": (681.9, 444.7, 361.7, 243.1, 28.74, 14.87),
    "Sb": (688.2, 445.8, 362.1, 243.3, 29.31, 15.2),
    "Te": (770.7, 504.4, 411, 277.1, 33.16, 17.16),
    "I": (801.4, 521.4, 424.2, 285.7, 34.64, 17.98),
    "Xe": (740.6, 558.4, 455.2, 307.4, 37.41, 19.42),
    "Cs": (780.8, 582.2, 476.9, 324.2, 39.52, 20.45),
    "Ba": (604.7, 612.2, 503.3, 343.7, 41.99, 21.68),
    "La": (213, 657.7, 539.6, 367.7, 45.38, 23.57),
    "Ce": (225.6, 588.8, 545.6, 376.2, 46.92, 24.29),
    "Pr": (238, 445.4, 565.7, 392, 49.57, 25.67),
    "Nd": (251.4, 475.2, 524.4, 411.4, 52.24, 27.08),
    "Pm": (263, 171.6, 398.7, 430.5, 54.74, 28.7),
    "Sm": (285.9, 186.4, 436.8, 457.6, 59.48, 30.9),
    "Eu": (287.4, 187.7, 153.3, 398.7, 59.62, 31.09),
    "Gd": (317.1, 206.9, 168.7, 440.4, 65.19, 34.06),
    "Tb": (304.3, 199, 162.7, 302.8, 63.09, 33.02),
    "Dy": (315.3, 206.2, 168.7, 319.4, 65.39, 34.33),
    "Ho": (350, 228.4, 186.6, 127.1, 72.87, 38.22),
    "Er": (353.5, 231, 188.7, 128.2, 73.19, 38.44),
    "Tm": (378.9, 247.6, 202.3, 137.3, 78.23, 41.26),
    "Yb": (390.9, 255.9, 209.3, 142.5, 80.41, 42.52),
    "Lu": (412.3, 269.7, 220.5, 150.2, 85.55, 45.3),
    "Hf": (422.1, 277.6, 227.3, 154.6, 86.48, 45.73),
    "Ta": (434.8, 283.9, 232.1, 158.2, 87.27, 46.47),
    "W": (451.7, 295, 241.1, 164.1, 88.39, 46.97),
    "Re": (469.7, 306.8, 250.7, 170.8, 91.86, 49.02),
    "Os": (484.8, 317, 259.2, 176.7, 95.79, 51.1),
    "Ir": (510.6, 333.1, 272, 185.2, 99.64, 53.57),
    "Pt": (531.4, 347.2, 284.4, 194.1, 102.4, 55.04),
    "Au": (569.4, 372.5, 303.2, 204.9, 108.1, 58.17),
    "Hg": (578.8, 377.9, 308.7, 210.2, 111.6, 60.48),
    "Tl": (593.2, 388, 317.1, 216.1, 114.1, 61.77),
    "Pb": (614.1, 402.7, 329.8, 225.5, 117.6, 63.87),
    "Bi": (635, 416.7, 340.9, 232.7, 121.6, 66.79),
    "Po": (659.6, 433.4, 354.9, 242.7, 128.2, 71.13),
    "At": (706.1, 463.9, 379.6, 259, 119.4, 75.09),
    "Rn": (703.3, 462.5, 378.9, 259.3, 113.6, 71.48),
    "Fr": (731.6, 480.9, 393.9, 269.5, 82.63, 72.95),
    "Ra": (753.3, 495.5, 406, 277.7, 86.89, 76.51),
    "Ac": (770.9, 509.5, 417.6, 285.3, 90.07, 78.7),
    "Th": (801.6, 529.3, 433.9, 296.8, 91.08, 79.71),
    "Pa": (854.9, 567.3, 465.3, 317.9, 105.3, 89.89),
    "U": (764.4, 521.6, 441.2, 308.1, 104.9, 90.02),
}

AMU_G = 1.66053906660e-24

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(32)
_T = 0.5 * (_NODES + 1.0)
_WT = 0.5 * _WEIGHTS


def column_of(wavelength_A: float, tolerance: float = 0.01) -> int | None:
    """Index of the tabulated wavelength within ``tolerance`` (relative) of the given one, or None."""
    for i, lam in enumerate(WAVELENGTHS_A):
        if abs(wavelength_A / lam - 1.0) <= tolerance:
            return i
    return None


def mass_attenuation(formula: str, wavelength_A: float) -> float | None:
    """μ/ρ (cm²/g) of a compound at a tabulated Kα1 wavelength; None when the wavelength or an element is not tabulated."""
    from pymatgen.core import Composition

    col = column_of(wavelength_A)
    if col is None:
        return None
    total, mu = 0.0, 0.0
    for el, amount in Composition(formula).items():
        row = MASS_ATTENUATION.get(el.symbol)
        if row is None:
            return None
        mass = amount * float(el.atomic_mass)
        total += mass
        mu += mass * row[col]
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


def brindley_fractions(raw: np.ndarray, mu: np.ndarray, density: np.ndarray, radius_um: float, iterations: int = 20) -> np.ndarray:
    """Weight fractions corrected for micro-absorption.

    raw: the uncorrected weight fractions (S Z M V, normalised); mu: each phase's linear attenuation
    coefficient (cm⁻¹); density: g/cm³; radius_um: the grains' radius (µm), the same for every phase.
    μ̄ is the volume-weighted mean over the solids, from the corrected fractions (iterated to a fixed point).
    """
    raw = np.asarray(raw, float)
    if raw.size == 0 or radius_um <= 0:
        return raw
    r_cm = radius_um * 1e-4
    w = raw / raw.sum()
    for _ in range(iterations):
        v = w / density
        v = v / v.sum()
        mbar = float(np.sum(v * mu))
        new = raw / brindley_tau((mu - mbar) * r_cm)
        new = new / new.sum()
        if np.max(np.abs(new - w)) < 1e-10:
            w = new
            break
        w = new
    return w


def density_g_cm3(cell_mass_amu: float, volume_A3: float) -> float:
    return cell_mass_amu * AMU_G / (volume_A3 * 1e-24) if volume_A3 > 0 else math.nan
