"""xrdid.rerank: absences from pyxtal, peak finding, and lattice fits that tell groups of one lattice apart."""

import json
import math

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from xrdid import rerank as R
from xrdid.instrument import Renderer, StickBatch, get_instrument
from xrdid.simulate.sticks import compute_sticks

INST = get_instrument({"preset": "cu", "n_points": 4096})
EQUAL = R.Weights(w=1.0, beta=1.0, unfitted=0.0)


def render(structure):
    """Unaugmented Cu Kα1+Kα2 pattern of ``structure`` on INST's grid (max 1)."""
    st = compute_sticks(structure, INST.d_min_A)
    sticks = StickBatch(torch.tensor(np.asarray(st.d, np.float32))[None], torch.tensor(np.asarray(st.f2m, np.float32))[None])
    y, mask = Renderer(INST)(sticks, torch.Generator().manual_seed(0))
    return y[0].numpy(), mask[0].numpy()


def ranked(structure, candidates):
    """Candidates at equal classifier probability, re-ranked by the fit alone."""
    y, mask = render(structure)
    out = R.rerank([(n, 0.1) for n in candidates], INST.grid(), y, mask, wavelengths_A=INST.wavelengths_A,
                   line_weights=INST.weights, weights=EQUAL)
    return [r["number"] for r in out], {r["number"]: r["fit"] for r in out}


def allowed(number, hkl):
    i = np.flatnonzero(np.all(R._hkl(R.HMAX) == np.array(hkl), axis=1))[0]
    return bool(R.allowed_reflections(number)[i])


@pytest.mark.parametrize(
    "number, hkl, expected",
    [
        (227, (1, 1, 1), True), (227, (2, 0, 0), False), (227, (2, 2, 2), True), (227, (4, 2, 0), False),
        (225, (2, 0, 0), True), (225, (1, 1, 0), False), (229, (1, 1, 0), True), (229, (1, 1, 1), False),
        (166, (0, 1, 2), True), (166, (1, 0, 2), False), (166, (0, 0, 3), True), (166, (0, 0, 1), False),
        (62, (1, 1, 0), False), (62, (0, 1, 1), True), (62, (2, 0, 0), True), (194, (0, 0, 1), False),
    ],
)
def test_reflection_conditions_from_the_general_position(number, hkl, expected):
    """Fd-3m's d-glide (420 absent; 222 allowed: its absence in Si is site-specific), I and R centring
    (R-3m obverse: −h+k+l = 3n), Pnma's n- and a-glides, P6₃/mmc's 00l: l = 2n."""
    assert allowed(number, hkl) is expected


def test_find_peaks_positions_and_noise():
    rng = np.random.default_rng(0)
    tt = np.linspace(10, 80, 3000)
    centres = [20.0, 33.3, 47.1, 61.9]
    y = 0.02 + sum(a * np.exp(-0.5 * ((tt - c) / 0.05) ** 2) for a, c in zip((1.0, 0.5, 0.2, 0.05), centres, strict=True))
    y = y + rng.normal(0, 0.002, tt.size)
    peaks = R.find_peaks(tt, y)
    assert peaks.two_theta == pytest.approx(centres, abs=0.01)


def test_diamond_prefers_fd3m_over_fm3m():
    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]])
    order, fits = ranked(si, [225, 227, 221])
    assert order[0] == 227
    assert fits[227]["cell_A"][0] == pytest.approx(5.431, abs=0.005)
    assert fits[225]["missing"] > fits[227]["missing"]  # 200, 420 … allowed in Fm-3m, not seen


def test_fcc_prefers_fm3m_over_fd3m():
    cu = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.615), ["Cu"], [[0, 0, 0]])
    order, fits = ranked(cu, [227, 225])
    assert order[0] == 225
    assert fits[227]["matched"] < fits[225]["matched"] == pytest.approx(1.0)  # Fd-3m cannot index 200


def test_body_centred_prefers_im3m_and_primitive_prefers_pm3m():
    # a = 5 Å puts 321 (h²+k²+l² = 14) in range: no primitive cell a/√2 indexes it.
    bcc = Structure.from_spacegroup("Im-3m", Lattice.cubic(5.0), ["W"], [[0, 0, 0]])
    assert ranked(bcc, [221, 229])[0][0] == 229
    sc = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.8), ["Po"], [[0, 0, 0]])
    assert ranked(sc, [229, 221])[0][0] == 221


def test_rutile_tetragonal_cell_and_screw_absences():
    tio2 = Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]])
    order, fits = ranked(tio2, [123, 136, 139])
    assert order[0] == 136
    assert fits[136]["cell_A"] == pytest.approx([4.594, 2.959], abs=0.01)


def test_monoclinic_is_not_fitted_and_keeps_its_score():
    y, mask = render(Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.615), ["Cu"], [[0, 0, 0]]))
    out = R.rerank([(14, 0.5), (225, 0.2)], INST.grid(), y, mask, wavelengths_A=INST.wavelengths_A,
                   weights=R.Weights(w=2.0, beta=1.0, unfitted=0.25))
    mono = next(r for r in out if r["number"] == 14)
    assert mono["fit"] is None and mono["score"] == pytest.approx(math.log(0.5) + 2.0 * 0.25)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from xrdid.models import CNNConfig, XRDClassifier, save_checkpoint

    torch.manual_seed(0)
    model = XRDClassifier(CNNConfig(n_points=1024, stem_channels=8, stage_channels=(8, 16), hidden=32, dropout=0.0, architecture="plain"))
    model.eval()
    path = tmp_path_factory.mktemp("ck") / "model"
    save_checkpoint(model, get_instrument({"preset": "cu", "n_points": 1024}), path)
    return path


def test_predict_option_and_cli_flag(checkpoint, tmp_path, capsys):
    """Plumbing with a random-weight model: contract fields kept, fit fields added, order by score."""
    from xrdid.cli import main
    from xrdid.predict import load_model, predict_patterns
    from xrdid.readers import Pattern

    y, _ = render(Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]))
    tt = INST.grid()
    bundle = load_model(checkpoint)
    (plain,) = predict_patterns(bundle, [Pattern(tt, y + 0.01, "two_theta", wavelength_A=INST.wavelength_A)], top_k=3)
    (r,) = predict_patterns(bundle, [Pattern(tt, y + 0.01, "two_theta", wavelength_A=INST.wavelength_A)], top_k=3, rerank=True)
    assert set(r) >= set(plain) | {"rerank"} and len(r["top_k"]) == 3
    assert r["space_group"] == r["top_k"][0]
    scores = [t["score"] for t in r["top_k"]]
    assert scores == sorted(scores, reverse=True) and all("fit" in t and "probability" in t for t in r["top_k"])
    path = tmp_path / "si.xy"
    np.savetxt(path, np.column_stack([tt, y + 0.01]))
    assert main(["predict", str(path), "--wavelength", str(INST.wavelength_A), "--model", str(checkpoint), "--json", "--rerank"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["space_group"]["number"] == out["top_k"][0]["number"] and "score" in out["space_group"]
