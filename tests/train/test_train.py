import polars as pl
import torch

from xrdid.evaluate import evaluate_checkpoint
from xrdid.instrument import Augment, get_instrument
from xrdid.models import CNNConfig, load_checkpoint
from xrdid.train import TrainConfig, train
from xrdid.train.loop import fit_temperature

TINY = CNNConfig(n_points=512, stem_channels=8, stage_channels=(8, 16), hidden=32, dropout=0.0)


def _train(sticks, tmp_path, epochs, resume_dir=None, model_config=TINY, **config):
    return train(
        sticks=sticks,
        checkpoint=tmp_path / "model",
        history=tmp_path / "history.csv",
        instrument=get_instrument({"preset": "cu", "n_points": 512}),
        augment=Augment(),
        model_config=model_config,
        # In-process rendering keeps these tests fast; the worker path is checked batch for batch below.
        config=TrainConfig(**{"epochs": epochs, "steps_per_epoch": 2, "batch_size": 8, "render_workers": 0, **config}),
        resume_dir=resume_dir,
        progress=False,
    )


def test_train_writes_checkpoint_and_history(tmp_path, sticks_table):
    _train(sticks_table, tmp_path, epochs=2)
    history = pl.read_csv(tmp_path / "history.csv")
    assert history["epoch"].to_list() == [1, 2]
    assert {"train_loss", "val_loss", "val_crystal_system_acc"} <= set(history.columns)
    _model, instrument, meta = load_checkpoint(tmp_path / "model")
    assert instrument.n_points == 512 and meta["train"]["epochs"] == 2


def _count_steps(monkeypatch):
    """Count the optimisation steps ``train`` takes (one loss per step) from now on."""
    from xrdid.train import loop

    steps = {"n": 0}
    real = loop.loss_fn

    def counted(*args, **kwargs):
        steps["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "loss_fn", counted)
    return steps


def test_resume_continues_after_the_last_finished_epoch(tmp_path, sticks_table, monkeypatch):
    resume = tmp_path / "resume"
    steps = _count_steps(monkeypatch)
    _train(sticks_table, tmp_path / "a", epochs=3, resume_dir=resume)
    assert steps["n"] == 3 * 2
    full = pl.read_csv(tmp_path / "a" / "history.csv")
    # A second call with the same configuration finds all epochs done and trains no more: no step is
    # taken (training is seeded, so starting over would give the same history; only the steps tell).
    steps["n"] = 0
    _train(sticks_table, tmp_path / "b", epochs=3, resume_dir=resume)
    assert steps["n"] == 0
    again = pl.read_csv(tmp_path / "b" / "history.csv")
    assert again["train_loss"].to_list() == full["train_loss"].to_list()
    assert again["elapsed_s"].to_list() == full["elapsed_s"].to_list()  # the rows of the first run


def test_interrupted_run_resumes_and_matches_an_uninterrupted_one(tmp_path, sticks_table, monkeypatch):
    import pytest

    from xrdid.train import loop

    _train(sticks_table, tmp_path / "straight", epochs=2)
    real = loop.predict_logits
    calls = {"n": 0}

    def interrupt_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    resume = tmp_path / "resume"
    monkeypatch.setattr(loop, "predict_logits", interrupt_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        _train(sticks_table, tmp_path / "part", epochs=2, resume_dir=resume)
    assert not (tmp_path / "part" / "model").exists()
    monkeypatch.setattr(loop, "predict_logits", real)
    steps = _count_steps(monkeypatch)
    _train(sticks_table, tmp_path / "part", epochs=2, resume_dir=resume)
    # Only the unfinished second epoch is trained again (2 steps), not the first one too.
    assert steps["n"] == 2
    straight = pl.read_csv(tmp_path / "straight" / "history.csv")["train_loss"].to_list()
    part = pl.read_csv(tmp_path / "part" / "history.csv")["train_loss"].to_list()
    assert part == pytest.approx(straight, rel=1e-5)


def test_evaluate_writes_metrics(tmp_path, sticks_table):
    import json

    _train(sticks_table, tmp_path, epochs=1)
    m = evaluate_checkpoint(
        checkpoint=tmp_path / "model",
        sticks=sticks_table,
        metrics_out=tmp_path / "metrics.json",
        confusion_space_group=tmp_path / "csg.csv",
        confusion_crystal_system=tmp_path / "ccs.csv",
    )
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["space_group"]["n"] == m["n_structures"] > 0
    for head in ("space_group", "crystal_system"):
        assert 0.0 <= on_disk[head]["accuracy"] <= 1.0
    assert "top5_accuracy" in on_disk["space_group"]
    ccs = pl.read_csv(tmp_path / "ccs.csv")
    assert ccs.shape == (7, 8)


def test_temperature_fit_softens_overconfident_logits():
    torch.manual_seed(0)
    labels = torch.randint(0, 5, (400,))
    logits = torch.randn(400, 5)
    logits[torch.arange(400), labels] += 1.0
    assert fit_temperature(logits * 10, labels) > 3.0


def test_rendering_in_a_worker_gives_the_same_batches(tmp_path, sticks_table):
    """render_workers=1 (a worker process) and in-process rendering draw identical batches."""
    from xrdid.data import StickTable
    from xrdid.instrument import Renderer
    from xrdid.train.loop import RenderedBatches, _epoch_batches

    table = StickTable.from_parquet(sticks_table, split="train")
    renderer = Renderer(get_instrument({"preset": "cu", "n_points": 512}), Augment())
    data = RenderedBatches(table, renderer, batch_size=4, steps=3, seed_render=5, seed_pick=6)
    a = list(_epoch_batches(data, 0))
    b = list(_epoch_batches(data, 1))
    assert len(a) == len(b) == 3
    for (xa, sa, ca), (xb, sb, cb) in zip(a, b):
        assert torch.equal(sa, sb) and torch.equal(ca, cb)
        assert torch.allclose(xa, xb, atol=1e-6)


def test_latest_checkpoint_written_each_epoch(tmp_path, sticks_table):
    _train(sticks_table, tmp_path, epochs=1, resume_dir=tmp_path / "resume")
    _model, _, meta = load_checkpoint(tmp_path / "resume" / "latest")
    assert meta["epoch"] == 1 and len(meta["train_space_group_counts"]) == 230


def _sticks_of(a, c, hkls):
    import numpy as np

    hkl = np.array(hkls)
    inv = (hkl[:, 0] ** 2 + hkl[:, 1] ** 2) / a**2 + hkl[:, 2] ** 2 / c**2
    return (1 / np.sqrt(inv)).astype("float32"), hkl


def test_metric_strain_keeps_the_crystal_system():
    import numpy as np

    from xrdid.train.loop import MetricStrain

    hkls = [(1, 0, 0), (1, 1, 0), (1, 1, 1), (2, 0, 0), (2, 1, 0), (2, 1, 1), (0, 0, 1), (1, 0, 2)]
    d_cub, hkl = _sticks_of(4.0, 4.0, hkls)
    d_tet, _ = _sticks_of(4.0, 6.0, hkls)
    strain = MetricStrain.fit([d_cub, d_tet], [hkl, hkl], width=8, cubic=np.array([True, False]))
    d = torch.from_numpy(np.stack([d_cub, d_tet]))
    assert torch.allclose(strain.apply(torch.arange(2), d, 0.0, torch.Generator()), d, rtol=1e-5)
    out = strain.apply(torch.arange(2), d, 0.05, torch.Generator().manual_seed(3))
    ratio = out / d
    assert torch.allclose(ratio[0], ratio[0, :1].expand(8), rtol=1e-5)  # cubic: one isotropic scale
    # tetragonal: a and c change independently, (100) and (001) by different factors
    assert abs(float(ratio[1, 0] - ratio[1, 6])) > 1e-4
    assert float((ratio - 1).abs().max()) <= 0.1 + 1e-6


def test_resume_state_of_other_data_is_not_used(tmp_path, sticks_table, caplog):
    import logging

    import torch

    from xrdid.data import StickTable
    from xrdid.train.loop import _digest

    def digest(path):
        return _digest(StickTable.from_parquet(path, split="train").ids, StickTable.from_parquet(path, split="val").ids)

    resume = tmp_path / "resume"
    _train(sticks_table, tmp_path / "a", epochs=1, resume_dir=resume)
    # The same configuration on other structures (ids renamed) must train afresh, not resume.
    other = tmp_path / "other.parquet"
    pl.read_parquet(sticks_table).with_columns(pl.col("id") + "-b").write_parquet(other)
    with caplog.at_level(logging.INFO, logger="xrdid.train.loop"):
        _train(other, tmp_path / "b", epochs=1, resume_dir=resume)
    assert "belongs to a different configuration" in caplog.text
    assert "resumed from" not in caplog.text
    state = torch.load(resume / "state.pt", weights_only=False)
    assert state["fingerprint"]["data"] == digest(other) != digest(sticks_table)


def test_batchnorm_recalibration_averages_over_the_batches():
    from xrdid.train.loop import recalibrate_batchnorm

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Conv1d(3, 2, 1))
    model[0].running_mean.fill_(100.0)  # stale statistics from training
    batches = [torch.randn(4, 3, 8) + k for k in range(5)]
    assert recalibrate_batchnorm(model, [(b, None) for b in batches]) == 5
    expected = torch.stack([b.mean(dim=(0, 2)) for b in batches]).mean(0)
    assert torch.allclose(model[0].running_mean, expected, atol=1e-5)
    assert model[0].momentum == 0.1 and not model.training
    assert recalibrate_batchnorm(torch.nn.Linear(2, 2), batches) == 0


def test_init_from_starts_from_a_checkpoints_weights(tmp_path, sticks_table, caplog):
    import logging

    import pytest

    _train(sticks_table, tmp_path / "a", epochs=1, lr=0.05)
    donor, _, _ = load_checkpoint(tmp_path / "a" / "model")
    _train(sticks_table, tmp_path / "b", epochs=1, lr=1e-12)
    fresh, _, _ = load_checkpoint(tmp_path / "b" / "model")
    # A learning rate of ~0: what comes out is what went in, so the weights came from the donor.
    resume = tmp_path / "resume"
    _train(sticks_table, tmp_path / "c", epochs=1, lr=1e-12, init_from=str(tmp_path / "a" / "model"), resume_dir=resume)
    started, _, meta = load_checkpoint(tmp_path / "c" / "model")
    weight = "stem.0.weight"
    assert torch.allclose(started.state_dict()[weight], donor.state_dict()[weight], atol=1e-6)
    assert not torch.allclose(fresh.state_dict()[weight], donor.state_dict()[weight], atol=1e-3)
    assert meta["train"]["init_from"] == str(tmp_path / "a" / "model")
    # Other starting weights: a new run, not a resumed one.
    _train(sticks_table, tmp_path / "a", epochs=1, lr=0.05, seed=1)
    with caplog.at_level(logging.INFO, logger="xrdid.train.loop"):
        _train(sticks_table, tmp_path / "d", epochs=1, lr=1e-12, init_from=str(tmp_path / "a" / "model"), resume_dir=resume)
    assert "belongs to a different configuration" in caplog.text
    # A checkpoint of another model is refused with the reason.
    other = CNNConfig(n_points=512, stem_channels=8, stage_channels=(8, 24), hidden=32, dropout=0.0)
    with pytest.raises(ValueError, match="different model"):
        _train(sticks_table, tmp_path / "e", epochs=1, model_config=other, init_from=str(tmp_path / "a" / "model"))
    with pytest.raises(ValueError, match="not an xrdid checkpoint"):
        _train(sticks_table, tmp_path / "f", epochs=1, init_from=str(tmp_path / "nowhere"))
