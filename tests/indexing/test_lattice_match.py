"""Matching lattices up to a change of basis (the right-cell criterion and the de-duplication of cells)."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice

from xrdid.indexing.lattice import niggli, same_lattice, same_reduced

BASE = Lattice.from_parameters(4.1, 5.3, 7.9, 82.0, 97.0, 104.0)


def test_same_lattice_in_another_basis_matches():
    # Unimodular changes of basis, one permuting the axes (the reduced lengths come out in another order
    # only if the pre-check forgets to sort them).
    for m in ([[0, 1, 0], [0, 0, 1], [1, 0, 0]], [[1, 1, 0], [0, 1, 0], [0, 1, 1]], [[1, 0, 0], [2, 1, 0], [-1, 0, 1]]):
        other = Lattice(np.asarray(m, float) @ BASE.matrix)
        assert same_lattice(BASE, other)
        assert same_reduced(niggli(other), niggli(BASE))


def test_different_lattices_of_the_same_volume_do_not_match():
    # One axis 2 % longer, another 2 % shorter: the volume is within the tolerance, the lengths are not.
    a, b, c = BASE.abc
    other = Lattice.from_parameters(a * 1.02, b / 1.02, c, *BASE.angles)
    assert abs(other.volume / BASE.volume - 1) < 0.005
    assert not same_lattice(BASE, other)
    assert same_lattice(BASE, other, ltol=0.03, angle_tol_rel=0.03)
    # A super-cell is not the same lattice.
    assert not same_lattice(BASE, Lattice(np.diag([2.0, 1.0, 1.0]) @ BASE.matrix))
