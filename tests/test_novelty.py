"""Novelty from the VAE: the noise estimate, the calibration, the levels, and what predict reports."""

from pathlib import Path

import numpy as np
import pytest
import torch

from xrdid.novelty import (
    UNLIKE,
    UNUSUAL,
    _ecdf,
    as_prepared,
    calibrate,
    describe,
    load_novelty,
    noise_variance,
    novelty_model_for,
    novelty_objects,
)


def test_noise_variance_ignores_smooth_signal_and_sparse_peaks():
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(0, 1, 4000)
    smooth = 0.3 + 0.2 * torch.sin(6 * x) + torch.exp(-(((x - 0.5) / 0.002) ** 2))  # background and one sharp peak
    sigma = 0.01
    t = (smooth + sigma * torch.randn(4000, generator=g))[None]
    mask = torch.ones_like(t)
    assert noise_variance(t, mask).item() == pytest.approx(sigma**2, rel=0.1)
    mask[:, 2000:] = 0  # only covered points count
    t[:, 2000:] = 100 * torch.rand(2000, generator=g)
    assert noise_variance(t, mask).item() == pytest.approx(sigma**2, rel=0.15)


def test_ecdf_from_quantiles():
    q = np.quantile(np.arange(1000.0), np.linspace(0, 1, 1001))
    assert _ecdf(np.array([-1.0, 499.5, 2000.0]), q).tolist() == pytest.approx([0.0, 0.5, 1.0], abs=1e-3)
    ties = np.array([0.0] * 600 + list(np.linspace(0, 1, 401)))  # a floor of equal scores
    assert _ecdf(np.array([0.0]), np.sort(ties))[0] == 0.0


def test_calibration_makes_known_patterns_uniform(tiny_vae, sticks_table):
    """Scored against its own calibration, the calibration set's scores are uniform on [0, 1]."""
    from xrdid.data import StickTable
    from xrdid.instrument import Augment, Instrument, Renderer
    from xrdid.train.loop import model_input

    model = load_novelty(tiny_vae)
    table = StickTable.from_parquet(sticks_table, split="val")
    renderer = Renderer(Instrument.from_dict(model.meta["instrument"]), Augment())
    model.calibration = calibrate(model.vae, renderer, table, draws=50, seed=3, measured=False)
    model.__post_init__()
    xs = []
    for k in range(50):
        g = torch.Generator().manual_seed(3 + k)
        xs.append(model_input(*renderer(table.batch(torch.arange(len(table)))[0], g)))
    score = model.scores(torch.cat(xs))["score"]
    assert 0.4 < score.mean() < 0.6
    assert 0.01 <= (score >= 0.95).mean() <= 0.12
    assert ((score >= 0) & (score <= 1)).all()


def test_scores_are_taken_after_the_offset_removal_predict_applies(tiny_vae, sticks_table):
    """A measured pattern reaches the VAE offset-removed (predict.normalise), a rendered one with its floor:
    the scores see both the same way, so a constant floor is not novelty, and the removal is predict's."""
    from xrdid.data import StickTable
    from xrdid.instrument import Augment, Instrument, Renderer
    from xrdid.predict import normalise
    from xrdid.train.loop import model_input

    model = load_novelty(tiny_vae)
    table = StickTable.from_parquet(sticks_table, split="val")
    renderer = Renderer(Instrument.from_dict(model.meta["instrument"]), Augment())
    y, mask = renderer(table.batch(torch.arange(len(table)))[0], torch.Generator().manual_seed(0))
    mask[:, :40] = 0
    y = y * mask
    floored = (y + 0.2) * mask
    floored = floored / floored.amax(1, keepdim=True)
    a, b = model.scores(model_input(y, mask)), model.scores(model_input(floored, mask))
    for k in ("reconstruction", "latent", "score"):
        assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k
    prepared = as_prepared(model_input(floored, mask))
    expected = np.stack([normalise(f.numpy(), m.numpy() > 0) for f, m in zip(floored, mask, strict=True)])
    assert prepared[:, 0].numpy() == pytest.approx(expected, abs=1e-5)
    assert torch.allclose(as_prepared(prepared), prepared, atol=5e-3)  # nearly idempotent (interpolated percentile)


def test_calibration_includes_measured_like_renderings(tiny_vae, sticks_table):
    """The calibration set holds the validation structures rendered as measured patterns look (weak
    background, many counts, Kα1 only, partial coverage) beside the training renderings."""
    from dataclasses import asdict

    from xrdid.data import StickTable
    from xrdid.instrument import Augment, Instrument, Renderer
    from xrdid.novelty import measured_like

    model = load_novelty(tiny_vae)
    table = StickTable.from_parquet(sticks_table, split="val")
    renderer = Renderer(Instrument.from_dict(model.meta["instrument"]), Augment())
    plain = calibrate(model.vae, renderer, table, draws=4, seed=3, measured=False)
    both = calibrate(model.vae, renderer, table, draws=4, seed=3)
    assert plain["n"] == 4 * len(table) and plain["sets"] == ["training"]
    assert both["sets"] == ["training", "measured_like"]
    assert 1.5 * plain["n"] <= both["n"] <= 2 * plain["n"]  # a few measured-like crops fall below the minimum coverage
    aug = measured_like(Augment())
    assert aug.background_rel[1] <= 0.05 and aug.peak_counts[0] >= 1e4 and aug.monochromatic_probability > 0
    assert {k: v for k, v in asdict(aug).items() if k not in ("background_rel", "peak_counts", "monochromatic_probability",
            "other_wavelength_probability", "crop_probability", "crop_max_fraction")} == \
        {k: v for k, v in asdict(Augment()).items() if k not in ("background_rel", "peak_counts", "monochromatic_probability",
         "other_wavelength_probability", "crop_probability", "crop_max_fraction")}


def test_levels_and_warnings():
    assert describe(0.5) == ("typical", None)
    level, warning = describe(UNUSUAL)
    assert level == "unusual" and "less typical than 95 %" in warning
    level, warning = describe(UNLIKE + 0.005)
    assert level == "unlike_known" and "amorphous" in warning and "mixture" in warning


def test_without_a_vae_novelty_is_max_softmax():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    out = novelty_objects(None, torch.zeros(2, 2, 8), p)
    assert [o["method"] for o in out] == ["max_softmax"] * 2
    assert [o["score"] for o in out] == pytest.approx([0.3, 0.6])


def test_predict_reports_the_vae_beside_the_checkpoint(tiny_vae):
    from xrdid.predict import load_model, predict_arrays

    bundle = load_model(tiny_vae)
    assert bundle.novelty_model is not None
    y = np.zeros((2, 512), np.float32)
    y[0, ::50] = 1.0  # sharp peaks
    y[1] = np.linspace(1, 0.2, 512)  # a featureless decay
    out = predict_arrays(bundle, y, np.ones_like(y))
    for r in out:
        n = r["novelty"]
        assert n["method"] == "vae" and 0 <= n["score"] <= 1 and n["level"] in ("typical", "unusual", "unlike_known")
        assert ("warning" in n) == (n["score"] >= UNUSUAL)
    assert load_model(tiny_vae, vae=None).novelty_model is None
    assert predict_arrays(load_model(tiny_vae, vae=None), y, np.ones_like(y))[0]["novelty"]["method"] == "max_softmax"


def test_a_vae_of_another_grid_is_refused_or_skipped(tiny_vae, tmp_path):
    from xrdid.instrument import get_instrument

    other = get_instrument({"preset": "cu", "n_points": 1024})
    with pytest.raises(ValueError, match="grid differs"):
        novelty_model_for(other, None, tiny_vae)
    assert novelty_model_for(other, tiny_vae, "auto") is None or novelty_model_for(other, tiny_vae, "auto").path != str(tiny_vae)


MEASURED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "measured"


@pytest.mark.skipif(not (MEASURED / "index.csv").exists(), reason="../shared/data is not present")
def test_the_shipped_vae_rarely_warns_on_real_single_phase_patterns():
    """Development data: the measured single-phase IUCr patterns are patterns of known kinds of structure;
    calibrated only on training-like renderings, 5 of the 13 readable ones were warned about (a false alarm
    a user meets first). The two Mo scans that cover a third of the grid, and one other, still are."""
    from xrdid.evaluate.novelty import _measured_inputs, measured_rows
    from xrdid.novelty import input_bundle
    from xrdid.weights import pretrained_path

    model = load_novelty(pretrained_path())
    rows = measured_rows({"iucr": {"folder": MEASURED, "labels": MEASURED / "index.csv"}}, None)
    x, _ = _measured_inputs(input_bundle(model), MEASURED, [r[1:] for r in rows])
    score = model.scores(x)["score"]
    assert len(score) >= 12
    assert (score >= UNUSUAL).sum() <= 3
    assert np.median(score) < 0.8


def test_recalibrate_redoes_the_calibration_and_keeps_the_weights(tiny_vae, sticks_table, tmp_path):
    from xrdid.models.vae import load_vae
    from xrdid.novelty import main

    assert main(["--vae", str(tiny_vae), "--sticks", str(sticks_table), "--out", str(tmp_path), "--draws", "3"]) == 0
    new, old = load_novelty(tmp_path), load_novelty(tiny_vae)
    assert new.calibration["draws"] == 3 and new.calibration["sets"] == ["training", "measured_like"]
    assert new.calibration["quantiles"] != old.calibration["quantiles"]
    a, b = load_vae(tmp_path)[0].state_dict(), load_vae(tiny_vae)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert {k: v for k, v in new.meta.items() if k != "novelty"} == {k: v for k, v in old.meta.items() if k != "novelty"}
