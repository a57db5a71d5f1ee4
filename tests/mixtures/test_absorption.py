"""Micro-absorption (Brindley) correction of weight fractions: the factor, the coefficients, and the fit's use."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xrdid.mixtures import FitSettings, identify_phases, load_library
from xrdid.mixtures.absorption import (
    brindley_fractions,
    brindley_tau,
    density_g_cm3,
    linear_attenuation,
    mass_attenuation,
)
from xrdid.mixtures.profile import Optics, render_phase
from xrdid.simulate.sticks import compute_sticks

CU = (1.5405929, 1.5444140)


def test_brindley_tau_of_a_sphere_is_the_closed_form():
    for x in (-0.4, -0.05, 0.05, 0.3, 1.0):
        a = 2 * x
        closed = 3 * (2 / a**3 - math.exp(-a) * (1 / a + 2 / a**2 + 2 / a**3))
        assert brindley_tau(x) == pytest.approx(closed, rel=1e-9)
    assert brindley_tau(0.0) == pytest.approx(1.0, abs=1e-12)
    # Small contrast: τ ≈ 1 − 1.5 ΔμR (mean chord of a sphere 1.5 R).
    assert (1 - brindley_tau(1e-4)) / 1e-4 == pytest.approx(1.5, rel=1e-3)


def test_mass_attenuation_at_cu_kalpha_is_near_the_tabulated_values():
    # NIST XCOM (photo-absorption dominates at 8 keV): Si 63, O 11, Ni 46 (below its K edge), Fe 302 cm²/g.
    assert mass_attenuation("Si", 1.5406) == pytest.approx(63, rel=0.08)
    assert mass_attenuation("O2", 1.5406) == pytest.approx(11, rel=0.08)
    assert mass_attenuation("Ni", 1.5406) == pytest.approx(46, rel=0.08)
    assert mass_attenuation("Fe", 1.5406) == pytest.approx(302, rel=0.08)
    # SiO2 by mass fractions; a wavelength outside the tables gives None.
    si, o = 28.0855, 15.999
    expected = (si * mass_attenuation("Si", 1.5406) + 2 * o * mass_attenuation("O", 1.5406)) / (si + 2 * o)
    assert mass_attenuation("SiO2", 1.5406) == pytest.approx(expected, rel=1e-4)
    assert mass_attenuation("SiO2", 0.2) is None
    assert mass_attenuation("SiO2", 0.7093) < mass_attenuation("SiO2", 1.5406)


def test_brindley_fractions_raise_the_strong_absorber_and_leave_equal_absorbers():
    raw = np.array([0.5, 0.5])
    same = brindley_fractions(raw, np.array([500.0, 500.0]), np.array([4.0, 5.0]), 2.0)
    assert same == pytest.approx(raw, abs=1e-12)
    got = brindley_fractions(raw, np.array([1500.0, 150.0]), np.array([4.0, 2.3]), 2.0)
    assert got.sum() == pytest.approx(1.0)
    assert got[0] > 0.55
    # A fixed point: the raw fractions are recovered by applying τ at the corrected fractions' μ̄.
    v = got / np.array([4.0, 2.3])
    mbar = float(np.sum(v / v.sum() * np.array([1500.0, 150.0])))
    back = got * brindley_tau((np.array([1500.0, 150.0]) - mbar) * 2e-4)
    assert back / back.sum() == pytest.approx(raw, abs=1e-6)


def test_brindley_fractions_of_a_hand_computed_mixture():
    """50/50 by weight of μ 1000 and 200 cm⁻¹, both 4 g/cm³, 1 µm grains: μ̄ = 600 cm⁻¹, ΔμR = ±0.04, and by
    the series τ(x) = 3 Σ (−2x)ⁿ / (n! (n + 3)): τ = 0.941878 and 1.061963, so the powder diffracts as
    0.5·0.941878 : 0.5·1.061963 = 0.470036 : 0.529964. The correction takes that back to 50/50."""
    assert brindley_tau(0.04) == pytest.approx(0.941878, abs=2e-6)
    assert brindley_tau(-0.04) == pytest.approx(1.061963, abs=2e-6)
    got = brindley_fractions(np.array([0.470036, 0.529964]), np.array([1000.0, 200.0]), np.array([4.0, 4.0]), 1.0)
    assert got == pytest.approx([0.5, 0.5], abs=1e-5)
    # No radius: nothing to correct.
    assert brindley_fractions(np.array([0.470036, 0.529964]), np.array([1000.0, 200.0]), np.array([4.0, 4.0]),
                              0.0) == pytest.approx([0.470036, 0.529964])


def _structures() -> dict[str, Structure]:
    return {
        "CsCl": Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "Si": Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]),
    }


def test_the_fit_corrects_fractions_of_a_mixture_with_microabsorption(tmp_path):
    """CsCl (μ ≈ 1200 cm⁻¹) and Si (≈ 150 cm⁻¹), 50/50 by weight, 3 µm grains: each phase's intensity
    scaled by its Brindley τ. Uncorrected, CsCl comes out well under half; corrected, at half."""
    structures = _structures()
    for name, s in structures.items():
        s.to(filename=str(tmp_path / f"{name}.cif"))
    radius = 3.0
    fractions = {"CsCl": 0.5, "Si": 0.5}
    mu = {n: linear_attenuation(s.composition.reduced_formula, float(s.composition.weight), float(s.volume), CU[0])
          for n, s in structures.items()}
    rho = {n: density_g_cm3(float(s.composition.weight), float(s.volume)) for n, s in structures.items()}
    v = {n: fractions[n] / rho[n] for n in fractions}
    mbar = sum(v[n] * mu[n] for n in v) / sum(v.values())
    grid = np.linspace(15.0, 90.0, 3751)
    optics = Optics(CU, caglioti_uvw_deg2=(0.004, -0.002, 0.002))
    y = np.zeros_like(grid)
    for name, w in fractions.items():
        s = structures[name]
        st = compute_sticks(s, 0.8)
        tau = float(brindley_tau((mu[name] - mbar) * radius * 1e-4))
        scale = tau * w / (float(s.volume) * float(s.composition.weight))
        y += scale * render_phase(st.d, st.f2m, grid, optics, width_scale=4.0, size_nm=120.0, kalpha2_ratio=0.5)
    y = np.random.default_rng(3).poisson(y * 20000.0 / y.max() + 300.0).astype(float)

    lib = load_library(tmp_path, 0.8 / 1.03)
    plain = {p.id.removesuffix(".cif"): p.weight_fraction for p in identify_phases(grid, y, CU[0], lib).phases}
    fit = identify_phases(grid, y, CU[0], lib, settings=FitSettings(brindley_radius_um=radius))
    corrected = {p.id.removesuffix(".cif"): p.weight_fraction for p in fit.phases}
    assert set(plain) == set(corrected) == {"CsCl", "Si"}
    assert plain["CsCl"] < 0.42
    assert corrected["CsCl"] == pytest.approx(0.5, abs=0.02)
    assert sum(corrected.values()) == pytest.approx(1.0)


def test_cli_grain_radius_reaches_the_fit(tmp_path, monkeypatch, caplog):
    """--grain-radius sets the correction's radius (the default without it, 0 turns it off); < 0 is refused."""
    from xrdid.cli import main
    from xrdid.mixtures import fit as fit_module
    from xrdid.mixtures import pattern as pattern_module

    lib = tmp_path / "lib"
    lib.mkdir()
    _structures()["Si"].to(filename=str(lib / "Si.cif"))
    grid = np.linspace(20.0, 80.0, 3001)
    st = compute_sticks(_structures()["Si"], 0.9)
    y = 1000 * render_phase(st.d, st.f2m, grid, Optics(CU), width_scale=4.0, size_nm=120.0, kalpha2_ratio=0.5)
    y = y * 10000 / y.max() + 200
    f = tmp_path / "si.xy"
    np.savetxt(f, np.column_stack([grid, y]))
    seen = []
    real = pattern_module.identify_phases
    monkeypatch.setattr(pattern_module, "identify_phases",
                        lambda *a, settings, **k: seen.append(settings.brindley_radius_um) or real(*a, settings=settings, **k))
    args = ["phases", str(f), "--library", str(lib), "--wavelength", "1.5406", "--json", "--no-cache"]
    assert main(args) == 0
    assert main([*args, "--grain-radius", "2.5"]) == 0
    assert main([*args, "--grain-radius", "0"]) == 0
    assert seen == [fit_module.FitSettings().brindley_radius_um, 2.5, None]
    assert main([*args, "--grain-radius", "-1"]) == 2
    assert "--grain-radius must be between 0 and 100" in caplog.text


def test_library_with_anomalous_dispersion_is_its_own_cache_entry(tmp_path, monkeypatch):
    """wavelength_A gives the sticks f′ + i f″ at that wavelength (NiO under Cu Kα: 20–50 % weaker), cached
    apart from the plain sticks; `xrdid phases` and identify_in_pattern ask for them at the pattern's
    wavelength by default, --no-anomalous-dispersion for f0 alone."""
    from xrdid.cli import main
    from xrdid.mixtures import identify_in_pattern
    from xrdid.mixtures import pattern as pattern_module
    from xrdid.readers import read_pattern

    nio = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.177), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    nio.to(filename=str(lib_dir / "NiO.cif"))
    cache = tmp_path / "cache"
    plain = load_library(lib_dir, 0.9, cache_dir=cache)
    cu = load_library(lib_dir, 0.9, cache_dir=cache, wavelength_A=1.5406)
    assert len(list(cache.iterdir())) == 2
    again = load_library(lib_dir, 0.9, cache_dir=cache, wavelength_A=1.5406)
    other = load_library(lib_dir, 0.9, cache_dir=cache, wavelength_A=1.3)  # between Cu Kα and the Ni K edge
    outside = load_library(lib_dir, 0.9, cache_dir=cache, wavelength_A=0.2)  # beyond the tables: plain sticks
    ratio = cu.phases[0].f2m / plain.phases[0].f2m
    assert np.all(ratio > 0.45) and np.all(ratio < 0.82)
    assert np.array_equal(again.phases[0].f2m, cu.phases[0].f2m)
    assert np.all(other.phases[0].f2m < plain.phases[0].f2m) and not np.allclose(other.phases[0].f2m, cu.phases[0].f2m)
    assert np.array_equal(outside.phases[0].f2m, plain.phases[0].f2m)
    assert len(list(cache.iterdir())) == 3  # Cu Kα, 1.3 Å and the plain sticks (0.2 Å shares them)

    seen = []
    real = pattern_module.load_library
    monkeypatch.setattr(pattern_module, "load_library", lambda *a, wavelength_A=None, **k: seen.append(wavelength_A)
                        or real(*a, wavelength_A=wavelength_A, **k))
    grid = np.linspace(30.0, 80.0, 2501)
    st = compute_sticks(nio, 0.9)
    y = render_phase(st.d, st.f2m, grid, Optics(CU), width_scale=4.0, size_nm=120.0, kalpha2_ratio=0.5)
    f = tmp_path / "nio.xy"
    np.savetxt(f, np.column_stack([grid, y * 10000 / y.max() + 200]))
    args = ["phases", str(f), "--library", str(lib_dir), "--wavelength", "1.5406", "--json", "--no-cache"]
    assert main(args) == 0
    assert main([*args, "--no-anomalous-dispersion"]) == 0
    identify_in_pattern(read_pattern(f), lib_dir, wavelength_A=1.5406, use_cache=False)
    assert seen == [1.5406, None, 1.5406]


def test_synthetic_mixture_with_grains_has_microabsorption_the_fit_removes(tmp_path):
    """synthetic_mixture(grain_radius_um=R) scales each phase by its Brindley τ: CsCl (the strong absorber)
    comes out low from a plain fit and at its true fraction from a fit corrected for grains of that radius;
    without the radius the plain fit is already right."""
    from xrdid.mixtures.synthetic import synthetic_mixture

    for name, s in _structures().items():
        s.to(filename=str(tmp_path / f"{name}.cif"))
    lib = load_library(tmp_path, 0.9)
    ids = [next(i for i, p in enumerate(lib.phases) if p.formula == f) for f in ("CsCl", "Si")]
    kw = {"two_theta": (20.0, 90.0, 0.02), "texture_probability": 0.0, "hump_probability": 0.0, "counts": (3e4, 3e4)}

    def cscl(mix, radius):
        st = FitSettings(brindley_radius_um=radius)
        fit = identify_phases(mix.two_theta, mix.y, CU[0], lib, kalpha2_A=CU[1], settings=st)
        assert sorted(p.formula for p in fit.phases) == ["CsCl", "Si"]
        return next(p.weight_fraction for p in fit.phases if p.formula == "CsCl")

    # The simulation's τ is the correction's: fractions scaled by it are corrected back exactly.
    from xrdid.mixtures.synthetic import _brindley_taus

    w = np.array([0.3, 0.7])
    tau = np.array(_brindley_taus(lib, ids, list(w), CU[0], 3.0))
    ps = [lib.phases[i] for i in ids]
    mu = np.array([linear_attenuation(p.formula, p.cell_mass_amu, p.volume_A3, CU[0]) for p in ps])
    rho = np.array([density_g_cm3(p.cell_mass_amu, p.volume_A3) for p in ps])
    assert tau[0] < 0.8
    assert tau[1] > 1.05
    assert brindley_fractions(w * tau / np.sum(w * tau), mu, rho, 3.0) == pytest.approx(w, abs=1e-7)
    assert _brindley_taus(lib, ids, list(w), CU[0], None) == [1.0, 1.0]

    plain = synthetic_mixture(lib, ids, [0.5, 0.5], np.random.default_rng(5), **kw)
    grains = synthetic_mixture(lib, ids, [0.5, 0.5], np.random.default_rng(5), grain_radius_um=3.0, **kw)
    assert cscl(plain, None) == pytest.approx(0.5, abs=0.02)
    assert cscl(grains, None) < 0.42
    assert cscl(grains, 3.0) == pytest.approx(0.5, abs=0.02)
