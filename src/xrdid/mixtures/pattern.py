"""A measured pattern against a library, the steps the CLI and the web page share."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from xrdid.mixtures.fit import FitSettings, MixtureFit, identify_phases
from xrdid.mixtures.library import default_cache_dir, load_library
from xrdid.readers import Pattern, PatternError
from xrdid.simulate.sticks import d_min_for


def two_theta_of(pattern: Pattern, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """The pattern as (2θ in degrees at ``lam`` Å, y); Q and d patterns are converted, points beyond the
    Bragg limit dropped, sorted by 2θ."""
    if pattern.axis == "two_theta":
        return pattern.x, pattern.y
    q = pattern.q(lam)
    s = q * lam / (4 * math.pi)
    ok = s < 1
    if ok.sum() < 10:
        raise PatternError(f"{pattern.path}: fewer than 10 points are reachable at λ = {lam} Å")
    tt = np.degrees(2 * np.arcsin(s[ok]))
    order = np.argsort(tt)
    return tt[order], pattern.y[ok][order]


def identify_in_pattern(
    pattern: Pattern,
    library: str | Path,
    *,
    wavelength_A: float | None = None,
    kalpha2_ratio: float | None = None,
    max_phases: int | None = None,
    use_cache: bool = True,
    lattice_sigma: float | None = None,
    elements=None,
    max_march_dollase: float | None = None,
    grain_radius_um: float | None = None,
    anomalous_dispersion: bool = True,
    displacement_B: float | None = None,
) -> tuple[MixtureFit, int]:
    """Phases of ``library`` (a CIF folder or structures parquet) in ``pattern``: (fit, library size).

    The wavelength is the file's, else ``wavelength_A``, else PatternError; the file's Kα2, when it
    states one, is fitted with the file's Kα2/Kα1 ratio when it states one, else refined, unless
    ``kalpha2_ratio`` fixes it. ``lattice_sigma``, ``max_march_dollase``: see :class:`FitSettings`
    (None: its default; ``inf`` keeps phases of any texture). ``grain_radius_um``: the grains' radius for
    the micro-absorption correction of the weight fractions (FitSettings.brindley_radius_um; None: the
    default, 0: none). ``anomalous_dispersion`` (default): the library's sticks with the elements' f′ + i f″ at the
    pattern's wavelength, Kα1 for a tube (:func:`load_library` ``wavelength_A``); False: f0 alone.
    ``displacement_B`` (Å²): a Debye–Waller factor in the library's sticks, the CIFs' own displacement parameters
    and this B where a CIF states none (:func:`load_library`); None (default): B = 0. ``elements``: when given
    (symbols, e.g. those of the weighed precursors), only library phases made of them are candidates;
    the library size returned is then the number of those. Raises LibraryError for an unusable library
    or one with no phase of those elements, ValueError for a symbol that is not an element.
    """
    lam = pattern.resolve_wavelength(wavelength_A)
    two_theta, y = two_theta_of(pattern, lam)
    settings = FitSettings()
    if max_phases is not None:
        settings = replace(settings, max_phases=max_phases)
    if lattice_sigma is not None:
        settings = replace(settings, lattice_sigma=lattice_sigma)
    if max_march_dollase is not None:
        settings = replace(settings, max_march_dollase=max_march_dollase)
    if grain_radius_um is not None:
        settings = replace(settings, brindley_radius_um=grain_radius_um or None)
    ka2 = pattern.meta.get("kalpha2_A")
    if kalpha2_ratio is None and pattern.meta.get("kalpha2_ratio") is not None:
        kalpha2_ratio = float(pattern.meta["kalpha2_ratio"])
    lam_long = max(lam, float(ka2) if ka2 else lam)
    d_min = d_min_for(lam_long, min(float(two_theta[-1]) + 1.0, 179.0)) / (1 + settings.d_scale_range)
    phases = load_library(library, d_min, cache_dir=default_cache_dir() if use_cache else None,
                          wavelength_A=lam if anomalous_dispersion else None, displacement_B=displacement_B)
    if elements is not None:
        phases = phases.restricted_to(elements)
    fit = identify_phases(two_theta, y, lam, phases, kalpha2_A=float(ka2) if ka2 else None,
                          kalpha2_ratio=kalpha2_ratio, settings=settings)
    return fit, len(phases)
