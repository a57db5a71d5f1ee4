"""Where checkpoints are (the one shipped in the package, one named by ``train.init_from``), and the files
bound to a checkpoint's weights by their digest (mixture probe, mixture detector).

Free of torch, so the workflow can read a digest while it builds its DAG.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from pathlib import Path


def pretrained_path() -> Path:
    """Directory of the pretrained checkpoint shipped inside the package."""
    return Path(str(resources.files("xrdid") / "pretrained"))


def resolve_init(source: str) -> Path:
    """The checkpoint directory named by ``train.init_from`` ("pretrained": the shipped one)."""
    return pretrained_path() if source == "pretrained" else Path(source)


def file_digest(path: str | Path | None) -> str | None:
    """Digest of a starting file's content ("missing: …" when there is none; None for None), so that a
    changed start begins a new run instead of resuming an old one."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        return f"missing: {path}"
    stat = path.stat()
    return _content_digest(str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@functools.lru_cache(maxsize=32)
def _content_digest(path: str, inode: int, size: int, mtime_ns: int, ctime_ns: int) -> str:
    """The digest of a file's content, computed once per version of the file (inode, size and times are the
    key; a file replaced or rewritten gets a new key): loading a checkpoint binds both its mixture probe and
    its detector to the weights, and reading them once is enough."""
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


def init_digest(source: str | None) -> str | None:
    """Digest of the weights ``train.init_from`` names ("missing: …" when there are none)."""
    return None if source is None else file_digest(resolve_init(source) / "weights.pt")


def bound_file(checkpoint, filename: str, read, what: str, usable=None):
    """What ``read`` loads from ``filename`` in the checkpoint directory or beside it (the first that loads)
    when its ``meta["weights_digest"]`` is the checkpoint's weights' digest (it was made from those weights)
    and ``usable(obj, where)`` (if given) accepts it; else None. Unreadable or unbound files are logged."""
    import logging

    log = logging.getLogger(__name__)
    checkpoint = Path(checkpoint)
    digest = None
    for where in (checkpoint / filename, checkpoint.parent / filename):
        if not where.is_file():
            continue
        try:
            obj = read(where)
        except ValueError as exc:
            log.warning("%s: %s", what, exc)
            continue
        digest = digest or init_digest(str(checkpoint))
        if obj.meta.get("weights_digest") != digest:
            log.info("%s: %s was made from other weights than %s; not used", what, where, checkpoint)
        elif usable is None or usable(obj, where):
            return obj
    return None
