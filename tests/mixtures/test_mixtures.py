"""Mixture phase identification: synthetic mixtures of tiny structures built in code, the CLI, bad input,
and one measured mixture from ../shared/data when present."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xrdid.mixtures import FitSettings, LibraryError, identify_phases, load_library
from xrdid.mixtures.profile import Optics, kalpha2_for, render_phase
from xrdid.simulate.sticks import compute_sticks

CU = (1.5405929, 1.5444140)
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _structures() -> dict[str, Structure]:
    return {
        "NaCl": Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "Si": Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]),
        "CsCl": Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "TiO2": Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"],
                                          [[0, 0, 0], [0.305, 0.305, 0]]),
    }


@pytest.fixture(scope="module")
def cif_library(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("library")
    for name, s in _structures().items():
        s.to(filename=str(root / f"{name}.cif"))
    return root


def _mixture(fractions: dict[str, float], *, seed=0, d_scale=None, zero=0.03, counts=20000.0):
    """A Cu Kα1/Kα2 pattern 15–90° of the given weight fractions: W_i ∝ S_i·M_i·V_i inverted for S_i,
    plus a sloping background and Poisson noise."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(15.0, 90.0, 3751)
    optics = Optics(CU, caglioti_uvw_deg2=(0.004, -0.002, 0.002))
    y = np.zeros_like(grid)
    structures = _structures()
    for name, w in fractions.items():
        s = structures[name]
        st = compute_sticks(s, 0.8)
        scale = w / (float(s.volume) * float(s.composition.weight))
        ds = (d_scale or {}).get(name, 1.0)
        y += scale * render_phase(st.d, st.f2m, grid, optics, d_scale=ds, zero_deg=zero, width_scale=4.0,
                                  size_nm=120.0, kalpha2_ratio=0.5)
    y *= counts / y.max()
    y += 300.0 + 150.0 * np.exp(-(grid - 15.0) / 20.0)
    return grid, rng.poisson(y).astype(float)


def test_render_phase_area_is_exact():
    s = _structures()["Si"]
    st = compute_sticks(s, 0.9)
    grid = np.linspace(20.0, 80.0, 6001)
    optics = Optics((1.5406,))
    y = render_phase(st.d, st.f2m, grid, optics, width_scale=2.0)
    tt = np.degrees(2 * np.arcsin(1.5406 / (2 * st.d)))
    inside = (tt > 22) & (tt < 78)
    th = np.radians(tt[inside]) / 2
    lp = (1 + np.cos(2 * th) ** 2) / (2 * np.sin(th) ** 2 * np.cos(th))
    assert y.sum() * (grid[1] - grid[0]) == pytest.approx((st.f2m[inside] * lp).sum(), rel=1e-3)
    # Si (111) at 28.44° for Cu Kα1.
    assert grid[np.argmax(y)] == pytest.approx(28.44, abs=0.02)


def test_kalpha2_for_known_anodes():
    assert kalpha2_for(1.540598) == pytest.approx(1.544414, abs=1e-4)
    assert kalpha2_for(0.7297) is None


def test_two_phase_fractions_and_absent_phase(cif_library):
    lib = load_library(cif_library, 0.8 / 1.03)
    grid, y = _mixture({"NaCl": 0.7, "Si": 0.3}, d_scale={"Si": 1.006})
    fit = identify_phases(grid, y, CU[0], lib)
    got = {p.id.removesuffix(".cif"): p for p in fit.phases}
    assert set(got) == {"NaCl", "Si"}
    assert got["NaCl"].weight_fraction == pytest.approx(0.7, abs=0.05)
    assert got["Si"].d_scale == pytest.approx(1.006, abs=0.001)
    assert fit.zero_shift_deg == pytest.approx(0.03, abs=0.02)
    assert fit.kalpha2_ratio == pytest.approx(0.5, abs=0.1)
    assert fit.rwp < 0.05 and all(p.confidence > 0.5 for p in fit.phases)


def test_three_phase_mixture(cif_library):
    lib = load_library(cif_library, 0.8 / 1.03)
    grid, y = _mixture({"TiO2": 0.5, "CsCl": 0.3, "Si": 0.2}, seed=1)
    fit = identify_phases(grid, y, CU[0], lib)
    got = {p.id.removesuffix(".cif"): p.weight_fraction for p in fit.phases}
    assert set(got) == {"TiO2", "CsCl", "Si"}
    for name, w in {"TiO2": 0.5, "CsCl": 0.3, "Si": 0.2}.items():
        assert got[name] == pytest.approx(w, abs=0.05)


def test_library_from_parquet_and_cache(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    s = _structures()
    table = pa.table({"id": ["nacl", "si"], "formula": ["NaCl", "Si"],
                      "cif": [s["NaCl"].to(fmt="cif"), s["Si"].to(fmt="cif")]})
    pq.write_table(table, tmp_path / "lib.parquet")
    a = load_library(tmp_path / "lib.parquet", 0.8, cache_dir=tmp_path / "cache")
    assert [p.id for p in a.phases] == ["nacl", "si"] and list((tmp_path / "cache").glob("*.npz"))
    b = load_library(tmp_path / "lib.parquet", 0.8, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(a.phases[1].f2m, b.phases[1].f2m)
    assert b.phases[0].cell_mass_amu == pytest.approx(a.phases[0].cell_mass_amu)


def test_library_errors(tmp_path):
    with pytest.raises(LibraryError, match="no .cif files"):
        load_library(tmp_path, 0.8)
    (tmp_path / "bad.cif").write_text("data_x\n_cell_length_a 1\n")
    with pytest.raises(LibraryError, match="no usable phase"):
        load_library(tmp_path, 0.8)
    with pytest.raises(LibraryError, match="no such"):
        load_library(tmp_path / "missing", 0.8)


# ----------------------------------------------------------------------------------------------- CLI


def _write_xy(path: Path, grid, y, header: str = "") -> Path:
    path.write_text(header + "\n".join(f"{a:.4f} {b:.1f}" for a, b in zip(grid, y)) + "\n")
    return path


def test_cli_json(cif_library, tmp_path, capsys):
    from xrdid.cli import main

    grid, y = _mixture({"NaCl": 0.6, "CsCl": 0.4}, seed=2)
    f = _write_xy(tmp_path / "mix.xy", grid, y)
    rc = main(["phases", str(f), "--library", str(cif_library), "--wavelength", "1.5406", "--json", "--no-cache"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert {"file", "phases", "rwp", "rexp", "gof", "zero_shift_deg", "kalpha2_ratio", "wavelengths_A"} <= set(out)
    assert {p["formula"] for p in out["phases"]} == {"NaCl", "CsCl"}
    p = out["phases"][0]
    assert {"id", "formula", "space_group", "weight_fraction", "confidence", "d_scale", "size_nm"} <= set(p)
    assert sum(q["weight_fraction"] for q in out["phases"]) == pytest.approx(1.0, abs=1e-4)
    from xrdid.commands.phases import _table
    from xrdid.mixtures import MixtureFit, PhaseResult

    fit = MixtureFit(phases=[PhaseResult("NaCl.cif", "NaCl", 225, 1.0, 0.9, 1.0, 1.0, 100.0, 0.5, 0.9)], rwp=0.1,
                     rexp=0.05, gof=2.0, rwp_background_only=0.3, zero_shift_deg=0.0, width_scale=1.0,
                     kalpha2_ratio=0.5, wavelengths_A=CU, two_theta=grid, y_obs=y, y_calc=y, background=y)
    assert "NaCl" in _table("mix.xy", fit)


def test_cli_errors(cif_library, tmp_path, caplog):
    from xrdid.cli import main

    grid, y = _mixture({"Si": 1.0})
    f = _write_xy(tmp_path / "si.xy", grid, y)
    assert main(["phases", str(f), "--library", str(cif_library)]) != 0  # no wavelength: no silent Cu default
    assert "no wavelength" in caplog.text or "states no wavelength" in caplog.text
    assert main(["phases", str(tmp_path / "nope.xy"), "--library", str(cif_library), "--wavelength", "1.54"]) != 0
    assert "nope.xy" in caplog.text
    junk = tmp_path / "junk.xy"
    junk.write_bytes(b"\x00\x01binary\x00")
    assert main(["phases", str(junk), "--library", str(cif_library), "--wavelength", "1.54"]) != 0
    empty = tmp_path / "empty_lib"
    empty.mkdir()
    assert main(["phases", str(f), "--library", str(empty), "--wavelength", "1.54", "--no-cache"]) != 0
    assert "no .cif files" in caplog.text


# ------------------------------------------------------------------------------------- measured data


@pytest.mark.skipif(not (SHARED / "mixtures" / "labels.csv").exists(), reason="../shared/data is not present")
def test_measured_two_phase_mixture(tmp_path):
    """V2O5 + NiO + TiO2 (30/40/30 wt%, weighed) fitted against the three reference CIFs plus decoys."""
    from xrdid.readers import read_pattern

    with open(SHARED / "mixtures" / "labels.csv") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    r = rows["dara__V2O5_0p3005-NiO_0p4020-TiO2_0p3020--8min"]
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    names = ["spglib__orthorhombic__POSCAR-059.cif", "dara__NiO_225_sym.cif", "xrdaa__Example__TiO2_141.cif",
             "xrdaa__Example__TiO2_136.cif", "xrdaa__PDF_Example__ZrO2_14.cif", "xrdaa__Example__MnO_225.cif"]
    for n in names:
        (lib_dir / n).write_text((SHARED / "library" / n).read_text())
    pat = read_pattern(SHARED / "mixtures" / r["xy"], wavelength_A=float(r["wavelength_A"]))
    lib = load_library(lib_dir, 0.95)
    fit = identify_phases(pat.x, pat.y, pat.wavelength_A, lib, kalpha2_A=float(r["kalpha2_A"]),
                          settings=FitSettings(max_phases=4))
    got = {p.formula: p.weight_fraction for p in fit.phases}
    assert set(got) == {"V2O5", "NiO", "TiO2"}
    for name, w in (("V2O5", 0.30), ("NiO", 0.40), ("TiO2", 0.30)):
        assert got[name] == pytest.approx(w, abs=0.2)
    assert fit.rwp < 0.1
