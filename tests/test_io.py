"""Atomic writes: nothing partial is left behind, and a full disk or a permission error names the output."""

from __future__ import annotations

import errno
import os
import tempfile

import pyarrow as pa
import pytest

from xrdid.io import StorageError, atomic_path, write_parquet, write_text


def test_failed_block_leaves_neither_output_nor_temporary(tmp_path):
    out = tmp_path / "sub" / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_success_replaces_existing_output(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old")
    write_text("new", out)
    assert out.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


@pytest.mark.parametrize(
    ("code", "words"),
    [(errno.ENOSPC, "no space left"), (errno.EDQUOT, "quota"), (errno.EACCES, "permission denied"),
     (errno.EROFS, "read-only")],
)
def test_space_and_permission_errors_name_the_output(tmp_path, code, words):
    out = tmp_path / "results" / "chunk-0.parquet"
    with pytest.raises(StorageError) as info, atomic_path(out):
        raise OSError(code, os.strerror(code))
    message = str(info.value)
    assert str(out) in message and words in message and errno.errorcode[code] in message
    assert info.value.errno == code and isinstance(info.value, OSError)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_error_creating_the_temporary_file_names_the_output(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    out = tmp_path / "out.json"
    with pytest.raises(StorageError, match=r"cannot write .*out\.json: permission denied \(EACCES\)"):
        write_text("{}", out)


def test_library_error_without_errno_is_recognised_by_its_message(tmp_path, monkeypatch):
    # pyarrow reports a full disk as an OSError whose errno is None.
    import pyarrow.parquet as pq

    def full(*args, **kwargs):
        raise OSError(f"error writing file: {os.strerror(errno.ENOSPC)}")

    monkeypatch.setattr(pq, "write_table", full)
    out = tmp_path / "sticks.parquet"
    with pytest.raises(StorageError, match="no space left on the device"):
        write_parquet(pa.table({"a": [1]}), out)


def test_other_os_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "out.txt"):
        raise FileNotFoundError(errno.ENOENT, "No such file", "input.cif")


def test_sigterm_removes_the_temporary_file(tmp_path):
    """A cancelled cluster job (SIGTERM) leaves neither the output nor the temporary file behind."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out.parquet"
    code = (
        "import sys, time\n"
        "from xrdid.io import atomic_path\n"
        f"with atomic_path({str(out)!r}) as tmp:\n"
        "    tmp.write_bytes(b'half')\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    assert list(tmp_path.glob("*.part"))
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert time.monotonic() - t0 < 30
    assert not out.exists() and list(tmp_path.iterdir()) == []
