"""The Wyckoff-placement generator: symmetry as requested, sensible distances, every group reachable."""

import numpy as np
import pytest
import spglib

from xrdid.structures.synthetic import DEFAULT_ELEMENTS
from xrdid.structures.wyckoff import (
    _element_data,
    _min_distances,
    _sites_from_statistics,
    draw_n_species,
    group_positions,
    lattice_matrix,
    random_crystal,
    wyckoff_statistics,
)

ELEMENTS = tuple(DEFAULT_ELEMENTS)


def _label(lattice, species, coords):
    numbers = [ELEMENTS.index(e) + 1 for e in species]
    return int(spglib.get_symmetry_dataset((lattice, coords, numbers), symprec=0.01).number)


def _invariant(number, species, coords) -> bool:
    """Every operation of the group maps the crystal onto itself, atom for atom and element for element."""
    general = group_positions(number)[1][0]
    for rot, tr in zip(general.rotations, general.translations):
        image = (coords @ rot.T + tr) % 1.0
        diff = image[:, None, :] - coords[None, :, :]
        diff -= np.round(diff)
        match = (np.abs(diff) < 1e-6).all(-1) & (np.array(species)[:, None] == np.array(species)[None, :])
        if not match.any(1).all():
            return False
    return True


@pytest.mark.parametrize("number", [1, 2, 14, 15, 62, 88, 146, 160, 166, 176, 194, 205, 225, 227, 230])
def test_crystals_have_the_group_symmetry_and_reach_its_label(number):
    rng = np.random.default_rng(number)
    labels = []
    for _ in range(12):
        crystal = random_crystal(number, rng, elements=ELEMENTS, max_atoms=40)
        if crystal is None:
            continue
        lattice, species, coords = crystal
        assert len(species) == len(coords) <= 40
        # Built with the group's operations: spglib can find more symmetry (a supergroup), never less.
        assert _invariant(number, species, coords)
        labels.append(_label(lattice, species, coords))
    assert number in labels, labels  # the aggregate rate is checked in test_synthetic


def test_distances_respect_the_atomic_tolerance():
    rng = np.random.default_rng(7)
    _, tol = _element_data(ELEMENTS)
    for number in (2, 14, 62, 139, 194, 225):
        crystal = random_crystal(number, rng, elements=ELEMENTS)
        assert crystal is not None
        lattice, species, coords = crystal
        kinds = np.array([ELEMENTS.index(e) for e in species])
        d = _min_distances(coords, coords, lattice)
        # The diagonal: each atom's own periodic images, the shortest lattice vector away.
        shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if i or j or k])
        np.fill_diagonal(d, np.sqrt(((shifts @ lattice) ** 2).sum(1)).min())
        assert (d >= tol[kinds][:, kinds] - 1e-9).all()


def test_periodic_distance_sees_the_nearest_image_in_a_skewed_cell():
    lattice = lattice_matrix(3.0, 3.0, 10.0, 90.0, 90.0, 30.0)
    a = np.array([[0.0, 0.0, 0.0]])
    b = np.array([[0.9, 0.1, 0.0]])
    brute = min(
        np.linalg.norm((b[0] - a[0] + [i, j, k]) @ lattice)
        for i in range(-2, 3) for j in range(-2, 3) for k in range(-2, 3)
    )
    assert _min_distances(a, b, lattice)[0, 0] == pytest.approx(brute)


def test_every_group_has_positions_and_a_lattice_type():
    types = {group_positions(n)[0] for n in range(1, 231)}
    assert types == {"triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic"}
    # General position first (pyxtal's order), its multiplicity the largest.
    for n in (1, 47, 230):
        positions = group_positions(n)[1]
        assert positions[0].dof == 3 and positions[0].multiplicity == max(p.multiplicity for p in positions)


def test_seeded():
    a = random_crystal(62, np.random.default_rng(3), elements=ELEMENTS)
    b = random_crystal(62, np.random.default_rng(3), elements=ELEMENTS)
    assert a is not None and np.array_equal(a[2], b[2]) and a[1] == b[1]


def test_species_weights_set_how_many_elements_a_crystal_has():
    rng = np.random.default_rng(0)
    counts = np.bincount([draw_n_species(rng, 3, (0.0, 1.0, 3.0)) for _ in range(4000)], minlength=4)
    assert counts[0] == 0 and counts[1] == 0
    assert counts[3] / counts[2] == pytest.approx(3.0, rel=0.15)
    elements = {len(set(c[1])) for c in (random_crystal(2, rng, elements=ELEMENTS, species_weights=(0, 0, 1)) for _ in range(30)) if c}
    assert elements == {3}
    with pytest.raises(ValueError, match="3 non-negative values"):
        draw_n_species(rng, 3, (1.0, 1.0))


def test_wyckoff_statistics_index_the_groups_positions():
    table = wyckoff_statistics()
    assert len(table) > 200 and 225 in table
    # The indices are positions of group_positions (pyxtal's order): multiplicities add up to the atoms.
    for number, (combos, atoms, _counts) in table.items():
        positions = group_positions(number)[1]
        assert [sum(positions[i].multiplicity for i in c) for c in combos] == atoms.tolist()


def test_sites_from_statistics_are_a_real_combination_with_every_species():
    rng = np.random.default_rng(1)
    combos, _, _ = wyckoff_statistics()[225]
    positions = group_positions(225)[1]
    for _ in range(50):
        picks = _sites_from_statistics(225, positions, 3, 40, rng)
        letters = sorted(p.letter for _, p in picks)
        assert letters in [sorted(positions[i].letter for i in c) for c in combos]
        assert sum(p.multiplicity for _, p in picks) <= 40
        slots = {slot for slot, _ in picks}
        assert slots == set(range(min(3, len(picks))))
    # Statistics-drawn crystals keep the requested symmetry (a supergroup at most).
    for number in (14, 62, 194, 225):
        crystal = random_crystal(number, rng, elements=ELEMENTS, statistics_fraction=1.0)
        assert crystal is not None and _invariant(number, crystal[1], crystal[2])
