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


# Decimal commas and other locales (instrument software in France, Germany… writes them).
def comma_rows(x=TT, y=None, sep="  ", sigma=False, y_fmt="{:.0f}", x_fmt="{:.3f}"):
    """Rows with decimal-comma x and integer counts, as locale-aware exporters write them."""
    y = np.round(Y) if y is None else y
    lines = []
    for a, b in zip(x, y):
        cols = [x_fmt.format(a).replace(".", ","), y_fmt.format(b).replace(".", ",")]
        if sigma:
            cols.append(f"{np.sqrt(b):.2f}".replace(".", ","))
        lines.append(sep.join(cols))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("sep", ["  ", " ", "\t", ";", " ; "])
@pytest.mark.parametrize("sigma", [False, True])
def test_decimal_commas_with_integer_counts(tmp_path, sep, sigma):
    p = read_pattern(write(tmp_path, "comma.xy", comma_rows(sep=sep, sigma=sigma)), wavelength_A=1.0)
    np.testing.assert_allclose(p.x, TT, atol=1e-3)
    np.testing.assert_allclose(p.y, np.round(Y))
    if sigma:
        np.testing.assert_allclose(p.meta["sigma"], np.sqrt(np.round(Y)), atol=5e-3)
    else:
        assert "sigma" not in p.meta


def test_decimal_commas_on_a_coarse_step_are_not_read_as_three_columns(tmp_path):
    # 10,00  300: split on the comma this is x=10, y=0, σ=300, a valid-looking pattern.
    x = np.arange(10.0, 60.0, 1.0)
    y = 300.0 + 10 * np.arange(x.size)
    p = read_pattern(write(tmp_path, "coarse.xy", comma_rows(x, y, x_fmt="{:.2f}")), wavelength_A=1.0)
    np.testing.assert_allclose(p.x, x)
    np.testing.assert_allclose(p.y, y)
    assert p.meta["n_columns"] == 2 and "sigma" not in p.meta


def test_decimal_commas_on_a_fine_step_read_without_a_monotonic_error(tmp_path):
    x = 10.0 + 0.02 * np.arange(200)  # 10,00 10,02 … 13,98: split on commas x would jump back at 11,00
    p = read_pattern(write(tmp_path, "fine.xy", comma_rows(x, np.full(200, 120.0), x_fmt="{:.2f}")), wavelength_A=1.0)
    np.testing.assert_allclose(p.x, x, atol=1e-9)


def test_decimal_comma_file_with_header_and_tabs(tmp_path):
    text = "# Angle\tIntensity\n# wavelength = 1,5406\n" + comma_rows(sep="\t")
    p = read_pattern(write(tmp_path, "tabs.txt", text), wavelength_A=1.0)
    assert p.axis == "two_theta" and p.meta["columns"] == ["Angle", "Intensity"]
    np.testing.assert_allclose(p.x, TT, atol=1e-3)


@pytest.mark.parametrize(
    "line, sep, decimal, expected",
    [
        # thousands separators: dot, space, no-break and narrow no-break spaces with decimal commas;
        # comma and apostrophe with decimal points
        ("12,500  1.234,5", "  ", ",", (12.5, 1234.5)),
        ("12,500;1 234,5", ";", ",", (12.5, 1234.5)),
        ("12,500  1\u00a0234,5", "  ", ",", (12.5, 1234.5)),
        ("12,500\t1\u202f234,5", "\t", ",", (12.5, 1234.5)),
        ("12.5  1,234", "  ", ".", (12.5, 1234.0)),
        ("12.5  1,234.5", "  ", ".", (12.5, 1234.5)),
        ("12.5  1'234.5", "  ", ".", (12.5, 1234.5)),
        ("12.5;1,234.5", ";", ".", (12.5, 1234.5)),
        # three decimals: 1,234 alone could be either, but x (below 1000) settles the decimal mark
        ("12.500  1,234", "  ", ".", (12.5, 1234.0)),
        ("12,500  1.234", "  ", ",", (12.5, 1234.0)),
        # exponents with decimal commas
        ("12,5  1,5E+03", "  ", ",", (12.5, 1500.0)),
        ("1,25E+01;1,5e3", ";", ",", (12.5, 1500.0)),
    ],
)
def test_locale_number_formats(tmp_path, line, sep, decimal, expected):
    # The first row holds the case; the rows after it are in the same locale.
    text = line + "\n" + "".join(f"{20 + i}{decimal}5{sep}7\n" for i in range(12))
    p = read_pattern(write(tmp_path, "loc.xy", text), wavelength_A=1.0)
    assert (p.x[0], p.y[0]) == pytest.approx(expected)
    np.testing.assert_allclose(p.x[1:], 20.5 + np.arange(12))


def test_a_dotted_value_in_a_decimal_comma_file_is_an_error_not_a_thousand(tmp_path):
    # "12.5" in a file of decimal commas would otherwise read as 125 (a dot grouping thousands).
    text = comma_rows(x_fmt="{:.2f}") + "60,50  12.5\n"
    match = r"mixed\.xy: line 51: non-numeric data \(read with decimal commas, as line 1 writes '10,00'\)"
    with pytest.raises(PatternError, match=match):
        read_pattern(write(tmp_path, "mixed.xy", text), wavelength_A=1.0)
    text = rows() + "60.5  1,5\n"  # and the other way round
    with pytest.raises(PatternError, match=r"line 51: non-numeric data \(read with decimal points, as line 1"):
        read_pattern(write(tmp_path, "mixed.xy", text), wavelength_A=1.0)


@pytest.mark.parametrize("nan", ["NaN", "nan", "-nan"])
def test_nan_written_as_text_in_a_decimal_comma_file(tmp_path, nan):
    lines = comma_rows(sep="\t").splitlines()
    lines[7] = lines[7].split("\t")[0] + "\t" + nan
    with pytest.raises(PatternError, match=r"nan\.xy: 1 non-finite \(NaN/inf\) intensity values, the first at point 8"):
        read_pattern(write(tmp_path, "nan.xy", "\n".join(lines) + "\n"), wavelength_A=1.0)


def test_plain_csv_with_spaces_after_commas_is_still_csv(tmp_path):
    text = "".join(f"{a:.4f}, {b:.0f}, {np.sqrt(b):.3f}\n" for a, b in zip(TT, np.round(Y)))
    p = read_pattern(write(tmp_path, "spaced.csv", text), wavelength_A=1.0)
    np.testing.assert_allclose(p.x, TT, atol=1e-4)
    np.testing.assert_allclose(p.meta["sigma"], np.sqrt(np.round(Y)), atol=1e-3)
