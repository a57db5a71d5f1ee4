"""Chance in the indexing: the significance a cell needs before it is accepted, and the screening of trial
cells in several centrings at once."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from xrdid.indexing.peaks import PeakList
from xrdid.indexing.search import SCREEN_CENTRINGS, _chance_log10p, _screen, index_peaks

from .helpers import INST


def test_chance_tail_is_the_binomial_one_for_equal_rates():
    rate = np.full(12, 0.15)
    for k in (1, 4, 9, 12):
        assert _chance_log10p(rate, k) == pytest.approx(np.log10(binom.sf(k - 1, 12, 0.15)), abs=1e-9)
    assert _chance_log10p(rate, 0) == 0.0


@pytest.mark.parametrize("seed", [11, 12])
def test_short_random_line_lists_are_not_indexed(seed):
    """8–15 lines at random angles: a tetragonal or hexagonal cell with a few hundred calculated lines indexes
    most of them within the tolerances (M20 ≥ 6), but no more than chance would for a cell that size."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 16))
    peaks = PeakList.from_positions(np.sort(rng.uniform(12, 85, n)), INST.wavelength_A, intensity=rng.uniform(5, 100, n))
    result = index_peaks(peaks, time_budget_s=3.0)
    assert not result.indexed, [c.to_dict() for c in result.cells]


@pytest.mark.parametrize("system", ["cubic", "tetragonal", "hexagonal", "orthorhombic", "monoclinic"])
def test_screening_in_all_centrings_at_once_is_the_best_of_each(system):
    """The calculated lines are looked up once and OR-reduced per group of forms; the score must be the best
    of scoring each centring on its own."""
    rng = np.random.default_rng(3)
    q = np.sort(rng.uniform(0.01, 0.35, 20))
    tol = np.full(20, 3e-4)
    k = {"cubic": 1, "tetragonal": 2, "hexagonal": 2, "orthorhombic": 3, "monoclinic": 4}[system]
    p = rng.uniform(0.004, 0.08, (400, k))
    if system == "monoclinic":
        p[:, 3] = rng.uniform(-0.01, 0.01, 400)
    centrings = SCREEN_CENTRINGS[system]
    for max_index in (6, None):
        together = _screen(system, p, q, tol, max_index=max_index, centrings=centrings)
        each = np.max([_screen(system, p, q, tol, max_index=max_index, centrings=(c,)) for c in centrings], axis=0)
        np.testing.assert_allclose(together, each)
        assert np.any(together > _screen(system, p, q, tol, max_index=max_index))  # the centrings do count
