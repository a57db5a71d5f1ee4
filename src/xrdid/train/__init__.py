"""Training: patterns rendered and augmented on the fly from sticks, resumable, with a history."""

from xrdid.train.loop import TrainConfig, train

__all__ = ["TrainConfig", "train"]
