"""Superstructure hints: unexplained peaks that index on a doubled cell of a phase found."""

from __future__ import annotations

import math
from types import SimpleNamespace as NS

import numpy as np

from xrdid.mixtures import superstructure as S

CU = 1.5405929


def _two_theta(d):
    return math.degrees(2 * math.asin(CU / (2 * d)))


def test_supercell_lines_are_the_doubled_cells_reflections_the_cell_lacks():
    cubic = (5.0, 5.0, 5.0, 90.0, 90.0, 90.0)
    tt = S.supercell_lines(cubic, (2, 2, 2), CU, 1.0)
    # (100) of the 10 Å cell is new, (200) (= the cell's (100)) and (220) are the cell's own.
    assert np.any(np.abs(tt - _two_theta(10.0)) < 2e-3)
    assert np.any(np.abs(tt - _two_theta(10 / math.sqrt(3))) < 2e-3)  # (111) of the 10 Å cell
    assert not np.any(np.abs(tt - _two_theta(5.0)) < 2e-3)
    assert not np.any(np.abs(tt - _two_theta(10 / math.sqrt(8))) < 2e-3)
    # Doubling c alone: (0 0 1) of the 10 Å c is new, (1 0 0) of the cell is not.
    tc = S.supercell_lines(cubic, (1, 1, 2), CU, 1.0)
    assert np.any(np.abs(tc - _two_theta(10.0)) < 2e-3) and not np.any(np.abs(tc - _two_theta(5.0)) < 2e-3)
    assert S.supercell_lines((40.0, 40.0, 40.0, 90, 90, 90), (2, 2, 2), CU, 1.0) is None  # too many indices


def test_peaks_on_a_doubled_cell_are_hinted_and_chance_peaks_are_not():
    """A bixbyite-like pattern: a cubic stand-in of a = 5.054 Å found, the unexplained peaks eight lines of its
    cell doubled (In2O3's odd-index ones) and eight elsewhere; the hint names the stand-in and the (2, 2, 2)
    doubling. Sixteen peaks at random positions (seeded draws) give no hint, nor do the same doubled-cell
    peaks for a phase of another cell."""
    stand_in = NS(id="Zr2O.cif", formula="Zr2O", cell=(5.054, 5.054, 5.054, 90.0, 90.0, 90.0))
    d = [10.108 / math.sqrt(n) for n in (6, 14, 22, 26, 30, 38, 46, 54)]  # (211), (321), (332), (431), …
    rng = np.random.default_rng(0)
    peaks = [{"two_theta_deg": _two_theta(x) + 0.02} for x in d]
    peaks += [{"two_theta_deg": float(t)} for t in rng.uniform(15, 90, 8)]
    kw = {"wavelength_A": CU, "zero_deg": 0.02, "displacement_deg": 0.0, "two_theta_range": (10.0, 100.0),
          "tol_deg": 0.03}
    hints = S.hints([stand_in], peaks, **kw)
    assert len(hints) == 1 and hints[0]["id"] == "Zr2O.cif" and hints[0]["multiples"] == [2, 2, 2]
    assert hints[0]["matched"] >= 8 and hints[0]["chance"] <= S.MAX_CHANCE
    assert "Zr2O's cell doubled along a, b, c" in hints[0]["text"]
    other = NS(id="X.cif", formula="X", cell=(4.37, 4.37, 4.37, 90.0, 90.0, 90.0))
    assert S.hints([other], peaks, **kw) == []
    for seed in range(20):
        random = [{"two_theta_deg": float(t)} for t in np.random.default_rng(seed).uniform(10, 100, 16)]
        assert S.hints([stand_in], random, **kw) == [], seed
    assert S.hints([stand_in], peaks[:3], **kw) == []  # too few unexplained peaks to judge


def test_the_hints_reach_the_table():
    from xrdid.commands.phases import _table

    hint = {"id": "Zr2O.cif", "formula": "Zr2O", "multiples": [2, 2, 2], "matched": 9, "unexplained": 16,
            "chance": 2e-4}
    hint["text"] = S.describe(hint)
    fit = NS(phases=[], rwp=0.1, rwp_background_only=0.3, rexp=0.05, gof=2.0, zero_shift_deg=0.0, kalpha2_ratio=None,
             verdict="explained, except 16 weak peak(s)", unexplained=[], superstructure=[hint], stand_ins=[])
    out = _table("mix.xy", fit)
    assert "hint: 9 of the 16 unexplained peaks index on Zr2O's cell doubled along a, b, c" in out


def test_the_fit_asks_for_hints_on_its_phases_and_unexplained_peaks(monkeypatch, tmp_path):
    """identify_phases hands its phases, unexplained peaks, zero shift and a tolerance of TOL_FWHM of the
    estimated FWHM to the hints, and returns what they say (in the JSON too)."""
    from pymatgen.core import Lattice, Structure

    from xrdid.mixtures import fit as F
    from xrdid.mixtures import identify_phases, load_library
    from xrdid.mixtures.profile import Optics, render_phase
    from xrdid.simulate.sticks import compute_sticks

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    nacl.to(filename=str(tmp_path / "NaCl.cif"))
    grid = np.linspace(15.0, 90.0, 3751)
    st = compute_sticks(nacl, 0.8)
    y = render_phase(st.d, st.f2m, grid, Optics((CU, 1.544414)), width_scale=4.0, size_nm=120.0, kalpha2_ratio=0.5)
    y = np.random.default_rng(1).poisson(20000 * y / y.max() + 300).astype(float)
    seen = {}

    def fake(phases, unexplained, **kw):
        seen.update(phases=[p.id for p in phases], unexplained=unexplained, **kw)
        return [{"id": "NaCl.cif", "text": "a hint"}]

    monkeypatch.setattr(F, "superstructure_hints", fake)
    fit = identify_phases(grid, y, CU, load_library(tmp_path, 0.8 / 1.03), kalpha2_A=1.544414)
    assert seen["phases"] == ["NaCl.cif"] and seen["unexplained"] is fit.unexplained
    assert seen["zero_deg"] == fit.zero_shift_deg and seen["wavelength_A"] == CU
    assert 0 < seen["tol_deg"] < 0.2 and seen["two_theta_range"] == (grid[0], grid[-1])
    assert fit.superstructure == [{"id": "NaCl.cif", "text": "a hint"}]
    assert fit.to_dict()["superstructure"] == fit.superstructure


def test_a_hinted_phase_is_withdrawn_as_a_stand_in(monkeypatch, tmp_path):
    """With withdraw_superstructure_stand_ins, a phase a superstructure hint names leaves the answer: it is
    listed among the stand-ins (JSON, table, verdict, figure) and the other phases' weight fractions add up to
    1 again; without the setting the same fit keeps it."""
    from pymatgen.core import Lattice, Structure

    from xrdid.commands.phases import _table
    from xrdid.mixtures import fit as F
    from xrdid.mixtures import identify_phases, load_library
    from xrdid.mixtures.plot import save_fit_figure
    from xrdid.mixtures.profile import Optics, render_phase
    from xrdid.simulate.sticks import compute_sticks

    grid = np.linspace(15.0, 90.0, 3751)
    y = np.zeros_like(grid)
    for name, a, w in (("NaCl", 5.64, 1.0), ("KCl", 6.29, 0.6)):
        s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [name[:-2] if name != "NaCl" else "Na", "Cl"],
                                      [[0, 0, 0], [0.5, 0.5, 0.5]])
        s.to(filename=str(tmp_path / f"{name}.cif"))
        st = compute_sticks(s, 0.8)
        p = render_phase(st.d, st.f2m, grid, Optics((CU, 1.544414)), width_scale=4.0, size_nm=120.0, kalpha2_ratio=0.5)
        y += w * p / p.max()
    y = np.random.default_rng(2).poisson(20000 * y + 300).astype(float)
    monkeypatch.setattr(F, "superstructure_hints",
                        lambda phases, unexplained, **kw: [{"id": "KCl.cif", "text": "a hint"}]
                        if "KCl.cif" in [p.id for p in phases] else [])
    lib = load_library(tmp_path, 0.8 / 1.03)
    kept = identify_phases(grid, y, CU, lib, kalpha2_A=1.544414,
                           settings=F.FitSettings(withdraw_superstructure_stand_ins=False))
    assert sorted(p.id for p in kept.phases) == ["KCl.cif", "NaCl.cif"] and kept.stand_ins == []
    fit = identify_phases(grid, y, CU, lib, kalpha2_A=1.544414,
                          settings=F.FitSettings(withdraw_superstructure_stand_ins=True))
    assert [p.id for p in fit.phases] == ["NaCl.cif"] and [p.id for p in fit.stand_ins] == ["KCl.cif"]
    assert fit.phases[0].weight_fraction == 1.0 and fit.phase_curves.shape == (1, grid.size)
    assert fit.stand_in_curves.shape == (1, grid.size) and fit.stand_ins[0].weight_fraction < 1.0
    assert fit.verdict.startswith("the library explains the pattern only in part: KCl (225) withdrawn")
    assert fit.to_dict()["stand_ins"][0]["id"] == "KCl.cif"
    assert "withdrawn: KCl (225) KCl.cif" in _table("mix.xy", fit)
    assert save_fit_figure(fit, tmp_path / "fit.png").stat().st_size > 0
    # The folder batch (withdrawal on by default): the stand-in in its own column of the summary.
    import csv

    from xrdid.mixtures.batch import identify_folder

    (tmp_path / "scans").mkdir()
    np.savetxt(tmp_path / "scans" / "mix.xy", np.column_stack([grid, y]))
    assert identify_folder(tmp_path / "scans", lib.source, tmp_path / "summary.csv", tmp_path / "figs",
                           wavelength_A=CU) == 0
    row = next(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))
    assert row["phases"] == "NaCl.cif" and row["stand_ins"] == "KCl.cif" and "withdrawn" in row["verdict"]


def test_the_verdict_when_only_a_stand_in_was_found():
    from xrdid.mixtures.fit import FitSettings, _verdict

    z = NS(formula="Zr2O", space_group=224)
    v = _verdict([], [{"two_theta_deg": 21.5}] * 9, 0.3, FitSettings(), [z])
    assert v.startswith("no library phase explains the pattern: Zr2O (224) withdrawn") and "9 unexplained" in v
    assert _verdict([], [], 0.0, FitSettings()) == "no library phase explains the pattern"
