"""Column-text readers: plain .xy/.csv, pyFAI 1D and McXtrace Monitor_nD 1D, built in tmp_path."""

import numpy as np
import pytest

from xrdid.readers import PatternError, read_pattern

N = 50
TT = np.linspace(10.0, 60.0, N)
Y = 100.0 + 50.0 * np.exp(-((TT - 30.0) / 0.5) ** 2)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def rows(x=TT, y=Y, sep=" ", extra=None):
    cols = [x, y] + ([extra] if extra is not None else [])
    return "\n".join(sep.join(f"{c[i]:.6f}" for c in cols) for i in range(len(x))) + "\n"


def test_plain_xy_without_header_is_two_theta_and_takes_fallback_wavelength(tmp_path):
    p = read_pattern(write(tmp_path, "a.xy", rows()), wavelength_A=1.5406)
    assert p.axis == "two_theta" and p.meta["axis_assumed"]
    assert p.x.dtype == np.float64 and p.y.dtype == np.float64
    np.testing.assert_allclose(p.x, TT, atol=1e-6)
    np.testing.assert_allclose(p.y, Y, atol=1e-5)
    assert p.wavelength_A == 1.5406 and p.meta["wavelength_source"] == "argument"
    assert p.path.endswith("a.xy")


def test_comments_headers_and_wavelength_in_comment(tmp_path):
    text = (
        "! exported by some software\n; another comment\n% and another\n"
        "Sample: quartz\n# wavelength = 1.5406\n2theta intensity\n" + rows()
    )
    p = read_pattern(write(tmp_path, "b.dat", text), wavelength_A=0.7)
    assert p.wavelength_A == pytest.approx(1.5406)
    assert p.meta["wavelength_source"] == "file"  # the file's λ beats the fallback
    assert p.axis == "two_theta" and "axis_assumed" not in p.meta


@pytest.mark.parametrize(
    "line, expected",
    [
        ("# lambda: 0.7297 A", 0.7297),
        ("# Wavelength (nm) = 0.15406", 1.5406),
        ("# wavelength_A: 1.54056  radiation: x-ray", 1.54056),
        ("# Wavelength: 1.0332e-10", 1.0332),  # pyFAI style, metres without a unit
        ("# energy = 16.99 keV", 12.398419843320026 / 16.99),
        ("# wavelength_A: None  radiation: ", None),
    ],
)
def test_wavelength_spellings(tmp_path, line, expected):
    p = read_pattern(write(tmp_path, "w.xy", line + "\n" + rows()))
    if expected is None:
        assert p.wavelength_A is None
    else:
        assert p.wavelength_A == pytest.approx(expected, rel=1e-6)


def test_csv_with_named_columns_and_units(tmp_path):
    text = "Pos. [°2Th.],Iobs [cts]\n" + rows(sep=",")
    p = read_pattern(write(tmp_path, "c.csv", text), wavelength_A=1.0)
    assert p.axis == "two_theta"
    np.testing.assert_allclose(p.x, TT, atol=1e-6)


def test_semicolon_delimiter_with_decimal_comma(tmp_path):
    text = "2theta;I\n" + rows(sep=";").replace(".", ",")
    p = read_pattern(write(tmp_path, "d.csv", text), wavelength_A=1.0)
    np.testing.assert_allclose(p.x, TT, atol=1e-6)
    np.testing.assert_allclose(p.y, Y, atol=1e-5)


def test_xye_third_column_is_sigma(tmp_path):
    p = read_pattern(write(tmp_path, "e.xye", rows(extra=np.sqrt(Y))), wavelength_A=1.0)
    np.testing.assert_allclose(p.meta["sigma"], np.sqrt(Y), atol=1e-5)


def test_third_column_named_otherwise_is_not_sigma(tmp_path):
    text = "# columns: 2theta_deg  y_obs  y_calc\n" + rows(extra=-Y)
    p = read_pattern(write(tmp_path, "f.xy", text), wavelength_A=1.0)
    assert "sigma" not in p.meta and p.meta["columns"][2] == "y_calc"


def test_descending_file_is_sorted(tmp_path):
    p = read_pattern(write(tmp_path, "g.xy", rows(TT[::-1], Y[::-1])), wavelength_A=1.0)
    np.testing.assert_allclose(p.x, TT, atol=1e-6)
    np.testing.assert_allclose(p.y, Y, atol=1e-5)
    assert p.meta["reversed"]


def test_q_header_in_inverse_nm_is_converted_to_inverse_angstrom(tmp_path):
    q_nm = np.linspace(10.0, 60.0, N)
    p = read_pattern(write(tmp_path, "h.dat", "# q (1/nm)  I\n" + rows(q_nm)))
    assert p.axis == "q"
    np.testing.assert_allclose(p.x, q_nm / 10.0, atol=1e-6)
    np.testing.assert_allclose(p.q(), p.x)  # Q needs no wavelength


def test_d_header(tmp_path):
    d = np.linspace(1.0, 5.0, N)
    p = read_pattern(write(tmp_path, "i.txt", "d (Å)\tintensity\n" + rows(d, sep="\t")))
    assert p.axis == "d"
    np.testing.assert_allclose(p.q(), 2 * np.pi / p.x)


def test_axis_argument_for_unlabelled_file_and_conflict(tmp_path):
    q = np.linspace(1.0, 6.0, N)
    assert read_pattern(write(tmp_path, "j.xy", rows(q)), axis="q").axis == "q"
    labelled = write(tmp_path, "k.xy", "# 2theta  I\n" + rows())
    with pytest.raises(PatternError, match="k.xy.*two_theta.*q"):
        read_pattern(labelled, axis="q")


PYFAI_HEADER = """# == pyFAI calibration ==
# Distance Sample to Detector: 0.2 m
# PONI: 1.000e-01, 1.000e-01
# Wavelength: {wl}
# --> /data/img_0001.edf
# Unit: {unit}
#       {unit}             I          sigma
"""


def test_pyfai_two_theta_with_wavelength_in_metres(tmp_path):
    text = PYFAI_HEADER.format(wl="7.297e-11", unit="2th_deg") + rows(extra=np.sqrt(Y))
    p = read_pattern(write(tmp_path, "p.dat", text))
    assert p.meta["format"] == "pyfai" and p.axis == "two_theta"
    assert p.wavelength_A == pytest.approx(0.7297)
    assert "sigma" in p.meta


def test_pyfai_q_in_inverse_nm(tmp_path):
    q_nm = np.linspace(5.0, 50.0, N)
    text = PYFAI_HEADER.format(wl="1e-10", unit="q_nm^-1") + rows(q_nm, extra=np.sqrt(Y))
    p = read_pattern(write(tmp_path, "q.xy", text))
    assert p.axis == "q"
    np.testing.assert_allclose(p.x, q_nm / 10, atol=1e-6)


def test_pyfai_q_in_inverse_angstrom_and_two_theta_in_radians(tmp_path):
    q = np.linspace(0.5, 5.0, N)
    p = read_pattern(write(tmp_path, "r.dat", PYFAI_HEADER.format(wl="1e-10", unit="q_A^-1") + rows(q)))
    assert p.axis == "q"
    np.testing.assert_allclose(p.x, q, atol=1e-6)
    rad = np.radians(TT)
    p = read_pattern(write(tmp_path, "s.dat", PYFAI_HEADER.format(wl="1e-10", unit="2th_rad") + rows(rad)))
    np.testing.assert_allclose(p.x, TT, atol=1e-4)


MCXTRACE = """# Format: McCode with text headers
# URL: http://www.mccode.org
# Creator: McXtrace 3.1
# Instrument: MARS_powder.instr
# Ncount: 1000000
# Param: lambda={lam}
# Date: Tue Jul 18 12:06:58 2023
# type: array_1d({n})
# Source: MARS_powder (MARS_powder.instr)
# component: Banana
# position: 0 0 1
# title: Longitude [deg] monitor
# Ncount: 1000000
# filename: banana.dat
# statistics: X0=30; dX=5;
# signal: Min=0; Max=150; Mean=100;
# values: 5000 10 1000000
# xvar: {var}
# yvar: (I,I_err)
# xlabel: '{xlabel}'
# ylabel: 'Intensity [Photons/s/bin]'
# xlimits: 10 60
# variables: {var} I I_err N
"""


def test_mcxtrace_angle_monitor(tmp_path):
    body = "\n".join(f"{t:.5f} {y:.5g} {np.sqrt(y):.5g} 100" for t, y in zip(TT, Y)) + "\n"
    text = MCXTRACE.format(lam=0.7297, n=N, var="th", xlabel="Longitude [deg]") + body
    p = read_pattern(write(tmp_path, "banana.dat", text))
    assert p.meta["format"] == "mcxtrace" and p.axis == "two_theta"
    assert p.wavelength_A == pytest.approx(0.7297)
    np.testing.assert_allclose(p.meta["sigma"], np.sqrt(Y), rtol=1e-4)
    assert p.meta["params"]["lambda"] == "0.7297"


def test_mcxtrace_q_monitor(tmp_path):
    q = np.linspace(1.0, 6.0, N)
    body = "\n".join(f"{a:.5f} {y:.5g} {np.sqrt(y):.5g} 100" for a, y in zip(q, Y)) + "\n"
    text = MCXTRACE.format(lam=0.7297, n=N, var="q", xlabel="q [AA^-1]") + body
    p = read_pattern(write(tmp_path, "q_mon.dat", text))
    assert p.axis == "q"
    np.testing.assert_allclose(p.x, q, atol=1e-5)


def test_q_from_two_theta_needs_a_wavelength(tmp_path):
    p = read_pattern(write(tmp_path, "n.xy", rows()))
    assert p.wavelength_A is None
    with pytest.raises(PatternError, match=r"n\.xy.*--wavelength.*--instrument"):
        p.q()
    q = p.q(1.5406)
    expected = 4 * np.pi * np.sin(np.radians(TT / 2)) / 1.5406
    np.testing.assert_allclose(q, expected, rtol=1e-6)


def test_quoted_csv_and_utf16_export(tmp_path):
    text = '"2theta","counts"\n' + "".join(f'"{a:.4f}","{b:.3f}"\n' for a, b in zip(TT, Y))
    p = read_pattern(write(tmp_path, "quoted.csv", text), wavelength_A=1.0)
    np.testing.assert_allclose(p.y, Y, atol=1e-3)
    path = tmp_path / "utf16.txt"
    path.write_bytes(("# 2θ (°)\tI\n" + rows(sep="\t")).encode("utf-16"))
    p = read_pattern(path, wavelength_A=1.0)
    assert p.axis == "two_theta" and "axis_assumed" not in p.meta
    np.testing.assert_allclose(p.x, TT, atol=1e-6)
