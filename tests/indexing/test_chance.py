"""Chance in the indexing: the screening of trial cells in several centrings at once."""

from __future__ import annotations

import numpy as np
import pytest

from xrdid.indexing.search import SCREEN_CENTRINGS, _screen


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
