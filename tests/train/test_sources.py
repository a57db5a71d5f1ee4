"""Training on several structure sources: draws by source weight, real-validation columns, the label prior."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from test_train import _train  # the same tiny model and training setup

from xrdid.data import StickTable
from xrdid.instrument import Augment, Renderer, get_instrument
from xrdid.models import load_checkpoint
from xrdid.priors import STRENGTHS, materials_project_ratios
from xrdid.train.loop import RenderedBatches, draw_probabilities, label_counts


@pytest.fixture(scope="module")
def mixed_sticks(tmp_path_factory, small_structures):
    """Each small structure twice: as a real prototype and as a synthetic crystal (same split group)."""
    from xrdid.simulate.chunks import merge_sticks, simulate_chunk
    from xrdid.structures.table import describe_structure, write_structure_tables

    root = tmp_path_factory.mktemp("mixed")
    rows = [describe_structure(s, id=f"{name}/{src}", source=src) for name, s in small_structures for src in ("prototypes", "synthetic")]
    write_structure_tables(rows, [], root / "structures.parquet", root / "failed.parquet")
    simulate_chunk([root / "structures.parquet"], chunk=0, n_chunks=1, out=root / "chunk-0.parquet", d_min_A=0.5)
    merge_sticks([root / "chunk-0.parquet"], out=root / "sticks.parquet", fractions=(0.34, 0.33, 0.33), seed=3)
    return root / "sticks.parquet"


def test_draws_follow_the_source_weights(mixed_sticks):
    table = StickTable.from_parquet(mixed_sticks, split="train")
    assert set(table.sources) == {"prototypes", "synthetic"}
    probs = draw_probabilities(table, {"prototypes": 3.0, "synthetic": 1.0})
    real = torch.tensor([s == "prototypes" for s in table.sources])
    assert float(probs[real].sum()) == pytest.approx(0.75)
    assert draw_probabilities(table, None) is None
    only_real = draw_probabilities(table, {"prototypes": 1.0})
    renderer = Renderer(get_instrument({"preset": "cu", "n_points": 256}), Augment(enabled=False))
    batches = RenderedBatches(table, renderer, batch_size=64, steps=3, seed_render=0, seed_pick=1, probs=only_real)
    drawn = torch.cat([sg for _, sg, _ in batches])
    assert set(drawn.tolist()) <= set(table.space_group[real].tolist())
    with pytest.raises(ValueError, match="weight 0 to every source"):
        draw_probabilities(table, {"materials_project": 1.0})
    # The label counts a prior is taken against are the expected counts of the draws.
    counts = np.asarray(label_counts(table, only_real, 230))
    assert counts.sum() == pytest.approx(len(table))
    assert counts[table.space_group[~real].numpy()].sum() == pytest.approx(counts[table.space_group[real].numpy()].sum() - len(table) + counts.sum(), abs=len(table))


def test_training_tunes_and_stores_the_real_world_prior(tmp_path, mixed_sticks):
    _train(mixed_sticks, tmp_path, epochs=1, source_weights={"prototypes": 1.0, "synthetic": 1.0})
    _model, _inst, meta = load_checkpoint(tmp_path / "model")
    prior = meta["prior"]
    assert prior["name"] == "materials_project" and prior["strength"] in STRENGTHS
    assert [r["strength"] for r in prior["scores"]] == list(STRENGTHS)
    assert min(prior["scores"], key=lambda r: r["space_group_log_loss"])["strength"] == prior["strength"]
    sg_ratio, cs_ratio = materials_project_ratios(meta["train_space_group_counts"])
    assert np.allclose(meta["prior_log_ratio"], prior["strength"] * sg_ratio)
    assert np.allclose(meta["crystal_system_prior_log_ratio"], prior["strength"] * cs_ratio)
    history = pl.read_csv(tmp_path / "history.csv")
    assert history["val_real_n"][0] > 0
    assert 0 <= history["val_real_mp_space_group_acc"][0] <= 1
    assert history["patterns_seen"].to_list() == [16]


def test_no_real_structure_no_prior(tmp_path, sticks_table):
    _train(sticks_table, tmp_path, epochs=1)
    _model, _inst, meta = load_checkpoint(tmp_path / "model")
    assert "prior" not in meta and "prior_log_ratio" not in meta
