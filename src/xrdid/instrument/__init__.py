"""Instruments (named presets or explicit parameters) and batched torch rendering with augmentation."""

from xrdid.instrument.presets import PRESETS, Instrument, get_instrument
from xrdid.instrument.render import Augment, Renderer, StickBatch

__all__ = ["PRESETS", "Augment", "Instrument", "Renderer", "StickBatch", "get_instrument"]
