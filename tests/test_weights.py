"""The digest that binds a probe or a detector to a checkpoint's weights (xrdid.weights)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from xrdid import weights


def _expected(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def test_digest_is_read_once_per_version_of_the_file(tmp_path, monkeypatch):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"a" * 64)
    reads = []
    real = Path.read_bytes

    def counting(self):
        reads.append(self)
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    weights._content_digest.cache_clear()
    first = weights.file_digest(path)
    assert weights.file_digest(path) == first == _expected(path)
    assert len(reads) == 2  # one for the digest, one for _expected; the second call is cached


def test_a_replaced_file_of_the_same_size_gets_its_own_digest(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"a" * 64)
    stat = path.stat()
    first = weights.file_digest(path)
    # Replaced as the project writes files (a new file renamed over the old), same size, same mtime.
    new = tmp_path / "weights.pt.tmp"
    new.write_bytes(b"b" * 64)
    os.utime(new, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    new.replace(path)
    assert weights.file_digest(path) == _expected(path) != first


def test_missing_and_none():
    assert weights.file_digest(None) is None
    assert weights.file_digest("/nonexistent/weights.pt") == "missing: /nonexistent/weights.pt"
