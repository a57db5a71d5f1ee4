"""Trial cells are de-duplicated by their rounded log-magnitudes, the first of each kind kept in order."""

import numpy as np
import pytest

from xrdid.indexing.search import _unique_rows


def _by_definition(p: np.ndarray, decimals: int = 3) -> np.ndarray:
    key = np.round(np.sign(p) * np.log1p(np.abs(p) * 1e4), decimals)
    _, first = np.unique(key, axis=0, return_index=True)
    return p[np.sort(first)]


@pytest.mark.parametrize("k", [1, 2, 3, 4, 6])  # up to 4 columns one packed key per row; 6 would overflow it
def test_unique_rows_are_the_first_of_each_rounded_kind_in_order(k):
    rng = np.random.default_rng(k)
    # Rows that share values column by column (a few values each, signs mixed, 1e-3 to 1 Å⁻²), so that a key
    # confusing two columns or dropping one merges distinct rows.
    values = rng.choice([-1, 1], size=(5, k)) * 10.0 ** rng.uniform(-3, 0, size=(5, k))
    rows = values[rng.integers(0, 5, size=(3000, k)), np.arange(k)]
    # Half the rows nudged by 1e-5 (relative): of their kind after rounding, unless on a rounding edge.
    rows = rows * (1 + 1e-5 * rng.normal(size=rows.shape) * rng.integers(0, 2, (len(rows), 1)))
    got = _unique_rows(rows)
    assert np.array_equal(got, _by_definition(rows))
    assert len(got) >= min(5**k, 2500) * 0.5
    assert _unique_rows(rows[:0]).shape == (0, k)
