"""load_local: CIFs written in code; every bad input is recorded with a reason, never fatal or lost."""

from __future__ import annotations

import logging

import pyarrow.parquet as pq
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from xrdid.structures.local import load_local

P1_FE = """data_{name}
_cell_length_a {a}
_cell_length_b {b}
_cell_length_c {c}
_cell_angle_alpha {alpha}
_cell_angle_beta 90
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
_atom_site_occupancy
{atoms}
"""


def p1_cif(name="fe", a=2.87, b=2.87, c=2.87, alpha=90, atoms="Fe1 Fe 0 0 0 1"):
    return P1_FE.format(name=name, a=a, b=b, c=c, alpha=alpha, atoms=atoms)


def nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def silicon() -> Structure:
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])


def cscl() -> Structure:
    return Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def load(tmp_path, folder):
    out, failed = tmp_path / "out.parquet", tmp_path / "failed.parquet"
    counts = load_local(folder, out=out, failed_out=failed)
    rows = {r["id"]: r for r in pq.read_table(out).to_pylist()}
    failures = {r["id"]: r for r in pq.read_table(failed).to_pylist()}
    assert counts == (len(rows), len(failures))
    return rows, failures


def test_good_cifs_recursive_with_stated_space_group(tmp_path):
    folder = tmp_path / "cifs"
    (folder / "halides").mkdir(parents=True)
    # CifWriter(symprec=...) writes the symmetrised cell with _symmetry_Int_Tables_number 225.
    (folder / "halides" / "NaCl.cif").write_text(str(CifWriter(nacl(), symprec=0.01)))
    (folder / "Si.CIF").write_text(str(CifWriter(silicon(), symprec=0.01)))
    cif2 = p1_cif(name="cscl", a=4.12, b=4.12, c=4.12, atoms="Cs1 Cs 0 0 0 1\nCl1 Cl 0.5 0.5 0.5 1")
    cif2 = cif2.replace("_symmetry_space_group_name_H-M 'P 1'", "_space_group_IT_number 221")
    (folder / "cscl.mcif").write_text(cif2)
    (folder / "notes.txt").write_text("not a CIF, not picked up")

    rows, failures = load(tmp_path, folder)

    assert failures == {}
    assert set(rows) == {"halides/NaCl.cif#0", "Si.CIF#0", "cscl.mcif#0"}
    assert rows["halides/NaCl.cif#0"]["space_group"] == 225
    assert rows["halides/NaCl.cif#0"]["space_group_source"] == 225
    assert rows["halides/NaCl.cif#0"]["formula"] == "NaCl"
    assert rows["Si.CIF#0"]["space_group"] == 227
    assert rows["Si.CIF#0"]["space_group_source"] == 227
    assert rows["cscl.mcif#0"]["space_group"] == 221
    assert rows["cscl.mcif#0"]["space_group_source"] == 221  # CIF2-style tag
    assert all(r["source"] == "local" for r in rows.values())


def test_multi_block_cif_gives_one_row_per_block(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    text = (
        "data_global\n_publ_section_title 'metadata only, skipped'\n\n"
        + str(CifWriter(nacl()))  # P1 setting, no stated number beyond 1
        + "\n"
        + p1_cif(name="fe")
        + "\n"
        + p1_cif(name="fe_half", atoms="Fe1 Fe 0 0 0 0.5")
    )
    (folder / "several.cif").write_text(text)

    rows, failures = load(tmp_path, folder)

    # Block 0 is the publication block; ids keep the block index in the file.
    assert set(rows) == {"several.cif#1", "several.cif#2"}
    assert rows["several.cif#1"]["formula"] == "NaCl"
    assert rows["several.cif#2"]["formula"] == "Fe"
    assert rows["several.cif#2"]["space_group_source"] is None
    assert set(failures) == {"several.cif#3"}
    assert "partial occupancy" in failures["several.cif#3"]["reason"]


@pytest.mark.parametrize(
    "name, text, reason_words",
    [
        ("garbage.cif", "this is not a CIF at all {{{\n", ["unparseable"]),
        ("empty.cif", "", ["unparseable"]),
        ("no_atoms.cif", p1_cif().split("loop_\n_atom_site_label")[0], ["unparseable", "_atom_site"]),
        ("partial.cif", p1_cif(atoms="Fe1 Fe 0 0 0 0.5\nNi1 Ni 0 0 0 0.4"), ["partial occupancy"]),
        ("zero_volume.cif", p1_cif(c=0), ["degenerate cell"]),
        ("flat_angles.cif", p1_cif(alpha=180), ["degenerate cell"]),
        # Two identical atoms 0.003 Å apart: pymatgen keeps both, spglib (symprec 0.01 Å) cannot symmetrise.
        ("overlap.cif", p1_cif(atoms="Fe1 Fe 0 0 0 1\nFe2 Fe 0 0 0.001 1"), ["spglib"]),
    ],
)
def test_bad_input_is_recorded_with_a_reason(tmp_path, name, text, reason_words):
    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / name).write_text(text)
    (folder / "good.cif").write_text(str(CifWriter(cscl())))

    rows, failures = load(tmp_path, folder)

    assert set(rows) == {"good.cif#0"}  # the bad file does not stop the good one
    assert set(failures) == {f"{name}#0"}
    reason = failures[f"{name}#0"]["reason"]
    for word in reason_words:
        assert word.lower() in reason.lower(), reason
    assert failures[f"{name}#0"]["source"] == "local"


def test_a_malformed_block_spoils_only_itself_and_same_named_blocks_are_kept(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    broken = "data_broken\nloop_\n_atom_site_label\n_atom_site_fract_x\nFe1 0 0.5\n"  # 3 values, 2 columns
    text = p1_cif(name="same") + broken + p1_cif(name="same", a=3.0, b=3.0, c=3.0)
    (folder / "mixed.cif").write_text(text)

    rows, failures = load(tmp_path, folder)

    assert set(rows) == {"mixed.cif#0", "mixed.cif#2"}
    assert set(failures) == {"mixed.cif#1"}
    assert "unparseable" in failures["mixed.cif#1"]["reason"]


def test_undecodable_bytes_and_empty_folder(tmp_path, caplog):
    folder = tmp_path / "cifs"
    folder.mkdir()
    rows, failures = load(tmp_path, folder)
    assert rows == {} and failures == {}

    latin1 = p1_cif(name="fe").replace("data_fe", "data_fe\n_chemical_name_common 'Fer \xe0 l\xe9tat pur'")
    (folder / "latin1.cif").write_bytes(latin1.encode("latin-1"))
    with caplog.at_level(logging.INFO, logger="xrdid.structures.local"):
        rows, failures = load(tmp_path, folder)
    assert set(rows) == {"latin1.cif#0"}
    assert "1 structures, 0 failed" in caplog.text


def test_ids_are_stable_across_runs(tmp_path):
    folder = tmp_path / "cifs"
    (folder / "b").mkdir(parents=True)
    (folder / "b" / "x.cif").write_text(str(CifWriter(cscl())))
    (folder / "a.cif").write_text(str(CifWriter(nacl())))
    first = pq.read_table(_run(tmp_path / "1", folder)).column("id").to_pylist()
    second = pq.read_table(_run(tmp_path / "2", folder)).column("id").to_pylist()
    assert first == second == ["a.cif#0", "b/x.cif#0"]


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(NotADirectoryError):
        load_local(tmp_path / "nope", out=tmp_path / "o.parquet", failed_out=tmp_path / "f.parquet")


def _run(tmp, folder):
    out = tmp / "out.parquet"
    load_local(folder, out=out, failed_out=tmp / "failed.parquet")
    return out


def test_no_module_is_imported_while_the_tables_are_open(tmp_path, native_imports_while_writing):
    """The files are read in this process (one worker) while the table is open: what reading and writing
    need is imported before."""
    (tmp_path / "cifs").mkdir()
    (tmp_path / "cifs" / "NaCl.cif").write_text(str(CifWriter(nacl(), symprec=0.01)))
    code = """
        import sys
        from xrdid.structures.local import load_local
        load_local(sys.argv[1], out=sys.argv[2], failed_out=sys.argv[3], workers=1)
    """
    seen = native_imports_while_writing(code, tmp_path / "cifs", tmp_path / "local.parquet", tmp_path / "failed.parquet")
    assert seen == {"local.parquet": [], "failed.parquet": []}
