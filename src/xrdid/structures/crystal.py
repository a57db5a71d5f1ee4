"""A crystal as plain arrays: what the structures table stores and what the simulation reads.

Parsing a CIF or building a pymatgen ``Structure`` costs more than simulating the crystal's sticks, so
every source turns its input into a :class:`Crystal` once, at ingestion; simulation chunks and
``xrdid simulate`` read these arrays and never touch CIF text or pymatgen objects. This module needs
only numpy and gemmi (element names), so the command line can import it in a few milliseconds.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Crystal:
    """An ordered or disordered crystal, as arrays.

    lattice: float64 (3, 3), rows a, b, c (Cartesian, Å).
    species: element symbol of each entry (``"Fe"``, not ``"Fe2+"``).
    frac_coords: float64 (n, 3), fractional coordinates of each entry.
    occupancies: float64 (n,), the occupancy of each entry. A site shared by several elements
        (substitutional disorder) is one entry per element at the same position.
    """

    lattice: np.ndarray
    species: tuple[str, ...]
    frac_coords: np.ndarray
    occupancies: np.ndarray

    def __post_init__(self):
        n = len(self.species)
        if np.shape(self.lattice) != (3, 3):
            raise ValueError(f"lattice must be 3 x 3, got shape {np.shape(self.lattice)}")
        if np.shape(self.frac_coords) != (n, 3) or np.shape(self.occupancies) != (n,):
            raise ValueError(
                f"{n} species but frac_coords of shape {np.shape(self.frac_coords)} and "
                f"occupancies of shape {np.shape(self.occupancies)}"
            )

    def __len__(self) -> int:
        return len(self.species)

    @property
    def volume(self) -> float:
        """Cell volume in Å³ (absolute value of the determinant; NaN for a non-finite lattice)."""
        return abs(float(np.linalg.det(self.lattice))) if np.isfinite(self.lattice).all() else math.nan

    @property
    def is_ordered(self) -> bool:
        """Every entry fully occupied and no two entries on the same position."""
        if not np.all(np.abs(self.occupancies - 1.0) <= OCCUPANCY_TOL):
            return False
        return len(np.unique(np.round(self.frac_coords % 1.0, 6), axis=0)) == len(self)

    def counts(self) -> dict[str, float]:
        """Atoms per cell of each element (occupancies summed)."""
        out: dict[str, float] = {}
        for symbol, occ in zip(self.species, self.occupancies.tolist()):
            out[symbol] = out.get(symbol, 0.0) + occ
        return out

    @property
    def formula(self) -> str:
        """pymatgen's reduced formula ("NaCl", "Fe0.6Mn0.4O2"); pymatgen is imported on first use."""
        return reduced_formula(tuple(sorted((el, round(n, 6)) for el, n in self.counts().items())))

    def atomic_numbers(self) -> np.ndarray:
        return np.array([atomic_number(s) for s in self.species], dtype=np.int64)

    def to_structure(self):
        """The pymatgen ``Structure`` (entries on one position become one site with mixed species)."""
        from pymatgen.core import Lattice, Structure

        lattice = Lattice(self.lattice)
        if np.all(self.occupancies == 1.0):
            return Structure(lattice, list(self.species), self.frac_coords)
        sites: dict[tuple, dict[str, float]] = {}
        coords: dict[tuple, np.ndarray] = {}
        for symbol, xyz, occ in zip(self.species, self.frac_coords, self.occupancies.tolist()):
            key = tuple(np.round(xyz, 8))
            coords.setdefault(key, xyz)
            composition = sites.setdefault(key, {})
            composition[symbol] = composition.get(symbol, 0.0) + occ
        return Structure(lattice, list(sites.values()), [coords[k] for k in sites])

    def to_cif(self, name: str = "crystal") -> str:
        """A P1 CIF of these arrays (for export; cell parameters, then every entry as an atom site)."""
        a, b, c = (float(np.linalg.norm(v)) for v in self.lattice)

        def angle(u, v) -> float:
            return math.degrees(math.acos(max(-1.0, min(1.0, float(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v))))))

        alpha, beta, gamma = angle(self.lattice[1], self.lattice[2]), angle(self.lattice[0], self.lattice[2]), angle(self.lattice[0], self.lattice[1])
        block = re.sub(r"\s+", "_", name) or "crystal"
        lines = [
            f"data_{block}",
            "_symmetry_space_group_name_H-M 'P 1'",
            "_symmetry_Int_Tables_number 1",
            f"_cell_length_a {a:.10f}",
            f"_cell_length_b {b:.10f}",
            f"_cell_length_c {c:.10f}",
            f"_cell_angle_alpha {alpha:.10f}",
            f"_cell_angle_beta {beta:.10f}",
            f"_cell_angle_gamma {gamma:.10f}",
            "loop_",
            "_symmetry_equiv_pos_as_xyz",
            "'x, y, z'",
            "loop_",
            "_atom_site_label",
            "_atom_site_type_symbol",
            "_atom_site_fract_x",
            "_atom_site_fract_y",
            "_atom_site_fract_z",
            "_atom_site_occupancy",
        ]
        # Fractional coordinates do not depend on the cell's orientation, so the parameters suffice.
        for i, (symbol, (x, y, z), occ) in enumerate(zip(self.species, self.frac_coords.tolist(), self.occupancies.tolist())):
            lines.append(f"{symbol}{i + 1} {symbol} {x:.10f} {y:.10f} {z:.10f} {occ:.6g}")
        return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=65536)
def reduced_formula(counts: tuple[tuple[str, float], ...]) -> str:
    """pymatgen's reduced formula of ((element, atoms per cell), ...), e.g. (("Cl", 4), ("Na", 4)) -> "NaCl"."""
    from pymatgen.core import Composition

    return Composition(dict(counts)).reduced_formula


# Occupancies this close to 1 count as full (CIFs print 0.9999, 1.0001).
OCCUPANCY_TOL = 1e-3
# Fractional coordinates meant to coincide exactly (a site's images made by a CIF's operations, an atom
# and its centring partner) agree to ~1e-16: they are compared as integers on this grid.
COORDINATE_GRID = 10**9


def grid_keys(frac: np.ndarray) -> np.ndarray:
    """Fractional coordinates modulo 1 as integers on the grid ``1 / COORDINATE_GRID``: int64, the shape of
    ``frac``."""
    return np.rint((frac % 1.0) * COORDINATE_GRID).astype(np.int64) % COORDINATE_GRID


def crystal_from_structure(structure) -> Crystal:
    """The arrays of a pymatgen ``Structure`` (one entry per species of each site)."""
    species, coords, occ = [], [], []
    frac = structure.frac_coords
    for i, site in enumerate(structure):
        for sp, amount in site.species.items():
            species.append(sp.symbol)
            coords.append(frac[i])
            occ.append(float(amount))
    return Crystal(
        lattice=np.array(structure.lattice.matrix, dtype=np.float64),
        species=tuple(species),
        frac_coords=np.asarray(coords, dtype=np.float64).reshape(-1, 3),
        occupancies=np.asarray(occ, dtype=np.float64),
    )


def crystal_from_pymatgen_dict(doc: dict) -> Crystal:
    """The arrays of a structure in pymatgen's ``Structure.as_dict()`` form (what the Materials Project
    API returns), read directly: no pymatgen objects, no CIF.

    Sites carry ``species`` [{``element``, ``occu``}…] and ``abc`` (fractional); ``xyz`` (Cartesian) is
    used when ``abc`` is missing. Raises ValueError naming what is missing or not an element.
    """
    try:
        lattice = np.array(doc["lattice"]["matrix"], dtype=np.float64)
        sites = doc["sites"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a pymatgen structure document: missing {exc}") from None
    if lattice.shape != (3, 3):
        raise ValueError(f"lattice matrix must be 3 x 3, got shape {lattice.shape}")
    species, coords, occ = [], [], []
    inverse = None
    for index, site in enumerate(sites):
        if "abc" in site:
            xyz = site["abc"]
        elif "xyz" in site:
            if inverse is None:
                inverse = np.linalg.inv(lattice)
            xyz = np.asarray(site["xyz"], dtype=np.float64) @ inverse
        else:
            raise ValueError(f"site {index} has neither 'abc' nor 'xyz' coordinates")
        for entry in site.get("species") or ():
            symbol = entry.get("element")
            if not isinstance(symbol, str) or atomic_number(symbol, strict=True) == 0:
                raise ValueError(f"site {index}: species {symbol!r} is not an element")
            species.append(element_symbol(symbol))
            coords.append(xyz)
            occ.append(float(entry.get("occu", 1.0)))
        if not site.get("species"):
            raise ValueError(f"site {index} has no species")
    return Crystal(
        lattice=lattice,
        species=tuple(species),
        frac_coords=np.asarray(coords, dtype=np.float64).reshape(-1, 3),
        occupancies=np.asarray(occ, dtype=np.float64),
    )


def crystal_from_arrays(
    lattice: Sequence[float], species: Sequence[str], frac_coords, occupancies=None
) -> Crystal:
    """A Crystal from table columns: ``lattice`` flat (9,) or (3, 3), per-entry species and coordinates."""
    frac = np.asarray(frac_coords, dtype=np.float64).reshape(-1, 3)
    occ = np.ones(len(frac)) if occupancies is None else np.asarray(occupancies, dtype=np.float64)
    return Crystal(np.asarray(lattice, dtype=np.float64).reshape(3, 3), tuple(species), frac, occ)


# A CIF atom type: an element symbol, then optionally a charge ("Fe3+", "O2-", "Cl-1", "Na+").
# An element and an optional charge, integral or not: "Fe", "Fe3+", "Cl-1", "Ti3.25+", "O0.5-".
_TYPE_SYMBOL = re.compile(r"([A-Z][a-z]?)((?:\d{1,2}(?:\.\d+)?)?[+-]?(?:\d{1,2}(?:\.\d+)?)?)")


@functools.lru_cache(maxsize=4096)
def element_of_type_symbol(type_symbol: str) -> str:
    """The element of a CIF ``_atom_site_type_symbol`` ("Fe3+" -> "Fe"); ValueError when it is not one.

    Molecular pseudo-atoms ("OH", "H2O", "NH4", "Wat") are refused rather than guessed: pymatgen drops
    or misreads them ("NH4" becomes nihonium), which silently changes the crystal. So the symbol must
    be spelled as elements are (capital, then lower case): "NH4" is not read as Nh.
    """
    match = _TYPE_SYMBOL.fullmatch(type_symbol.strip())
    if match is not None:
        letters = match.group(1)
        if atomic_number(letters, strict=True):
            return element_symbol(letters)
    raise ValueError(f"atom type {type_symbol!r} is not an element (molecular pseudo-atoms are not simulated)")


@functools.cache
def _gemmi_element(symbol: str):
    import gemmi

    return gemmi.Element(symbol)


def atomic_number(symbol: str, *, strict: bool = False) -> int:
    """Atomic number of an element symbol (any letter case); 0 when it is not an element.

    strict: only exact symbols of one or two letters ("Fe", "FE"), no charges or labels.
    """
    if strict and not re.fullmatch(r"[A-Za-z]{1,2}", symbol):
        return 0
    return int(_gemmi_element(symbol).atomic_number)


def element_symbol(symbol: str) -> str:
    """The standard spelling of an element symbol ("FE" -> "Fe")."""
    return _gemmi_element(symbol).name
