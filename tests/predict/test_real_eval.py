"""Evaluation on AFLOW prototypes and measured patterns (plumbing, with a tiny random checkpoint)."""

from pathlib import Path

import pytest

from xrdid.evaluate.real import evaluate_measured, evaluate_prototypes

MEASURED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "measured"


@pytest.fixture(scope="module")
def checkpoint(random_checkpoint):
    return random_checkpoint(256)


def test_prototypes(checkpoint):
    m = evaluate_prototypes(checkpoint, draws=2, limit=6)
    assert 0 < m["n_structures"] <= 6 and m["space_group"]["n"] == 2 * m["n_structures"]
    assert 0 <= m["crystal_system"]["accuracy"] <= 1


def test_measured(checkpoint):
    if not (MEASURED / "index.csv").is_file():
        pytest.skip("no shared measured data here")
    r = evaluate_measured(checkpoint, MEASURED)
    s = r["summary"]
    assert s["n_patterns"] == 15 and 0 < s["n_scored"] <= 15
    skipped = [p for p in r["patterns"] if "skipped" in p]
    assert all("wavelength" in p["skipped"] for p in skipped)  # never a silent Cu Kα
