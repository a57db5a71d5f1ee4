"""Anomalous dispersion in the sticks: f0 + f′ + i f″ against a plain complex sum over every hkl."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xrdid.simulate.dispersion import anomalous_for
from xrdid.simulate.sticks import _form_factors, compute_sticks


def _zns() -> Structure:
    # Not centrosymmetric: F(h) and F(−h) differ with f″ (Bijvoet pairs); a stick holds both.
    return Structure.from_spacegroup("F-43m", Lattice.cubic(5.41), ["Zn", "S"], [[0, 0, 0], [0.25, 0.25, 0.25]])


def _brute_force(structure: Structure, d_min: float, anomalous: dict) -> dict[float, float]:
    recip = structure.lattice.reciprocal_lattice_crystallographic
    out: dict[float, float] = {}
    for hkl in itertools.product(range(-7, 8), repeat=3):
        if hkl == (0, 0, 0):
            continue
        g = float(np.linalg.norm(recip.get_cartesian_coords(hkl)))
        if 1 / g < d_min:
            continue
        s2 = np.array([0.25 * g * g])
        f = 0j
        for site in structure:
            sym = site.specie.symbol
            f0 = _form_factors([sym], [site.specie.Z], s2, {})[0, 0]
            fp, fpp = anomalous.get(sym, (0.0, 0.0))
            f += (f0 + fp + 1j * fpp) * np.exp(2j * np.pi * np.dot(hkl, site.frac_coords))
        key = round(1 / g, 6)
        out[key] = out.get(key, 0.0) + abs(f) ** 2
    return {k: v for k, v in out.items() if v > 1e-6}


@pytest.mark.parametrize("method", ["separable", "direct", "orbits"])
def test_sticks_with_anomalous_dispersion_are_the_complex_sum(method):
    an = anomalous_for(1.5406)
    got = compute_sticks(_zns(), 1.1, anomalous=an, method=method)
    want = _brute_force(_zns(), 1.1, an)
    assert len(got.d) == len(want)
    for d, f2m in zip(got.d, got.f2m):
        assert f2m == pytest.approx(want[round(float(d), 6)], rel=1e-9)


def test_nickel_below_its_k_edge_scatters_cu_kalpha_weaker():
    """Cu Kα is just below the Ni K edge: f′(Ni) ≈ −3 electrons, so NiO's lines lose 20–35 % of their
    intensity; at Mo Kα (f′ ≈ +0.3, f″ ≈ 1.1) a few %; any wavelength of Henke's tables works (the MARS
    beamline's 0.7297 Å, between the Zr and Mo K edges), none outside them."""
    nio = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.177), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    plain = compute_sticks(nio, 1.0)
    cu = compute_sticks(nio, 1.0, anomalous=anomalous_for(1.540598))
    mo = compute_sticks(nio, 1.0, anomalous=anomalous_for(0.7093))
    assert np.allclose(cu.d, plain.d)
    ratio = cu.f2m / plain.f2m
    assert np.all(ratio > 0.55) and np.all(ratio < 0.82)
    assert np.all(np.abs(mo.f2m / plain.f2m - 1) < 0.08)
    assert anomalous_for(0.2) is None
    assert anomalous_for(1.5406)["Ni"][0] == pytest.approx(-3.0, abs=0.3)
    mars = anomalous_for(0.7297)
    assert mars["Ni"][0] == pytest.approx(0.35, abs=0.1)
    # Zr's K edge (0.6889 Å) is just short of 0.7297 Å: f′(Zr) ≈ −2 there, far from its Cu Kα value.
    assert mars["Zr"][0] < -1.5 < anomalous_for(1.5406)["Zr"][0]
