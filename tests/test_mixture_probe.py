"""The mixture probe (xrdid.mixture_probe): fitted beside a checkpoint, bound to its weights, reported by predict."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from xrdid.mixture_probe import FILENAME, describe_mixture, fit_logistic, fit_mixture_probe, probe_for, read_probe


def test_fit_logistic_separates_two_classes_and_is_calibrated_at_even_odds():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (400, 3)), rng.normal(0, 1, (200, 3)) + [2.0, 0.0, 0.0]])
    y = np.r_[np.zeros(400), np.ones(200)]
    # Each class weighs half, so the decision boundary sits halfway between the class means.
    w = np.where(y > 0, 0.5 / 200, 0.5 / 400)
    mean, scale, weight, bias = fit_logistic(x, y, w)
    logit = lambda p: ((np.asarray(p) - mean) / scale) @ weight + bias
    assert abs(logit([1.0, 0.0, 0.0])) < 0.3
    assert logit([2.0, 0.0, 0.0]) > 1.0 and logit([0.0, 0.0, 0.0]) < -1.0
    assert abs(weight[1]) < 0.2 * weight[0] and abs(weight[2]) < 0.2 * weight[0]


@pytest.fixture(scope="module")
def probed(tiny_vae, sticks_table, tmp_path_factory):
    """A copy of the tiny checkpoint with its probe written beside it, as the workflow writes it."""
    root = tmp_path_factory.mktemp("probe")
    model = root / "model"
    shutil.copytree(tiny_vae, model)
    # The tiny table's validation split has 4 structures (two- and three-phase mixtures); it is also the
    # "held-out" one here, to exercise that path.
    fit_mixture_probe(model, sticks_table, root / FILENAME, patterns=24, fit_split="val", eval_split="val")
    return model


def test_the_probe_is_fitted_measured_and_found_beside_its_checkpoint(probed):
    d = json.loads((probed.parent / FILENAME).read_text())
    assert d["fitted_on"] == {"split": "val", "structures": 4, "patterns": 48}  # 24 single-phase, 24 mixtures
    assert set(d["held_out"]["auroc"]) == {"mixtures_2", "mixtures_3"}
    assert all(0 <= v <= 1 for v in d["held_out"]["auroc"].values())
    assert len(d["weight"]) == len(d["mean"]) == 32 + 2 * 16  # hidden + pooled channels of the tiny CNN
    probe = probe_for(probed)
    assert probe is not None and 0 < probe.meta["warn_above"] < 1


def test_predict_reports_the_mixture_probability_and_warns_above_the_threshold(probed):
    from xrdid.predict import load_model, predict_arrays

    bundle = load_model(probed)
    assert bundle.mixture_probe is not None
    y = np.random.default_rng(1).random((3, 512)).astype(np.float32)
    out = predict_arrays(bundle, y, np.ones_like(y))
    with torch.no_grad():
        features = bundle.model.forward_features(torch.stack([torch.as_tensor(y), torch.ones(3, 512)], 1))[2]
    expected = bundle.mixture_probe.probability(features.double().numpy())
    for r, p in zip(out, expected, strict=True):
        assert r["mixture"]["probability"] == pytest.approx(p)
        assert ("warning" in r["mixture"]) == (p > bundle.mixture_probe.meta["warn_above"])
    assert "warning" in describe_mixture(0.9, 0.5) and "warning" not in describe_mixture(0.4, 0.5)


def test_a_probe_of_other_weights_or_a_broken_file_is_not_used(probed, tmp_path):
    other = tmp_path / "model"
    shutil.copytree(probed, other)
    shutil.copy(probed.parent / FILENAME, tmp_path / FILENAME)
    assert probe_for(other) is not None
    torch.manual_seed(5)
    state = torch.load(other / "weights.pt", weights_only=True)
    state = {k: v + torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, other / "weights.pt")
    assert probe_for(other) is None
    good = json.loads((probed.parent / FILENAME).read_text())
    del good["warn_above"]
    (tmp_path / FILENAME).write_text(json.dumps(good))
    with pytest.raises(ValueError, match="no warn_above"):
        read_probe(tmp_path / FILENAME)
    (tmp_path / FILENAME).write_text('{"format": 1, "mean": [1, 2]}')
    with pytest.raises(ValueError, match=f"{FILENAME}: not a usable mixture probe"):
        read_probe(tmp_path / FILENAME)
    assert probe_for(other) is None


def test_the_shipped_model_has_its_probe_and_it_tells_mixtures_from_single_phases(sticks_table):
    from xrdid.data import StickTable
    from xrdid.evaluate.novelty import auroc, render_known, render_mixtures
    from xrdid.instrument import Augment, Renderer
    from xrdid.mixture_probe import features
    from xrdid.predict import load_model

    bundle = load_model()
    assert bundle.mixture_probe is not None, "the shipped probe does not match the shipped weights"
    assert bundle.mixture_probe.meta["held_out"]["auroc"]["mixtures_3"] > 0.85
    inst = bundle.instrument
    table = StickTable.from_parquet(sticks_table, d_min_A=inst.d_min_A)
    renderer = Renderer(inst, Augment.from_dict(bundle.meta["augment"]))
    torch.manual_seed(0)
    singles = torch.cat([render_known(table, renderer, seed) for seed in range(8)])
    mixtures = render_mixtures(table, renderer, 48, 2, seed=3)
    p = [bundle.mixture_probe.probability(features(bundle.model, x)) for x in (singles, mixtures)]
    assert auroc(*p) > 0.7
