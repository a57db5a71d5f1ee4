r"""Exact, fast powder-diffraction stick patterns: d-spacings and :math:`|F|^2` x multiplicity.

The physics is that of pymatgen's ``XRDCalculator`` (``pymatgen/analysis/diffraction/xrd.py``), split
into an instrument-independent part (this module's :func:`compute_sticks`, stored per structure) and
the instrument part applied later (:func:`sticks_to_peaks`):

1. Every reciprocal-lattice point :math:`\mathbf g = h\mathbf a^* + k\mathbf b^* + l\mathbf c^*` with
   :math:`|\mathbf g| = 1/d \le 1/d_{min}` is a reflection; :math:`s = \sin\theta/\lambda = 1/(2d)`.
2. Atomic scattering factors (by default no anomalous dispersion, as in pymatgen; ``anomalous`` adds f′ + i f″)
   :math:`f(s) = Z - 41.78214\, s^2 \sum_i a_i \exp(-b_i s^2)` with pymatgen's
   ``atomic_scattering_params.json`` coefficients, optionally times a Debye-Waller factor
   :math:`\exp(-B s^2)` per element.
3. :math:`F(\mathbf h) = \sum_j f_j\, \mathrm{occ}_j \exp(2\pi i\, \mathbf h\cdot\mathbf r_j)`, intensity
   :math:`|F|^2`; reflections with the same d are summed, so a stick carries
   :math:`|F|^2 \times` multiplicity (``f2m``, electrons²).
4. At render time, :math:`2\theta = 2\arcsin(\lambda/2d)` and the Lorentz-polarisation factor
   :math:`(1+\cos^2 2\theta)/(\sin^2\theta\cos\theta)` (:func:`sticks_to_peaks`).

What makes it fast, without approximation:

* the hkl inside the limiting sphere are enumerated vectorised, line by line with the exact l interval
  of each (h, k) line, and only one Friedel half-space is kept (real f, so :math:`|F(-\mathbf h)| =
  |F(\mathbf h)|`; each point counts twice);
* ``method="separable"`` (default): :math:`e^{2\pi i(hx+ky+lz)} = e_x^h e_y^k e_z^l`, so per element the
  sums over atoms for every (h, k) line and every l are one complex matrix product
  (lines x atoms) @ (atoms x l) in BLAS, instead of a sine and cosine per reflection and atom;
* in a centred cell (A, B, C, I, F or R, found exactly: every entry's partner r + t of the same type
  on a 1e-9 grid of fractional coordinates) :math:`F(\mathbf h) = m F_{kept}(\mathbf h)` over one
  entry per coset where every :math:`\mathbf h\cdot\mathbf t` is an integer, and 0 elsewhere: the
  separable sums run over 1/m of the atoms and only the allowed points (F: 1/4 of each);
* ``method="orbits"``: :math:`|F|^2` is invariant under the Laue group (:math:`|F(\mathbf h R)| =
  |F(\mathbf h)|` for every operation :math:`(R, \mathbf t)`), so it is computed once per orbit of
  symmetry-equivalent hkl. The operations come from spglib in the basis of the given cell and are
  *verified* against the atoms before use: a set whose worst atom mismatch could change any
  :math:`|F|^2` by more than ``_SYM_F2_RTOL`` of its largest possible value is rejected (spglib is
  retried tighter, then only Friedel symmetry is used). Measured slower than "separable" for cells up
  to ~100 atoms (spglib and the check cost more than the products they save), so it is not the default;
* in every method d is computed for every hkl from the cell's own metric, so peak positions never
  depend on symmetry detection.

Left out, as in pymatgen: absorption, extinction, preferred orientation (and anomalous dispersion unless
``anomalous`` is given; the phase search's library has it, :func:`xrdid.mixtures.load_library`).
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

from xrdid.structures.crystal import Crystal, atomic_number, crystal_from_structure, grid_keys

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["Sticks", "compute_sticks", "d_min_for", "lorentz_polarisation", "sticks_to_peaks"]

# spglib tolerances (Å) tried in turn; the first whose operations pass the atom check is used.
_SYMPRECS = (1e-3, 1e-5)
# Largest accepted change of |F|^2 caused by an imperfect symmetry operation, relative to the
# largest possible |F|^2 at that s, (sum_j |f_j occ_j|)^2. Bounded via the worst atom mismatch δ (Å):
# |Δ|F|^2| <= 2 Fmax^2 * 2π g_max δ.
_SYM_F2_RTOL = 1e-4
# |F|^2 below this fraction of (sum_j |f_j occ_j|)^2 is a systematic absence (rounding noise is ~1e-30).
_ABSENT_RTOL = 1e-18
# Largest temporary complex block (entries) held at once; bounds memory for large cells.
_CHUNK_ENTRIES = 1 << 21
# Cells with at least this many entries are checked for lattice centring (below it the check costs
# more than it saves). Centring translations, in sixths: A, B, C, I, and R (obverse, reverse).
_CENTRING_MIN_ATOMS = 24
_CENTRING_SIXTHS = {"A": (0, 3, 3), "B": (3, 0, 3), "C": (3, 3, 0), "I": (3, 3, 3), "R": (4, 2, 2), "Rrev": (2, 4, 2)}
# Centring partners are compared on the coordinate grid of xrdid.structures.crystal.grid_keys: a partner
# off its grid point is a missed speed-up, not an error.


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
    from pymatgen.analysis import diffraction

    path = Path(diffraction.__file__).parent / "atomic_scattering_params.json"
    with open(path) as fh:
        raw = json.load(fh)
    return {sym: np.asarray(coeffs, dtype=np.float64) for sym, coeffs in raw.items()}


def _form_factors(symbols: list[str], zs: list[int], s2: np.ndarray, debye_waller: dict[str, float]) -> np.ndarray:
    """f(s) for each element (rows) at each s² (columns): Z - 41.78214 s² Σ a exp(-b s²) [· exp(-B s²)].

    All elements' exponentials in one call: exp(-s² b) for the stacked b of every element, then a
    block-diagonal matrix of the a's. (Elements x points layout: numpy is ~5x faster with the long
    axis last.)
    """
    amat, minus_b, z = _form_factor_terms(tuple(symbols), tuple(zs))
    terms = minus_b * s2
    f = amat @ np.exp(terms, out=terms)
    f *= -41.78214 * s2
    f += z
    if debye_waller:
        dw = np.array([debye_waller.get(sym, 0.0) for sym in symbols])
        if dw.any():
            f *= np.exp(-dw[:, None] * s2)
    return f


def _anomalous(ff: np.ndarray, symbols: list[str], anomalous, s2: np.ndarray, debye_waller) -> tuple:
    """(f0 + f′, f″) per element and stick for :func:`compute_sticks`; (ff, None) without ``anomalous``."""
    if not anomalous:
        return ff, None
    fp = np.array([anomalous.get(sym, (0.0, 0.0))[0] for sym in symbols])[:, None]
    fpp = np.array([anomalous.get(sym, (0.0, 0.0))[1] for sym in symbols])[:, None] * np.ones_like(s2)
    if debye_waller:
        dw = np.exp(-np.array([debye_waller.get(sym, 0.0) for sym in symbols])[:, None] * s2)
        return ff + fp * dw, fpp * dw
    return ff + fp, fpp


@functools.lru_cache(maxsize=4096)
def _form_factor_terms(symbols: tuple[str, ...], zs: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For :func:`_form_factors`: the block-diagonal matrix of the a's (elements x terms), the -b's as a
    column (terms, 1) and Z as a column (elements, 1); cached per element list (read-only arrays)."""
    params = _scattering_params()
    try:
        coeffs = [params[sym] for sym in symbols]
    except KeyError as err:
        raise ValueError(f"no X-ray scattering coefficients for element {err.args[0]!r}") from None
    minus_b = -np.concatenate([c[:, 1] for c in coeffs])[:, None]
    amat = np.zeros((len(symbols), len(minus_b)))
    row = 0
    for j, c in enumerate(coeffs):
        amat[j, row : row + len(c)] = c[:, 0]
        row += len(c)
    z = np.asarray(zs, dtype=np.float64)[:, None]
    for array in (amat, minus_b, z):
        array.flags.writeable = False
    return amat, minus_b, z


def _reciprocal(lattice: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Rows a*, b*, c* (1/Å, no 2π) of the cell with rows a, b, c (Å): (b x c, c x a, a x b) / V, and
    the lengths |a|, |b|, |c| (3 x 3 in plain Python: numpy's inv and norm cost more in call overhead
    than in arithmetic). A singular or non-finite cell is refused (ValueError)."""
    (a1, a2, a3), (b1, b2, b3), (c1, c2, c3) = lattice.tolist()
    rows = [
        (b2 * c3 - b3 * c2, b3 * c1 - b1 * c3, b1 * c2 - b2 * c1),
        (c2 * a3 - c3 * a2, c3 * a1 - c1 * a3, c1 * a2 - c2 * a1),
        (a2 * b3 - a3 * b2, a3 * b1 - a1 * b3, a1 * b2 - a2 * b1),
    ]
    volume = a1 * rows[0][0] + a2 * rows[0][1] + a3 * rows[0][2]
    if not (math.isfinite(volume) and volume != 0.0):
        raise ValueError(f"the cell is singular or not finite (volume {volume} Å³)")
    recip = np.array(rows) / volume
    lengths = tuple(math.sqrt(x * x + y * y + z * z) for x, y, z in ((a1, a2, a3), (b1, b2, b3), (c1, c2, c3)))
    return recip, lengths


def _half_sphere_lines(G: np.ndarray, lengths: tuple[float, float, float], g_max: float):
    """The (h, k) lines of the Friedel half-space (h>0, or h=0,k>0, or h=k=0,l>0) inside |g| <= g_max.

    G: the reciprocal metric (rows a*, b*, c* times its transpose, 1/Å², no 2π); lengths: |a|, |b|, |c|
    (Å). Returns int64 arrays h, k, lo, hi (one entry per line that meets the sphere; l runs over
    lo..hi) and the bounds hmax, kmax, lmax.
    """
    # |h| = |g·a| <= g_max |a|: exact bounds on h, k, l; each (h, k) line gets its exact l interval.
    hmax, kmax, lmax = (math.floor(g_max * v + 1e-9) for v in lengths)
    # (h, k) for h in 0..hmax (rows), k in -kmax..kmax (columns): per-row and per-column terms broadcast
    # (the same products, in the same order, as per line). G33 l² + 2 l b + c0 <= g_max²
    hh = np.arange(hmax + 1, dtype=np.int64)[:, None]
    kk = np.arange(-kmax, kmax + 1, dtype=np.int64)
    b = G[0, 2] * hh + G[1, 2] * kk
    c0 = G[0, 0] * hh * hh + 2.0 * G[0, 1] * hh * kk + G[1, 1] * kk * kk - g_max * g_max
    disc = b * b - G[2, 2] * c0
    ok = disc >= 0
    ok[0, :kmax] = False  # the lines h = 0, k < 0: the other half-space
    h, k = np.nonzero(ok)
    k -= kmax
    b, disc = b[ok], disc[ok]
    root = np.sqrt(disc)
    lo = np.ceil((-b - root) / G[2, 2] - 1e-9).astype(np.int64)
    hi = np.floor((-b + root) / G[2, 2] + 1e-9).astype(np.int64)
    if len(h) and h[0] == 0 and k[0] == 0:  # the line h = k = 0 (the first, if any): l > 0 only
        lo[0] = max(lo[0], 1)
    lo, hi = np.maximum(lo, -lmax), np.minimum(hi, lmax)
    ok = hi >= lo
    return h[ok], k[ok], lo[ok], hi[ok], (hmax, kmax, lmax)


def _expand_lines(h, k, lo, hi):
    """Points of the lines: (line index (n,), l int64 (n,)); the point's h and k are its line's."""
    counts = hi - lo + 1
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    starts = ends - counts
    line = np.repeat(np.arange(len(h)), counts)
    l = np.arange(total, dtype=np.int64)
    l -= np.repeat(starts - lo, counts)  # a per-line value at each point: repeat is ~3x faster than a gather
    return line, l


def _points_hkl(h, k, line, l) -> np.ndarray:
    """hkl int64 (n, 3) of the points of :func:`_expand_lines`."""
    return np.column_stack((h[line], k[line], l))


@functools.lru_cache(maxsize=1024)
def _phase_rows(hmax: int, kmax: int, lmax: int, period: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """For :func:`_phase_tables`: the indices n (h in 0..hmax, k in -kmax..kmax, l in -lmax..lmax, one
    after the other, as a float64 column) and the coordinate axis of each (read-only, cached). With a
    ``period`` P > 1, the l rows are the multiples P m covering -lmax..lmax, then the residues 0..P-1."""
    parts = [np.arange(hmax + 1), np.arange(-kmax, kmax + 1)]
    if period == 1:
        parts.append(np.arange(-lmax, lmax + 1))
    else:
        parts += [period * np.arange(-lmax // period, lmax // period + 1), np.arange(period)]
    n = np.concatenate(parts).astype(np.float64)
    axis = np.repeat(np.arange(4), [len(x) for x in parts] + [0] * (4 - len(parts))).clip(max=2)
    n = n[:, None]
    n.flags.writeable = False
    axis.flags.writeable = False
    return n, axis


def _phase_tables(frac: np.ndarray, bounds: tuple[int, int, int], period: int = 1) -> tuple[np.ndarray, ...]:
    """exp(2πi n x) for every atom (columns): h in 0..hmax with x, k in -kmax..kmax with y, and l in
    -lmax..lmax with z (rows), all tables in one set of array calls (views of one array). With a
    ``period`` P > 1: the l table holds the multiples of P (l = P m, m from -lmax // P), and a fourth
    table the residues 0..P-1 (e_z^l = e_z^(l mod P) e_z^(P (l // P)))."""
    hmax, kmax, lmax = bounds
    n, axis = _phase_rows(hmax, kmax, lmax, period)
    arg = frac.T[axis]
    arg *= n
    arg -= np.round(arg)  # exact reduction before the 2π
    arg *= 2.0 * math.pi
    out = np.empty(arg.shape, dtype=np.complex128)
    np.cos(arg, out=out.real)
    np.sin(arg, out=out.imag)
    y0, z0 = hmax + 1, hmax + 2 * kmax + 2
    if period == 1:
        return out[:y0], out[y0:z0], out[z0:]
    r0 = len(out) - period
    return out[:y0], out[y0:z0], out[z0:r0], out[r0:]


def _site_types(frac: np.ndarray, species: tuple[str, ...], occ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct positions (sites) and a type id per site from its composition, for spglib.

    Entries on one position (a substitutionally disordered site) are one site whose type is its
    (element, occupancy) set, so only sites of equal composition can be mapped onto each other.
    """
    positions, site_of = np.unique(np.round(frac % 1.0, 8) % 1.0, axis=0, return_inverse=True)
    compositions: list[list] = [[] for _ in range(len(positions))]
    for i, site in enumerate(site_of.reshape(-1).tolist()):
        compositions[site].append((species[i], round(float(occ[i]), 6)))
    ids: dict[tuple, int] = {}
    types = np.array([ids.setdefault(tuple(sorted(c)), len(ids)) for c in compositions], dtype=np.int32)
    return positions, types


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
        # only the rotation matters for |F|: check one operation per distinct rotation
        _, first = np.unique(rots.reshape(len(rots), 9), axis=0, return_index=True)
        rots, trans = rots[first], trans[first]
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


def _f2_separable(frac, element_bounds, occ, ffp, lines, line, l, bounds, period: int | None = None) -> np.ndarray:
    """|F|² of the given points, with exp(2πi(hx+ky+lz)) = e_x^h e_y^k e_z^l: one GEMM per element.

    Atoms are sorted by element (``element_bounds``: each element's slice). For a block of (h, k)
    lines, A[line, atom] = e_x^h e_y^k is formed once; per element, S[line, l] = Σ_atoms A · occ e_z^l
    is a complex matrix product (lines x atoms) @ (atoms x l) in BLAS, and each point takes its entry
    times the element's f. Exact (complex128). ``ffp``: f of each element at each point (E, points).

    Points: ``line`` (non-decreasing indices into ``lines``) and ``l``; ``period`` None: every point of
    every line. Else a subset, such as the points a lattice centring allows: only the lines that hold a
    point enter the products, and the l of the points of one line are all alike modulo ``period`` P
    (every second or third l), so the line's row takes the factor e_z^(l mod P) and the columns are
    the multiples of P only: S[line, m] = Σ_atoms A e_z^r · occ e_z^(P m).
    """
    h, k, _, _ = lines
    _, kmax, lmax = bounds
    if len(l) == 0:
        return np.zeros(0)
    tables = _phase_tables(frac, bounds, period or 1)
    ex, ey, ez = tables[:3]
    ez = ez.T * occ[:, None]  # (atoms, columns), with the occupancies (smaller than the (lines, atoms) blocks)
    if period is None:
        row, h_rows, k_rows, residue, col = line, h, k + kmax, None, l + lmax
    else:
        # Only the lines that hold a point (a centring leaves none on some, e.g. h + k odd in C and F).
        used = np.empty(len(line), dtype=bool)
        used[0] = True
        np.not_equal(line[1:], line[:-1], out=used[1:])
        row = np.cumsum(used) - 1
        which = line[used]
        h_rows, k_rows = h[which], k[which] + kmax
        residue = tables[3][l[used] % period] if period > 1 else None  # e_z^r of each line's r
        col = l // period - (-lmax // period)
    n_col = ez.shape[1]
    f = np.zeros(len(l), dtype=np.complex128)
    # Lines per block: bounds the (lines x atoms) and (lines x columns) temporaries to ~_CHUNK_ENTRIES each.
    rows = max(1, _CHUNK_ENTRIES // max(len(frac), n_col))
    n_lines = len(h_rows)
    for start in range(0, n_lines, rows):
        stop = min(start + rows, n_lines)
        a_xy = ex[h_rows[start:stop]]
        a_xy *= ey[k_rows[start:stop]]
        if residue is not None:
            a_xy *= residue[start:stop]
        p0, p1 = (0, len(l)) if stop - start == n_lines else np.searchsorted(row, [start, stop])
        flat = (row[p0:p1] - start) * n_col + col[p0:p1]
        for e in range(len(element_bounds) - 1):
            a, b = element_bounds[e], element_bounds[e + 1]
            if a == b:
                continue
            block = a_xy[:, a:b] @ ez[a:b]
            f[p0:p1] += ffp[e, p0:p1] * block.ravel().take(flat)
    return f.real * f.real + f.imag * f.imag


@functools.lru_cache(maxsize=16)
def _sixths_shifts(sixths: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """The translations ``sixths`` / 6 as float64 rows (read-only, cached)."""
    shifts = np.asarray(sixths, dtype=np.float64) / 6.0
    shifts.flags.writeable = False
    return shifts


def _first_entry_lands(frac, types, grid: np.ndarray, names: tuple[str, ...]) -> set[str]:
    """The centring translations of ``names`` that take the first entry onto an entry of its type (on
    the coordinate grid ``grid``), all in one set of array calls: most translations are no symmetry,
    and one entry shows it before the whole cell is moved (:func:`_partners`)."""
    images = grid_keys(frac[0] + _sixths_shifts(tuple(_CENTRING_SIXTHS[x] for x in names)))  # (m, 3)
    same = grid[types == types[0]]
    lands = (same[None, :, :] == images[:, None, :]).all(axis=2).any(axis=1)
    return {name for name, hit in zip(names, lands.tolist()) if hit}


def _partners(frac, types, sixths: tuple[int, int, int], grid: np.ndarray, order: np.ndarray) -> np.ndarray | None:
    """For the translation ``sixths`` / 6: the entry each entry lands on (same type), or None when
    some entry lands on none. Positions are compared on the coordinate grid (``grid``: the entries'
    keys, :func:`~xrdid.structures.crystal.grid_keys`; ``order``: their lexsort by type, x, y, z)."""
    moved = grid_keys(frac + _sixths_shifts((sixths,))[0])
    moved_order = np.lexsort((moved[:, 2], moved[:, 1], moved[:, 0], types))
    if not (np.array_equal(moved[moved_order], grid[order]) and np.array_equal(types[moved_order], types[order])):
        return None
    partner = np.empty(len(frac), dtype=np.int64)
    partner[moved_order] = order
    return partner


def _centring(frac: np.ndarray, types: np.ndarray):
    """The lattice centring of the entries, exact on the coordinate grid: (translations in sixths
    (m, 3), the entries kept, one per coset) or None (primitive, or not exactly centred).

    Every entry r has the partners r + t of the same type for each centring translation t, so
    F(h) = Σ_t exp(2πi h·t) Σ_kept ... = m F_kept(h) where every h·t is an integer, else 0.
    A translation of order 2 (A, B, C, I) pairs the entries of every type, one of order 3 (R) makes
    triples: translations whose order does not divide every type's count are not tried."""
    n = len(frac)
    common = math.gcd(*np.unique(types, return_counts=True)[1].tolist())
    if common % 2 and common % 3:
        return None
    grid = grid_keys(frac)
    candidates = tuple(name for name in _CENTRING_SIXTHS if not common % (3 if name.startswith("R") else 2))
    lands = _first_entry_lands(frac, types, grid, candidates)
    if not lands:
        return None
    order = np.lexsort((grid[:, 2], grid[:, 1], grid[:, 0], types))
    found = {}
    for name in candidates:
        if name in ("I", "R", "Rrev") and found:
            break  # a face centring found already: I and R are not tried alongside it
        if name not in lands:
            continue
        sixths = _CENTRING_SIXTHS[name]
        partner = _partners(frac, types, sixths, grid, order)
        if partner is not None:
            found[name] = (sixths, partner)
            if name in ("I", "R", "Rrev"):
                break
    if not found:
        return None
    if all(x in found for x in ("A", "B", "C")):
        group = [found[x] for x in ("A", "B", "C")]
    else:
        kind, (sixths, partner) = next(iter(found.items()))
        group = [(sixths, partner)]
        if kind.startswith("R"):  # order 3: t and 2t
            group.append((tuple((2 * x) % 6 for x in sixths), partner[partner]))
    translations = np.array([g[0] for g in group], dtype=np.int64)
    # One entry per coset {r, r + t, ...}: the lowest index.
    lowest = np.arange(n)
    for _, partner in group:
        lowest = np.minimum(lowest, partner)
    kept = np.flatnonzero(lowest == np.arange(n))
    if len(kept) * (len(group) + 1) != n:
        return None
    return translations, kept


def _l_period(translations: np.ndarray) -> int:
    """The period in l of the points a centring allows on one (h, k) line: t·(h, k, l) ≡ 0 (mod 6) for
    each translation t (in sixths) fixes l modulo 6 / gcd(t_l, 6) (no condition when t_l ≡ 0), so the
    allowed l of a line are one class modulo the lcm of these (A, B, I, F: 2; R: 3; C: 1)."""
    return math.lcm(*(6 // math.gcd(int(t), 6) for t in translations[:, 2]))


def _allowed_points(translations: np.ndarray, lines, line: np.ndarray, l: np.ndarray) -> np.ndarray:
    """Indices of the points (h, k, l) with t·(h, k, l) ≡ 0 (mod 6) for every centring translation t (in
    sixths). On a line these are the l of one class r modulo :func:`_l_period` P, or none: r is found
    per line (trying 0..P-1), then each point is compared with its line's r."""
    h, k, lo, hi = lines
    period = _l_period(translations)
    base = translations[:, 0, None] * h + translations[:, 1, None] * k  # (translations, lines)
    r = np.arange(period)
    fits = ((base[:, :, None] + translations[:, 2, None, None] * r) % 6 == 0).all(axis=0)  # (lines, P)
    counts = hi - lo + 1
    if period == 1:
        return np.flatnonzero(np.repeat(fits[:, 0], counts))
    has = np.repeat(fits.any(axis=1), counts)
    has &= l % period == np.repeat(fits.argmax(axis=1), counts)
    return np.flatnonzero(has)


def _f2_direct(frac, elem_idx, occ, ffp, hkl) -> np.ndarray:
    """|F|² of the given points by summing exp(2πi h·r) over atoms directly (chunked).

    ``ffp``: f of each element at each point (E, points).
    """
    f2 = np.empty(len(hkl))
    rows = max(1, _CHUNK_ENTRIES // max(1, len(frac)))
    for start in range(0, len(hkl), rows):
        sl = slice(start, start + rows)
        phase = hkl[sl].astype(np.float64) @ frac.T
        phase -= np.round(phase)  # exact reduction before the 2π
        phase *= 2.0 * math.pi
        w = ffp[:, sl].T[:, elem_idx] * occ
        f_re = (w * np.cos(phase)).sum(axis=1)
        f_im = (w * np.sin(phase)).sum(axis=1)
        f2[sl] = f_re * f_re + f_im * f_im
    return f2


def _laue_orbits(hkl: np.ndarray, rots: np.ndarray):
    """(index of one representative per orbit, orbit index of every point) under hkl -> hkl @ R."""
    span = int(np.abs(hkl).max()) * 2 + 1
    code = np.array([span * span, span, 1], dtype=np.float64)
    # key(hkl @ R) = hkl @ (R @ code) (+ a constant offset, irrelevant to max): one matmul for all ops;
    # the canonical key of an orbit is the max over its images (exact in float64: |key| < span³).
    weights = np.einsum("rij,j->ir", rots.astype(np.float64), code)  # (3, n_ops)
    keys = (hkl.astype(np.float64) @ weights).max(axis=1)
    _, rep_idx, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return rep_idx, inverse


def _order_by_value(values: np.ndarray, rtol: float) -> np.ndarray:
    """The permutation that sorts positive ``values`` ascending, as ``np.argsort`` but ~3x faster.

    A positive float64 orders as its bit pattern read as an integer, so each value's bits, with the
    lowest ``b`` mantissa bits replaced by the point's index (``2**b`` >= n), form one int64 key; a
    plain ``np.sort`` of the keys (vectorised, unlike ``argsort``) carries the permutation in its low
    bits. Only values closer than 2**(b - 52) relative may come out in either order; ``b`` is kept so
    that this is below ``rtol / 10`` (else ``np.argsort``): the caller merges neighbours closer than
    ``rtol``, so its groups are those of an exact sort unless a gap lies within ``rtol / 10`` of that
    threshold.
    """
    n = len(values)
    bits = max(1, (n - 1).bit_length())
    if n == 0 or not rtol > 0 or 2.0 ** (bits - 52) > rtol / 10:
        return np.argsort(values)
    keys = np.ascontiguousarray(values, dtype=np.float64).view(np.int64) >> bits
    keys <<= bits
    keys |= np.arange(n, dtype=np.int64)
    keys.sort()
    keys &= (1 << bits) - 1
    return keys


def compute_sticks(
    structure: Structure | Crystal,
    d_min: float,
    *,
    debye_waller: dict[str, float] | None = None,
    merge_tol: float = 1e-7,
    method: str = "separable",
    anomalous: dict[str, tuple[float, float]] | None = None,
) -> Sticks:
    """Stick pattern of ``structure`` (a :class:`~xrdid.structures.crystal.Crystal` or a pymatgen
    ``Structure``) down to ``d_min`` (Å).

    debye_waller: {element symbol: B in Å²}; the scattering factor is multiplied by exp(-B s²).
    merge_tol: reflections whose d agree within this relative tolerance become one stick. pymatgen
        merges 2θ within 1e-5°, i.e. Δd/d of 9e-8 at 2θ = 90° (2e-6 at 5°), so the default 1e-7
        reproduces its peak list; equal-d reflections (up to rounding, ~1e-15) always merge. The
        scattering factors are evaluated once per stick, at its d (so exact to ~merge_tol).
    method: how |F|² is evaluated, all exact: "separable" (every hkl, through per-element complex
        matrix products, the fastest), "orbits" (once per orbit of the spglib Laue group, verified
        against the atoms), "direct" (every hkl, plain sum over atoms; the reference).
    anomalous: {element symbol: (f′, f″)} (e.g. :func:`xrdid.simulate.dispersion.anomalous_for`); the
        scattering factor becomes f0 + f′ + i f″ (elements not named: 0, 0; Debye–Waller applies to
        all of it). A stick sums a reflection and its Friedel mate, where the cross terms of f″ cancel,
        so |F|² = |F computed with f0 + f′|² + |F computed with f″|², each a real form-factor sum.
    """
    if not d_min > 0:
        raise ValueError(f"d_min must be positive, got {d_min} Å")
    if method not in ("separable", "orbits", "direct"):
        raise ValueError(f"method must be 'separable', 'orbits' or 'direct', got {method!r}")
    crystal = structure if isinstance(structure, Crystal) else crystal_from_structure(structure)
    debye_waller = debye_waller or {}
    if len(crystal) == 0:
        return _empty()
    lattice = np.asarray(crystal.lattice, dtype=np.float64)
    recip, lengths = _reciprocal(lattice)  # rows a*, b*, c* (crystallographic, no 2π)
    metric = recip @ recip.T
    g_max = 1.0 / d_min
    # Entries sorted by element: each element's atoms are one contiguous slice.
    index: dict[str, int] = {}
    elem_idx = np.array([index.setdefault(x, len(index)) for x in crystal.species], dtype=np.int64)
    symbols = list(index)
    by_element = np.argsort(elem_idx, kind="stable")
    elem_idx = elem_idx[by_element]
    frac = np.asarray(crystal.frac_coords, dtype=np.float64)[by_element]
    occ = np.asarray(crystal.occupancies, dtype=np.float64)[by_element]
    zs = [atomic_number(x) for x in symbols]
    element_bounds = np.searchsorted(elem_idx, np.arange(len(symbols) + 1))

    *lines, bounds = _half_sphere_lines(metric, lengths, g_max * (1.0 + 1e-12))
    line, l = _expand_lines(*lines)
    if len(l) == 0:
        return _empty()
    # |g|² = G33 l² + 2 l (G13 h + G23 k) + (G11 h² + 2 G12 h k + G22 k²): two terms per line, one per point.
    h, k = lines[0], lines[1]
    twice_b = 2.0 * (metric[0, 2] * h + metric[1, 2] * k)
    c_line = (metric[0, 0] * h + 2.0 * metric[0, 1] * k) * h + metric[1, 1] * k * k
    counts = lines[3] - lines[2] + 1
    g2 = metric[2, 2] * l + np.repeat(twice_b, counts)
    g2 *= l
    g2 += np.repeat(c_line, counts)

    # Sticks: points sorted by |g| (d descending), split where the relative gap exceeds merge_tol.
    order = _order_by_value(g2, merge_tol)
    g = np.sqrt(g2[order])
    new = np.empty(len(g), dtype=bool)
    new[0] = True
    np.greater(g[1:] - g[:-1], merge_tol * g[1:], out=new[1:])
    starts = np.flatnonzero(new)
    stick_sorted = np.cumsum(new) - 1
    stick = np.empty_like(stick_sorted)
    stick[order] = stick_sorted  # the stick of each point, in the points' own order

    centring = None
    if method == "separable" and len(frac) >= _CENTRING_MIN_ATOMS:
        types = elem_idx * 1_000_003 + np.rint(occ * 1e6).astype(np.int64)
        centring = _centring(frac, types)
    occ_per_elem = np.bincount(elem_idx, weights=np.abs(occ), minlength=len(symbols))
    if centring is None:
        # Scattering factors once per stick (its members share d within merge_tol).
        ff, ffi = _anomalous(_form_factors(symbols, zs, 0.25 * g[starts] ** 2, debye_waller), symbols, anomalous,
                             0.25 * g[starts] ** 2, debye_waller)  # (elements, sticks)
        f_max2 = (occ_per_elem @ np.abs(ff)) ** 2  # largest possible |F|² of each stick
        if ffi is not None:
            f_max2 += (occ_per_elem @ np.abs(ffi)) ** 2
    else:
        # Only the points every centring translation leaves in phase; F there is m x that of one
        # entry per coset; elsewhere F = 0 exactly. Scattering factors only for the sticks that hold
        # such a point (the same values as for all sticks); the others are absent whatever f_max2 is.
        translations, kept = centring
        allowed = _allowed_points(translations, lines, line, l)
        needed = np.zeros(len(starts), dtype=bool)
        needed[stick[allowed]] = True
        column = np.cumsum(needed) - 1  # a needed stick's column in ff
        s2_needed = 0.25 * g[starts[needed]] ** 2
        ff, ffi = _anomalous(_form_factors(symbols, zs, s2_needed, debye_waller), symbols, anomalous, s2_needed,
                             debye_waller)  # (elements, needed sticks)
        f_max2 = np.zeros(len(starts))
        f_max2[needed] = (occ_per_elem @ np.abs(ff)) ** 2
        if ffi is not None:
            f_max2[needed] += (occ_per_elem @ np.abs(ffi)) ** 2

    if method != "separable":
        hkl = _points_hkl(h, k, line, l)
    if method == "orbits":
        positions, site_types = _site_types(frac, tuple(symbols[i] for i in elem_idx), occ)
        rots = _verified_rotations(lattice, positions, site_types, g_max)
        rep_idx, inverse = _laue_orbits(hkl, rots) if len(rots) > 2 else (np.arange(len(hkl)),) * 2

    def f2_of(ff):
        if method == "orbits":
            return _f2_direct(frac, elem_idx, occ, ff[:, stick[rep_idx]], hkl[rep_idx])[inverse]
        if method == "separable":
            if centring is None:
                return _f2_separable(frac, element_bounds, occ, ff[:, stick], lines, line, l, bounds)
            kept_bounds = np.searchsorted(elem_idx[kept], np.arange(len(symbols) + 1))
            out = np.zeros(len(l))
            out[allowed] = _f2_separable(
                frac[kept], kept_bounds, occ[kept] * (len(translations) + 1), ff[:, column[stick[allowed]]],
                lines, line[allowed], l[allowed], bounds, _l_period(translations),
            )
            return out
        return _f2_direct(frac, elem_idx, occ, ff[:, stick], hkl)

    f2 = f2_of(ff)
    if ffi is not None:
        f2 = f2 + f2_of(ffi)

    # Only the present points (absent ones are often most: centring, glides, screws) go further.
    f2 = f2[order]
    present = np.flatnonzero(f2 > _ABSENT_RTOL * f_max2[stick_sorted])  # positions in |g| order
    if len(present) == 0:
        return _empty()
    stick_of = stick_sorted[present]
    new = np.empty(len(present), dtype=bool)
    new[0] = True
    np.not_equal(stick_of[1:], stick_of[:-1], out=new[1:])
    first = np.flatnonzero(new)  # the first present member of each stick that has one
    # Each half-space point stands for itself and its Friedel mate: factor 2.
    f2m = 2.0 * np.add.reduceat(f2[present], first)
    # d of a stick: that of its first (lowest-g) present member, as pymatgen reports its first reflection's d.
    d = 1.0 / g[present[first]]
    # Representative hkl: lexicographic max over the present members and their Friedel mates, with
    # Miller indices as one integer (mixed radix, centred; the Friedel mate is its negative).
    span = 2 * max(bounds) + 1
    members = order[present]
    key = ((h * span + k) * span)[line[members]] + l[members]
    best = np.maximum.reduceat(np.abs(key), first)
    off = span // 2
    shifted = best + off * (span * span + span + 1)
    rep = np.empty((len(best), 3), dtype=np.int32)
    rep[:, 0] = shifted // (span * span) - off
    rep[:, 1] = (shifted // span) % span - off
    rep[:, 2] = shifted % span - off
    return Sticks(d=d, f2m=f2m, hkl=rep)


def _empty() -> Sticks:
    return Sticks(d=np.zeros(0), f2m=np.zeros(0), hkl=np.zeros((0, 3), dtype=np.int32))


def lorentz_polarisation(two_theta_deg: np.ndarray) -> np.ndarray:
    """(1 + cos² 2θ) / (sin² θ cos θ), the unpolarised-beam Lorentz-polarisation factor of pymatgen."""
    theta = np.radians(np.asarray(two_theta_deg, dtype=np.float64)) / 2.0
    return (1.0 + np.cos(2.0 * theta) ** 2) / (np.sin(theta) ** 2 * np.cos(theta))


def _lorentz_polarisation_of_sin(sin_theta: np.ndarray) -> np.ndarray:
    """:func:`lorentz_polarisation` from sin θ: (1 + (1 - 2 sin² θ)²) / (sin² θ √(1 - sin² θ)), the same
    factor (to rounding) without the angle's cos and sin."""
    s2 = sin_theta * sin_theta
    cos_2theta = 1.0 - 2.0 * s2
    return (1.0 + cos_2theta * cos_2theta) / (s2 * np.sqrt(1.0 - s2))


def sticks_to_peaks(
    sticks: Sticks,
    wavelength_A: float,
    two_theta_min_deg: float,
    two_theta_max_deg: float,
    *,
    scaled: bool = True,
    min_relative_intensity: float = 1e-5,
    merge_tolerance_deg: float = 1e-5,
) -> dict:
    """Peaks at one wavelength: {two_theta (deg), intensity, hkl (int32 (n,3)), d (Å)}, by 2θ ascending.

    intensity = f2m x (1 + cos² 2θ)/(sin² θ cos θ); scaled to 100 at the strongest peak when ``scaled``
    (as pymatgen). Peaks weaker than ``min_relative_intensity`` x the strongest are dropped (pymatgen
    drops those below 1e-3 on its 0-100 scale, i.e. 1e-5). Lines whose 2θ rounds to the same multiple of
    ``merge_tolerance_deg`` are one peak (pymatgen's binning and tolerance).
    """
    if wavelength_A <= 0:
        raise ValueError(f"wavelength must be positive, got {wavelength_A} Å")
    sin_theta = wavelength_A / (2.0 * sticks.d)
    reachable = sin_theta <= 1.0
    if reachable.all():  # 2θ in degrees: arcsin x 360/π (= np.degrees(2 arcsin), bit for bit)
        two_theta = np.arcsin(sin_theta)
        two_theta *= 360.0 / math.pi
    else:
        two_theta = np.full(len(sticks.d), np.inf)
        two_theta[reachable] = np.arcsin(sin_theta[reachable]) * (360.0 / math.pi)
    ascending = not (two_theta[1:] < two_theta[:-1]).any()  # sticks come by d descending, i.e. 2θ ascending
    if ascending:  # the range kept is one slice: views, no copies
        keep = slice(int(np.searchsorted(two_theta, two_theta_min_deg, side="left")),
                     int(np.searchsorted(two_theta, two_theta_max_deg, side="right")))
    else:
        keep = (two_theta >= two_theta_min_deg) & (two_theta <= two_theta_max_deg)
    two_theta = two_theta[keep]
    intensity = sticks.f2m[keep] * _lorentz_polarisation_of_sin(sin_theta[keep])
    hkl, d = sticks.hkl[keep], sticks.d[keep]
    if len(intensity) > 1:
        # Lines of different families at the same angle (metric coincidences no symmetry relates, e.g.
        # in a triclinic cell with one right angle) are one peak, as pymatgen reports them: summed, at
        # the first line's angle, with its hkl.
        if not ascending:
            order = np.argsort(two_theta, kind="stable")
            two_theta, intensity, hkl, d = two_theta[order], intensity[order], hkl[order], d[order]
        key = np.round(two_theta / merge_tolerance_deg).astype(np.int64)
        new = np.empty(len(key), dtype=bool)
        new[0] = True
        np.not_equal(key[1:], key[:-1], out=new[1:])
        first = np.flatnonzero(new)
        if len(first) < len(key):  # else no two lines share a peak
            intensity = np.add.reduceat(intensity, first)
            two_theta, hkl, d = two_theta[first], hkl[first], d[first]
    if len(intensity):
        top = intensity.max()
        strong = intensity > min_relative_intensity * top
        two_theta, intensity, hkl, d = two_theta[strong], intensity[strong], hkl[strong], d[strong]
        if scaled and top > 0:
            intensity = intensity * (100.0 / top)
    return {"two_theta": two_theta, "intensity": intensity, "hkl": hkl, "d": d}
