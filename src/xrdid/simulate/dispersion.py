"""Anomalous dispersion f′, f″ of the elements at any X-ray wavelength.

The atomic scattering factor is f0(s) + f′ + i f″: near an absorption edge the correction is large (Cu Kα
lies just below the Ni K edge: f′ of Ni ≈ −3.0 electrons, ~15 % of f0 at the strong lines of NiO, so its
calculated intensities are ~30 % too strong without it). f′ = f1 − Z and f″ = f2 come from the Henke
tables (B. L. Henke, E. M. Gullikson and J. C. Davis, At. Data Nucl. Data Tables 54 (1993) 181) as
``periodictable`` packages and interpolates them, for H–U from 10 eV to 30 keV (0.41–1240 Å); f′ and f″
do not depend on the scattering angle.
"""

from __future__ import annotations

import functools
import math

# Henke's tables cover 10 eV – 30 keV; beyond, no dispersion is known here.
MIN_WAVELENGTH_A = 0.4133
MAX_WAVELENGTH_A = 1239.8


@functools.lru_cache(maxsize=16)
def _anomalous(wavelength_A: float) -> dict[str, tuple[float, float]]:
    import periodictable

    out = {}
    for el in periodictable.elements:
        if not 1 <= el.number <= 92:
            continue
        f1, f2 = el.xray.scattering_factors(wavelength=wavelength_A)
        if f1 is None or f2 is None or math.isnan(f1) or math.isnan(f2):  # an element without a table
            continue
        out[el.symbol] = (float(f1) - el.number, float(f2))
    return out


def anomalous_for(wavelength_A: float) -> dict[str, tuple[float, float]] | None:
    """{element symbol: (f′, f″)} in electrons at the wavelength (Å), or None outside Henke's range."""
    lam = float(wavelength_A)
    if not MIN_WAVELENGTH_A <= lam <= MAX_WAVELENGTH_A:
        return None
    return dict(_anomalous(round(lam, 6)))
