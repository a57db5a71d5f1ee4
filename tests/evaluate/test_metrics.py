"""Evaluation metrics against values worked out by hand, and each head scored with its own logits,
labels and temperature."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from xrdid.evaluate import metrics as metrics_module
from xrdid.evaluate.metrics import classification_metrics, evaluate_checkpoint
from xrdid.instrument import get_instrument
from xrdid.labels import CRYSTAL_SYSTEMS
from xrdid.models import CNNConfig, XRDClassifier, save_checkpoint


def _row(n_classes: int, probs: dict[int, float]) -> list[float]:
    """A probability row: the given classes, the rest sharing what is left equally."""
    rest = (1.0 - sum(probs.values())) / (n_classes - len(probs))
    return [probs.get(c, rest) for c in range(n_classes)]


def test_classification_metrics_by_hand():
    # Six samples, seven classes; each confidence (largest probability) in its own one of the 15
    # calibration bins of width 1/15 (0.62 and 0.68 would share one of 10 bins).
    labels = torch.tensor([0, 0, 1, 2, 3, 3])
    probs = torch.tensor([
        _row(7, {0: 0.90}),            # right, confidence 0.90
        _row(7, {1: 0.62, 0: 0.20}),   # wrong (says 1), the truth second: a top-5 hit
        _row(7, {1: 0.68}),            # right
        _row(7, {2: 0.50}),            # right
        _row(7, {3: 0.95}),            # right
        _row(7, {4: 0.42, 3: 0.01}),   # wrong (says 4), the truth last of 7: a top-5 miss
    ])
    m = classification_metrics(probs, labels, 7, top_k=5)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["top5_accuracy"] == pytest.approx(5 / 6)
    # F1 of the classes present: 0: P 1, R 1/2 → 2/3; 1: P 1/2, R 1 → 2/3; 2: 1; 3: P 1, R 1/2 → 2/3.
    # (Class 4 is predicted once but never true: not averaged.)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 2 / 3) / 4)
    # ECE = Σ over bins of (n_bin / n)·|accuracy − confidence|, one sample per bin here.
    ece = (abs(1 - 0.90) + abs(0 - 0.62) + abs(1 - 0.68) + abs(1 - 0.50) + abs(1 - 0.95) + abs(0 - 0.42)) / 6
    assert m["ece"] == pytest.approx(ece, abs=1e-6)
    assert m["majority_class_accuracy"] == pytest.approx(2 / 6)
    assert m["per_class_accuracy"] == pytest.approx({0: 0.5, 1: 1.0, 2: 1.0, 3: 0.5})


def test_evaluate_scores_each_head_with_its_own_logits_labels_and_temperature(tmp_path, sticks_table, monkeypatch):
    """Space-group logits right for every structure, crystal-system logits wrong for every one, and
    different temperatures: swapping logits, labels or temperatures between the heads changes every
    number below."""
    from xrdid.data import StickTable

    instrument = get_instrument({"preset": "cu", "n_points": 512})
    model = XRDClassifier(CNNConfig(n_points=512, stem_channels=8, stage_channels=(8, 16), hidden=32, dropout=0.0))
    model.temperature.copy_(torch.tensor([2.0, 0.5]))
    save_checkpoint(model, instrument, tmp_path / "model")
    table = StickTable.from_parquet(sticks_table, split="test", d_min_A=instrument.d_min_A)
    n = len(table)
    assert n >= 1
    sg_logits = 4.0 * torch.nn.functional.one_hot(table.space_group, 230).float()
    wrong_cs = (table.crystal_system + 1) % len(CRYSTAL_SYSTEMS)
    cs_logits = 1.0 * torch.nn.functional.one_hot(wrong_cs, len(CRYSTAL_SYSTEMS)).float()
    monkeypatch.setattr(metrics_module, "predict_logits", lambda *a, **k: (sg_logits.clone(), cs_logits.clone()))

    m = evaluate_checkpoint(
        checkpoint=tmp_path / "model", sticks=sticks_table, metrics_out=tmp_path / "metrics.json",
        confusion_space_group=tmp_path / "csg.csv", confusion_crystal_system=tmp_path / "ccs.csv",
    )
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(m))
    sg, cs = m["space_group"], m["crystal_system"]
    assert sg["n"] == cs["n"] == m["n_structures"] == n
    assert sg["accuracy"] == sg["top5_accuracy"] == sg["macro_f1"] == 1.0
    assert cs["accuracy"] == cs["macro_f1"] == 0.0
    assert cs["accuracy_from_space_group_head"] == 1.0  # the space groups imply the right systems
    # Calibrated confidences: logit 4 at T = 2 among 230 classes, logit 1 at T = 0.5 among 7.
    conf_sg = math.exp(2.0) / (math.exp(2.0) + 229)
    conf_cs = math.exp(2.0) / (math.exp(2.0) + 6)
    assert sg["ece"] == pytest.approx(1 - conf_sg, abs=1e-5)
    assert cs["ece"] == pytest.approx(conf_cs, abs=1e-5)
    ccs = np.loadtxt(tmp_path / "ccs.csv", delimiter=",", skiprows=1, usecols=range(1, 8))
    assert ccs.sum() == n and np.trace(ccs) == 0
    csg = np.loadtxt(tmp_path / "csg.csv", delimiter=",", skiprows=1, usecols=range(1, 231))
    assert np.trace(csg) == n
