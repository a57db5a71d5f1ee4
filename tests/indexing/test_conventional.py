"""Indexed cells in the conventional setting: centred monoclinic lattices as mC (b unique, C centring), primitive ones
with a and c reduced, base-centred orthorhombic ones as oC."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xrdid.indexing.combine import index_pattern
from xrdid.indexing.lattice import (
    ORTHORHOMBIC_C_SETTING,
    centring_allows,
    forms6,
    hkl_box,
    monoclinic_setting,
    p6_from_parameters,
    parameters,
    primitive_lattice,
    same_lattice,
    transformed,
)
from xrdid.indexing.search import lines_from_peaks

from .helpers import prototype, render, true_lattice


@pytest.mark.parametrize("centring", ["C", "A", "I"])
def test_monoclinic_setting_is_the_same_lattice_c_centred(centring):
    rng = np.random.default_rng(0)
    hkl = hkl_box(4, 4, 4)
    for _ in range(100):
        a, b, c = rng.uniform(3.0, 15.0, 3)
        p6 = p6_from_parameters(a, b, c, 90.0, rng.uniform(91.0, 160.0), 90.0)
        p2, T = monoclinic_setting(p6, centring)
        assert round(np.linalg.det(T)) == 1  # the handedness kept
        assert T[1, 1] in (1, -1) and not T[1, [0, 2]].any() and not T[[0, 2], 1].any()  # b unique, still b
        _, _, _, al, be, ga = parameters(p2)
        assert al == pytest.approx(90.0) and ga == pytest.approx(90.0) and be >= 90.0 - 1e-9
        assert same_lattice(primitive_lattice(p6, centring), primitive_lattice(p2, "C"))
        # The indices go with the axes: the same reflections allowed, at the same Q.
        h2 = hkl @ T.T
        assert np.array_equal(centring_allows(hkl, centring), centring_allows(h2, "C"))
        np.testing.assert_allclose(forms6(h2) @ p2, forms6(hkl) @ p6, rtol=1e-9)
        # The reduced C cell is its own conventional cell.
        p3, T3 = monoclinic_setting(p2, "C")
        assert np.array_equal(T3, np.eye(3)) and np.allclose(p3, p2, rtol=1e-9)


def test_a_centred_cell_becomes_the_swapped_or_diagonal_c_cell():
    p6 = p6_from_parameters(5.0, 6.0, 7.0, 90.0, 100.0, 90.0)
    p_a, T_a = monoclinic_setting(p6, "A")
    assert T_a.tolist() == [[0, 0, 1], [0, -1, 0], [1, 0, 0]]  # a' = c, b' = −b, c' = a
    np.testing.assert_allclose(parameters(p_a), (7.0, 6.0, 5.0, 90.0, 100.0, 90.0))
    p_i, T_i = monoclinic_setting(p6, "I")
    assert T_i.tolist() == [[1, 0, 1], [0, 1, 0], [-1, 0, 0]]  # a' = a + c, c' = −a
    a2 = math.sqrt(25 + 49 + 70 * math.cos(math.radians(100.0)))
    np.testing.assert_allclose(parameters(p_i)[:3], (a2, 6.0, 5.0))



def test_a_primitive_monoclinic_cell_is_reduced_or_kept():
    # β = 156.9°: a and c are not the shortest pair perpendicular to b.
    p6 = p6_from_parameters(5.403, 3.433, 9.589, 90.0, 156.94, 90.0)
    p2, T = monoclinic_setting(p6, "P")
    a, b, c, al, be, ga = parameters(p2)
    assert round(np.linalg.det(T)) == 1 and b == pytest.approx(3.433)
    assert 90.0 <= be <= 120.0 and a <= c and (al, ga) == pytest.approx((90.0, 90.0))
    assert same_lattice(primitive_lattice(p6, "P"), primitive_lattice(p2, "P"))
    np.testing.assert_allclose(forms6(hkl_box(3, 3, 3) @ T.T) @ p2, forms6(hkl_box(3, 3, 3)) @ p6, rtol=1e-9)
    # A reduced cell is kept, c < a included.
    p6 = p6_from_parameters(7.0, 5.0, 6.0, 90.0, 110.0, 90.0)
    p3, T3 = monoclinic_setting(p6, "P")
    assert np.array_equal(T3, np.eye(3)) and np.array_equal(p3, p6)

# C-centred monoclinic structures (AFLOW) that the monoclinic search finds in an A setting (the first two) or as
# a C cell with β = 148.5° (the third).
@pytest.mark.parametrize("label", ["A5B2_mC14_12_a2i_i", "A3BC_mC10_8_ab_a_a", "A_mC4_12_i"])
def test_a_centred_monoclinic_lattice_goes_out_as_mc(label):
    s = prototype(label)
    peaks, result = index_pattern(render(s))
    best = result.best
    assert best is not None and best.bravais == "mC" and best.centring == "C", [c.to_dict() for c in result.cells]
    assert same_lattice(best.primitive(), true_lattice(s))
    # Already the conventional mC cell: β ≥ 90°, a and c reduced.
    _, T = monoclinic_setting(best.p6, "C")
    assert np.array_equal(T, np.eye(3)) and best.parameters[4] >= 90.0
    # Every indexed line's hkl is one the C cell allows, at the line's position.
    lines = lines_from_peaks(peaks)
    hit = [(i, h) for i, h in enumerate(best.hkl) if h is not None]
    assert len(hit) >= best.n_lines - 1
    for i, h in hit:
        assert (h[0] + h[1]) % 2 == 0, h
        q = float((forms6(np.array([h])) @ best.p6)[0])
        tt = 2 * math.degrees(math.asin(math.sqrt(q) * lines.wavelength_A / 2))
        assert abs(lines.two_theta[i] - (best.zero_deg or 0.0) - tt) < 0.05, (h, lines.two_theta[i], tt)
    assert best.to_dict()["bravais"] == "mC"
    # The other monoclinic candidates too (A_mC4_12's second, an mP cell found with β = 156.9°).
    for c in result.cells:
        if c.system == "monoclinic":
            assert c.centring in ("P", "C") and np.array_equal(monoclinic_setting(c.p6, c.centring)[1], np.eye(3)), c.to_dict()


@pytest.mark.parametrize("centring", ["A", "B"])
def test_orthorhombic_a_and_b_cells_as_c_cells(centring):
    p6 = p6_from_parameters(4.0, 5.0, 7.0, 90.0, 90.0, 90.0)
    T = ORTHORHOMBIC_C_SETTING[centring]
    assert round(np.linalg.det(T)) == 1
    p2 = transformed(p6, T)
    assert sorted(parameters(p2)[:3]) == pytest.approx([4.0, 5.0, 7.0]) and parameters(p2)[3:] == pytest.approx((90.0,) * 3)
    hkl = hkl_box(3, 3, 3)
    assert np.array_equal(centring_allows(hkl, centring), centring_allows(hkl @ T.T, "C"))
    assert same_lattice(primitive_lattice(p6, centring), primitive_lattice(p2, "C"))


def test_a_base_centred_orthorhombic_lattice_goes_out_as_oc():
    """AB2_mC6_12_a_i: a C2/m structure whose lattice is metrically orthorhombic (the orthorhombic search finds it
    in an A setting)."""
    s = prototype("AB2_mC6_12_a_i")
    _, result = index_pattern(render(s))
    best = result.best
    assert best is not None and best.bravais == "oC", [c.to_dict() for c in result.cells]
    assert same_lattice(best.primitive(), true_lattice(s))
    assert all((h[0] + h[1]) % 2 == 0 for h in best.hkl if h is not None)
