"""Absences from pyxtal's general positions, and the extinction ranking that tells groups of one lattice apart."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xrdid.indexing import extinctions as X
from xrdid.indexing.combine import Gate, Weights, cell_quality, combined_scores, gate_open, group_scores, second_opinion, system_first
from xrdid.indexing.peaks import find_peaks
from xrdid.indexing.search import index_peaks

from .helpers import INST, render

EQUAL = Weights(w=1.0, beta=1.0, unfitted=0.0)


@pytest.mark.parametrize(
    "number, hkl, expected",
    [
        (227, (1, 1, 1), True), (227, (2, 0, 0), False), (227, (2, 2, 2), True), (227, (4, 2, 0), False),
        (225, (2, 0, 0), True), (225, (1, 1, 0), False), (229, (1, 1, 0), True), (229, (1, 1, 1), False),
        (166, (0, 1, 2), True), (166, (1, 0, 2), False), (166, (0, 0, 3), True), (166, (0, 0, 1), False),
        (62, (1, 1, 0), False), (62, (0, 1, 1), True), (62, (2, 0, 0), True), (194, (0, 0, 1), False),
        (14, (0, 1, 0), False), (14, (1, 0, 1), False), (14, (1, 0, 2), True),
    ],
)
def test_reflection_conditions_from_the_general_position(number, hkl, expected):
    """Fd-3m's d-glide (420 absent; 222 allowed: its absence in Si is site-specific), I and R centring
    (R-3m obverse: −h+k+l = 3n), Pnma's n- and a-glides, P6₃/mmc's 00l: l = 2n, P2₁/c's 0k0 and h0l."""
    assert bool(X.is_allowed(number, np.array([hkl]))[0]) is expected


def test_settings_of_a_monoclinic_group_include_the_other_cell_choices():
    """P2₁/c in its n-glide setting (P2₁/n: h0l with h + l = 2n) is recognised through the cell choices."""
    h0l = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 1], [2, 0, 0]])
    n_glide = np.array([False, False, False, True])  # h + l = 2n, and 100, 001 absent
    found = [np.array_equal(X.is_allowed(14, h0l @ S.T), n_glide | (h0l.sum(axis=1) % 2 == 0)) for S in X.settings("monoclinic")]
    assert any(found)


def ranked(structure, candidates):
    """Candidates at equal classifier probability, ranked by the extinction check alone."""
    peaks = find_peaks(render(structure))
    result = index_peaks(peaks)
    fits = group_scores(result, peaks, candidates)
    p = np.full(230, 1e-6)
    p[np.asarray(candidates) - 1] = 0.1
    score = combined_scores(p, fits, EQUAL)
    order = sorted(candidates, key=lambda n: -score[n - 1])
    return order, fits


def test_diamond_prefers_fd3m_over_fm3m():
    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]])
    order, fits = ranked(si, [225, 227, 221])
    assert order[0] == 227
    assert fits[225][1] > fits[227][1]  # 200, 420 … allowed in Fm-3m, not seen


def test_fcc_prefers_fm3m_over_fd3m():
    cu = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.615), ["Cu"], [[0, 0, 0]])
    order, fits = ranked(cu, [227, 225])
    assert order[0] == 225
    assert fits[227][0] < fits[225][0] == pytest.approx(1.0)  # Fd-3m cannot index 200


def test_rutile_prefers_its_screw_axis_group():
    tio2 = Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]])
    order, _ = ranked(tio2, [123, 136, 139])
    assert order[0] == 136


def test_a_group_without_a_usable_cell_keeps_its_score_plus_the_unfitted_constant():
    w = Weights(w=2.0, beta=1.0, unfitted=0.25)
    p = np.full(230, 1e-3)
    p[13] = 0.5
    score = combined_scores(p, {14: None, 225: (1.0, 0.0)}, w)
    assert score[13] == pytest.approx(math.log(0.5) + 2.0 * 0.25)
    assert score[224] == pytest.approx(math.log(1e-3) + 2.0)


def test_second_opinion_reorders_and_keeps_the_classifier_probability():
    """With a wrong classifier favourite (Fm-3m for silicon), the extinction ranking puts Fd-3m first."""
    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]])
    sg_p = np.full(230, 0.1 / 228)
    sg_p[224], sg_p[226] = 0.5, 0.4
    cs_p = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    result = {"space_group": {"number": 225}, "top_k": [], "crystal_system": {"name": "cubic", "probability": 1.0}}
    second_opinion(result, sg_p, cs_p, pattern=render(si), top_k=3, rerank=True, weights=Weights(12.0, 1.0, 0.0))
    assert result["space_group"]["number"] == 227 and result["space_group"]["probability"] == pytest.approx(0.4)
    assert result["cell"]["indexed"] and result["cell"]["bravais"] == "cF" and result["cell"]["a"] == pytest.approx(5.431, rel=5e-3)
    assert result["crystal_system"]["name"] == "cubic" and "rerank" in result
    assert any(r["hkl"] == [1, 1, 1] for r in result["cell"]["reflections"])


@pytest.fixture(scope="module")
def checkpoint(random_checkpoint):
    return random_checkpoint(1024)


def test_predict_gains_cell_and_the_rerank_option(checkpoint, tmp_path, capsys):
    """Plumbing with a random-weight model: the contract's fields kept, ``cell`` added, ``--rerank`` orders by score."""
    from xrdid.cli import main
    from xrdid.predict import load_model, predict_patterns

    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]])
    pattern = render(si)
    bundle = load_model(checkpoint)
    (plain,) = predict_patterns(bundle, [pattern], top_k=3, cell=False)
    (r,) = predict_patterns(bundle, [pattern], top_k=3, rerank=True)
    assert "cell" not in plain and set(r) >= set(plain) | {"cell", "rerank"} and len(r["top_k"]) == 3
    assert r["cell"]["indexed"] and r["cell"]["a"] == pytest.approx(5.431, rel=5e-3)
    assert r["space_group"] == r["top_k"][0]
    scores = [t["score"] for t in r["top_k"]]
    assert scores == sorted(scores, reverse=True) and all("probability" in t for t in r["top_k"])
    path = tmp_path / "si.xy"
    np.savetxt(path, np.column_stack([pattern.x, pattern.y]))
    assert main(["predict", str(path), "--wavelength", str(INST.wavelength_A), "--model", str(checkpoint), "--json", "--rerank"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["space_group"]["number"] == out["top_k"][0]["number"] and "score" in out["space_group"]
    assert out["cell"]["bravais"] == "cF" and out["cell"]["M20"] > 10 and out["cell"]["confidence"] == "confident"
    assert main(["predict", str(path), "--wavelength", str(INST.wavelength_A), "--model", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "cell            cF a 5.43" in out and "tentative" not in out


def _si_opinion(sg_p, cs_p, **kw):
    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]])
    result = {"space_group": {"number": int(np.argmax(sg_p)) + 1}, "top_k": [], "crystal_system": {"name": "cubic", "probability": 1.0}}
    return second_opinion(result, sg_p, cs_p, pattern=render(si), top_k=3, rerank=True, weights=Weights(12.0, 1.0, 0.0), **kw)


def _fm3m_favoured():
    sg_p = np.full(230, 0.1 / 228)
    sg_p[224], sg_p[226] = 0.5, 0.4
    return sg_p, np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])


def test_a_closed_gate_leaves_the_classifier_answer():
    """The classifier's top probability 0.5 is above the gate's 0.3: Fm-3m stays first, and the result says so."""
    result = _si_opinion(*_fm3m_favoured(), gate=Gate(max_top_probability=0.3))
    assert result["space_group"]["number"] == 225 and result["rerank"]["applied"] is False
    assert result["cell"]["indexed"]


def test_an_open_gate_reorders_as_without_one():
    result = _si_opinion(*_fm3m_favoured(), gate=Gate(min_m20=5.0, max_log10p=-3.0, min_indexed=5, max_top_probability=0.6))
    assert result["space_group"]["number"] == 227 and result["rerank"]["applied"] is True


def test_the_crystal_system_level_keeps_the_classifier_order_within_the_system():
    """Silicon called hexagonal by the classifier: the cubic cell moves the crystal system to cubic, and the
    space groups listed are the classifier's own cubic ones (Fm-3m before Fd-3m), not the extinction order."""
    sg_p = np.full(230, 0.05 / 227)
    sg_p[193], sg_p[224], sg_p[226] = 0.8, 0.1, 0.05
    cs_p = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.9, 0.1])
    plain = _si_opinion(sg_p, cs_p)
    assert plain["crystal_system"]["name"] == "cubic" and plain["space_group"]["number"] == 227
    result = _si_opinion(sg_p, cs_p, gate=Gate(level="crystal_system"))
    assert result["crystal_system"]["name"] == "cubic"
    assert [r["number"] for r in result["top_k"]][:2] == [225, 227]


@pytest.mark.parametrize(
    "gate, opens",
    [
        (Gate(), True), (Gate(min_m20=20.0), True), (Gate(min_m20=21.0), False), (Gate(max_log10p=-8.0), True),
        (Gate(max_log10p=-9.0), False), (Gate(min_indexed=12), True), (Gate(min_indexed=13), False),
        (Gate(max_top_probability=0.5), True), (Gate(max_top_probability=0.49), False),
    ],
)
def test_gate_thresholds(gate, opens):
    quality = {"indexed": True, "m20": 20.0, "log10p": -8.5, "n_indexed": 12, "system": "cubic"}
    p = np.full(230, 0.5 / 229)
    p[0] = 0.5
    assert gate_open(gate, quality, p) is opens
    assert gate_open(None, cell_quality(None), p) is True
    assert gate_open(Gate(), cell_quality(None), p) is False  # no accepted cell: nothing to trust


def test_system_first_lists_the_system_then_the_rest_by_probability():
    p = np.full(230, 1e-4)
    p[0], p[224], p[226], p[193] = 0.5, 0.2, 0.3, 0.4  # P1, Fm-3m, Fd-3m, P6_3/mmc
    order = system_first(p, "cubic") + 1
    assert order[:2].tolist() == [227, 225] and all(n >= 195 for n in order[:36]) and order[36] == 1


@pytest.mark.parametrize("number", [1, 2, 14, 15, 62, 136, 148, 166, 194, 227, 230])
def test_the_stored_absences_are_the_computed_ones(number):
    """The shipped table (``python -m xrdid.indexing.extinctions``) is used, and matches pyxtal's general position."""
    assert X._stored_masks() is not None
    np.testing.assert_array_equal(X.allowed_reflections(number), X.computed_allowed_reflections(number))


def test_written_absences_read_back_and_leave_no_temporary(tmp_path, monkeypatch):
    """``write_absences`` stores what ``_stored_masks`` reads (the packed bits cut back to the box), written
    atomically under the exact name given."""
    rng = np.random.default_rng(0)
    masks = rng.random((230, len(X._box()))) < 0.5
    monkeypatch.setattr(X, "computed_allowed_reflections", lambda n: masks[n - 1])
    out = tmp_path / "absences.npz"
    assert X.write_absences(out) == out
    assert [p.name for p in tmp_path.iterdir()] == ["absences.npz"]
    monkeypatch.setattr(X, "ABSENCES_FILE", out)
    X._stored_masks.cache_clear()
    try:
        np.testing.assert_array_equal(X._stored_masks(), masks)
    finally:
        X._stored_masks.cache_clear()
