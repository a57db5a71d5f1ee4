"""Readers for measured powder patterns, and their conversion to a model's 2θ grid.

    read_pattern(path, wavelength_A=None, axis=None) -> Pattern    one file; PatternError if unreadable
    read_patterns(paths, **kw) -> (path, Pattern | PatternError)…  a batch; a bad file stops nothing
    to_grid(pattern, two_theta_grid_deg, grid_wavelength_A)        → (y float32, covered-mask bool)

Formats, chosen by extension and then by content: column text (.xy .xye .dat .csv .txt …, incl.
pyFAI-integrated 1D and McXtrace Monitor_nD 1D), PANalytical .xrdml, and Bruker .raw (v4) / .brml and
Rigaku .rasx through the optional ``fairmat-readers-xrd`` package.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .grid import to_grid
from .pattern import AXES, Pattern, PatternError, check_wavelength
from .text import read_text
from .vendor import VENDOR_SUFFIXES, read_vendor
from .xrdml import read_xrdml

__all__ = ["MAX_FILE_BYTES", "Pattern", "PatternError", "read_pattern", "read_patterns", "to_grid"]

# A 1D pattern is kilobytes to a few MB; anything this large is a wrong file (an image, an archive).
MAX_FILE_BYTES = 200 * 1024**2
_SNIFF_BYTES = 4096


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")  # Windows exporters
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # old instrument software writes Latin-1 (°, Å)


def read_pattern(
    path: str | os.PathLike, *, wavelength_A: float | None = None, axis: str | None = None
) -> Pattern:
    """Read one measured pattern.

    ``wavelength_A`` (Å) is used only if the file states none (``meta["wavelength_source"]`` is
    ``"file"`` or ``"argument"``). ``axis`` (``"two_theta"``, ``"q"`` or ``"d"``) says what the x
    column is when the file does not; if the file says otherwise, that is an error.
    Raises PatternError naming the file and the problem.
    """
    p = Path(path)
    where = str(path)
    if axis is not None and axis not in AXES:
        raise PatternError(f"{where}: unknown axis {axis!r}; expected one of {', '.join(AXES)}")
    fallback = check_wavelength(wavelength_A, where, "wavelength given")
    try:
        if not p.exists():
            raise PatternError(f"{where}: no such file")
        if p.is_dir():
            raise PatternError(f"{where}: is a directory, not a pattern file")
        size = p.stat().st_size
        if size == 0:
            raise PatternError(f"{where}: the file is empty")
        if size > MAX_FILE_BYTES:
            raise PatternError(
                f"{where}: the file is {size / 1024**2:.0f} MB, over the {MAX_FILE_BYTES / 1024**2:.0f} MB"
                " limit for a 1D pattern (wrong file?)"
            )
        with open(p, "rb") as f:
            head = f.read(_SNIFF_BYTES)
        suffix = p.suffix.lower()
        vendor_magic = head.startswith((b"RAW", b"PK\x03\x04"))
        if vendor_magic or (suffix in VENDOR_SUFFIXES and b"\x00" in head):
            pattern = read_vendor(p, head)
        elif suffix == ".xrdml" or b"<xrdMeasurements" in head:
            pattern = read_xrdml(p, p.read_bytes())
        elif b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise PatternError(
                f"{where}: a binary file of unknown format; export it as .xy or .xrdml"
            )
        else:
            pattern = read_text(p, _decode(p.read_bytes()), axis=axis)
    except OSError as e:
        raise PatternError(f"{where}: cannot read the file: {e.strerror or e}") from None
    if axis is not None and pattern.axis != axis:
        raise PatternError(f"{where}: the file is a {pattern.axis} scan but {axis} was requested")
    pattern.path = where
    if pattern.wavelength_A is not None:
        pattern.meta["wavelength_source"] = "file"
    elif fallback is not None:
        pattern.wavelength_A = fallback
        pattern.meta["wavelength_source"] = "argument"
    return pattern


def read_patterns(
    paths: Iterable[str | os.PathLike], **kw
) -> Iterator[tuple[str | os.PathLike, Pattern | PatternError]]:
    """Read many files; yield ``(path, Pattern)`` or ``(path, PatternError)`` for each, in order.

    An unexpected failure in one file (a bug, a library error) is reported as that file's
    PatternError instead of stopping the batch.
    """
    for path in paths:
        try:
            yield path, read_pattern(path, **kw)
        except PatternError as e:
            yield path, e
        except Exception as e:
            yield path, PatternError(f"{path}: unexpected error while reading: {type(e).__name__}: {e}")
