"""PANalytical .xrdml, built in tmp_path."""

import numpy as np
import pytest

from xrdid.readers import PatternError, read_pattern

N = 40
COUNTS = (100 + 10 * np.arange(N)).astype(int)


def xrdml(positions, data_tag="intensities", wavelength=True, extra=""):
    used = (
        """<usedWavelength intended="K-Alpha 1">
      <kAlpha1 unit="Angstrom">1.5405980</kAlpha1>
      <kAlpha2 unit="Angstrom">1.5444260</kAlpha2>
      <kBeta unit="Angstrom">1.3922500</kBeta>
      <ratioKAlpha2KAlpha1>0.5000</ratioKAlpha2KAlpha1>
    </usedWavelength>"""
        if wavelength else ""
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xrdMeasurements xmlns="http://www.xrdml.com/XRDMeasurement/1.5"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" status="Completed">
  <sample type="To be analyzed"><id>s1</id><name>test</name></sample>
  <xrdMeasurement measurementType="Scan" status="Completed" sampleMode="Reflection">
    {used}
    <scan appendNumber="0" mode="Continuous" scanAxis="Gonio" status="Completed">
      <dataPoints>
        {positions}
        <positions axis="Omega" unit="deg">
          <startPosition>5.0</startPosition><endPosition>50.0</endPosition>
        </positions>
        <commonCountingTime unit="seconds">1.0</commonCountingTime>
        <{data_tag} unit="counts">{" ".join(map(str, COUNTS))}</{data_tag}>
        {extra}
      </dataPoints>
    </scan>
  </xrdMeasurement>
</xrdMeasurements>
"""


START_END = """<positions axis="2Theta" unit="deg">
          <startPosition>10.0</startPosition><endPosition>49.0</endPosition>
        </positions>"""


def test_xrdml_start_end_and_wavelengths(tmp_path):
    path = tmp_path / "scan.xrdml"
    path.write_text(xrdml(START_END))
    p = read_pattern(path, wavelength_A=0.5)
    assert p.axis == "two_theta" and p.meta["format"] == "xrdml"
    np.testing.assert_allclose(p.x, np.linspace(10.0, 49.0, N))
    np.testing.assert_allclose(p.y, COUNTS)
    assert p.wavelength_A == pytest.approx(1.540598) and p.meta["wavelength_source"] == "file"
    assert p.meta["kalpha2_A"] == pytest.approx(1.544426)
    assert p.meta["kalpha2_ratio"] == pytest.approx(0.5)


def test_xrdml_list_positions_counts_and_attenuation(tmp_path):
    tt = np.linspace(10.0, 49.0, N)
    pos = (
        '<positions axis="2Theta" unit="deg"><listPositions>'
        + " ".join(f"{t:.4f}" for t in tt) + "</listPositions></positions>"
    )
    extra = "<beamAttenuationFactors>" + " ".join(["2"] * N) + "</beamAttenuationFactors>"
    path = tmp_path / "list.xrdml"
    path.write_text(xrdml(pos, data_tag="counts", wavelength=False, extra=extra))
    p = read_pattern(path)
    np.testing.assert_allclose(p.x, tt, atol=1e-4)
    np.testing.assert_allclose(p.y, 2 * COUNTS)
    assert p.wavelength_A is None  # no usedWavelength: no guess


def test_xrdml_sniffed_under_another_extension(tmp_path):
    path = tmp_path / "scan.txt"
    path.write_text(xrdml(START_END))
    assert read_pattern(path).meta["format"] == "xrdml"


def test_xrdml_without_two_theta_axis(tmp_path):
    path = tmp_path / "omega.xrdml"
    path.write_text(xrdml(""))
    with pytest.raises(PatternError, match=r"omega\.xrdml.*2Theta"):
        read_pattern(path)


def test_xrdml_malformed_xml(tmp_path):
    path = tmp_path / "broken.xrdml"
    path.write_text(xrdml(START_END)[:500])
    with pytest.raises(PatternError, match=r"broken\.xrdml.*XML"):
        read_pattern(path)


# Files that fairmat-readers-xrd 0.0.10's read_panalytical_xrdml refuses or misreads (the reason
# xrdid.readers.xrdml parses XRDML itself; see its docstring).
def test_xrdml_with_per_point_counting_times(tmp_path):
    # Variable counting time scans give <countingTimes> instead of <commonCountingTime>; the library
    # raises AttributeError on them.
    per_point = '<countingTimes unit="seconds">' + " ".join(["1.0"] * N) + "</countingTimes>"
    text = xrdml(START_END).replace('<commonCountingTime unit="seconds">1.0</commonCountingTime>', per_point)
    path = tmp_path / "vct.xrdml"
    path.write_text(text)
    np.testing.assert_allclose(read_pattern(path).y, COUNTS)


def test_xrdml_with_two_scans_reads_the_first(tmp_path):
    # The library raises NotImplementedError ("Scan type multiline is not supported").
    text = xrdml(START_END)
    scan = "<scan " + text.split("<scan ", 1)[1].split("</scan>", 1)[0] + "</scan>"
    second = scan.replace(" ".join(map(str, COUNTS)), " ".join(map(str, 2 * COUNTS)))
    path = tmp_path / "two.xrdml"
    path.write_text(text.replace("</scan>", "</scan>\n    " + second, 1))
    p = read_pattern(path)
    assert p.meta["n_scans"] == 2
    np.testing.assert_allclose(p.y, COUNTS)


def test_xrdml_with_a_corrupt_number_names_the_element(tmp_path):
    # The library raises numpy's "string or file could not be read to its end due to unmatched data".
    path = tmp_path / "corrupt.xrdml"
    path.write_text(xrdml(START_END).replace(" 150 ", " 15O "))
    with pytest.raises(PatternError, match=r"corrupt\.xrdml: non-numeric values in <intensities>"):
        read_pattern(path)
