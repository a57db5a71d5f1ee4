"""The fit's shortcuts (one-shot candidate placement, the background Gram block, skipping clearly worse
hypotheses) keep its answers, and the chemistry filter (``--elements``)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from scipy.optimize import lsq_linear

from xrdid.mixtures import LibraryError, load_library
from xrdid.mixtures.profile import Optics

CU = (1.5405929, 1.5444140)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("lib")
    Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
        filename=str(root / "NaCl.cif"))
    Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]).to(filename=str(root / "Si.cif"))
    Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"],
                              [[0, 0, 0], [0.305, 0.305, 0]]).to(filename=str(root / "TiO2.cif"))
    return load_library(root, 0.8 / 1.03)


def _model(library, y=None, degree=6):
    from xrdid.mixtures.model import Model

    grid = np.linspace(15.0, 90.0, 1501)
    return Model(grid, np.ones_like(grid) if y is None else y, library, Optics(CU), background_degree=degree)


def test_linear_solve_with_the_cached_background_block_is_the_weighted_least_squares(library):
    """The phase scales (≥ 0) and background of Model.linear are those of a direct bounded solve."""
    from xrdid.mixtures.model import Globals, PhaseState

    rng = np.random.default_rng(0)
    m0 = _model(library)
    cols = np.array([m0.render(PhaseState(i), Globals(log_width=math.log(3.0))) for i in range(3)])
    for true in ([2.0, 0.5, 1.0], [2.0, 0.0, 1.0]):
        y = rng.poisson(np.array(true) @ cols * 50 + 200 + 30 * np.linspace(0, 1, cols.shape[1])).astype(float)
        m = _model(library, y)
        a, b, calc, chi2 = m.linear(cols)
        A = np.vstack([cols, m.bg]).T * m.sw[:, None]
        lo = np.r_[np.zeros(3), np.full(m.bg.shape[0], -np.inf)]
        ref = lsq_linear(A, y * m.sw, bounds=(lo, np.inf), method="bvls", tol=1e-12).x
        assert np.allclose(a, ref[:3], rtol=1e-5, atol=1e-6 * ref[:3].max())
        assert chi2 == pytest.approx(float(np.sum((A @ ref - y * m.sw) ** 2)), rel=1e-6)
        assert np.allclose(calc, np.vstack([cols, m.bg]).T @ np.r_[a, b])
    assert m.linear(np.zeros((0, m.grid.size)))[3] > chi2  # the background alone fits worse


def test_bounded_lstsq_is_lsq_linear_bvls_to_the_last_bit():
    """bounded_lstsq (the fit's bounded solves without lsq_linear's wrapper) gives lsq_linear's numbers,
    bit for bit: when the unbounded solution is feasible and when BVLS has to move off it."""
    from xrdid.mixtures.model import bounded_lstsq

    rng = np.random.default_rng(3)
    moved = 0
    for trial in range(40):
        k, nb = int(rng.integers(1, 6)), int(rng.integers(2, 8))
        A = np.triu(rng.normal(size=(k + nb, k + nb))) + 3 * np.eye(k + nb)
        b = rng.normal(size=k + nb)
        lo = np.concatenate((np.zeros(k), np.full(nb, -np.inf)))
        ref = lsq_linear(A, b, bounds=(lo, np.inf), method="bvls").x
        moved += bool((np.linalg.lstsq(A, b, rcond=-1)[0] < lo).any())
        np.testing.assert_array_equal(bounded_lstsq(A, b, lo), ref)
    assert 5 < moved < 35  # both cases were exercised


def test_a_candidate_is_placed_at_its_lattice_scale_with_two_renders(library, monkeypatch):
    """_add_phase finds a phase's lattice scale 1.5 screening steps from the screening's guess, rendering it
    twice (a Levenberg–Marquardt refinement took five or more renders)."""
    from xrdid.mixtures import fit as F
    from xrdid.mixtures.model import Globals, Model, PhaseState
    from xrdid.mixtures.refine import Bounds

    i = next(k for k, p in enumerate(library.phases) if p.formula == "NaCl")
    m = _model(library)
    g = Globals(zero_deg=0.02, log_width=math.log(3.0))
    y = 100 * m.render(PhaseState(i, s=1.003, log_size=math.log(300.0)), g) + 50.0
    m = _model(library, np.random.default_rng(1).poisson(y * 20).astype(float) / 20)
    empty = np.zeros((0, m.grid.size))
    a, _, calc, chi2 = m.linear(empty)
    root = F._Hyp([], g, empty, a, calc, chi2)
    calls = []
    real = Model.render
    monkeypatch.setattr(Model, "render", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    child = F._add_phase(m, root, i, 1.0, F.FitSettings(), Bounds(d_scale=0.02), step=0.002)
    assert len(calls) <= 2
    assert child.phases[0].s == pytest.approx(1.003, abs=2e-4)
    assert child.chi2 < 0.2 * chi2


def test_a_hypothesis_span_is_computed_once_and_is_its_own(library):
    """_add_phase projects every candidate off the span of the parent's columns and background, computed
    once per hypothesis (_Hyp.span_basis): adding a second candidate to the same parent must give what it
    gives on a fresh copy of that parent, and two parents must not share a span."""
    from xrdid.mixtures import fit as F
    from xrdid.mixtures.model import Globals, PhaseState
    from xrdid.mixtures.refine import Bounds

    ids = {p.formula: k for k, p in enumerate(library.phases)}
    m0 = _model(library)
    g = Globals(zero_deg=0.02, log_width=math.log(3.0))
    y = sum(w * m0.render(PhaseState(ids[f], s=1.002), g) for f, w in (("NaCl", 100), ("Si", 60), ("TiO2", 40)))
    m = _model(library, np.random.default_rng(2).poisson(y * 20 + 1000).astype(float) / 20)

    def hyp(formulas):
        phases = [PhaseState(ids[f], q=np.zeros(m.data(ids[f]).n_aniso)) for f in formulas]
        cols = m.columns(phases, g)
        a, _, calc, chi2 = m.linear(cols)
        return F._Hyp(phases, g, cols, a, calc, chi2)

    st, b = F.FitSettings(), Bounds(d_scale=0.02)
    h1, h2 = hyp(["NaCl"]), hyp(["NaCl", "Si"])
    F._add_phase(m, h1, ids["Si"], 1.0, st, b, step=0.002)  # the span of h1 is now cached
    again = F._add_phase(m, h1, ids["TiO2"], 1.0, st, b, step=0.002)
    fresh = F._add_phase(m, hyp(["NaCl"]), ids["TiO2"], 1.0, st, b, step=0.002)
    assert again.phases[-1].s == fresh.phases[-1].s and again.chi2 == fresh.chi2
    for h in (h1, h2):
        q = h.span_basis(m)
        w = (np.vstack([h.cols, m.bg]) * m.sw).T
        assert q.shape == w.shape and np.allclose(q @ (q.T @ w), w, atol=1e-9 * np.abs(w).max())
    assert h1.span_basis(m) is h1.span_basis(m) and h2.span_basis(m).shape[1] == h1.span_basis(m).shape[1] + 1


def test_runner_up_hypotheses_far_behind_the_best_are_not_fully_refined():
    from xrdid.mixtures import fit as F

    st = F.FitSettings()
    ne = 100.0
    m = SimpleNamespace(lattice_sigma=st.lattice_sigma, chi2_floor=0.0, beam_aniso_params=True)  # what Model starts with

    def hyp(crit):  # an empty phase set: criterion = N_eff ln χ²
        return F._Hyp([], None, np.zeros((0, 1)), np.zeros(0), np.zeros(1), math.exp(crit / ne))

    close = [hyp(0.0), hyp(st.swap_margin - 1)]
    far = [hyp(0.0), hyp(st.swap_margin + 1)]
    assert len(F._worth_refining(m, close, st, ne)) == 2
    assert len(F._worth_refining(m, far, st, ne)) == 1
    assert F._worth_refining(m, [], st, ne) == []


def test_elements_restrict_the_library(library):
    from xrdid.mixtures.library import formula_elements, parse_elements

    assert formula_elements("La(HO)3") == {"La", "H", "O"}
    assert parse_elements("Ti, O") == {"Ti", "O"}
    sub = library.restricted_to(["Ti", "O", "Si"])
    assert sorted(p.formula for p in sub.phases) == ["Si", "TiO2"]
    assert len(library) == 3  # the library itself is untouched
    with pytest.raises(LibraryError, match="Fe, O"):
        library.restricted_to("Fe,O")
    with pytest.raises(ValueError, match="'Xx'"):
        parse_elements("Ti,Xx")


def test_cli_elements_leave_out_phases_of_other_elements(tmp_path, capsys, caplog):
    """A NaCl + Si pattern: with --elements Na,Cl only NaCl can be reported; a bad symbol exits 2."""
    import json

    from xrdid.cli import main
    from xrdid.mixtures.model import Globals, PhaseState

    root = tmp_path / "lib"
    root.mkdir()
    Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
        filename=str(root / "NaCl.cif"))
    Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]).to(filename=str(root / "Si.cif"))
    lib = load_library(root, 0.8 / 1.03)
    m = _model(lib)
    g = Globals(log_width=math.log(3.0))
    y = sum(m.render(PhaseState(i), g) for i in range(2))
    y = np.random.default_rng(2).poisson(2e4 * y / y.max() + 300).astype(float)
    f = tmp_path / "mix.xy"
    f.write_text("\n".join(f"{a:.4f} {b:.1f}" for a, b in zip(m.grid, y)) + "\n")
    args = ["phases", str(f), "--library", str(root), "--wavelength", "1.5405929", "--json", "--no-cache"]
    assert main(args) == 0
    assert {p["formula"] for p in json.loads(capsys.readouterr().out)["phases"]} == {"NaCl", "Si"}
    assert main([*args, "--elements", "Na,Cl"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {p["formula"] for p in out["phases"]} == {"NaCl"} and out["n_library_phases"] == 1
    assert main([*args, "--elements", "Na,Qq"]) == 2
    assert "--elements" in caplog.text and "'Qq'" in caplog.text
    assert main([*args, "--elements", "Fe"]) == 2
    assert "no library phase is made only of Fe" in caplog.text


def test_parameters_at_their_bounds_are_named():
    from xrdid.mixtures.fit import at_limits
    from xrdid.mixtures.model import PhaseState
    from xrdid.mixtures.refine import Bounds

    b = Bounds(d_scale=0.02, aniso=0.01)
    m = None  # at_limits reads only the phase state and the bounds
    assert at_limits(m, PhaseState(0, s=1.003, log_size=math.log(80.0), strain=0.002), b) == []
    hump = PhaseState(0, s=0.98, q=np.array([0.0]), log_size=math.log(3.0), strain=0.01)
    assert at_limits(m, hump, b) == ["lattice", "strain", "size"]
    assert at_limits(m, PhaseState(0, q=np.array([-0.01]), axis=0, r=0.4), b) == ["lattice", "texture"]
    assert at_limits(m, PhaseState(0, axis=0, r=0.7), b) == []


def test_a_phase_bent_to_several_bounds_is_dropped(library, monkeypatch):
    """_final drops a phase whose refinement ends with two kinds of parameter at their bounds (the model made
    it a hump or another phase's peaks), even when the criterion would keep it."""
    from xrdid.mixtures import fit as F
    from xrdid.mixtures.model import Globals, PhaseState
    from xrdid.mixtures.refine import Bounds

    i = next(k for k, p in enumerate(library.phases) if p.formula == "NaCl")
    j = next(k for k, p in enumerate(library.phases) if p.formula == "Si")
    m = _model(library)
    g = Globals(log_width=math.log(3.0))
    y = m.render(PhaseState(i), g) + m.render(PhaseState(j), g)
    m = _model(library, np.random.default_rng(4).poisson(2e4 * y / y.max() + 300).astype(float))
    m.lattice_sigma = 0.005
    cols = np.array([m.render(PhaseState(i), g), m.render(PhaseState(j), g)])
    a, _, calc, chi2 = m.linear(cols)
    h = F._Hyp([PhaseState(i), PhaseState(j)], g, cols, a, calc, chi2)
    st, b, ne = F.FitSettings(), Bounds(d_scale=0.02, aniso=0.01), 150.0
    assert {p.index for p in F._final(m, h, st, b, ("zero", "width"), ne).phases} == {i, j}
    real = F.at_limits
    monkeypatch.setattr(F, "at_limits", lambda m_, p, b_: ["lattice", "strain"] if p.index == j else real(m_, p, b_))
    assert {p.index for p in F._final(m, h, st, b, ("zero", "width"), ne).phases} == {i}


def _noisy_tio2(library):
    """(TiO2's library index, a model of a noisy TiO2 pattern slightly off its library cell, the globals)."""
    from xrdid.mixtures.model import Globals, PhaseState

    i = next(k for k, p in enumerate(library.phases) if p.formula == "TiO2")
    m = _model(library)
    g = Globals(log_width=math.log(3.0))
    y = m.render(PhaseState(i, s=1.004, q=np.array([0.003]), log_size=math.log(60.0)), g)
    return i, _model(library, np.random.default_rng(5).poisson(2e4 * y / y.max() + 300).astype(float)), g


def test_refinement_stops_when_an_iteration_gains_less_than_rtol(library, monkeypatch):
    """rtol (the fit passes lm_stop / N_eff: a tenth of a BIC unit) ends the refinement early."""
    from xrdid.mixtures.model import Model, PhaseState
    from xrdid.mixtures.refine import Bounds, refine, slots_for

    i, m, g = _noisy_tio2(library)
    start = [PhaseState(i, q=np.zeros(1))]
    slots = slots_for(start, m, phase_kinds=("s", "q", "size"), global_kinds=())
    calls = []
    real, real_cols = Model.render, Model.columns
    monkeypatch.setattr(Model, "render", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    # Model.columns renders several states in one call: one count per state.
    monkeypatch.setattr(Model, "columns", lambda self, ps, g_: calls.extend([1] * len(ps)) or real_cols(self, ps, g_))
    tight = refine(m, start, g, slots, Bounds(), 12, rtol=1e-9)
    n_tight = len(calls)
    calls.clear()
    loose = refine(m, start, g, slots, Bounds(), 12, rtol=0.05)
    assert len(calls) < n_tight
    assert loose[5] >= tight[5]


def test_a_trial_step_the_trust_region_made_equal_to_a_rejected_one_is_not_evaluated_again(library, monkeypatch):
    """After a rejected step λ grows; where each parameter's largest step had cut the step back, the next
    λ gives the same step again. Such a step is not evaluated (fewer renders and solves), and here, where
    it would have been rejected again, the refinement ends on the very same numbers."""
    from xrdid.mixtures.model import Model, PhaseState
    from xrdid.mixtures.refine import Bounds, _same_step, refine, slots_for

    assert _same_step(np.array([1.0, 0.5]), np.array([1.0, 0.52]), 0.05)
    assert not _same_step(np.array([1.0, 0.5]), np.array([1.0, 0.6]), 0.05)
    assert not _same_step(np.array([1.0, 0.5]), np.array([1.0, 0.5]), 0.0)
    i, m, g = _noisy_tio2(library)
    start = [PhaseState(i, q=np.zeros(1))]
    slots = slots_for(start, m, phase_kinds=("s", "q", "size", "strain"), global_kinds=("zero", "width"))
    calls = []
    real = Model.linear
    monkeypatch.setattr(Model, "linear", lambda self, c: calls.append(1) or real(self, c))
    # Refined to convergence: the last iteration's steps are all rejected (with every derivative column a
    # finite difference of renders, shared=(): the case this pattern shows).
    every = refine(m, start, g, slots, Bounds(), 30, rtol=1e-12, skip_rtol=0.0, shared=())
    n_every = len(calls)
    calls.clear()
    skipped = refine(m, start, g, slots, Bounds(), 30, rtol=1e-12, shared=())
    assert len(calls) < n_every
    assert skipped[5] == every[5]
    assert skipped[0][0].s == every[0][0].s and skipped[1].log_width == every[1].log_width


def test_negative_scales_held_at_zero_give_the_bounded_optimum_without_bvls(library, monkeypatch):
    """Model.linear, where the unbounded solve gives a phase a negative scale, holds it at 0 and re-solves
    the rest (checked optimal); that is BVLS's answer within rounding, and BVLS is not run. Where holding
    every negative scale at 0 is not the optimum, _clamped_solve says so (None: BVLS then)."""
    from xrdid.mixtures import model as M
    from xrdid.mixtures.model import Globals, PhaseState

    cols = np.array([_model(library).render(PhaseState(i), Globals(log_width=math.log(3.0))) for i in range(3)])
    y = np.random.default_rng(1).poisson(cols[0] * 50 + cols[2] * 40 + 200).astype(float)
    y -= 30 * cols[1] / cols[1].max()  # the data lack phase 1: its unbounded scale is negative
    m = _model(library, y)
    calls = []
    real = M.bounded_lstsq
    monkeypatch.setattr(M, "bounded_lstsq", lambda *a: calls.append(1) or real(*a))
    m.clamp_first = False
    ref = m.linear(cols)
    assert calls and ref[0][1] == 0.0
    calls.clear()
    m.clamp_first = True
    got = m.linear(cols)
    assert not calls  # held at 0, no BVLS
    assert got[0][1] == 0.0
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-10)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-9, atol=1e-9 * np.abs(ref[1]).max())
    assert got[3] == pytest.approx(ref[3], rel=1e-12)
    # Both unbounded scales negative, but at the optimum (0, 0.5) only the first is held at 0: holding both
    # is not optimal, and _clamped_solve says so.
    G = np.array([[1.0, -0.9], [-0.9, 1.0]])
    Mb = np.array([-1.0, 0.5])
    c0 = np.linalg.solve(G, Mb)
    assert (c0 < 0).all()
    assert M._clamped_solve(G, Mb, 2, c0) is None
    # One negative: held at 0, the other re-solved, optimal.
    Mb = np.array([-1.0, 1.0])
    c0 = np.linalg.solve(G, Mb)
    assert c0[0] < 0 < c0[1]
    np.testing.assert_allclose(M._clamped_solve(G, Mb, 2, c0), [0.0, 1.0])


def test_the_kalpha2_derivative_is_the_kalpha2_peaks_alone(library, monkeypatch):
    """The columns are Kα1 + ratio × Kα2 peaks: Model.columns(…, line=1) is their derivative with respect to
    the ratio (a finite difference agrees to rounding), and the refinement uses it instead of re-rendering
    both lines (fewer rendered peaks, the same refined numbers within rounding)."""
    from xrdid.mixtures import profile as P
    from xrdid.mixtures.model import Globals, PhaseState
    from xrdid.mixtures.refine import Bounds, refine, slots_for

    m = _model(library)
    states = [PhaseState(i, log_size=math.log(40.0 + 30 * i)) for i in range(3)]
    g = Globals(log_width=math.log(3.0), kalpha2_ratio=0.45, zero_deg=0.02)
    k2 = m.columns(states, g, line=1)
    fd = (m.columns(states, g.copy(kalpha2_ratio=0.47)) - m.columns(states, g)) / 0.02
    np.testing.assert_allclose(k2, fd, rtol=0, atol=1e-9 * np.abs(fd).max())
    assert np.abs(k2).max() > 0
    y = np.random.default_rng(2).poisson(np.array([2.0, 1.0, 0.5]) @ m.columns(states, g) * 80 + 300).astype(float)
    m = _model(library, y)
    start = [PhaseState(i) for i in range(3)]
    slots = slots_for(start, m, phase_kinds=("s", "size"), global_kinds=("zero", "width", "ka2"))
    peaks = []
    real = P._render
    # Peaks rendered: sticks × wavelengths (_render's arguments: sticks, |F|²m, rows, n_rows, grid, optics).
    monkeypatch.setattr(P, "_render", lambda dd, *a, **k: peaks.append(dd.size * len(a[4].wavelengths_A))
                        or real(dd, *a, **k))
    fd_run = refine(m, start, Globals(log_width=math.log(3.0)), slots, Bounds(), 6, analytic_ka2=False)
    n_fd = sum(peaks)
    peaks.clear()
    run = refine(m, start, Globals(log_width=math.log(3.0)), slots, Bounds(), 6)
    assert sum(peaks) < n_fd
    assert run[1].kalpha2_ratio == pytest.approx(fd_run[1].kalpha2_ratio, rel=1e-6)
    assert run[5] == pytest.approx(fd_run[5], rel=1e-9)


def test_the_qr_reduced_system_is_r_and_q_transpose_b_of_the_reduced_qr():
    """_qr_reduced (the foreign-peak union fit's least squares, from the R factor of [A | b] alone) gives
    the reduced QR's R and Qᵀb, and so the same least-squares solution."""
    from xrdid.mixtures.fit import _qr_reduced

    rng = np.random.default_rng(4)
    A = rng.normal(size=(300, 40))
    b = rng.normal(size=300)
    r, qtb = _qr_reduced(A, b)
    q, r_ref = np.linalg.qr(A)
    np.testing.assert_allclose(r, r_ref, rtol=0, atol=1e-12 * np.abs(r_ref).max())
    np.testing.assert_allclose(qtb, q.T @ b, rtol=0, atol=1e-12 * np.abs(b).max())
    np.testing.assert_allclose(np.linalg.solve(r, qtb), np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-9)


def test_the_projected_jacobian_is_orthogonal_to_the_columns_and_background_before_and_after_a_mask(library):
    """refine's Kaufman projection (the background's Gram block cached on the model) leaves derivative rows
    orthogonal to every weighted column and background row, and equals the projection done from scratch;
    after Model.mask the cached block follows the new weights."""
    from xrdid.mixtures.model import Globals, PhaseState
    from xrdid.mixtures.refine import _projected

    m = _model(library, np.random.default_rng(6).poisson(500, 1501).astype(float), degree=8)
    cols = np.array([m.render(PhaseState(i), Globals(log_width=math.log(3.0))) for i in range(3)])
    cols /= cols.max(axis=1, keepdims=True)
    D = np.random.default_rng(7).normal(size=(4, m.grid.size))
    for step in range(2):
        if step:
            m.mask(np.arange(m.grid.size) % 7 != 0)
        L = np.vstack([cols, m.bg]) * m.sw
        got = _projected(m, cols, D)
        ref = D * m.sw - np.linalg.lstsq(L.T, (D * m.sw).T, rcond=None)[0].T @ L
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8 * np.abs(D * m.sw).max())
        assert np.abs(got @ L.T).max() < 1e-7 * np.abs(D * m.sw).max() * np.abs(L).max()


def test_shared_profile_derivative_columns_are_the_derivatives_of_the_render(library):
    """Model.derivative_columns (each peak's profile computed once, the peaks' centre, FWHM, η and area
    moved) equals a finite difference of Model.columns over a small step, for every kind of move: size,
    strain, texture, the anisotropic lattice, the width scale (every phase) and the Kα2 ratio."""
    from xrdid.mixtures.model import Globals, PhaseState

    m = _model(library)
    ti = next(k for k, p in enumerate(library.phases) if p.formula == "TiO2")
    states = [PhaseState(i, q=np.zeros(m.data(i).n_aniso), log_size=math.log(40.0 + 30 * i), strain=0.001 * (i + 1))
              for i in range(3)]
    states[ti].axis, states[ti].r = 0, 0.8
    g = Globals(log_width=math.log(3.0), kalpha2_ratio=0.45, zero_deg=0.02)
    a = np.array([2.0, 1.0, 0.5])
    base = m.columns(states, g)
    moves, fds = [], []
    for i, p in enumerate(states):
        changes = [("log_size", 1e-6), ("strain", 1e-7), ("r", 1e-6)]
        changes += [("q", 1e-6)] * p.q.size
        for j, (kind, h) in enumerate(changes):
            if kind == "q":
                q = p.q.copy()
                q[j - 3] += h
                moved = p.copy(q=q)
            else:
                moved = p.copy(**{kind: getattr(p, kind) + h})
            moves.append((i, moved, g, h))
            fds.append(a[i] * (m.columns([moved], g)[0] - base[i]) / h)
    wider = g.copy(log_width=g.log_width + 1e-6)
    moves.append((None, None, wider, 1e-6))
    fds.append(a @ (m.columns(states, wider) - base) / 1e-6)
    fds.append(a @ (m.columns(states, g.copy(kalpha2_ratio=0.47)) - base) / 0.02)
    D = m.derivative_columns(states, g, a, moves, ka2=True)
    assert D.shape == (len(fds), m.grid.size)
    assert any(mv[1] is not None and mv[1].q.any() for mv in moves)
    for k, (got, fd) in enumerate(zip(D, fds)):
        if not np.abs(fd).any():  # a texture move of an untextured phase
            assert not np.abs(got).any()
            continue
        assert np.linalg.norm(got - fd) < 2e-3 * np.linalg.norm(fd), k


def test_refinement_with_shared_profile_derivatives_renders_fewer_peaks_and_fits_at_least_as_well(library, monkeypatch):
    """refine(shared=…) takes the size, strain, anisotropic-lattice, width and Kα2 columns from one
    shared-profile render: fewer peaks rendered by _render, and a fit at least as good as the finite
    differences' (on this pattern better: their columns carry the jumps of the peaks' ±5-FWHM windows,
    and the refinement stops short), at the pattern's cell and size (TiO2 rendered at s = 1.004,
    q = 0.003, 60 nm)."""
    from xrdid.mixtures import profile as P
    from xrdid.mixtures.model import PhaseState
    from xrdid.mixtures.refine import Bounds, refine, slots_for

    i, m, g = _noisy_tio2(library)
    start = [PhaseState(i, q=np.zeros(1), strain=0.0005)]
    slots = slots_for(start, m, phase_kinds=("s", "q", "size", "strain"), global_kinds=("zero", "width", "ka2"))
    peaks = []
    real = P._render
    monkeypatch.setattr(P, "_render", lambda dd, *a, **k: peaks.append(dd.size * len(a[4].wavelengths_A))
                        or real(dd, *a, **k))
    fd_run = refine(m, start, g, slots, Bounds(), 30, rtol=1e-10, shared=())
    n_fd = sum(peaks)
    peaks.clear()
    run = refine(m, start, g, slots, Bounds(), 30, rtol=1e-10, shared=("q", "size", "strain", "width", "ka2"))
    assert sum(peaks) < 0.7 * n_fd
    assert run[5] <= fd_run[5] * (1 + 1e-9)
    p = run[0][0]
    assert p.s == pytest.approx(1.004, abs=1e-4)
    assert p.q[0] == pytest.approx(0.003, abs=1e-4)
    assert math.exp(p.log_size) == pytest.approx(60.0, rel=0.03)
