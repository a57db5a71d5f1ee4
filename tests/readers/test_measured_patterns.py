"""The real measured patterns in ../shared/data/measured (skipped where that folder is absent)."""

import csv
from pathlib import Path

import numpy as np
import pytest

from xrdid.readers import Pattern, read_patterns, to_grid

MEASURED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "measured"


def test_every_indexed_pattern_reads_with_its_range_and_wavelength():
    index = MEASURED / "index.csv"
    if not index.is_file():
        pytest.skip(f"{MEASURED} is not here (only development checkouts have shared data)")
    rows = list(csv.DictReader(index.open()))
    assert rows
    results = dict(read_patterns([MEASURED / r["file"] for r in rows]))
    grid = np.linspace(5.0, 90.0, 851)
    for r in rows:
        p = results[MEASURED / r["file"]]
        assert isinstance(p, Pattern), f"{r['file']}: {p}"
        assert p.axis == "two_theta"
        assert p.x.size == int(r["n_points"]), r["file"]
        assert p.x[0] == pytest.approx(float(r["two_theta_min"]), abs=1e-6), r["file"]
        assert p.x[-1] == pytest.approx(float(r["two_theta_max"]), abs=1e-6), r["file"]
        if r["wavelength_A"]:
            assert p.wavelength_A == pytest.approx(float(r["wavelength_A"])), r["file"]
            y, mask = to_grid(p, grid, 0.7297)
            assert mask.any() and np.isfinite(y).all(), r["file"]
        else:
            assert p.wavelength_A is None, r["file"]  # no silent Cu Kα default
