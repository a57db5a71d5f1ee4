"""Crystal arrays: from pymatgen Structures and from the Materials Project's JSON, and back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xrdid.simulate.sticks import compute_sticks
from xrdid.structures.cif import read_cif_text
from xrdid.structures.crystal import crystal_from_pymatgen_dict, crystal_from_structure, element_of_type_symbol


def disordered() -> Structure:
    lattice = Lattice.monoclinic(5.1, 6.3, 7.2, 103.0)
    return Structure.from_spacegroup(
        "P2_1/c", lattice, [{"Fe": 0.6, "Mn": 0.4}, "O"], [[0.12, 0.23, 0.31], [0.41, 0.07, 0.18]]
    )


def test_json_document_gives_the_arrays_of_the_structure(small_structures):
    for name, structure in [*small_structures, ("disordered", disordered())]:
        # The API's JSON, as the client returns it: pymatgen's as_dict, through a JSON round trip.
        from_json = crystal_from_pymatgen_dict(json.loads(json.dumps(structure.as_dict())))
        direct = crystal_from_structure(structure)
        assert from_json.species == direct.species, name
        np.testing.assert_allclose(from_json.frac_coords, direct.frac_coords, atol=1e-12)
        np.testing.assert_allclose(from_json.lattice, direct.lattice, atol=1e-12)
        np.testing.assert_allclose(from_json.occupancies, direct.occupancies)
        assert from_json.formula == structure.composition.reduced_formula, name


def test_json_document_with_oxidation_states_and_cartesian_sites():
    structure = Structure(Lattice.cubic(4.2), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    structure.add_oxidation_state_by_element({"Cs": 1, "Cl": -1})
    doc = structure.as_dict()
    for site in doc["sites"]:
        del site["abc"]  # only Cartesian coordinates
    crystal = crystal_from_pymatgen_dict(doc)
    assert crystal.species == ("Cs", "Cl")
    np.testing.assert_allclose(crystal.frac_coords, [[0, 0, 0], [0.5, 0.5, 0.5]], atol=1e-12)
    with pytest.raises(ValueError, match="not an element"):
        crystal_from_pymatgen_dict({**doc, "sites": [{"species": [{"element": "X0+", "occu": 1}], "abc": [0, 0, 0]}]})
    with pytest.raises(ValueError, match="missing"):
        crystal_from_pymatgen_dict({"sites": []})


def test_back_to_a_structure_and_to_a_cif(small_structures):
    for name, structure in [*small_structures, ("disordered", disordered())]:
        crystal = crystal_from_structure(structure)
        again = crystal.to_structure()
        assert again.composition == structure.composition, name
        assert len(again) == len(structure), name
        # The CIF reads back in pymatgen too (the phase library reads the table's CIFs with it).
        parsed = Structure.from_str(crystal.to_cif(name), fmt="cif")
        assert parsed.composition == structure.composition and parsed.volume == pytest.approx(structure.volume), name
        (entry,) = read_cif_text(crystal.to_cif(name))
        a, b = compute_sticks(entry.crystal, 0.7), compute_sticks(structure, 0.7)
        # (Sticks weaker than 1e-12 of the strongest are rounding noise of symmetry-forbidden reflections.)
        strong_a, strong_b = a.f2m > 1e-12 * a.f2m.max(), b.f2m > 1e-12 * b.f2m.max()
        np.testing.assert_allclose(a.d[strong_a], b.d[strong_b], rtol=1e-8)
        np.testing.assert_allclose(a.f2m[strong_a], b.f2m[strong_b], rtol=1e-6)


@pytest.mark.parametrize("symbol, element", [("Fe", "Fe"), ("Fe3+", "Fe"), ("O2-", "O"), ("Cl-1", "Cl"), ("Na+", "Na"), ("D", "D")])
def test_type_symbols(symbol, element):
    assert element_of_type_symbol(symbol) == element


@pytest.mark.parametrize("symbol", ["NH4", "OH", "H2O", "M", "Xx", "fe3+x"])
def test_type_symbols_that_are_not_elements(symbol):
    with pytest.raises(ValueError, match="not an element"):
        element_of_type_symbol(symbol)
