"""Vendor binary/zip formats through ``fairmat-readers-xrd`` (FAIRmat/NOMAD, Apache-2.0, pure Python).

Bruker RAW v4 (``.raw`` starting ``RAW4.00``), Bruker ``.brml`` and Rigaku ``.rasx``. The library is
imported only when such a file is read, so the rest of the package works without it. Older Bruker
RAW versions (RAW1.01, RAW2, RAW3) are not supported by any reader installable from PyPI here:
those files get a PatternError asking for an .xy or .xrdml export.
"""

from __future__ import annotations

import logging

import numpy as np

from .pattern import PatternError, check_wavelength, finalise

VENDOR_SUFFIXES = (".raw", ".brml", ".rasx")


def _magnitude(q):
    if q is None:
        return None
    return np.asarray(getattr(q, "magnitude", q), dtype=np.float64)


def read_vendor(path, head: bytes):
    """Read a vendor file into a validated 2θ Pattern, or raise PatternError."""
    where = str(path)
    suffix = str(path).lower().rsplit(".", 1)[-1]
    if head.startswith(b"RAW") and not head.startswith(b"RAW4.00"):
        version = head[:7].decode("ascii", "replace").strip("\x00 ")
        raise PatternError(
            f"{where}: Bruker {version!r} files are not supported (only RAW4.00 is); "
            "export the pattern as .xy or .xrdml"
        )
    if suffix == "raw" and not head.startswith(b"RAW4.00"):
        raise PatternError(f"{where}: not a Bruker RAW v4 file (no 'RAW4.00' signature)")
    try:
        from fairmat_readers_xrd import readers as fm
    except ImportError:
        raise PatternError(
            f"{where}: reading .{suffix} files needs the 'fairmat-readers-xrd' package "
            "(pip install fairmat-readers-xrd), or export the pattern as .xy or .xrdml"
        ) from None
    # The RAW parser warns on every file that it handles single-axis scans only; that is all we read.
    quiet = logging.getLogger("fairmat_readers_xrd.bruker_raw_parser")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        if head.startswith(b"RAW4.00"):
            out = fm.read_bruker_raw(str(path))
        elif suffix == "brml":
            out = fm.read_bruker_brml(str(path))
        elif suffix == "rasx":
            out = fm.read_rigaku_rasx(str(path))
        else:
            raise PatternError(
                f"{where}: a zip or binary file with an unknown extension; "
                "rename it to .brml or .rasx if it is one, or export it as .xy or .xrdml"
            )
    except PatternError:
        raise
    except Exception as e:  # the library raises anything from KeyError to struct.error
        raise PatternError(f"{where}: could not read as .{suffix}: {type(e).__name__}: {e}") from None
    finally:
        quiet.setLevel(level)
    if not out:
        raise PatternError(f"{where}: could not read as .{suffix} (corrupt or unsupported variant)")
    x, y = _magnitude(out.get("2Theta")), _magnitude(out.get("intensity"))
    if x is None or y is None or x.ndim != 1 or y.ndim != 1:
        raise PatternError(f"{where}: not a single 1D 2θ scan (maps and multi-scan files are unsupported)")
    src = (out.get("metadata") or {}).get("source") or {}
    meta: dict = {"format": suffix, "anode": src.get("anode_material")}
    for key, name in (("kalpha2_A", "kAlpha2"), ("kalpha2_ratio", "ratioKAlpha2KAlpha1")):
        if (v := _magnitude(src.get(name))) is not None and v.size == 1:
            meta[key] = float(v)
    lam = _magnitude(src.get("kAlpha1"))
    lam = check_wavelength(float(lam), where, "kAlpha1 wavelength") if lam is not None and lam.size == 1 else None
    return finalise(x, y, axis="two_theta", path=path, wavelength_A=lam, meta=meta)
