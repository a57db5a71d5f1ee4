"""The mixture signal of the indexing result: does one cell index the strong lines?"""

from __future__ import annotations

import math

import numpy as np
import pytest

from xrdid.indexing.combine import CONTEXT, FEATURES, index_pattern, indexability, one_cell_features

from .helpers import INST, prototype, render


def _two_phase():
    """Sphalerite and wurtzite-like sticks in one pattern, both phases at comparable strength."""
    from xrdid.simulate.sticks import compute_sticks

    other = compute_sticks(prototype("AB_hP4_194_c_a"), INST.d_min_A)
    scale = 1.0 / float(np.max(other.f2m))
    return render(prototype("AB_cF8_216_c_a"), extra_sticks=[(float(d), float(f) * scale) for d, f in zip(other.d, other.f2m, strict=True)])


def test_one_phase_is_indexed_by_one_cell_and_two_phases_are_not():
    single = one_cell_features(*index_pattern(render(prototype("AB_cF8_216_c_a")))[::-1])
    mixed = one_cell_features(*index_pattern(_two_phase())[::-1])
    assert set(single) == set(FEATURES) | set(CONTEXT) == set(mixed)
    assert single["unindexed_strong"] == pytest.approx(0.0, abs=0.02)
    assert single["not_indexed"] == 0.0
    # The second phase's strong lines are left out by the first phase's cell (or no cell is accepted).
    assert mixed["unindexed_strong"] > 0.2
    assert mixed["unindexed_lines"] > single["unindexed_lines"]


def test_no_search_is_no_evidence():
    assert one_cell_features(None, None) == {"unindexed_strong": 0.0, "unindexed_lines": 0.0, "not_indexed": 1.0, "log_m20": 0.0,
                                             "d_first_strong": 0.0, "log_volume": 0.0, "n_lines": 0.0}


def test_the_context_tells_how_large_the_cell_is():
    # Sphalerite: F-centred cubic, conventional cell 4 × the primitive one; its first and strongest line is
    # 111 at d = a/√3. A weak line (~4 % of the strongest after the Lorentz factor) at 9 Å comes first but is not strong.
    structure = prototype("AB_cF8_216_c_a")
    peaks, result = index_pattern(render(structure, extra_sticks=[(9.0, 0.005)]))
    assert peaks.two_theta[0] < 11.0
    f = one_cell_features(result, peaks)
    a = (4 * structure.lattice.volume) ** (1 / 3)
    assert f["d_first_strong"] == pytest.approx(a / math.sqrt(3), rel=0.005)
    assert f["log_volume"] == pytest.approx(math.log(a**3), abs=0.02)
    assert f["n_lines"] == result.n_lines >= 8
    # The peaks alone give the same d and line count, no volume.
    assert indexability(peaks) == {"d_first_strong": f["d_first_strong"], "log_volume": 0.0, "n_lines": f["n_lines"]}


def test_a_mixtures_leftover_lines_index_on_a_second_cell_a_single_phase_leaves_none():
    from xrdid.indexing.combine import SECOND, leftover_peaks, second_cell_features

    peaks, result = index_pattern(render(prototype("AB_cF8_216_c_a")))
    single = second_cell_features(result, peaks)
    assert set(single) == set(SECOND)
    # The cell indexes every line of its own phase: nothing left to search.
    assert len(leftover_peaks(result.best, peaks)) == single["leftover_lines"] <= 1
    assert single["second_indexed"] == 0.0 and single["second_accepted"] == 0.0
    peaks, result = index_pattern(_two_phase())
    mixed = second_cell_features(result, peaks)
    # The other phase's strong lines are left over and index on a cell of their own.
    assert mixed["leftover_strong"] >= 3 and mixed["leftover_lines"] >= 4
    assert mixed["second_indexed"] > 0.8 and mixed["second_accepted"] == 1.0 and mixed["second_log10p"] > 0.33
    assert second_cell_features(None, None) == dict.fromkeys(SECOND, 0.0)


def test_the_second_cell_search_keeps_the_search_the_detector_was_fitted_on(monkeypatch):
    """The shipped detector's second-cell terms were fitted on second cells searched without the guarded few-line
    search: ``second_cell_features`` asks for it off, whatever the default (on 5 leftover lines it would add
    tetragonal and hexagonal cells); ``guarded_few_lines=False`` does turn it off (A_hR1_166's 5 lines, whose hR cell
    only the guarded search finds)."""
    from pymatgen.core import Lattice

    from xrdid.indexing import combine, search
    from xrdid.indexing.evaluate import right_rank
    from xrdid.indexing.peaks import PeakList

    five = PeakList.from_positions([32.7329, 40.4499, 52.8831, 63.64, 68.7013], 1.5405929, intensity=[1.0, 0.7989, 0.2705, 0.3726, 0.3139],
                                   sigma=[0.0026, 0.0032, 0.0088, 0.005, 0.0054], fwhm=[0.129, 0.1807, 0.1893, 0.3833, 0.2091])
    lat = Lattice.from_parameters(2.986301, 2.986301, 2.986301, 70.743377, 70.743377, 70.743377)
    monkeypatch.setattr(search, "GUARDED_FEW_LINE_SEARCH", True)
    assert right_rank(search.index_peaks(five).cells[:3], [lat]) is not None
    assert right_rank(search.index_peaks(five, guarded_few_lines=False).cells[:3], [lat]) is None

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("guarded_few_lines"))
        return search.index_peaks(*args, **kwargs)

    peaks, result = index_pattern(_two_phase())
    monkeypatch.setattr(combine, "index_peaks", spy)
    assert combine.second_cell_features(result, peaks)["leftover_lines"] >= 4
    assert calls == [False]
