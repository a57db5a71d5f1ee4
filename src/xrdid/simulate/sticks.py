r"""Exact, fast powder-diffraction stick patterns: d-spacings and :math:`|F|^2` x multiplicity.

The physics is that of pymatgen's ``XRDCalculator`` (``pymatgen/analysis/diffraction/xrd.py``), split
into an instrument-independent part (this module's :func:`compute_sticks`, stored per structure) and
the instrument part applied later (:func:`sticks_to_peaks`):

1. Every reciprocal-lattice point :math:`\mathbf g = h\mathbf a^* + k\mathbf b^* + l\mathbf c^*` with
   :math:`|\mathbf g| = 1/d \le 1/d_{min}` is a reflection; :math:`s = \sin\theta/\lambda = 1/(2d)`.
2. Atomic scattering factors (no anomalous dispersion, as in pymatgen)
   :math:`f(s) = Z - 41.78214\, s^2 \sum_i a_i \exp(-b_i s^2)` with pymatgen's
   ``atomic_scattering_params.json`` coefficients, optionally times a Debye-Waller factor
   :math:`\exp(-B s^2)` per element.
3. :math:`F(\mathbf h) = \sum_j f_j\, \mathrm{occ}_j \exp(2\pi i\, \mathbf h\cdot\mathbf r_j)`, intensity
   :math:`|F|^2`; reflections with the same d are summed, so a stick carries
   :math:`|F|^2 \times` multiplicity (``f2m``, electrons²).
4. At render time, :math:`2\theta = 2\arcsin(\lambda/2d)` and the Lorentz-polarisation factor
   :math:`(1+\cos^2 2\theta)/(\sin^2\theta\cos\theta)` (:func:`sticks_to_peaks`).

What makes it fast, without approximation:

* the hkl inside the limiting sphere are enumerated vectorised, row by row with the exact l interval
  of each (h, k) line, and only one Friedel half-space is kept (real f, so :math:`|F(-\mathbf h)| =
  |F(\mathbf h)|`);
* :math:`|F|^2` is invariant under the Laue group of the crystal (:math:`|F(\mathbf h R)| =
  |F(\mathbf h)|` for every symmetry operation :math:`(R, \mathbf t)`), so it is computed once per
  orbit of symmetry-equivalent hkl. The operations come from spglib in the basis of the given cell and
  are *verified* against the atoms before use: an operation set whose worst atom mismatch could change
  any :math:`|F|^2` by more than ``_SYM_F2_RTOL`` of its largest possible value is rejected (spglib is
  retried with a tighter tolerance, and finally only Friedel symmetry is used). d is still computed
  for every hkl from the cell's own metric, so peak positions never depend on symmetry detection.

Left out, as in pymatgen: anomalous dispersion, absorption, extinction, preferred orientation.
Anisotropic displacement parameters (``U11_cif`` ... site properties) are ignored.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["Sticks", "compute_sticks", "d_min_for", "sticks_to_peaks", "lorentz_polarisation"]

# spglib tolerances (Å) tried in turn; the first whose operations pass the atom check is used.
_SYMPRECS = (1e-3, 1e-5)
# Largest accepted change of |F|^2 caused by an imperfect symmetry operation, relative to the
# largest possible |F|^2 at that s, (sum_j |f_j occ_j|)^2. Bounded via the worst atom mismatch δ (Å):
# |Δ|F|^2| <= 2 Fmax^2 * 2π g_max δ.
_SYM_F2_RTOL = 1e-4
# |F|^2 below this fraction of (sum_j |f_j occ_j|)^2 is a systematic absence (rounding noise is ~1e-30).
_ABSENT_RTOL = 1e-18


@dataclass(frozen=True)
class Sticks:
    """A stick pattern, independent of the instrument.

    d: float64 (n,), d-spacings in Å, sorted descending (low angle first).
    f2m: float64 (n,), |F|² summed over all reflections with that d (|F|² x multiplicity), electrons².
    hkl: int32 (n, 3), one representative Miller index per stick (the lexicographically largest, as
        pymatgen's ``get_unique_families`` picks).
    """

    d: np.ndarray
    f2m: np.ndarray
    hkl: np.ndarray

    def __len__(self) -> int:
        return len(self.d)


def d_min_for(wavelength_A: float, two_theta_max_deg: float) -> float:
    """Smallest d (Å) visible up to ``two_theta_max_deg``: λ / (2 sin θmax)."""
    if wavelength_A <= 0:
        raise ValueError(f"wavelength must be positive, got {wavelength_A} Å")
    if not 0 < two_theta_max_deg <= 180:
        raise ValueError(f"two_theta_max must be in (0, 180] degrees, got {two_theta_max_deg}")
    return wavelength_A / (2.0 * math.sin(math.radians(two_theta_max_deg) / 2.0))


@functools.cache
def _scattering_params() -> dict[str, np.ndarray]:
    """pymatgen's Cromer-Mann-like coefficients {symbol: (n, 2) [a_i, b_i]}, read from pymatgen itself."""
    import pymatgen.analysis.diffraction as diffraction

    path = Path(diffraction.__file__).parent / "atomic_scattering_params.json"
    with open(path) as fh:
        raw = json.load(fh)
    return {sym: np.asarray(coeffs, dtype=np.float64) for sym, coeffs in raw.items()}


def _form_factors(symbols: list[str], zs: list[int], s2: np.ndarray, debye_waller: dict[str, float]) -> np.ndarray:
    """f(s) for each element (columns) at each s² (rows): Z - 41.78214 s² Σ a exp(-b s²) [· exp(-B s²)]."""
    params = _scattering_params()
    out = np.empty((len(s2), len(symbols)), dtype=np.float64)
    for j, (sym, z) in enumerate(zip(symbols, zs)):
        try:
            coeff = params[sym]
        except KeyError:
            raise ValueError(f"no X-ray scattering coefficients for element {sym!r}") from None
        f = z - 41.78214 * s2 * (np.exp(np.multiply.outer(s2, -coeff[:, 1])) @ coeff[:, 0])
        b = debye_waller.get(sym, 0.0)
        if b:
            f = f * np.exp(-b * s2)
        out[:, j] = f
    return out


def _half_sphere_hkl(recip: np.ndarray, real: np.ndarray, g_max: float) -> np.ndarray:
    """All hkl with 0 < |g| <= g_max in the Friedel half-space (h>0, or h=0,k>0, or h=k=0,l>0).

    recip: rows a*, b*, c* (1/Å, no 2π); real: rows a, b, c (Å). Returns int64 (n, 3).
    """
    # |h| = |g·a| <= g_max |a|: exact bounds on h and k; l gets the exact interval of each (h, k) line.
    hmax = int(math.floor(g_max * np.linalg.norm(real[0]) + 1e-9))
    kmax = int(math.floor(g_max * np.linalg.norm(real[1]) + 1e-9))
    G = recip @ recip.T
    h = np.repeat(np.arange(0, hmax + 1), 2 * kmax + 1)
    k = np.tile(np.arange(-kmax, kmax + 1), hmax + 1)
    keep = (h > 0) | (k >= 0)
    h, k = h[keep], k[keep]
    # G33 l² + 2 l b + c0 <= g_max²
    b = G[0, 2] * h + G[1, 2] * k
    c0 = G[0, 0] * h * h + 2.0 * G[0, 1] * h * k + G[1, 1] * k * k - g_max * g_max
    disc = b * b - G[2, 2] * c0
    ok = disc >= 0
    h, k, b, disc = h[ok], k[ok], b[ok], disc[ok]
    root = np.sqrt(disc)
    lo = np.ceil((-b - root) / G[2, 2] - 1e-9).astype(np.int64)
    hi = np.floor((-b + root) / G[2, 2] + 1e-9).astype(np.int64)
    lo = np.where((h == 0) & (k == 0), np.maximum(lo, 1), lo)
    counts = np.maximum(hi - lo + 1, 0)
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    l = np.arange(total, dtype=np.int64) - np.repeat(starts - lo, counts)
    hkl = np.empty((total, 3), dtype=np.int64)
    hkl[:, 0] = np.repeat(h, counts)
    hkl[:, 1] = np.repeat(k, counts)
    hkl[:, 2] = l
    return hkl


def _site_arrays(structure: Structure):
    """Per (site, species) entry: fractional coords, element index, occupancy; plus per-site type ids."""
    coords, elem_idx, occ = [], [], []
    symbols: list[str] = []
    zs: list[int] = []
    index: dict[str, int] = {}
    site_types: list[int] = []
    comp_ids: dict[tuple, int] = {}
    for site in structure:
        items = site.species.items()
        comp_key = tuple(sorted((str(sp), round(float(o), 6)) for sp, o in items))
        site_types.append(comp_ids.setdefault(comp_key, len(comp_ids)))
        for sp, o in items:
            sym = sp.symbol
            if sym not in index:
                index[sym] = len(symbols)
                symbols.append(sym)
                zs.append(int(sp.Z))
            coords.append(site.frac_coords)
            elem_idx.append(index[sym])
            occ.append(float(o))
    return (
        np.asarray(coords, dtype=np.float64).reshape(-1, 3),
        np.asarray(elem_idx, dtype=np.int64),
        np.asarray(occ, dtype=np.float64),
        symbols,
        zs,
        np.asarray(site_types, dtype=np.int32),
    )


def _verified_rotations(lattice: np.ndarray, frac: np.ndarray, types: np.ndarray, g_max: float) -> np.ndarray:
    """Laue-group rotations (in the basis of the given cell, acting on row hkl as hkl @ R), verified.

    Returns int (m, 3, 3); only ±identity when no trustworthy symmetry is found.
    """
    import spglib

    trivial = np.array([np.eye(3, dtype=np.int64), -np.eye(3, dtype=np.int64)])
    if len(frac) == 0:
        return trivial
    # Largest atom mismatch (Å) that keeps every |F|^2 within _SYM_F2_RTOL of Fmax^2.
    delta_max = _SYM_F2_RTOL / (4.0 * math.pi * max(g_max, 1e-12))
    cell = (lattice, frac, types)
    for symprec in _SYMPRECS:
        sym = spglib.get_symmetry(cell, symprec=symprec)
        if sym is None:
            continue
        rots, trans = sym["rotations"], sym["translations"]
        if _max_mismatch(lattice, frac, types, rots, trans) <= delta_max:
            rots = np.unique(np.concatenate([rots, -rots]).astype(np.int64), axis=0)
            return rots
    return trivial


def _max_mismatch(lattice, frac, types, rots, trans) -> float:
    """Worst distance (Å) between an image R x + t of an atom and the nearest atom of the same type."""
    worst = 0.0
    same = types[:, None] == types[None, :]
    for r, t in zip(rots, trans):
        img = frac @ r.T + t  # (n, 3)
        diff = img[:, None, :] - frac[None, :, :]
        diff -= np.round(diff)
        dist2 = np.einsum("ijk,kl,ijl->ij", diff, lattice @ lattice.T, diff)
        dist2 = np.where(same, dist2, np.inf)
        worst = max(worst, float(np.sqrt(np.min(dist2, axis=1).max())))
    return worst


def compute_sticks(
    structure: Structure,
    d_min: float,
    *,
    debye_waller: dict[str, float] | None = None,
    merge_tol: float = 1e-7,
    use_symmetry: bool = True,
) -> Sticks:
    """Stick pattern of ``structure`` down to ``d_min`` (Å).

    debye_waller: {element symbol: B in Å²}; the scattering factor is multiplied by exp(-B s²).
    merge_tol: reflections whose d agree within this relative tolerance become one stick. pymatgen
        merges 2θ within 1e-5°, i.e. Δd/d of 9e-8 at 2θ = 90° (2e-6 at 5°), so the default 1e-7
        reproduces its peak list; equal-d reflections (up to rounding, ~1e-15) always merge.
    use_symmetry: compute |F|² once per orbit of the (verified) Laue group; False computes every hkl.
    """
    if not d_min > 0:
        raise ValueError(f"d_min must be positive, got {d_min} Å")
    debye_waller = debye_waller or {}
    lattice = np.array(structure.lattice.matrix, dtype=np.float64)
    recip = np.linalg.inv(lattice).T  # rows a*, b*, c* (crystallographic, no 2π)
    g_max = 1.0 / d_min
    frac, elem_idx, occ, symbols, zs, site_types = _site_arrays(structure)

    hkl = _half_sphere_hkl(recip, lattice, g_max * (1.0 + 1e-12))
    if len(hkl) == 0:
        return _empty()
    g_cart = hkl.astype(np.float64) @ recip
    g2 = np.einsum("ij,ij->i", g_cart, g_cart)

    # Orbits of the Laue group: canonical key = max over images of an integer code of hkl.
    n_hkl = len(hkl)
    if use_symmetry and len(structure) > 0:
        rots = _verified_rotations(lattice, structure.frac_coords, site_types, g_max)
    else:
        rots = np.array([np.eye(3, dtype=np.int64), -np.eye(3, dtype=np.int64)])
    span = int(np.abs(hkl).max()) * 2 + 1
    code = np.array([span * span, span, 1], dtype=np.float64)
    if len(rots) > 2:
        # key(hkl @ R) = hkl @ (R @ code) (+ a constant offset, irrelevant to max): one matmul.
        weights = np.einsum("rij,j->ir", rots.astype(np.float64), code)  # (3, n_ops)
        keys = (hkl.astype(np.float64) @ weights).max(axis=1)
        _, rep_idx, inverse = np.unique(keys, return_index=True, return_inverse=True)
    else:
        rep_idx = np.arange(n_hkl)
        inverse = rep_idx

    # Structure factors of the orbit representatives.
    rep_hkl = hkl[rep_idx].astype(np.float64)
    rep_s2 = g2[rep_idx] * 0.25
    ff = _form_factors(symbols, zs, rep_s2, debye_waller)  # (n_rep, n_elem)
    w = ff[:, elem_idx] * occ  # (n_rep, n_entries)
    phase = rep_hkl @ frac.T
    phase -= np.round(phase)  # exact reduction before the 2π, keeps cos/sin arguments small
    phase *= 2.0 * math.pi
    f_re = np.einsum("ij,ij->i", w, np.cos(phase))
    f_im = np.einsum("ij,ij->i", w, np.sin(phase))
    f2 = f_re * f_re + f_im * f_im
    fmax2 = np.abs(w).sum(axis=1) ** 2
    f2 = np.where(f2 > _ABSENT_RTOL * fmax2, f2, 0.0)

    # Each half-space point stands for itself and its Friedel mate: factor 2.
    f2_pts = 2.0 * f2[inverse]
    present = f2_pts > 0
    if not present.any():
        return _empty()
    hkl, g2, f2_pts = hkl[present], g2[present], f2_pts[present]

    # Merge equal d: sort by |g| ascending (d descending) and split where the relative gap exceeds merge_tol.
    g = np.sqrt(g2)
    order = np.argsort(g, kind="stable")
    g, f2_pts, hkl = g[order], f2_pts[order], hkl[order]
    new = np.empty(len(g), dtype=bool)
    new[0] = True
    new[1:] = np.diff(g) > merge_tol * g[1:]
    starts = np.flatnonzero(new)
    f2m = np.add.reduceat(f2_pts, starts)
    # d of a stick: that of its first (lowest-g) member, as pymatgen reports its first reflection's d.
    d = 1.0 / g[starts]
    # Representative hkl: lexicographic max over the members and their Friedel mates.
    span = int(np.abs(hkl).max()) * 2 + 1
    code_i = np.array([span * span, span, 1], dtype=np.int64)
    k_pos = hkl @ code_i
    best = np.maximum.reduceat(np.maximum(k_pos, -k_pos), starts)
    off = (span - 1) // 2
    shifted = best + off * (span * span + span + 1)
    rep = np.stack([shifted // (span * span), (shifted // span) % span, shifted % span], axis=1) - off
    return Sticks(d=d, f2m=f2m, hkl=rep.astype(np.int32))


def _empty() -> Sticks:
    return Sticks(d=np.zeros(0), f2m=np.zeros(0), hkl=np.zeros((0, 3), dtype=np.int32))


def lorentz_polarisation(two_theta_deg: np.ndarray) -> np.ndarray:
    """(1 + cos² 2θ) / (sin² θ cos θ), the unpolarised-beam Lorentz-polarisation factor of pymatgen."""
    theta = np.radians(np.asarray(two_theta_deg, dtype=np.float64)) / 2.0
    return (1.0 + np.cos(2.0 * theta) ** 2) / (np.sin(theta) ** 2 * np.cos(theta))


def sticks_to_peaks(
    sticks: Sticks,
    wavelength_A: float,
    two_theta_min_deg: float,
    two_theta_max_deg: float,
    *,
    scaled: bool = True,
    min_relative_intensity: float = 1e-5,
) -> dict:
    """Peaks at one wavelength: {two_theta (deg), intensity, hkl (int32 (n,3)), d (Å)}, by 2θ ascending.

    intensity = f2m x (1 + cos² 2θ)/(sin² θ cos θ); scaled to 100 at the strongest peak when ``scaled``
    (as pymatgen). Peaks weaker than ``min_relative_intensity`` x the strongest are dropped (pymatgen
    drops those below 1e-3 on its 0-100 scale, i.e. 1e-5).
    """
    if wavelength_A <= 0:
        raise ValueError(f"wavelength must be positive, got {wavelength_A} Å")
    sin_theta = wavelength_A / (2.0 * sticks.d)
    reachable = sin_theta <= 1.0
    two_theta = np.full(len(sticks.d), np.inf)
    two_theta[reachable] = np.degrees(2.0 * np.arcsin(sin_theta[reachable]))
    keep = (two_theta >= two_theta_min_deg) & (two_theta <= two_theta_max_deg)
    two_theta = two_theta[keep]
    intensity = sticks.f2m[keep] * lorentz_polarisation(two_theta)
    hkl, d = sticks.hkl[keep], sticks.d[keep]
    if len(intensity):
        top = intensity.max()
        strong = intensity > min_relative_intensity * top
        two_theta, intensity, hkl, d = two_theta[strong], intensity[strong], hkl[strong], d[strong]
        if scaled and top > 0:
            intensity = intensity * (100.0 / top)
    return {"two_theta": two_theta, "intensity": intensity, "hkl": hkl, "d": d}
