"""Metrics on data the model never saw: the test split, rendered with realistic augmentation.

Reported per head: top-1 (and top-5 for space groups) accuracy, macro F1 over the classes present,
expected calibration error (15 bins), the confusion matrix, and per-class accuracy; plus the
accuracy of always answering the most common test class, so "far above chance" is explicit.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
import torchmetrics.functional.classification as tmf

from xrdid.data import StickTable
from xrdid.instrument import Augment, Renderer
from xrdid.io import atomic_path, write_text
from xrdid.labels import CRYSTAL_SYSTEMS
from xrdid.models import load_checkpoint
from xrdid.train.loop import predict_logits

log = logging.getLogger(__name__)


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, n_classes: int, top_k: int = 1) -> dict:
    """torchmetrics summaries of one head; ``probs`` (S, C) calibrated probabilities."""
    present = torch.unique(labels)
    f1_per_class = tmf.multiclass_f1_score(probs, labels, num_classes=n_classes, average="none")
    acc_per_class = tmf.multiclass_accuracy(probs, labels, num_classes=n_classes, average="none")
    majority = torch.bincount(labels, minlength=n_classes).max().item() / max(len(labels), 1)
    out = {
        "n": len(labels),
        "accuracy": float(tmf.multiclass_accuracy(probs, labels, num_classes=n_classes, average="micro")),
        "macro_f1": float(f1_per_class[present].mean()),
        "ece": float(tmf.multiclass_calibration_error(probs, labels, num_classes=n_classes, n_bins=15)),
        "majority_class_accuracy": majority,
        "per_class_accuracy": {int(c): float(acc_per_class[c]) for c in present.tolist()},
    }
    if top_k > 1:
        out[f"top{top_k}_accuracy"] = float(
            tmf.multiclass_accuracy(probs, labels, num_classes=n_classes, top_k=top_k, average="micro")
        )
    return out


def _write_confusion(matrix: np.ndarray, labels: list[str], path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write("true\\predicted," + ",".join(labels) + "\n")
        fh.writelines(name + "," + ",".join(str(int(v)) for v in row) + "\n" for name, row in zip(labels, matrix))


def evaluate_checkpoint(
    *,
    checkpoint: str | Path,
    sticks: str | Path,
    metrics_out: str | Path,
    confusion_space_group: str | Path,
    confusion_crystal_system: str | Path,
    split: str = "test",
    augment: Augment | None = None,
    seed: int = 12345,
    threads: int | None = None,
) -> dict:
    """Evaluate ``checkpoint`` on ``split`` of ``sticks``; writes metrics JSON and two confusion CSVs."""
    if threads:
        torch.set_num_threads(int(threads))
    model, instrument, _meta = load_checkpoint(checkpoint)
    table = StickTable.from_parquet(sticks, split=split, d_min_A=instrument.d_min_A)
    if len(table) == 0:
        raise ValueError(f"{sticks}: the {split!r} split is empty")
    augment = augment if augment is not None else Augment()
    renderer = Renderer(instrument, augment)
    sg_logits, cs_logits = predict_logits(model, renderer, table, seed=seed)
    temps = model.temperature
    sg_p = (sg_logits / temps[0]).softmax(-1)
    cs_p = (cs_logits / temps[1]).softmax(-1)
    metrics = {
        "split": split,
        "n_structures": len(table),
        "instrument": instrument.name,
        "augmented": augment.enabled,
        "space_group": classification_metrics(sg_p, table.space_group, 230, top_k=5),
        "crystal_system": classification_metrics(cs_p, table.crystal_system, len(CRYSTAL_SYSTEMS)),
    }
    # Crystal system implied by the space-group head, for consistency checks.
    from xrdid.labels import space_group_to_system_map

    implied = torch.as_tensor(space_group_to_system_map())[sg_p.argmax(1)]
    metrics["crystal_system"]["accuracy_from_space_group_head"] = float((implied == table.crystal_system).float().mean())
    write_text(json.dumps(metrics, indent=2), metrics_out)
    cm_sg = tmf.multiclass_confusion_matrix(sg_p, table.space_group, num_classes=230).numpy()
    cm_cs = tmf.multiclass_confusion_matrix(cs_p, table.crystal_system, num_classes=len(CRYSTAL_SYSTEMS)).numpy()
    _write_confusion(cm_sg, [str(n) for n in range(1, 231)], Path(confusion_space_group))
    _write_confusion(cm_cs, list(CRYSTAL_SYSTEMS), Path(confusion_crystal_system))
    log.info(
        "%s split (%d structures): space group %.1f %% (top-5 %.1f %%), crystal system %.1f %% (majority class %.1f %%)",
        split, len(table), 100 * metrics["space_group"]["accuracy"], 100 * metrics["space_group"]["top5_accuracy"],
        100 * metrics["crystal_system"]["accuracy"], 100 * metrics["crystal_system"]["majority_class_accuracy"],
    )
    return metrics
