"""Vendor formats through fairmat-readers-xrd: the plumbing, on files built in code.

The RAW v4 file here follows the layout that fairmat-readers-xrd documents (fixed offsets); it tests
our wrapping (2θ axis, wavelength from the anode, errors), not the library's format knowledge.
"""

import struct

import numpy as np
import pytest

from xrdid.readers import PatternError, read_pattern


def raw4(start=10.0, step=0.02, n=50, anode=b"Cu"):
    buf = bytearray(0x051F)
    buf[0:8] = b"RAW4.00\x00"
    buf[0x01A8 : 0x01A8 + len(anode)] = anode
    buf[0x01C3:0x01C5] = struct.pack("<H", n)
    buf[0x020F:0x0217] = struct.pack("<d", step)
    buf[0x04D0:0x04D6] = b"Theta\x00"
    buf[0x04FB:0x0503] = struct.pack("<d", start)
    y = 100.0 + np.arange(n)
    for v in y:  # interleaved [intensity, other] float32 pairs
        buf += struct.pack("<ff", v, 0.0)
    return bytes(buf), y


def test_bruker_raw4(tmp_path):
    data, y = raw4()
    path = tmp_path / "scan.raw"
    path.write_bytes(data)
    p = read_pattern(path)
    assert p.axis == "two_theta" and p.meta["format"] == "raw"
    np.testing.assert_allclose(p.x, 10.0 + 0.02 * np.arange(50))
    np.testing.assert_allclose(p.y, y)
    assert p.wavelength_A == pytest.approx(1.5406, abs=1e-3)  # Cu Kα1 from the anode


def test_bruker_raw4_truncated(tmp_path):
    data, _ = raw4()
    path = tmp_path / "cut.raw"
    path.write_bytes(data[:-80])
    with pytest.raises(PatternError, match=r"cut\.raw"):
        read_pattern(path)


def test_broken_brml_zip(tmp_path):
    path = tmp_path / "scan.brml"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(PatternError, match=r"scan\.brml"):
        read_pattern(path)


def test_text_file_named_raw_is_read_as_text(tmp_path):
    path = tmp_path / "export.raw"
    path.write_text("".join(f"{10 + i * 0.1} {i}\n" for i in range(20)))
    assert read_pattern(path, wavelength_A=1.0).x.size == 20


def test_missing_library_gives_a_clear_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "fairmat_readers_xrd", None)  # makes the import fail
    path = tmp_path / "scan.raw"
    path.write_bytes(raw4()[0])
    with pytest.raises(PatternError, match=r"scan\.raw.*fairmat-readers-xrd.*\.xy or \.xrdml"):
        read_pattern(path)
