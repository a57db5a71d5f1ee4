"""What any model shipped in src/xrdid/pretrained/ must get right: simple cubic structures.

Patterns are simulated from the real structures (measured lattice parameters) by pymatgen's
XRDCalculator and broadened with scipy's Voigt profile, Cu Kα1/Kα2 with a background and counting
noise as on a lab diffractometer, and at the MARS beamline's 0.7297 Å; none of xrdid's own simulation
or rendering code is involved. Each must come out cubic, with its space group among the top 5.
"""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure
from scipy.special import voigt_profile

from xrdid.predict import load_model, predict_patterns, pretrained_path
from xrdid.readers import Pattern

CU_KA1, CU_KA2 = 1.5405929, 1.5444140
MARS = 0.7297

STRUCTURES = {
    # name: (structure, space group number); lattice parameters at room temperature
    "Si": (Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.4309), ["Si"], [[0, 0, 0]]), 227),
    "NaCl": (Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.6402), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), 225),
    "CsCl": (Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.123), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), 221),
}
# name: (lines (λ in Å, weight), 2θ range in degrees, Gaussian and Lorentzian FWHM in degrees, counts at the top)
SETUPS = {
    "lab_cu": (((CU_KA1, 1.0), (CU_KA2, 0.5)), (10.0, 90.0), 0.08, 0.05, 5000.0),
    "mars": (((MARS, 1.0),), (4.0, 45.0), 0.03, 0.01, 20000.0),
}


def simulate(structure: Structure, setup: str, seed: int = 0) -> Pattern:
    lines, (lo, hi), fwhm_g, fwhm_l, counts = SETUPS[setup]
    x = np.arange(lo, hi, 0.01)
    y = np.zeros_like(x)
    for lam, weight in lines:
        sticks = XRDCalculator(wavelength=lam).get_pattern(structure, scaled=False, two_theta_range=(lo - 1, hi + 1))
        for centre, area in zip(sticks.x, sticks.y):
            y += weight * area * voigt_profile(x - centre, fwhm_g / (2 * np.sqrt(2 * np.log(2))), fwhm_l / 2)
    y = y / y.max() + 0.03 * (1 + np.exp(-(x - lo) / 8))  # air scatter and a flat background
    y = np.random.default_rng(seed).poisson(y * counts).astype(float)
    return Pattern(x, y, "two_theta", wavelength_A=lines[0][0], path=f"{setup}.xy")


@pytest.fixture(scope="module")
def shipped():
    assert (pretrained_path() / "weights.pt").is_file(), "the package ships a pretrained model"
    return load_model()


@pytest.mark.parametrize("setup", sorted(SETUPS))
@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_shipped_model_gets_simple_cubic_structures_right(shipped, name, setup):
    structure, number = STRUCTURES[name]
    (r,) = predict_patterns(shipped, [simulate(structure, setup)], top_k=5)
    assert r["crystal_system"]["name"] == "cubic", r["crystal_system"]
    assert number in [t["number"] for t in r["top_k"]], r["top_k"]


def test_shipped_model_is_small():
    assert (pretrained_path() / "weights.pt").stat().st_size < 15 * 1024**2
