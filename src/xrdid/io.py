"""Atomic file writes: an output either exists complete or not at all."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa


class StorageError(OSError):
    """An output could not be written for a reason the user has to fix: no space, quota, permissions.

    Still an ``OSError`` (with the original ``errno``), so existing handlers keep working; the message
    names the output and says what to do.
    """


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Outputs get the mode a plain open() would give them (0o666 less the umask; _create_temporary opens them so),
# not mkstemp's private 0o600: results on a shared file system stay readable by the group, as any other file
# the user writes. Output directories made with mkdtemp (0o700) are given DIRECTORY_MODE.
DIRECTORY_MODE = 0o777 & ~_process_umask()

# errno -> (what happened, what to do about it)
_STORAGE_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free space there, or run from a larger file system"),
    errno.EDQUOT: ("disk quota exceeded", "free space in your quota, or run from a file system with more"),
    errno.EACCES: ("permission denied", "check the owner and mode of the folder (and of an existing file)"),
    errno.EPERM: ("operation not permitted", "check the owner and mode of the folder (and of an existing file)"),
    errno.EROFS: ("read-only file system", "run from a writable location"),
}


def _storage_error(exc: BaseException, path: Path) -> BaseException:
    """``exc`` as a :class:`StorageError` naming ``path`` when it is a space or permission error, else ``exc``.

    Libraries that wrap C I/O (pyarrow) raise OSError without ``errno`` but with the system message,
    so the message is matched too.
    """
    if not isinstance(exc, OSError) or isinstance(exc, StorageError):
        return exc
    code = exc.errno if exc.errno in _STORAGE_ERRORS else None
    if code is None:
        text = str(exc)
        code = next((c for c in _STORAGE_ERRORS if os.strerror(c) in text), None)
    if code is None:
        return exc
    what, hint = _STORAGE_ERRORS[code]
    error = StorageError(
        code, f"cannot write {path}: {what} ({errno.errorcode[code]}) in {path.parent}; {hint} [{exc}]"
    )
    error.path = path
    return error


# The temporary files of the atomic_path blocks open in this process, removed by _remove_and_unwind, with the
# id of the process that opened them: a forked worker inherits both the handler and this dict, and a worker
# ended by SIGTERM (``Pool.terminate``) must leave its parent's files alone.
_OPEN: dict[Path, int] = {}
# The handlers _remove_and_unwind replaced, restored when the main thread's last block ends.
_REPLACED: dict[int, object] = {}
_main_depth = 0
# Replaced only while they are Python's defaults; a handler someone else installed is kept.
_DEFAULT_HANDLERS = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}


def _remove_and_unwind(signum, frame):
    """SIGTERM or SIGINT while an :func:`atomic_path` block is open: remove the open temporary files, then
    unwind (``SystemExit(143)`` for SIGTERM, ``KeyboardInterrupt`` for SIGINT).

    Removing them here, not only in ``atomic_path``'s own cleanup, leaves no window: a signal that lands in
    that cleanup, or whose exception ends in an abort (Ctrl-C during the import of a native module raises
    through C++, which ends in SIGABRT without running any ``finally``), still leaves nothing behind.
    """
    pid = os.getpid()
    for tmp, owner in list(_OPEN.items()):
        if owner == pid:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _signals_remove_temporaries() -> Iterator[None]:
    """While active (in the main thread, the outermost such block), SIGTERM (what ``scancel``, ``kill`` and
    Snakemake send) and SIGINT remove the open temporary files and unwind.

    By default SIGTERM ends Python without unwinding, so ``finally`` blocks never run. Only the main thread
    can set handlers: elsewhere this does nothing (a signal then finds the main thread's handler, if any).
    The defaults come back only once the cleanup of the last block is over.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _main_depth
    if _main_depth == 0:
        for signum, default in _DEFAULT_HANDLERS.items():
            if signal.getsignal(signum) is default:
                _REPLACED[signum] = default
                signal.signal(signum, _remove_and_unwind)
    _main_depth += 1
    try:
        yield
    finally:
        _main_depth -= 1
        if _main_depth == 0:
            for signum in list(_REPLACED):
                if signal.getsignal(signum) is _remove_and_unwind:
                    signal.signal(signum, _REPLACED[signum])
                del _REPLACED[signum]


def _create_temporary(path: Path) -> Path:
    """Create an empty temporary file beside ``path`` (mode 0o666 less the umask, as ``open`` gives), listed in
    ``_OPEN`` *before* it exists.

    A signal handler can run between any two bytecodes; with the name listed first, one that runs after the
    file is created always finds it (removing a name not yet created is harmless), where ``mkstemp`` returned a
    file the handler could not know of yet. A name another file already has is skipped; with 64 random bits
    that is all but impossible, and only then could a signal in that instant remove a file not ours.
    """
    pid = os.getpid()
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.urandom(8).hex()}.part"
        _OPEN[tmp] = pid
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666))
            return tmp
        except FileExistsError:
            _OPEN.pop(tmp, None)
        except BaseException:
            _OPEN.pop(tmp, None)
            raise
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(path.parent))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash or kill leaves no partial file at ``path``, so Snakemake (and a resumed run) never sees
    half an output. The temporary file lives in the same directory so the rename is atomic; it is
    removed on an exception and on SIGTERM or SIGINT (a cancelled cluster job, Ctrl-C), though not on
    SIGKILL. A full disk, an exhausted quota or missing permissions raise :class:`StorageError` naming
    ``path``.
    """
    path = Path(path)
    with _signals_remove_temporaries():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _create_temporary(path)
        except OSError as exc:
            raise _storage_error(exc, path) from exc
        try:
            yield tmp
            os.replace(tmp, path)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            error = _storage_error(exc, path)
            if error is exc:
                raise
            raise error from exc
        finally:
            _OPEN.pop(tmp, None)


def write_parquet(table: pa.Table, path: str | os.PathLike) -> None:
    import pyarrow.parquet as pq  # here, so that write_text needs no pyarrow (the CLI's start-up)

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
