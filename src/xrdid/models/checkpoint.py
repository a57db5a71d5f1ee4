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
from xrdid.io import DIRECTORY_MODE
from xrdid.labels import CRYSTAL_SYSTEMS, N_SPACE_GROUPS
from xrdid.models.cnn import CNNConfig, XRDClassifier

FORMAT = "xrdid-checkpoint/1"


def save_checkpoint(model: XRDClassifier, instrument: Instrument, path: str | Path, *, extra: dict | None = None) -> None:
    """Write the checkpoint directory atomically (a sibling temp dir renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        os.chmod(tmp, DIRECTORY_MODE)
        meta = model_meta(model, "XRDClassifier", instrument, FORMAT, extra)
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
    model, meta = read_model(meta_file, weights, FORMAT, lambda config: XRDClassifier(CNNConfig.from_dict(config)),
                             map_location=map_location)
    return model, Instrument.from_dict(meta["instrument"]), meta


# The keys model_meta writes itself; any other key of a model's metadata is the caller's extra.
BASE_META_KEYS = ("format", "xrdid_version", "architecture", "config", "instrument", "space_groups", "crystal_systems")


def model_meta(model, architecture: str, instrument: Instrument, fmt: str, extra: dict | None = None) -> dict:
    """The metadata a saved model carries: format, version, ``architecture`` (the class name), its config,
    the instrument it was trained for and the label maps (``BASE_META_KEYS``), then ``extra``."""
    return {
        "format": fmt,
        "xrdid_version": __version__,
        "architecture": architecture,
        "config": model.config.to_dict(),
        "instrument": instrument.to_dict(),
        "space_groups": list(range(1, N_SPACE_GROUPS + 1)),
        "crystal_systems": list(CRYSTAL_SYSTEMS),
        **(extra or {}),
    }


def read_model(meta_file: Path, weights: Path, fmt: str, build, map_location="cpu") -> tuple[torch.nn.Module, dict]:
    """The model (``build(meta["config"])`` with ``weights`` loaded, in eval mode) and its metadata from
    ``meta_file``; a ValueError naming the file when the JSON is invalid, the format is not ``fmt`` or the
    weights do not load with ``weights_only`` (which keeps a foreign file from executing code)."""
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_file}: invalid JSON: {exc}") from None
    if meta.get("format") != fmt:
        raise ValueError(f"{meta_file}: unsupported checkpoint format {meta.get('format')!r} (expected {fmt})")
    model = build(meta["config"])
    try:
        model.load_state_dict(torch.load(weights, map_location=map_location, weights_only=True))
    except Exception as exc:
        raise ValueError(f"{weights}: could not load weights safely: {exc}") from None
    model.eval()
    return model, meta
