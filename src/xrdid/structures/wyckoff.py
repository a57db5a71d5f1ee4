"""Random crystals by direct Wyckoff placement: the fast synthetic generator.

pyxtal's ``from_random`` is thorough (it searches Wyckoff combinations for a given composition, merges
close atoms, adapts the cell) and takes about a second per crystal. Training data needs many distinct
crystals more than it needs that care, so this generator does the simplest correct thing, with the
symmetry data of pyxtal (Wyckoff positions as affine operations, in the conventional setting):

1. choose species and, for each, one or two Wyckoff positions of the group (small multiplicities
   favoured, a position without free parameters used at most once), so the composition follows from
   the positions rather than the other way round;
2. draw a cell obeying the lattice type (a = b for tetragonal, 120° for hexagonal axes, …) whose volume
   is the atoms' volume over a random packing fraction;
3. place each orbit: a random point projected onto the position by its first operation, its images by
   all operations, accepted when every interatomic distance exceeds pyxtal's "atomic" tolerance for the
   pair (a few tries, then a larger cell).

The result is labelled by spglib afterwards like every structure (:func:`describe_structure`): free
parameters that happen to sit on a special value can raise the symmetry, and the caller retries then.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_SHIFTS = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], float)


@dataclass(frozen=True)
class _Position:
    letter: str
    multiplicity: int
    dof: int
    rotations: np.ndarray  # (m, 3, 3) acting on fractional column vectors
    translations: np.ndarray  # (m, 3)

    def orbit(self, point: np.ndarray) -> np.ndarray:
        """All images of a point of this position (fractional, wrapped into [0, 1))."""
        return (self.rotations @ point + self.translations) % 1.0

    def project(self, xyz: np.ndarray) -> np.ndarray:
        """A point of this position from three random numbers (its first operation's projection)."""
        return (self.rotations[0] @ xyz + self.translations[0]) % 1.0


@functools.cache
def group_positions(number: int) -> tuple[str, tuple[_Position, ...]]:
    """(lattice type, Wyckoff positions) of space group ``number`` in pyxtal's conventional setting."""
    from pyxtal.symmetry import Group

    group = Group(number)
    positions = []
    for wp in group.Wyckoff_positions:
        positions.append(
            _Position(
                letter=str(wp.letter),
                multiplicity=int(wp.multiplicity),
                dof=int(wp.get_dof()),
                rotations=np.array([op.rotation_matrix for op in wp.ops], float),
                translations=np.array([op.translation_vector for op in wp.ops], float),
            )
        )
    return str(group.lattice_type), tuple(positions)


@functools.cache
def _element_data(elements: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Atomic volumes (Å³) and the pairwise minimum distances (Å, pyxtal's atomic tolerance)."""
    from pymatgen.core import Element
    from pyxtal.tolerance import Tol_matrix

    tm = Tol_matrix(prototype="atomic")
    radii = np.array([Element(e).atomic_radius or 1.5 for e in elements], float)
    tol = np.array([[tm.get_tol(a, b) for b in elements] for a in elements], float)
    # A floor for the lightest atoms (H's radius is 0.25 Å; hydrides give it about 5-10 Å³).
    return np.maximum(4.0 / 3.0 * math.pi * radii**3, 8.0), tol


def lattice_matrix(a: float, b: float, c: float, alpha: float, beta: float, gamma: float) -> np.ndarray:
    """Row-vector lattice matrix (Å) from cell parameters (degrees), a along x, b in the xy plane."""
    al, be, ga = np.radians([alpha, beta, gamma])
    cx = c * math.cos(be)
    cy = c * (math.cos(al) - math.cos(be) * math.cos(ga)) / math.sin(ga)
    cz2 = c * c - cx * cx - cy * cy
    if cz2 <= 1e-6 * c * c:
        raise ValueError("cell angles do not form a cell")
    return np.array([[a, 0.0, 0.0], [b * math.cos(ga), b * math.sin(ga), 0.0], [cx, cy, math.sqrt(cz2)]])


def _cell_shape(lattice_type: str, rng: np.random.Generator) -> tuple[float, float, float, float, float, float]:
    """Cell parameters of unit volume scale (a = 1 before scaling) for a lattice type."""

    def ratio(lo=0.5, hi=2.0):
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    if lattice_type == "cubic":
        return 1.0, 1.0, 1.0, 90.0, 90.0, 90.0
    if lattice_type == "tetragonal":
        return 1.0, 1.0, ratio(0.4, 2.5), 90.0, 90.0, 90.0
    if lattice_type in ("hexagonal", "trigonal"):
        return 1.0, 1.0, ratio(0.4, 3.0), 90.0, 90.0, 120.0
    if lattice_type == "orthorhombic":
        return 1.0, ratio(), ratio(), 90.0, 90.0, 90.0
    if lattice_type == "monoclinic":
        return 1.0, ratio(), ratio(), 90.0, float(rng.uniform(91.0, 125.0)), 90.0
    while True:  # triclinic: angles that make a real, not too flat cell
        alpha, beta, gamma = rng.uniform(65.0, 115.0, 3)
        try:
            m = lattice_matrix(1.0, 1.0, 1.0, alpha, beta, gamma)
        except ValueError:
            continue
        if abs(np.linalg.det(m)) > 0.5:
            return 1.0, ratio(), ratio(), float(alpha), float(beta), float(gamma)


def _scaled_lattice(shape, volume: float) -> np.ndarray:
    m = lattice_matrix(*shape)
    return m * (volume / abs(np.linalg.det(m))) ** (1.0 / 3.0)


def _min_distances(a: np.ndarray, b: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) shortest periodic distances between fractional points (any cell shape)."""
    diff = a[:, None, :] - b[None, :, :]
    diff -= np.round(diff)
    cart = (diff[:, :, None, :] + _SHIFTS) @ lattice
    return np.sqrt((cart**2).sum(-1).min(-1))


def _choose_sites(positions, n_species: int, max_atoms: int, rng: np.random.Generator, most_free: bool = False):
    """(species slot, position) pairs: one or two positions per species, within max_atoms.

    ``most_free``: the first pick is a position with the most free parameters that fits (the general
    position where it fits), whose orbit alone carries the whole group's symmetry.
    """
    usable = [p for p in positions if p.multiplicity <= max_atoms]
    if not usable:
        return None
    # Weights 1/sqrt(multiplicity): small cells stay common, general positions (which keep the
    # group's own symmetry rather than a supergroup's) are drawn often enough.
    weights = np.array([p.multiplicity**-0.5 for p in usable])
    picks, used_fixed, total = [], set(), 0
    for slot in range(n_species):
        for _ in range(1 if rng.random() < 0.6 else 2):
            free = [i for i, p in enumerate(usable) if p.dof > 0 or p.letter not in used_fixed]
            if most_free and not picks:
                top = max(usable[i].dof for i in free)
                free = [i for i in free if usable[i].dof == top]
            if not free:
                return None
            w = weights[free] / weights[free].sum()
            pos = usable[free[int(rng.choice(len(free), p=w))]]
            if total + pos.multiplicity > max_atoms:
                return None
            total += pos.multiplicity
            if pos.dof == 0:
                used_fixed.add(pos.letter)
            picks.append((slot, pos))
    return picks


@functools.cache
def wyckoff_statistics() -> dict[int, tuple[list[tuple[int, ...]], np.ndarray, np.ndarray]]:
    """Occupied-Wyckoff-position combinations of real crystals, per space group.

    From pyxtal's ``database/spg_num_wps_mp.csv``: for each space group, each combination of occupied
    positions (indices into :func:`group_positions`, general position 0) and how many of about 89,000
    Materials Project structures have it. Returns {group: (combinations, atoms per conventional cell,
    counts)}. 225 groups have entries.
    """
    import csv
    from importlib import resources

    table: dict[int, tuple[list, list, list]] = {}
    with (resources.files("pyxtal") / "database" / "spg_num_wps_mp.csv").open() as fh:
        for row in csv.DictReader(fh):
            combos, atoms, counts = table.setdefault(int(row["spg"]), ([], [], []))
            combos.append(tuple(int(i) for i in row["wps"].split("-")))
            atoms.append(int(row["n_atoms"]))
            counts.append(float(row["count"]))
    return {g: (c, np.asarray(a), np.asarray(n)) for g, (c, a, n) in table.items()}


def real_space_group_counts() -> np.ndarray:
    """How many of the structures behind :func:`wyckoff_statistics` have each space group (230 values,
    group 1 first): a label prior of real materials."""
    counts = np.zeros(230)
    for number, (_combos, _atoms, n) in wyckoff_statistics().items():
        counts[number - 1] = n.sum()
    return counts


def _sites_from_statistics(number: int, positions, n_species: int, max_atoms: int, rng: np.random.Generator):
    """(species slot, position) pairs from a combination real crystals of the group have (drawn by its
    count, within max_atoms), or None when the group has none. Every species gets at least one orbit;
    a combination with fewer orbits than species uses fewer species."""
    entry = wyckoff_statistics().get(number)
    if entry is None:
        return None
    combos, atoms, counts = entry
    w = np.where(atoms <= max_atoms, counts, 0.0)
    if w.sum() == 0:
        return None
    combo = combos[int(rng.choice(len(combos), p=w / w.sum()))]
    n = min(n_species, len(combo))
    slots = np.concatenate([rng.permutation(n), rng.integers(0, n, len(combo) - n)])
    order = rng.permutation(len(combo))
    return [(int(slots[k]), positions[combo[i]]) for k, i in enumerate(order)]


def check_species_weights(weights: Sequence[float], max_elements: int) -> np.ndarray:
    """``weights`` as probabilities of 1..``max_elements`` elements; ValueError unless there is one
    non-negative value per count and their sum is positive."""
    w = np.asarray(weights, dtype=float)
    if len(w) != max_elements or (w < 0).any() or w.sum() <= 0:
        raise ValueError(
            f"species_weights needs max_elements = {max_elements} non-negative values "
            f"(for 1..{max_elements} elements) with a positive sum, got {list(weights)}"
        )
    return w / w.sum()


def draw_n_species(rng: np.random.Generator, max_elements: int, weights: Sequence[float] | None = None) -> int:
    """Number of distinct elements of one crystal: uniform over 1..``max_elements``, or drawn with
    relative ``weights`` (one per count, 1 first)."""
    if weights is None:
        return int(rng.integers(1, max_elements + 1))
    return int(rng.choice(max_elements, p=check_species_weights(weights, max_elements))) + 1


def random_crystal(
    number: int,
    rng: np.random.Generator,
    *,
    elements: tuple[str, ...],
    max_elements: int = 3,
    species_weights: tuple[float, ...] | None = None,
    statistics_fraction: float = 0.0,
    max_atoms: int = 40,
    tries_per_orbit: int = 12,
    cell_tries: int = 5,
    most_free: bool = False,
) -> tuple[np.ndarray, list[str], np.ndarray] | None:
    """One random crystal of space group ``number``: (lattice rows, species, fractional coordinates).

    Returns None when no placement was found within the tries (the caller draws again). ``most_free``
    makes a supergroup unlikely (see :func:`_choose_sites`), for a second draw after one came out in a
    supergroup. ``statistics_fraction``: the share of draws whose occupied positions are a combination
    real crystals of the group have (:func:`wyckoff_statistics`) rather than a random choice.
    """
    lattice_type, positions = group_positions(number)
    volumes, tol = _element_data(tuple(elements))
    n_species = draw_n_species(rng, max_elements, species_weights)
    chosen = rng.choice(len(elements), size=n_species, replace=False)
    picks = None
    if statistics_fraction > 0 and not most_free and rng.random() < statistics_fraction:
        picks = _sites_from_statistics(number, positions, n_species, max_atoms, rng)
    if picks is None:
        picks = _choose_sites(positions, n_species, max_atoms, rng, most_free)
    if picks is None:
        return None
    atoms_volume = sum(p.multiplicity * volumes[chosen[slot]] for slot, p in picks)
    packing = rng.uniform(0.35, 0.65)
    shape = _cell_shape(lattice_type, rng)
    for _ in range(cell_tries):
        lattice = _scaled_lattice(shape, atoms_volume / packing)
        # An atom's distance to its own periodic images: the shortest lattice vector.
        shortest = float(np.sqrt(((_SHIFTS[_SHIFTS.any(1)] @ lattice) ** 2).sum(1)).min())
        coords, kinds = np.zeros((0, 3)), np.zeros(0, int)
        for slot, pos in picks:
            element = int(chosen[slot])
            if shortest < tol[element, element]:
                break
            for _ in range(tries_per_orbit if pos.dof else 1):
                orbit = pos.orbit(pos.project(rng.random(3)))
                # The group's operations are isometries that map the orbit, and the atoms placed so far
                # (whole orbits), onto themselves: the first atom's distances are every atom's.
                self_d = _min_distances(orbit[:1], orbit[1:], lattice)
                if self_d.min(initial=np.inf) < tol[element, element]:
                    continue  # a special point of the position, or too close to its own images
                if len(coords):
                    cross = _min_distances(orbit[:1], coords, lattice)
                    if (cross < tol[element][kinds]).any():
                        continue
                coords = np.vstack([coords, orbit])
                kinds = np.concatenate([kinds, np.full(len(orbit), element)])
                break
            else:
                break
        else:
            return lattice, [elements[k] for k in kinds], coords
        packing *= 0.8  # crowded: a larger cell of the same shape
    return None
