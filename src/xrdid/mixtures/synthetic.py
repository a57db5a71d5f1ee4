"""Synthetic mixtures of library phases, with the physics of real scans, for tuning and testing.

A mixture draws, per phase, a lattice departure from the reference (isotropic 1σ ``lattice_sigma``, and
as much again along the symmetry-allowed anisotropic deformations), a crystallite size (log-uniform
30–300 nm), a microstrain (0–0.1 %) and, for ``texture_probability`` of the phases, March–Dollase texture
(r in 0.75–1.33 on a random candidate axis); globally a zero shift and a sample displacement
(±0.05°), an instrument width, the Cu Kα2 line at half the Kα1, a smooth background falling from low
angles, for ``hump_probability`` of the patterns an amorphous hump (FWHM 6–12°), and Poisson noise at a
peak count drawn log-uniformly in ``counts``. Weight fractions W become Rietveld scales S = W/(M V)
(Hill & Howard), so fitted weight fractions can be compared with the truth. With ``grain_radius_um`` each
phase's intensity is further scaled by Brindley's particle absorption factor τ of spherical grains of that
radius (:mod:`xrdid.mixtures.absorption`, μ̄ of the solids by volume at the true fractions), as in a powder
with micro-absorption (the Poisson counts then differ, and so does the random stream after them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xrdid.mixtures.library import Library
from xrdid.mixtures.model import Globals, Model, PhaseState
from xrdid.mixtures.profile import Optics, kalpha2_for


@dataclass
class SyntheticMixture:
    two_theta: np.ndarray
    y: np.ndarray
    phase_ids: list[str]
    weight_fractions: list[float]


def draw_phases(library: Library, n: int, rng: np.random.Generator, min_fraction: float = 0.08):
    """n library indices of distinct (formula, space group) and Dirichlet(2) weight fractions ≥ min_fraction."""
    keys: dict[tuple, list[int]] = {}
    for i, p in enumerate(library.phases):
        keys.setdefault((p.formula, p.space_group), []).append(i)
    groups = list(keys.values())
    pick = rng.choice(len(groups), size=n, replace=False)
    idx = [int(rng.choice(groups[g])) for g in pick]
    w = rng.dirichlet(np.full(n, 2.0))
    w = min_fraction + (1 - n * min_fraction) * w
    return idx, [float(v) for v in w]


def synthetic_mixture(
    library: Library,
    indices: list[int],
    fractions: list[float],
    rng: np.random.Generator,
    *,
    wavelength_A: float = 1.5405929,
    two_theta: tuple[float, float, float] = (10.0, 100.0, 0.01),
    lattice_sigma: float = 0.002,
    texture_probability: float = 0.3,
    hump_probability: float = 0.5,
    counts: tuple[float, float] = (5e3, 5e4),
    grain_radius_um: float | None = None,
) -> SyntheticMixture:
    """A Cu Kα1/Kα2 scan of the given library phases in the given weight fractions (see the module)."""
    lo, hi, step = two_theta
    grid = np.arange(lo, hi + step / 2, step)
    ka2 = kalpha2_for(wavelength_A)
    optics = Optics((wavelength_A,) if ka2 is None else (wavelength_A, ka2))
    m = Model(grid, np.ones_like(grid), library, optics, background_degree=2, window_fwhm=8.0)
    g = Globals(zero_deg=float(rng.uniform(-0.05, 0.05)), displacement_deg=float(rng.uniform(-0.05, 0.05)),
                log_width=math.log(float(rng.uniform(1.0, 4.0))), kalpha2_ratio=0.5)
    y = np.zeros_like(grid)
    tau = _brindley_taus(library, indices, fractions, wavelength_A, grain_radius_um)
    for i, w, t in zip(indices, fractions, tau):
        pd = m.data(i)
        ps = PhaseState(i, s=1 + float(rng.normal(0, lattice_sigma)), q=rng.normal(0, lattice_sigma, pd.n_aniso),
                        log_size=float(rng.uniform(math.log(30), math.log(300))), strain=float(rng.uniform(0, 1e-3)))
        if rng.random() < texture_probability:
            ps.axis = int(rng.integers(len(pd.axes)))
            ps.r = float(np.exp(rng.uniform(math.log(0.75), math.log(1.33))))
        p = library.phases[i]
        y += t * w / (p.cell_mass_amu * pd.volume(ps)) * m.render(ps, g)
    top = float(np.exp(rng.uniform(*np.log(counts))))
    y *= top / y.max()
    bg = top * (rng.uniform(0.02, 0.08) + rng.uniform(0.02, 0.1) * np.exp(-(grid - lo) / rng.uniform(5, 20)))
    if rng.random() < hump_probability:
        c, fw = rng.uniform(lo + 5, 45.0), rng.uniform(6.0, 12.0)
        bg = bg + top * rng.uniform(0.02, 0.08) * np.exp(-4 * math.log(2) * ((grid - c) / fw) ** 2)
    obs = rng.poisson(y + bg).astype(float)
    return SyntheticMixture(grid, obs, [library.phases[i].id for i in indices], fractions)


def _brindley_taus(library: Library, indices: list[int], fractions: list[float], wavelength_A: float,
                   radius_um: float | None) -> list[float]:
    """Each phase's Brindley τ for spherical grains of ``radius_um`` (all 1 without a radius)."""
    if not radius_um:
        return [1.0] * len(indices)
    from xrdid.mixtures.absorption import brindley_taus, density_g_cm3, linear_attenuation

    ps = [library.phases[i] for i in indices]
    mu = [linear_attenuation(p.formula, p.cell_mass_amu, p.volume_A3, wavelength_A) for p in ps]
    if None in mu:
        raise ValueError(f"no absorption coefficient at {wavelength_A} Å for one of {[p.formula for p in ps]}")
    rho = np.array([density_g_cm3(p.cell_mass_amu, p.volume_A3) for p in ps])
    return [float(t) for t in brindley_taus(np.asarray(fractions, float), np.array(mu, float), rho, radius_um)]
