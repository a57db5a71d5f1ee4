"""Novelty from the VAE: the noise estimate, the calibration, the levels, and what predict reports."""

import numpy as np
import pytest
import torch

from xrdid.novelty import (
    UNLIKE,
    UNUSUAL,
    _ecdf,
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
    model.calibration = calibrate(model.vae, renderer, table, draws=50, seed=3)
    model.__post_init__()
    xs = []
    for k in range(50):
        g = torch.Generator().manual_seed(3 + k)
        xs.append(model_input(*renderer(table.batch(torch.arange(len(table)))[0], g)))
    score = model.scores(torch.cat(xs))["score"]
    assert 0.4 < score.mean() < 0.6
    assert 0.01 <= (score >= 0.95).mean() <= 0.12
    assert ((score >= 0) & (score <= 1)).all()


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
