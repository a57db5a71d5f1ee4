"""Instruments (named presets or explicit parameters) and batched torch rendering with augmentation.

The presets need only numpy; the renderer needs torch and is imported on first use, so that commands
that only read presets (``xrdid simulate``, the parser of ``xrdid predict``) start without torch.
"""

from __future__ import annotations

from xrdid.instrument.presets import PRESETS, Instrument, get_instrument

__all__ = ["PRESETS", "Augment", "Instrument", "Renderer", "StickBatch", "get_instrument"]


def __getattr__(name: str):
    if name in ("Augment", "Renderer", "StickBatch"):
        from xrdid.instrument import render

        return getattr(render, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
