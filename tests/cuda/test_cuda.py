"""The GPU path: rendering, bf16 training, checkpoints and resume on CUDA, and their portability to CPU.

Skipped where no CUDA device is present (CI). Self-contained (no shared fixtures, only torch, numpy,
pyarrow and xrdid's torch modules), so it also runs on a GPU machine that lacks pymatgen:
``python -m pytest --noconftest tests/cuda``.
"""

from __future__ import annotations

import csv
import itertools
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from xrdid.data import StickTable
from xrdid.instrument import Augment, Renderer, get_instrument
from xrdid.models import CNNConfig, load_checkpoint
from xrdid.train import TrainConfig, train
from xrdid.train.loop import model_input

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SMALL = CNNConfig(n_points=1024, architecture="plain", stem_channels=8, stage_channels=(16, 32), hidden=32, dropout=0.0)


@pytest.fixture(scope="module")
def sticks(tmp_path_factory):
    """Cubic stick patterns (d from a random cell edge and all hkl, random intensities), all splits."""
    rng = np.random.default_rng(0)
    hkl = np.array([m for m in itertools.product(range(7), repeat=3) if any(m)], float)
    s2 = np.unique((hkl**2).sum(1))
    rows = {"id": [], "space_group": [], "d": [], "f2m": [], "split": []}
    for i in range(60):
        a = rng.uniform(3.0, 9.0)
        d = a / np.sqrt(s2)
        d = d[d >= 0.5]
        rows["id"].append(f"c{i}")
        rows["space_group"].append(int(rng.integers(195, 231)))
        rows["d"].append(d.astype(np.float32))
        rows["f2m"].append(rng.uniform(1.0, 100.0, len(d)).astype(np.float32))
        rows["split"].append(("train", "train", "val", "test")[i % 4])
    table = pa.table({
        "id": rows["id"], "space_group": pa.array(rows["space_group"], pa.int16()),
        "d": pa.array(rows["d"], pa.list_(pa.float32())), "f2m": pa.array(rows["f2m"], pa.list_(pa.float32())),
        "split": rows["split"],
    })
    path = tmp_path_factory.mktemp("cuda") / "sticks.parquet"
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize("preset", ["cu", "mars"])
def test_clean_render_on_cuda_matches_cpu(sticks, preset):
    inst = get_instrument({"preset": preset, "n_points": 8500})
    batch, _, _ = StickTable.from_parquet(sticks).batch(torch.arange(16))
    y_cpu, m_cpu = Renderer(inst, Augment(enabled=False))(batch, torch.Generator().manual_seed(0))
    y_gpu, m_gpu = Renderer(inst, Augment(enabled=False), device="cuda")(batch, torch.Generator("cuda").manual_seed(0))
    assert y_gpu.device.type == "cuda"
    assert torch.equal(m_cpu, m_gpu.cpu())
    assert (y_cpu - y_gpu.cpu()).abs().max() < 1e-4 * y_cpu.abs().max()


def test_augmented_render_on_cuda_is_seeded_and_sane(sticks):
    inst = get_instrument({"preset": "cu", "n_points": 4096})
    batch, _, _ = StickTable.from_parquet(sticks).batch(torch.arange(32))
    renderer = Renderer(inst, Augment(), device="cuda")
    y1, m1 = renderer(batch, torch.Generator("cuda").manual_seed(5))
    y2, m2 = renderer(batch, torch.Generator("cuda").manual_seed(5))
    # Same draws; CUDA's scatter_add_ sums in no fixed order, so equal to float rounding, not bitwise.
    assert torch.equal(m1, m2)
    assert (y1 - y2).abs().max() < 1e-5
    assert torch.isfinite(y1).all()
    covered = m1 > 0
    assert covered.float().mean() > 0.5
    # Comparable to the CPU renderer's draws of the same distribution (not the same numbers).
    y_cpu, m_cpu = Renderer(inst, Augment())(batch, torch.Generator().manual_seed(5))
    assert math.isclose(float(y1[covered].mean()), float(y_cpu[m_cpu > 0].mean()), rel_tol=0.5, abs_tol=0.05)


def _train(sticks, out, epochs, device, resume_dir=None):
    return train(
        sticks=sticks, checkpoint=out / "model", history=out / "history.csv",
        instrument=get_instrument({"preset": "cu", "n_points": 1024}), augment=Augment(), model_config=SMALL,
        config=TrainConfig(epochs=epochs, steps_per_epoch=4, batch_size=16, render_workers=1, metric_strain=0.0),
        device=device, resume_dir=resume_dir, progress=False,
    )


def test_bf16_training_on_cuda_gives_a_checkpoint_that_loads_on_cpu(sticks, tmp_path):
    last = _train(sticks, tmp_path, epochs=2, device="cuda")
    assert math.isfinite(last["train_loss"]) and math.isfinite(last["val_loss"])
    with open(tmp_path / "history.csv") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2]
    model, inst, meta = load_checkpoint(tmp_path / "model")
    assert next(model.parameters()).device.type == "cpu" and meta["epoch"] == 2
    # The same weights give the same answers on both devices (float32 inference).
    batch, _, _ = StickTable.from_parquet(sticks, split="test").batch(torch.arange(8))
    y, mask = Renderer(inst, Augment(enabled=False))(batch, torch.Generator().manual_seed(0))
    x = model_input(y, mask)
    model.eval()
    with torch.no_grad():
        sg_cpu, cs_cpu = model(x)
        gpu = model.to("cuda")
        sg_gpu, cs_gpu = gpu(x.to("cuda"))
    assert torch.allclose(sg_cpu, sg_gpu.cpu(), atol=1e-3, rtol=1e-3)
    assert torch.allclose(cs_cpu, cs_gpu.cpu(), atol=1e-3, rtol=1e-3)


def test_state_saved_on_cuda_resumes_on_cpu(sticks, tmp_path, monkeypatch):
    from xrdid.train import loop

    real, calls = loop.predict_logits, []

    def interrupt_in_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    resume = tmp_path / "resume"
    monkeypatch.setattr(loop, "predict_logits", interrupt_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        _train(sticks, tmp_path / "gpu", epochs=2, device="cuda", resume_dir=resume)
    state = torch.load(resume / "state.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 1
    monkeypatch.setattr(loop, "predict_logits", real)
    # Same configuration and data: the CPU run continues after the GPU's epoch 1.
    _train(sticks, tmp_path / "cpu", epochs=2, device="cpu", resume_dir=resume)
    with open(tmp_path / "cpu" / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[0]["train_loss"]) == pytest.approx(state["history"][0]["train_loss"])
