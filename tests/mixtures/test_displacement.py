"""Debye–Waller factors in the phase library: the CIF's own displacement parameters, else a default B."""

from __future__ import annotations

import math

import numpy as np
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifFile, CifParser

from xrdid.mixtures import load_library
from xrdid.mixtures.library import HYDROGEN_B_FACTOR, element_displacements, stated_displacements
from xrdid.simulate.sticks import Sticks, d_min_for, sticks_to_peaks

CU = 1.5406
EIGHT_PI2 = 8 * math.pi**2

# A monoclinic cell in P1: Li with anisotropic U (a U13 term), O with U_iso, Na with B_iso, H stating nothing.
CIF = """data_test
_cell_length_a 5.0
_cell_length_b 6.0
_cell_length_c 7.0
_cell_angle_alpha 90
_cell_angle_beta 100
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_symmetry_equiv_pos_as_xyz
'x, y, z'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_U_iso_or_equiv
_atom_site_B_iso_or_equiv
_atom_site_occupancy
Li1 Li 0.0 0.0 0.0 . . 1.0
O1 O 0.5 0.5 0.5 0.0120(5) . 1.0
O2 O 0.25 0.75 0.1 0.0080(5) . 1.0
Na1 Na 0.5 0.0 0.3 ? 1.10(3) 1.0
H1 H 0.1 0.3 0.7 . . 1.0
loop_
_atom_site_aniso_label
_atom_site_aniso_U_11
_atom_site_aniso_U_22
_atom_site_aniso_U_33
_atom_site_aniso_U_12
_atom_site_aniso_U_13
_atom_site_aniso_U_23
Li1 0.010(1) 0.015(1) 0.020(1) 0 0.004(1) 0
"""

U_LI = np.array([[0.010, 0.0, 0.004], [0.0, 0.015, 0.0], [0.004, 0.0, 0.020]])


def cartesian_b_eq(lattice: Lattice, u: np.ndarray) -> float:
    """B_eq = 8π² tr(U_cart) / 3 with U_cart = A N U Nᵀ Aᵀ (A: columns a, b, c; N = diag(a*, b*, c*)), the
    Cartesian route (Grosse-Kunstleve & Adams 2002, J. Appl. Cryst. 35, 477), independent of the CIF code's."""
    a = np.asarray(lattice.matrix).T
    n = np.diag(lattice.reciprocal_lattice_crystallographic.abc)
    return EIGHT_PI2 * float(np.trace(a @ n @ u @ n @ a.T)) / 3.0


def test_stated_displacements_read_iso_u_b_and_anisotropic_forms_alike():
    lattice = Lattice.from_parameters(5.0, 6.0, 7.0, 90, 100, 90)
    expected = cartesian_b_eq(lattice, U_LI)
    astar = np.array(lattice.reciprocal_lattice_crystallographic.abc)
    beta = 2 * math.pi**2 * np.outer(astar, astar) * U_LI
    for kind, tensor in (("U", U_LI), ("B", EIGHT_PI2 * U_LI), ("beta", beta)):
        block = {"_atom_site_label": ["Li1", "O1"], "_atom_site_B_iso_or_equiv": [".", "0.7"],
                 "_atom_site_aniso_label": ["Li1"]}
        for ij in ("11", "22", "33", "12", "13", "23"):
            block[f"_atom_site_aniso_{kind}_{ij}"] = [f"{tensor[int(ij[0]) - 1, int(ij[1]) - 1]:.12g}"]
        got = stated_displacements(block, lattice)
        assert math.isclose(got["Li1"], expected, rel_tol=1e-9), kind
        assert got["O1"] == 0.7
    assert stated_displacements({"_atom_site_label": ["X"], "_atom_site_U_iso_or_equiv": ["?"]}, lattice) == {}


def test_library_debye_waller_is_the_cifs_own_else_the_default_and_matches_pymatgen(tmp_path):
    """load_library(displacement_B=): each element's B from the CIF (U_iso, B_iso, anisotropic U → B_eq),
    the default for H (times HYDROGEN_B_FACTOR); the peaks match pymatgen's XRDCalculator given those B."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "test.cif").write_text(CIF)
    structure = CifParser(str(lib / "test.cif")).parse_structures(primitive=False)[0]
    b_default = 0.6
    b = {"Li": cartesian_b_eq(structure.lattice, U_LI), "O": EIGHT_PI2 * (0.012 + 0.008) / 2, "Na": 1.10,
         "H": HYDROGEN_B_FACTOR * b_default}
    block = CifFile.from_str(CIF).data["test"].data
    got = element_displacements(structure, stated_displacements(block, structure.lattice), b_default)
    assert got.keys() == b.keys()
    for el, value in b.items():
        assert math.isclose(got[el], value, rel_tol=1e-9), el
    tt = (10.0, 100.0)
    cache = tmp_path / "cache"
    phase = load_library(lib, d_min_for(CU, tt[1]), cache_dir=cache, displacement_B=b_default).phases[0]
    plain = load_library(lib, d_min_for(CU, tt[1]), cache_dir=cache).phases[0]
    assert len(list(cache.iterdir())) == 2  # its own cache entry
    again = load_library(lib, d_min_for(CU, tt[1]), cache_dir=cache, displacement_B=b_default).phases[0]
    assert np.array_equal(again.f2m, phase.f2m)

    peaks = sticks_to_peaks(Sticks(d=phase.d, f2m=phase.f2m, hkl=phase.hkl), CU, *tt)
    ref = XRDCalculator(wavelength=CU, debye_waller_factors=b).get_pattern(structure, two_theta_range=tt)
    rx, ry = np.asarray(ref.x), np.asarray(ref.y)
    strong = ry > 0.5
    assert strong.sum() > 30
    idx = np.searchsorted(peaks["two_theta"], rx[strong])
    idx = np.clip(idx, 1, len(peaks["two_theta"]) - 1)
    near = np.where(np.abs(peaks["two_theta"][idx - 1] - rx[strong]) < np.abs(peaks["two_theta"][idx] - rx[strong]), idx - 1, idx)
    np.testing.assert_allclose(peaks["two_theta"][near], rx[strong], atol=5e-3)
    np.testing.assert_allclose(peaks["intensity"][near], ry[strong], atol=0.05)
    # B damps the high-angle lines against the low-angle ones: B = 0 is not what pymatgen gave.
    plain_peaks = sticks_to_peaks(Sticks(d=plain.d, f2m=plain.f2m, hkl=plain.hkl), CU, *tt)
    assert np.abs(plain_peaks["intensity"][near] - ry[strong]).max() > 1.0


def test_cli_displacement_b_reaches_the_library(tmp_path, monkeypatch, caplog):
    from xrdid.cli import main
    from xrdid.mixtures import pattern as pattern_module
    from xrdid.mixtures.profile import Optics, render_phase
    from xrdid.simulate.sticks import compute_sticks

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    lib = tmp_path / "lib"
    lib.mkdir()
    nacl.to(filename=str(lib / "NaCl.cif"))
    grid = np.linspace(20.0, 80.0, 2001)
    st = compute_sticks(nacl, 0.9)
    y = render_phase(st.d, st.f2m, grid, Optics((1.5405929, 1.5444140)), width_scale=4.0, size_nm=120.0, kalpha2_ratio=0.5)
    f = tmp_path / "nacl.xy"
    np.savetxt(f, np.column_stack([grid, y * 10000 / y.max() + 200]))
    seen = []
    real = pattern_module.load_library
    monkeypatch.setattr(pattern_module, "load_library", lambda *a, displacement_B=None, **k: seen.append(displacement_B)
                        or real(*a, displacement_B=displacement_B, **k))
    args = ["phases", str(f), "--library", str(lib), "--wavelength", "1.5406", "--json", "--no-cache"]
    assert main(args) == 0
    assert main([*args, "--displacement-b", "0.8"]) == 0
    assert seen == [None, 0.8]
    assert main([*args, "--displacement-b", "-1"]) == 2
    assert "--displacement-b must be between 0 and 10" in caplog.text
