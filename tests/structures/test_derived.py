"""Derived crystals keep their parent's structure type: group, Wyckoff positions, a one-to-one element map."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
import spglib
from pymatgen.core import Lattice, Structure

from xrdid.simulate.chunks import row_group_key
from xrdid.structures.derived import (
    DeriveSpec,
    derive_from,
    derive_structures,
    substitution_candidates,
    symmetric_strain,
)
from xrdid.structures.table import describe_structure, structure_from_row, write_structure_tables


def rutile() -> Structure:
    return Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]])


def salt() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def monoclinic() -> Structure:
    # P2_1/c with every atom on a general position.
    lattice = Lattice.monoclinic(5.1, 6.3, 7.2, 104.0)
    return Structure.from_spacegroup("P2_1/c", lattice, ["Ca", "S", "O"], [[0.21, 0.13, 0.34], [0.71, 0.36, 0.12], [0.43, 0.82, 0.27]])


def _wyckoff(structure: Structure) -> tuple[int, Counter]:
    cell = (structure.lattice.matrix, structure.frac_coords, [s.specie.Z for s in structure])
    data = spglib.get_symmetry_dataset(cell, symprec=0.01)
    return int(data.number), Counter(data.wyckoffs)


@pytest.mark.parametrize("make", [rutile, salt, monoclinic])
def test_derived_crystals_keep_the_structure_type(make):
    parent_structure = make()
    parent = describe_structure(parent_structure, id="p", source="prototypes")
    rows, failures = derive_from(parent, DeriveSpec(per_structure=12, seed=4))
    assert not failures and len(rows) == 12
    group, letters = _wyckoff(parent_structure)
    parent_elements = sorted({s.specie.symbol for s in parent_structure})
    changed = 0
    for row in rows:
        s = structure_from_row(row)
        assert row["space_group"] == group and row["source"] == "derived"
        assert _wyckoff(s) == (group, letters)
        assert (row["parent_id"], row["parent_formula"], row["parent_space_group"]) == ("p", parent["formula"], group)
        assert row_group_key(row, "prototype") == row_group_key(parent, "prototype")
        assert row_group_key(row, "formula") == parent["formula"]
        # One-to-one map: as many distinct elements as the parent, site counts per element preserved.
        assert sorted(Counter(x.specie.symbol for x in s).values()) == sorted(Counter(x.specie.symbol for x in parent_structure).values())
        changed += sorted(row["elements"]) != parent_elements
        # Cell within ±(a few %) of the parent's, after the volume scaling.
        assert 0.5 < s.volume / parent_structure.volume < 2.0
    assert changed >= 6  # substitute = 0.7 per element: most crystals get another element


def test_cubic_stays_cubic_and_special_positions_stay_put():
    rows, _ = derive_from(describe_structure(salt(), id="nacl", source="prototypes"), DeriveSpec(per_structure=5, seed=1))
    for row in rows:
        s = structure_from_row(row)
        a, b, c = s.lattice.abc
        assert a == pytest.approx(b, rel=1e-9) and b == pytest.approx(c, rel=1e-9)
        assert s.lattice.angles == pytest.approx((90, 90, 90))
        # Rock salt has no free coordinate: every atom stays on 0 or 1/2.
        twice = s.frac_coords * 2
        assert np.allclose(twice, np.round(twice), atol=1e-6)


def test_general_positions_move_and_strain_keeps_the_metric_type():
    parent = monoclinic()
    rows, _ = derive_from(describe_structure(parent, id="m", source="prototypes"), DeriveSpec(per_structure=3, seed=2, substitute=0.0))
    for row in rows:
        s = structure_from_row(row)
        assert s.lattice.alpha == pytest.approx(90, abs=1e-6) and s.lattice.gamma == pytest.approx(90, abs=1e-6)
        assert s.lattice.beta != pytest.approx(parent.lattice.beta, abs=1e-3)  # β is free in monoclinic
        moved = np.abs(((s.frac_coords - parent.frac_coords) + 0.5) % 1 - 0.5)
        assert moved.max() > 1e-3  # general positions were displaced
    # A tetragonal cell keeps a = b and right angles whatever the random strain.
    lattice = Lattice.tetragonal(4.0, 6.0).matrix
    rotations = np.array(spglib.get_symmetry((lattice, [[0, 0, 0]], [1]))["rotations"])
    strained = Lattice(symmetric_strain(lattice, rotations, 0.05, np.random.default_rng(0)))
    assert strained.a == pytest.approx(strained.b) and strained.angles == pytest.approx((90, 90, 90))
    assert strained.c / strained.a != pytest.approx(1.5, abs=1e-4)


def test_substitutions_are_chemically_similar():
    na, _ = substitution_candidates("Na", ["Li", "K", "Rb", "O", "Cl", "Ca", "Fe"], 10)
    assert set(na) <= {"Li", "K", "Rb", "Ca"} and "K" in na  # cations for a cation, never O or Cl
    cl, _ = substitution_candidates("Cl", ["Br", "I", "F", "Na", "O"], 10)
    assert "Br" in cl and "Na" not in cl
    assert substitution_candidates("H", ["Li", "F"], 10)[0] == []


def test_derive_structures_is_seeded_and_records_unusable_parents(tmp_path):
    parents = [describe_structure(s, id=name, source="prototypes") for name, s in (("r", rutile()), ("m", monoclinic()))]
    big = describe_structure(salt() * (3, 3, 3), id="big", source="prototypes")
    write_structure_tables([*parents, big], [], tmp_path / "p.parquet", tmp_path / "pf.parquet")
    spec = DeriveSpec(per_structure={"prototypes": 3}, seed=9, max_atoms=100)
    n, n_failed = derive_structures([tmp_path / "p.parquet"], spec, out=tmp_path / "d.parquet", failed_out=tmp_path / "df.parquet", workers=2)
    assert (n, n_failed) == (6, 1)
    assert "216 atoms" in pq.read_table(tmp_path / "df.parquet").to_pylist()[0]["reason"]
    first = pq.read_table(tmp_path / "d.parquet").to_pylist()
    derive_structures([tmp_path / "p.parquet"], spec, out=tmp_path / "d2.parquet", failed_out=tmp_path / "df2.parquet", workers=1)
    again = pq.read_table(tmp_path / "d2.parquet").to_pylist()
    assert [r["cif"] for r in first] == [r["cif"] for r in again]
    # A source without a count gets none.
    n0, _ = derive_structures([tmp_path / "p.parquet"], DeriveSpec(per_structure={"core_mof": 2}), out=tmp_path / "d3.parquet", failed_out=tmp_path / "df3.parquet")
    assert n0 == 0


def test_a_cation_is_never_replaced_by_an_anion(monkeypatch):
    from xrdid.structures import derived

    # Made-up elements (same Mendeleev number and radius) that differ only in the sign of their states.
    props = {"Aa": (50.0, frozenset({1}), 1.0), "Bb": (50.0, frozenset({-1}), 1.0), "Cc": (51.0, frozenset({1, -1}), 1.0)}
    monkeypatch.setattr(derived, "_element", props.get)
    names, _ = derived.substitution_candidates("Aa", ["Bb", "Cc"], 10)
    assert names == ["Cc"]
