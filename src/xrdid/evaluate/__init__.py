"""Evaluation of a checkpoint on held-out sticks (torchmetrics): metrics.json and confusion matrices."""

from xrdid.evaluate.metrics import classification_metrics, evaluate_checkpoint

__all__ = ["classification_metrics", "evaluate_checkpoint"]
