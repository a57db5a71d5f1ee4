"""VAE training on tiny data: outputs, held-out space groups, resume, and the novelty calibration."""

import numpy as np
import polars as pl
import pytest
import torch

from xrdid.instrument import Augment, get_instrument
from xrdid.models.vae import VAEConfig, load_vae
from xrdid.train.vae import VAETrainConfig, subset, train_vae

TINY = VAEConfig(n_points=512, stem_channels=8, stage_channels=(8, 16), hidden=32, latent=4, classifier_hidden=16, dropout=0.0)
INSTRUMENT = {"preset": "cu", "n_points": 512}


def _train(sticks, out, epochs, resume_dir=None, **config):
    return train_vae(
        sticks=sticks, checkpoint=out / "vae", history=out / "history.csv", instrument=get_instrument(INSTRUMENT),
        augment=Augment(), model_config=TINY,
        config=VAETrainConfig(**{"epochs": epochs, "steps_per_epoch": 2, "batch_size": 8, "calibration_draws": 2, **config}),
        resume_dir=resume_dir, progress=False,
    )


def test_train_writes_vae_history_and_calibration(tmp_path, sticks_table):
    _train(sticks_table, tmp_path, epochs=2)
    history = pl.read_csv(tmp_path / "history.csv")
    assert history["epoch"].to_list() == [1, 2]
    assert {"train_recon", "train_kl", "val_loss", "val_crystal_system_acc"} <= set(history.columns)
    model, instrument, meta = load_vae(tmp_path / "vae")
    assert instrument.n_points == 512 and meta["epoch"] == 2 and meta["train_seconds"] > 0
    cal = meta["novelty"]
    assert len(cal["class_means"][0]) == 4 and np.asarray(cal["precision"]).shape == (4, 4)
    for k in ("reconstruction", "latent", "combined"):
        q = cal["quantiles"][k]
        assert len(q) == 1001 and q == sorted(q)
    assert model.temperature.gt(0).all()


def test_held_out_space_groups_are_not_trained_on(tmp_path, sticks_table):
    from xrdid.data import StickTable

    table = StickTable.from_parquet(sticks_table)
    sub, _ = subset(table, None, [225, 221])
    assert len(sub) == len(table) - 2 and not set((sub.space_group + 1).tolist()) & {225, 221}
    _train(sticks_table, tmp_path, epochs=1, holdout_space_groups=[225])
    meta = load_vae(tmp_path / "vae")[2]
    assert meta["train_space_group_counts"][224] == 0 and meta["train"]["holdout_space_groups"] == [225]
    with pytest.raises(ValueError, match="not space-group numbers"):
        _train(sticks_table, tmp_path / "bad", epochs=1, holdout_space_groups=[0])


def test_interrupted_run_resumes_and_matches_an_uninterrupted_one(tmp_path, sticks_table, monkeypatch):
    from xrdid.train import vae

    _train(sticks_table, tmp_path / "straight", epochs=2)
    real = vae.evaluate_batches
    calls = {"n": 0}

    def interrupt_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(vae, "evaluate_batches", interrupt_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        _train(sticks_table, tmp_path / "part", epochs=2, resume_dir=tmp_path / "resume")
    assert not (tmp_path / "part" / "vae").exists()
    monkeypatch.setattr(vae, "evaluate_batches", real)
    _train(sticks_table, tmp_path / "part", epochs=2, resume_dir=tmp_path / "resume")
    straight = pl.read_csv(tmp_path / "straight" / "history.csv")["train_loss"].to_list()
    part = pl.read_csv(tmp_path / "part" / "history.csv")["train_loss"].to_list()
    assert part == pytest.approx(straight, rel=1e-5)
    a, b = load_vae(tmp_path / "straight" / "vae")[0], load_vae(tmp_path / "part" / "vae")[0]
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.allclose(va.float(), vb.float(), atol=1e-5), k
