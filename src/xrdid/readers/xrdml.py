"""PANalytical .xrdml (XML): a 2θ scan with its tube wavelengths.

What is read (namespace-agnostic, any XRDML schema version):

    xrdMeasurement/usedWavelength/{kAlpha1, kAlpha2, kBeta, ratioKAlpha2KAlpha1}
    xrdMeasurement/scan/dataPoints/positions[@axis="2Theta"]/{startPosition, endPosition | listPositions}
    xrdMeasurement/scan/dataPoints/{intensities | counts}   (whitespace-separated numbers)

λ is Kα1 (the Kα2 line is kept in ``meta`` as ``kalpha2_A`` and ``kalpha2_ratio`` for renderers that
model the doublet). Positions given only as start/end are equally spaced, as the instrument records
them. A file with several scans yields the first; ``meta["n_scans"]`` says how many there were.

Why this is parsed here and not by ``fairmat-readers-xrd`` (a dependency, used for .raw, .brml and
.rasx in :mod:`xrdid.readers.vendor`): its ``read_panalytical_xrdml`` (0.0.10) raises AttributeError
on variable-counting-time scans (``<countingTimes>`` instead of ``<commonCountingTime>``),
NotImplementedError on files with more than one scan, numpy's "could not be read to its end" on a
corrupt number, and returns no 2θ axis, without an error, for a scan of another axis. Each of these is
a valid file or a clear error here (tests/readers/test_read_xrdml.py), in ~100 lines of ElementTree.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from .pattern import PatternError, check_wavelength, finalise


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(el, name: str):
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _children(el, name: str):
    return [c for c in el if _local(c.tag) == name]


def _floats(text: str | None, where: str, what: str) -> np.ndarray:
    try:
        return np.array((text or "").split(), dtype=np.float64)
    except ValueError:
        raise PatternError(f"{where}: non-numeric values in <{what}>") from None


def read_xrdml(path, data: bytes):
    """Parse XRDML bytes into a validated 2θ Pattern."""
    where = str(path)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise PatternError(f"{where}: not valid XRDML (XML parse error: {e})") from None
    measurements = [el for el in root.iter() if _local(el.tag) == "xrdMeasurement"]
    if not measurements:
        raise PatternError(f"{where}: no <xrdMeasurement> element; not an XRDML file")
    meas = measurements[0]
    meta: dict = {"format": "xrdml"}

    wavelength = None
    used = _child(meas, "usedWavelength")
    if used is not None:
        def value(name):
            el = _child(used, name)
            try:
                return float(el.text) if el is not None and el.text else None
            except ValueError:
                raise PatternError(f"{where}: <{name}> is not a number: {el.text!r}") from None

        wavelength = check_wavelength(value("kAlpha1"), where, "kAlpha1 wavelength")
        for key, name in (("kalpha2_A", "kAlpha2"), ("kbeta_A", "kBeta"),
                          ("kalpha2_ratio", "ratioKAlpha2KAlpha1")):
            if (v := value(name)) is not None:
                meta[key] = v
        if used.get("intended"):
            meta["intended_wavelength"] = used.get("intended")

    scans = _children(meas, "scan")
    if not scans:
        raise PatternError(f"{where}: the XRDML measurement has no <scan>")
    meta["n_scans"] = len(scans)
    points = _child(scans[0], "dataPoints")
    if points is None:
        raise PatternError(f"{where}: the first <scan> has no <dataPoints>")

    y_el = _child(points, "intensities")
    if y_el is None:
        y_el = _child(points, "counts")
    if y_el is None:
        raise PatternError(f"{where}: no <intensities> or <counts> in the first scan")
    y = _floats(y_el.text, where, _local(y_el.tag))
    meta["intensity_unit"] = y_el.get("unit", "counts")
    att = _child(points, "beamAttenuationFactors")
    if att is not None:
        factors = _floats(att.text, where, "beamAttenuationFactors")
        if factors.shape == y.shape:
            y = y * factors  # counts measured through an attenuator, scaled back

    pos = next((p for p in _children(points, "positions") if p.get("axis") == "2Theta"), None)
    if pos is None:
        raise PatternError(f"{where}: no 2Theta <positions> in the first scan (not a 2θ scan?)")
    unit = pos.get("unit", "deg")
    if unit.lower() not in ("deg", "degree", "degrees"):
        raise PatternError(f"{where}: unknown unit {unit!r} for 2Theta positions (expected deg)")
    listed = _child(pos, "listPositions")
    if listed is not None:
        x = _floats(listed.text, where, "listPositions")
    else:
        start, end = _child(pos, "startPosition"), _child(pos, "endPosition")
        if start is None or end is None:
            raise PatternError(f"{where}: 2Theta positions have neither a list nor start/end")
        a = _floats(start.text, where, "startPosition")
        b = _floats(end.text, where, "endPosition")
        if a.size != 1 or b.size != 1:
            raise PatternError(f"{where}: 2Theta start/end positions are not single numbers")
        x = np.linspace(a[0], b[0], y.size) if y.size > 1 else a
    if x.size != y.size:
        raise PatternError(f"{where}: {x.size} 2θ positions but {y.size} intensities")
    return finalise(x, y, axis="two_theta", path=path, wavelength_A=wavelength, meta=meta)
