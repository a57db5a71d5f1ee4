"""The gemmi CIF reader: symmetry from operations, symbols or numbers; images merged on special
positions, never across sites; pseudo-atoms refused; pymatgen as the fallback; agreement with pymatgen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from xrdid.simulate.sticks import compute_sticks
from xrdid.structures.cif import read_cif_file, read_cif_text, rows_from_cif

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

HEAD = """data_{name}
_cell_length_a {a}
_cell_length_b {b}
_cell_length_c {c}
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma {gamma}
{symmetry}
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
{atoms}
"""
NACL_ATOMS = "Na1 Na 0 0 0 1\nCl1 Cl 0.5 0.5 0.5 1"


def cif(symmetry: str, atoms: str = NACL_ATOMS, a=5.64, b=5.64, c=5.64, gamma=90, name="x") -> str:
    return HEAD.format(name=name, a=a, b=b, c=c, gamma=gamma, symmetry=symmetry, atoms=atoms)


def only(text: str):
    (entry,) = read_cif_text(text)
    assert entry.crystal is not None, entry.error
    return entry


@pytest.mark.parametrize(
    "symmetry",
    [
        "_symmetry_space_group_name_H-M 'F m -3 m'",
        "_space_group_name_H-M_alt 'Fm-3m'",
        "_space_group_IT_number 225",  # a number alone: its standard setting
        "_symmetry_space_group_name_Hall '-F 4 2 3'",
    ],
)
def test_symmetry_from_symbol_or_number_gives_the_full_cell(symmetry):
    entry = only(cif(symmetry))
    assert len(entry.crystal) == 8  # 4 Na + 4 Cl, each special position counted once
    assert sorted(entry.crystal.species) == ["Cl"] * 4 + ["Na"] * 4
    assert entry.reader == "gemmi"


def test_operations_win_over_the_symbol_and_no_symmetry_is_p1():
    ops = "loop_\n_space_group_symop_operation_xyz\n'x, y, z'\n'x+1/2, y+1/2, z'"
    entry = only(cif("_symmetry_space_group_name_H-M 'F m -3 m'\n" + ops))  # the list is what counts
    assert len(entry.crystal) == 4
    assert len(only(cif("")).crystal) == 2  # nothing stated: P1, as pymatgen assumes


def test_rounded_special_positions_are_one_atom_and_split_sites_stay_two():
    # P6_3/mmc with 2c written as 0.3333/0.6667: images 1e-4 apart in fractions are the same atom.
    hexagonal = "_symmetry_space_group_name_H-M 'P 63/m m c'"
    entry = only(cif(hexagonal, atoms="Zn1 Zn 0.3333 0.6667 0.25 1", a=3.0, b=3.0, c=5.0, gamma=120))
    assert len(entry.crystal) == 2
    # Half-occupied atoms 0.39 Å from their inversion image (a split site): both halves are kept,
    # where gemmi's own expansion (0.4 Å) would merge them and lose half the scattering.
    split = only(cif("_symmetry_space_group_name_H-M 'P -1'", atoms="O1 O 0.48 0.51 0.52 0.5", a=5.0, b=5.0, c=5.0))
    assert len(split.crystal) == 2 and np.allclose(split.crystal.occupancies, 0.5)
    # Two sites at one position (substitutional disorder) are two entries, not merged.
    mixed = only(cif("", atoms="Fe1 Fe 0 0 0 0.5\nNi1 Ni 0 0 0 0.5", a=3.0, b=3.0, c=3.0))
    assert mixed.crystal.species == ("Fe", "Ni") and not mixed.crystal.is_ordered


@pytest.mark.parametrize("symbol", ["OH", "H2O", "NH4", "Wat"])
def test_molecular_pseudo_atoms_are_a_failure_not_a_guess(symbol):
    (entry,) = read_cif_text(cif("", atoms=f"X1 {symbol} 0 0 0 1"))
    assert entry.crystal is None and f"'{symbol}' is not an element" in entry.error


def test_charged_type_symbols_and_labels_without_types():
    entry = only(cif("", atoms="Na1 Na+ 0 0 0 1\nCl1 Cl1- 0.5 0.5 0.5 1"))
    assert entry.crystal.species == ("Na", "Cl")
    no_types = cif("").replace("_atom_site_type_symbol\n", "").replace("Na1 Na ", "Na1 ").replace("Cl1 Cl ", "Cl1 ")
    assert only(no_types).crystal.species == ("Na", "Cl")


def test_what_gemmi_rejects_pymatgen_reads_and_both_failing_is_named():
    # A quoted string glued to a comma: gemmi refuses the block, pymatgen reads it.
    text = cif("_symmetry_space_group_name_H-M 'F m -3 m'").replace("data_x\n", "data_x\n_publ_author_name 'A. B.',\n")
    entry = only(text)
    assert entry.reader == "pymatgen" and len(entry.crystal) == 8
    broken = "data_broken\n_cell_length_a 3\nloop_\n_atom_site_label\n_atom_site_fract_x\nFe1 0 0.5\n"
    (entry,) = read_cif_text(broken)
    assert entry.crystal is None and entry.reader == "pymatgen"
    assert entry.error.startswith("unparseable CIF block:") and "(gemmi:" in entry.error


def test_blocks_are_read_one_by_one_and_metadata_blocks_skipped():
    text = "data_global\n_publ_section_title 'no structure'\n" + cif("", name="a") + cif("garbage {{{", name="b")
    entries = read_cif_text(text)
    assert [e.index for e in entries] == [0, 1, 2]
    assert entries[0].skipped and entries[1].crystal is not None and entries[1].text.startswith("data_a")
    assert read_cif_text("no block at all") == []


def test_rows_from_cif_from_text_and_from_a_file(tmp_path):
    text = cif("_symmetry_space_group_name_H-M 'F m -3 m'\n_symmetry_Int_Tables_number 225", name="nacl")
    path = tmp_path / "my_data_folder" / "nacl.cif"  # "data_" in the path: still a path
    path.parent.mkdir()
    path.write_text(text)
    for source in (text, path, str(path)):
        rows, failures, skipped = rows_from_cif(source, id="nacl", source="test")
        assert failures == [] and skipped == 0
        (row,) = rows
        assert row["id"] == "nacl#0" and row["formula"] == "NaCl" and row["space_group"] == 225
        assert row["space_group_source"] == 225 and row["cif"] == text.strip() + "\n"
        assert row["occupancies"] == [1.0] * 8 and len(row["frac_coords"]) == 8
    rows, failures, _ = rows_from_cif(tmp_path / "missing.cif", id="m", source="test")
    assert rows == [] and "unreadable file" in failures[0]["reason"]


def _same_sticks(a, b):
    sa, sb = compute_sticks(a, 0.6), compute_sticks(b, 0.6)
    np.testing.assert_allclose(sa.d, sb.d, rtol=1e-6)
    np.testing.assert_allclose(sa.f2m, sb.f2m, rtol=1e-6, atol=1e-9 * sa.f2m.max())


def test_same_crystal_as_pymatgen_on_symmetrised_cifs(tmp_path, small_structures):
    for name, structure in small_structures:
        path = tmp_path / f"{name}.cif"
        path.write_text(str(CifWriter(structure, symprec=0.01)))  # asymmetric unit + operations
        (entry,) = read_cif_file(path)
        reference = Structure.from_file(path)
        assert len(entry.crystal) == len(reference), name
        assert entry.crystal.volume == pytest.approx(reference.volume, rel=1e-9), name
        _same_sticks(entry.crystal, reference)


def test_same_crystal_as_pymatgen_on_real_cifs():
    """The measured-pattern and library CIFs of ../shared/data (skipped where the folder is absent)."""
    files = sorted(SHARED.glob("measured/*.cif")) + sorted(SHARED.glob("library/*.cif"))[:20]
    if not files:
        pytest.skip(f"no CIFs under {SHARED}")
    import warnings

    compared = 0
    for path in files:
        entries = [e for e in read_cif_file(path) if e.crystal is not None and e.crystal.is_ordered]
        if len(entries) != 1:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = Structure.from_file(path)
        assert len(entries[0].crystal) == len(reference), path.name
        _same_sticks(entries[0].crystal, reference)
        compared += 1
    assert compared >= 5


def test_lattice_of_cell_parameters_matches_pymatgen():
    entry = only(cif("", a=4.0, b=5.0, c=6.0, gamma=100))
    reference = Lattice.from_parameters(4.0, 5.0, 6.0, 90, 90, 100)
    assert entry.crystal.volume == pytest.approx(reference.volume)
    np.testing.assert_allclose(np.linalg.norm(entry.crystal.lattice, axis=1), reference.abc)


def test_the_window_search_sees_one_image_per_point_of_a_special_position(monkeypatch):
    import xrdid.structures.cif as cif_mod

    # Fm-3m, 192 operations: Na on 4a and Cl on 4b have 48 images on each of their 4 points; O at
    # (x, 1/4, 1/4), 6e-4 Å off 8c, has 4 images on each of 48 points (48g), merged 6 by 6 onto 8c
    text = cif("_symmetry_space_group_name_H-M 'F m -3 m'", atoms="Na1 Na 0 0 0 1\nCl1 Cl 0.5 0.5 0.5 1\nO1 O 0.2501 0.25 0.25 1")
    few = only(text).crystal
    searched = []
    real = cif_mod._close_later_images
    monkeypatch.setattr(cif_mod, "_close_later_images", lambda flat, *a: searched.append(len(flat)) or real(flat, *a))
    monkeypatch.setattr(cif_mod, "_ALL_PAIRS_MAX", 0)
    many = only(text).crystal
    assert searched == [4 + 4 + 48]
    assert few.species == many.species and len(many) == 4 + 4 + 8
    np.testing.assert_array_equal(few.frac_coords, many.frac_coords)


@pytest.mark.parametrize(
    "symmetry, atoms, cell",
    [
        ("_symmetry_space_group_name_H-M 'P 63/m m c'", "Zn1 Zn 0.3333 0.6667 0.25 1\nO1 O 0.1 0.2 0.3 1", (3.0, 3.0, 5.0, 120)),
        ("_symmetry_space_group_name_H-M 'F m -3 m'", "Na1 Na 0 0 0 1\nCl1 Cl 0.5 0.5 0.5 1\nO1 O 0.2501 0.25 0.25 1", (5.64, 5.64, 5.64, 90)),
        ("_symmetry_space_group_name_H-M 'P -1'", "O1 O 0.48 0.51 0.52 0.5\nO2 O 0.0 0.5 0.9999 1", (5.0, 5.0, 5.0, 90)),
    ],
)
def test_all_pairs_and_sorted_window_merge_the_same_images(symmetry, atoms, cell, monkeypatch):
    import xrdid.structures.cif as cif_mod

    a, b, c, gamma = cell
    text = cif(symmetry, atoms=atoms, a=a, b=b, c=c, gamma=gamma)
    few = only(text).crystal  # few images: every pair compared
    monkeypatch.setattr(cif_mod, "_ALL_PAIRS_MAX", 0)  # the sorted-window search for every cell
    many = only(text).crystal
    assert few.species == many.species
    np.testing.assert_array_equal(few.frac_coords, many.frac_coords)
    np.testing.assert_array_equal(few.occupancies, many.occupancies)
    assert len(few) < 2 * 192  # images were merged
