"""`xrdid simulate` end to end on CIFs written in a temporary folder."""

from __future__ import annotations

import csv
import json
import math

import pyarrow.parquet as pq
import pytest
from pymatgen.core import Lattice, Structure

from xrdid.cli import main


@pytest.fixture()
def cif_dir(tmp_path):
    d = tmp_path / "cifs"
    d.mkdir()
    Structure(Lattice.cubic(4.209), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(d / "CsCl.cif"))
    return d


def test_json_cu_known_first_peak(cif_dir, tmp_path):
    out = tmp_path / "p.json"
    assert main(["simulate", str(cif_dir / "CsCl.cif"), "--instrument", "cu", "--out", str(out)]) == 0
    (rec,) = json.loads(out.read_text())
    first = rec["peaks"][0]
    assert first["two_theta"] == pytest.approx(math.degrees(2 * math.asin(1.5405929 / (2 * 4.209))))
    assert sorted(map(abs, first["hkl"])) == [0, 0, 1]
    assert max(p["intensity"] for p in rec["peaks"]) == pytest.approx(100.0)
    assert rec["formula"] == "CsCl"


def test_csv_and_parquet_from_folder(cif_dir, tmp_path):
    out = tmp_path / "p.csv"
    assert main(["simulate", str(cif_dir), "--wavelength", "0.7297", "--two-theta", "5", "40", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert rows and {"two_theta", "intensity", "hkl"} <= set(rows[0])
    assert all(5 <= float(r["two_theta"]) <= 40 for r in rows)

    out = tmp_path / "s.parquet"
    assert main(["simulate", str(cif_dir), "--instrument", "mars", "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 1
    assert {"d", "f2m", "hkl"} <= set(table.column_names)
    d = table.column("d")[0].as_py()
    assert d[0] == pytest.approx(4.209) and d == sorted(d, reverse=True)


def test_two_theta_without_wavelength_is_an_error(cif_dir, caplog):
    assert main(["simulate", str(cif_dir), "--two-theta", "5", "90"]) != 0
    assert "wavelength" in caplog.text


def test_bad_cif_reported_and_rest_processed(cif_dir, tmp_path, caplog):
    bad = cif_dir / "broken.cif"
    bad.write_text("data_broken\n_cell_length_a not-a-number\n")
    out = tmp_path / "p.json"
    assert main(["simulate", str(cif_dir), "--instrument", "cu", "--out", str(out)]) == 1
    assert "broken.cif" in caplog.text
    assert [r["formula"] for r in json.loads(out.read_text())] == ["CsCl"]


def test_instrument_csv_also_writes_the_rendered_pattern(cif_dir, tmp_path):
    out = tmp_path / "p.csv"
    assert main(["simulate", str(cif_dir / "CsCl.cif"), "--instrument", "cu", "--format", "csv", "--out", str(out)]) == 0
    profile = list(csv.DictReader((tmp_path / "p.profile.csv").open()))
    x = [float(r["two_theta"]) for r in profile]
    y = [float(r["intensity"]) for r in profile]
    assert x[0] == pytest.approx(5.0) and x[-1] == pytest.approx(90.0)
    assert max(y) == pytest.approx(100.0)
    # The strongest rendered point is at the strongest stick (CsCl 110 at Cu Kα1).
    peaks = list(csv.DictReader(out.open()))
    strongest = max(peaks, key=lambda r: float(r["intensity"]))
    assert x[y.index(max(y))] == pytest.approx(float(strongest["two_theta"]), abs=0.03)


def test_simulate_imports_neither_torch_nor_pyarrow(cif_dir, tmp_path):
    """The start-up of `xrdid simulate` (json out): no torch (seconds to import) and no pyarrow."""
    import subprocess
    import sys

    code = (
        "import sys; from xrdid.cli import main; "
        f"rc = main(['simulate', {str(cif_dir)!r}, '--wavelength', '1.5406', '--out', {str(tmp_path / 'p.json')!r}]); "
        "print(sorted(m for m in ('torch', 'pyarrow', 'polars', 'spglib') if m in sys.modules)); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert json.loads((tmp_path / "p.json").read_text())[0]["formula"] == "CsCl"


def test_every_structure_block_of_a_file_and_a_pseudo_atom_named(tmp_path, caplog):
    from pymatgen.io.cif import CifWriter

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cscl = Structure(Lattice.cubic(4.209), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    water = str(CifWriter(cscl)).replace(" Cs ", " H2O ")
    path = tmp_path / "several.cif"
    path.write_text("data_global\n_publ_section_title 'x'\n" + str(CifWriter(nacl, symprec=0.01)) + str(CifWriter(cscl)) + water)
    out = tmp_path / "p.json"
    assert main(["simulate", str(path), "--wavelength", "1.5406", "--out", str(out)]) == 1
    records = json.loads(out.read_text())
    assert [(r["file"], r["formula"]) for r in records] == [(f"{path}#1", "NaCl"), (f"{path}#2", "CsCl")]
    assert f"{path}#3" in caplog.text and "'H2O' is not an element" in caplog.text
