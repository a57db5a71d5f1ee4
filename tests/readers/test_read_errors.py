"""Every kind of unreadable file gets a PatternError that names the file and the problem."""

import numpy as np
import pytest

from xrdid import readers
from xrdid.readers import PatternError, read_pattern, read_patterns

TT = np.linspace(10.0, 60.0, 30)


def xy(x=TT, y=None):
    y = np.ones_like(x) if y is None else y
    return "".join(f"{a} {b}\n" for a, b in zip(x, y))


def check(tmp_path, name, content, match, **kw):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(PatternError, match=match) as info:
        read_pattern(path, **kw)
    assert name in str(info.value)
    return info.value


def test_missing_file(tmp_path):
    with pytest.raises(PatternError, match=r"nope\.xy: no such file"):
        read_pattern(tmp_path / "nope.xy")


def test_directory(tmp_path):
    with pytest.raises(PatternError, match="directory"):
        read_pattern(tmp_path)


def test_empty_and_blank_files(tmp_path):
    check(tmp_path, "empty.xy", "", "empty")
    check(tmp_path, "blank.xy", "\n \n\t\n", "no data")


def test_no_numeric_data(tmp_path):
    check(tmp_path, "words.xy", "this is\nnot a pattern\nat all\n", "no numeric data")


def test_non_numeric_line_inside_data(tmp_path):
    text = xy(TT[:15]) + "12.3 abc\n" + xy(TT[15:])
    check(tmp_path, "mid.xy", text, r"line 16: non-numeric")


def test_ragged_columns(tmp_path):
    check(tmp_path, "ragged.xy", xy(TT[:15]) + "40 1 2\n", r"line 16: 3 columns")


def test_too_few_points(tmp_path):
    check(tmp_path, "short.xy", xy(TT[:5]), "only 5 data points")


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_values(tmp_path, bad):
    y = np.ones_like(TT).astype(object)
    y[7] = bad
    check(tmp_path, f"nf_{bad}.xy", xy(TT, y), r"non-finite.*point 8")


def test_non_finite_x(tmp_path):
    x = TT.astype(object)
    x[3] = "nan"
    check(tmp_path, "nanx.xy", xy(x), r"non-finite.*x")


def test_duplicate_x(tmp_path):
    x = TT.copy()
    x[10] = x[9]
    check(tmp_path, "dup.xy", xy(x), "duplicate")


def test_non_monotonic_x(tmp_path):
    x = TT.copy()
    x[10], x[11] = x[11], x[10]
    check(tmp_path, "shuffled.xy", xy(x), "not monotonic")


def test_negative_and_absurd_two_theta(tmp_path):
    check(tmp_path, "neg.xy", xy(np.linspace(-5, 40, 30)), "outside 0–180")
    check(tmp_path, "big.xy", xy(np.linspace(100, 200, 30)), "outside 0–180")


def test_absurd_q(tmp_path):
    check(tmp_path, "q.xy", "# q_A^-1 I\n" + xy(np.linspace(100, 500, 30)), "Q runs")


@pytest.mark.parametrize(
    "header, what",
    [
        ("# 2theta (furlongs)  I", "unknown unit for 2θ"),
        ("# q (1/pm)  I", "unknown unit for Q"),
        ("# d (parsecs)  I", "unknown unit for d"),
        ("# Unit: r_mm", "not 2θ, Q or d"),
        ("# energy_keV  counts", "not 2θ, Q or d"),
    ],
)
def test_unknown_axis_units(tmp_path, header, what):
    check(tmp_path, "units.dat", header + "\n" + xy(), what)


def test_absurd_wavelength_in_header(tmp_path):
    check(tmp_path, "lam.xy", "# wavelength = 154.06\n" + xy(), "plausible range")


def test_too_large_file(tmp_path):
    path = tmp_path / "huge.xy"
    with open(path, "wb") as f:
        f.truncate(readers.MAX_FILE_BYTES + 1)  # sparse: costs no disk or time
    with pytest.raises(PatternError, match=r"huge\.xy.*limit"):
        read_pattern(path)


def test_unknown_binary(tmp_path):
    check(tmp_path, "blob.dat", b"\x89PNG\r\n\x1a\n\x00\x00\x00" + bytes(200), "binary")


def test_old_bruker_raw_version(tmp_path):
    check(tmp_path, "old.raw", b"RAW1.01\x00" + bytes(2000), "not supported")


def test_bad_wavelength_argument(tmp_path):
    path = tmp_path / "ok.xy"
    path.write_text(xy())
    with pytest.raises(PatternError, match="ok.xy.*plausible"):
        read_pattern(path, wavelength_A=-1)


def test_batch_continues_past_bad_files(tmp_path):
    good = tmp_path / "good.xy"
    good.write_text(xy())
    bad = tmp_path / "bad.xy"
    bad.write_text("nothing here\n")
    results = list(read_patterns([bad, tmp_path / "missing.xy", good], wavelength_A=1.0))
    assert [type(r).__name__ for _, r in results] == ["PatternError", "PatternError", "Pattern"]
    assert results[2][0] == good and results[2][1].wavelength_A == 1.0
    assert "missing.xy" in str(results[1][1])
