"""The novelty benchmark's novel patterns, its AUROC, and one run on tiny data."""

import numpy as np
import pytest
import torch

from xrdid.data import StickTable
from xrdid.evaluate.novelty import SETS, auroc, evaluate_novelty, markdown, render_amorphous, render_mixtures, render_noise
from xrdid.instrument import Augment, Renderer, get_instrument

INST = get_instrument({"preset": "cu", "n_points": 512})


def _peaks(y: torch.Tensor) -> torch.Tensor:
    """Local maxima above 5 % of the maximum, per pattern."""
    mid = y[:, 1:-1]
    return ((mid > y[:, :-2]) & (mid >= y[:, 2:]) & (mid > 0.05)).sum(1)


def _inputs_ok(x: torch.Tensor, n: int):
    assert x.shape == (n, 2, 512)
    assert torch.allclose(x[:, 0].amax(1), torch.ones(n))
    assert set(torch.unique(x[:, 1]).tolist()) <= {0.0, 1.0}
    assert (x[:, 0][x[:, 1] == 0] == 0).all()


def test_mixtures_hold_the_peaks_of_each_phase(sticks_table):
    table = StickTable.from_parquet(sticks_table, d_min_A=INST.d_min_A)
    clean = Renderer(INST, Augment(enabled=False))
    two = render_mixtures(table, clean, 20, 2, seed=1)
    three = render_mixtures(table, clean, 20, 3, seed=1)
    one, _ = clean(table.batch(torch.arange(len(table)))[0])
    _inputs_ok(two, 20)
    assert _peaks(two[:, 0]).float().mean() > _peaks(one).float().mean()
    assert _peaks(three[:, 0]).float().mean() > _peaks(two[:, 0]).float().mean()
    with pytest.raises(ValueError, match="at least 7 known structures"):
        render_mixtures(table, clean, 2, 7, seed=1)


def test_amorphous_patterns_are_dominated_by_broad_humps(sticks_table):
    table = StickTable.from_parquet(sticks_table, d_min_A=INST.d_min_A)
    x = render_amorphous(table, Renderer(INST, Augment()), 40, seed=2)
    _inputs_ok(x, 40)
    y = x[:, 0]
    # Smoothed over ±2° the humps keep most of the height; sharp peaks would not.
    smooth = torch.nn.functional.avg_pool1d(y[:, None], 49, stride=1, padding=24, count_include_pad=False)[:, 0]
    assert (smooth.amax(1) > 0.4).float().mean() > 0.9


def test_noise_patterns_have_no_sharp_peaks():
    x = render_noise(Renderer(INST, Augment()), 30, seed=3)
    _inputs_ok(x, 30)
    y = x[:, 0]
    smooth = torch.nn.functional.avg_pool1d(y[:, None], 9, stride=1, padding=4, count_include_pad=False)[:, 0]
    # No point stands out from its ±4-point neighbourhood the way a Bragg peak does.
    assert ((y - smooth).amax(1) < 0.5).all()


def test_auroc():
    assert auroc(np.array([0.1, 0.2]), np.array([0.3, 0.9])) == 1.0
    assert auroc(np.array([0.3, 0.9]), np.array([0.1, 0.2])) == 0.0
    assert auroc(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    # raw scores on any scale (distances), not only probabilities
    assert auroc(np.array([200.0, 300.0]), np.array([250.0, 900.0])) == 0.75
    assert auroc(np.array([-5.0, 2.0]), np.array([3.0, 4.0])) == 1.0


def test_benchmark_on_tiny_data(tiny_vae, sticks_table):
    result = evaluate_novelty(sticks=sticks_table, vae=tiny_vae, cnn=tiny_vae, n_per_set=6)
    assert set(result["auroc"]) <= set(SETS) and {"amorphous", "noise"} <= set(result["auroc"])
    for per in result["auroc"].values():
        assert set(per) == {"score", "p_reconstruction", "p_latent", "max_softmax_vae", "max_softmax_cnn"}
        assert all(0 <= v <= 1 for v in per.values())
    table = markdown(result)
    assert "| VAE novelty |" in table and "max-softmax, CNN" in table
