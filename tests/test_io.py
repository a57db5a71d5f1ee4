"""Atomic writes: nothing partial is left behind, and a full disk or a permission error names the output."""

from __future__ import annotations

import errno
import os

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


def test_outputs_get_the_mode_a_plain_file_would(tmp_path):
    """Not mkstemp's private 0o600: a result on a shared file system stays readable by the group."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    out = tmp_path / "out.txt"
    write_text("x", out)
    assert (out.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)


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

    out = tmp_path / "out.json"
    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(StorageError, match=r"cannot write .*out\.json: permission denied \(EACCES\)"):
        write_text("{}", out)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


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


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("where", ["creation", "cleanup", "rename"])
def test_signal_during_creation_cleanup_or_rename_leaves_nothing(tmp_path, signum, where):
    """A signal that lands just as the temporary file is created (before atomic_path has its name back), or
    after the block, while the file is being removed (the block failed) or renamed (it succeeded), still
    leaves no temporary file: its name is known before it exists, and the default handlers come back only
    after the cleanup."""
    import signal
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import os, pathlib, signal, sys
        from xrdid.io import atomic_path

        signum, where, out = getattr(signal, sys.argv[1]), sys.argv[2], sys.argv[3]

        def firing(original):
            def wrapper(*args, **kwargs):  # signals this process once, on the first call
                if not fired:
                    fired.append(True)
                    os.kill(os.getpid(), signum)
                return original(*args, **kwargs)
            return wrapper

        fired = []
        if where == "creation":
            def created(original):  # creates the file, then signals before returning its descriptor
                def wrapper(*args, **kwargs):
                    fd = original(*args, **kwargs)
                    firing(lambda: None)()
                    return fd
                return wrapper
            os.open = created(os.open)
        elif where == "rename":
            os.replace = firing(os.replace)
        else:
            pathlib.Path.unlink = firing(pathlib.Path.unlink)
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            if where == "cleanup":
                raise RuntimeError("the block failed")
        """
    )
    out = tmp_path / "out.txt"
    run = subprocess.run([sys.executable, "-c", code, signum, where, str(out)], check=False, capture_output=True, text=True, timeout=60)
    expected = 128 + signal.SIGTERM if signum == "SIGTERM" else -signal.SIGINT  # an uncaught KeyboardInterrupt
    assert run.returncode == expected, run.stderr
    assert list(tmp_path.iterdir()) == []


def test_handlers_come_back_after_the_block(tmp_path):
    import signal

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with atomic_path(tmp_path / "a.txt") as a:
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        with pytest.raises(RuntimeError), atomic_path(tmp_path / "b.txt"):
            raise RuntimeError("inner block failed")
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]  # the outer block is still open
        a.write_text("done")
    assert {s: signal.getsignal(s) for s in before} == before
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "c.txt"):
        raise RuntimeError("failed")
    assert {s: signal.getsignal(s) for s in before} == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_handler_someone_installed_is_kept(tmp_path):
    import signal

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with atomic_path(tmp_path / "out.txt") as tmp:
            assert signal.getsignal(signal.SIGTERM) is mine
            tmp.write_text("x")
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_blocks_in_other_threads_leave_the_handlers_alone(tmp_path):
    import signal
    import threading

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    seen, errors = [], []

    def work(i):
        try:
            write_text(str(i), tmp_path / f"{i}.txt")
            with pytest.raises(RuntimeError), atomic_path(tmp_path / f"failed-{i}.txt"):
                seen.append({s: signal.getsignal(s) for s in before})
                raise RuntimeError("failed")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(s == before for s in seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.txt", "1.txt", "2.txt", "3.txt"]


def test_interrupt_that_ends_in_an_abort_leaves_nothing(tmp_path):
    """Ctrl-C during the import of a native module raises through C++ and ends in SIGABRT, so no ``finally``
    runs: the handler has removed the temporary file before raising."""
    import signal
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import os, signal, sys, time
        from xrdid.io import atomic_path

        with atomic_path(sys.argv[1]) as tmp:
            tmp.write_text("half")
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(30)
            except KeyboardInterrupt:
                os.abort()  # what an exception thrown through C++ comes to
        """
    )
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out.txt")], check=False, capture_output=True, timeout=60)
    assert run.returncode == -signal.SIGABRT
    assert list(tmp_path.iterdir()) == []


def test_a_forked_worker_ended_by_sigterm_leaves_its_parents_file_alone(tmp_path):
    """A worker forked while a block is open inherits its handlers; ``Pool.terminate`` ends it with SIGTERM."""
    import multiprocessing as mp
    import signal
    import time

    out = tmp_path / "out.txt"
    with atomic_path(out) as tmp:
        tmp.write_text("whole")
        worker = mp.get_context("fork").Process(target=time.sleep, args=(30,))
        worker.start()
        time.sleep(0.2)
        worker.terminate()
        worker.join(timeout=30)
        assert worker.exitcode in (128 + signal.SIGTERM, -signal.SIGTERM)
        assert tmp.exists()
    assert out.read_text() == "whole"


def test_a_writer_that_cannot_be_opened_leaves_no_block_open(tmp_path, monkeypatch):
    import signal

    import pyarrow.parquet as pq

    from xrdid.structures.table import StructureTableWriter

    def broken(*args, **kwargs):
        raise OSError("cannot open")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(pq, "ParquetWriter", broken)
    writer = StructureTableWriter(tmp_path / "s.parquet", tmp_path / "f.parquet")
    with pytest.raises(OSError, match="cannot open"):
        writer.__enter__()
    assert signal.getsignal(signal.SIGTERM) is before
    assert list(tmp_path.iterdir()) == []
