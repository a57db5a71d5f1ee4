"""Checkpoints are directories: ``model.json`` (config, instrument, grid, label maps, version) beside
``weights.pt`` (a plain state dict). Loading uses ``torch.load(weights_only=True)``, so a checkpoint
from elsewhere cannot execute code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from xrdid import __version__
from xrdid.instrument.presets import Instrument
from xrdid.labels import CRYSTAL_SYSTEMS, N_SPACE_GROUPS
from xrdid.models.cnn import CNNConfig, XRDClassifier

FORMAT = "xrdid-checkpoint/1"


def save_checkpoint(model: XRDClassifier, instrument: Instrument, path: str | Path, *, extra: dict | None = None) -> None:
    """Write the checkpoint directory atomically (a sibling temp dir renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        meta = {
            "format": FORMAT,
            "xrdid_version": __version__,
            "architecture": "XRDClassifier",
            "config": model.config.to_dict(),
            "instrument": instrument.to_dict(),
            "space_groups": list(range(1, N_SPACE_GROUPS + 1)),
            "crystal_systems": list(CRYSTAL_SYSTEMS),
            **(extra or {}),
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=2))
        torch.save(model.state_dict(), tmp / "weights.pt")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_checkpoint(path: str | Path, map_location="cpu") -> tuple[XRDClassifier, Instrument, dict]:
    """Load a checkpoint directory; raises ValueError with a clear message when it is not one of ours."""
    path = Path(path)
    meta_file = path / "model.json"
    weights = path / "weights.pt"
    if not meta_file.is_file() or not weights.is_file():
        raise ValueError(f"{path}: not an xrdid checkpoint (expected model.json and weights.pt in a directory)")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_file}: invalid JSON: {exc}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {meta.get('format')!r} (expected {FORMAT})")
    model = XRDClassifier(CNNConfig.from_dict(meta["config"]))
    try:
        state = torch.load(weights, map_location=map_location, weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:
        raise ValueError(f"{weights}: could not load weights safely: {exc}") from None
    model.eval()
    return model, Instrument.from_dict(meta["instrument"]), meta
