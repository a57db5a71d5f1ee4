"""Where checkpoints are: the one shipped in the package, and one named by ``train.init_from``.

Free of torch, so the workflow can read a digest while it builds its DAG.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path


def pretrained_path() -> Path:
    """Directory of the pretrained checkpoint shipped inside the package."""
    return Path(str(resources.files("xrdid") / "pretrained"))


def resolve_init(source: str) -> Path:
    """The checkpoint directory named by ``train.init_from`` ("pretrained": the shipped one)."""
    return pretrained_path() if source == "pretrained" else Path(source)


def init_digest(source: str | None) -> str | None:
    """Digest of the weights ``train.init_from`` names ("missing: …" when there are none), so that a
    changed starting checkpoint starts a new run instead of resuming an old one."""
    if source is None:
        return None
    weights = resolve_init(source) / "weights.pt"
    if not weights.is_file():
        return f"missing: {weights}"
    return hashlib.blake2b(weights.read_bytes(), digest_size=16).hexdigest()
