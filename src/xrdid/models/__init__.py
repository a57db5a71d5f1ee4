"""Models: the 1D CNN classifier and its self-describing checkpoint."""

from xrdid.models.checkpoint import load_checkpoint, save_checkpoint
from xrdid.models.cnn import CNNConfig, XRDClassifier

__all__ = ["CNNConfig", "XRDClassifier", "load_checkpoint", "save_checkpoint"]
