"""Column text patterns: .xy/.xye/.dat/.csv/.txt, pyFAI-integrated 1D, McXtrace Monitor_nD 1D.

All three are "comment/header lines, then rows of numbers"; they differ only in what the header says
about the x axis and the wavelength, so one tolerant parser serves them and the header decides:

- comment lines start with ``# ; ! % // * @ '``; non-numeric lines before the first data row are
  header lines; both may name the columns (``2theta``, ``q (nm^-1)``, ``d``, ``Pos. [°2Th.]``…);
- delimiters are whitespace (spaces, tabs), commas or semicolons, decided once for the whole file, and
  so is the decimal mark: decimal commas (``12,5  300``, ``12,5;300``, ``1,5E+03``) and thousands
  separators (``1.234,5``, ``1,234.5``, ``1 234,5``) are read as the file proves them (see ``_dialect``);
- column 1 is x, column 2 the intensity, a third column named like an error (or unnamed) is σ;
- pyFAI writes ``# Unit: 2th_deg | 2th_rad | q_nm^-1 | q_A^-1`` and ``# Wavelength: 1e-10`` (metres);
- McXtrace writes ``# type: array_1d(N)``, ``# xlabel: 'Longitude [deg]'``, ``# variables: th I I_err N``
  and instrument parameters such as ``# Param: lambda=0.7297``.

A file that names no axis is read as 2θ in degrees (``meta["axis_assumed"] = True``), the convention
of every .xy exporter we know; a file that names an axis or unit we cannot convert is an error.
"""

from __future__ import annotations

import csv
import itertools
import re
from dataclasses import dataclass

import numpy as np

from .pattern import Pattern, PatternError, check_wavelength, finalise

COMMENT_PREFIXES = ("#", ";", "!", "%", "//", "*", "@", "'")
HC_KEV_A = 12.398419843320026  # h·c in keV·Å: λ[Å] = 12.3984 / E[keV]

# Axis names, longest alternatives first so that the unit is what remains after removing the name.
_TWO_THETA = re.compile(
    r"two[\s_-]*theta|2[\s_-]*theta|2\s*θ|tth|2[\s_-]*th|longitude|scattering\s*angle|\bangle\b|^th\b|^theta\b|^a\b",
    re.IGNORECASE,
)
_Q = re.compile(r"^q(?=$|[\s_(\[/:,])|\bq\s*[(\[]|momentum\s*transfer|scattering\s*vector", re.IGNORECASE)
_D = re.compile(r"d[\s_-]*spacing|d[\s_-]*value|^d(?=$|[\s_(\[/:,])", re.IGNORECASE)
# Names that are clearly an x axis we cannot use (energy-dispersive, detector radius, azimuth…).
_NOT_DIFFRACTION = re.compile(
    r"^(r|chi|energy|e|kev|ev|pixel|channel|time|tof|t|x_?mm|r_?mm|d\*2|k|wavevector|lambda)(?=$|[\s_(\[])",
    re.IGNORECASE,
)
_SIGMA_NAME = re.compile(r"sig|err|esd|unc|std|^e?sd$|^s$|^e$|^dy$|^di$", re.IGNORECASE)

_WAVELENGTH = re.compile(
    r"(?:wave[\s_-]*length|lambda|λ)(?:[\s_]*[(\[]?\s*(?P<kunit>Å|A|angstroms?|nm|m)\s*[)\]]?)?"
    r"\s*[:=]\s*(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|none|nan|null)"
    r"(?:\s*(?P<vunit>Å|angstroms?|A|nm|m)\b)?",
    re.IGNORECASE,
)
_ENERGY = re.compile(
    r"\benergy\s*[:=]\s*(?P<value>\d+\.?\d*(?:[eE][-+]?\d+)?)\s*(?P<unit>kev|ev)\b", re.IGNORECASE
)
_KEY_VALUE = re.compile(r"^\s*([A-Za-z][\w .-]*?)\s*[:=]\s*(.*?)\s*$")


# Thousands separators that are never column delimiters: no-break, narrow no-break and thin spaces
# (French and other locales), and the apostrophes of Swiss exports; removed between digit groups.
_GROUP_CHARS = "\u00a0\u202f\u2009'’"
_GROUP_SPACE = re.compile(rf"(?<=\d)[{_GROUP_CHARS}](?=\d{{3}}(?!\d))")
_NON_FINITE = re.compile(r"[-+]?(?:nan|inf|infinity)", re.IGNORECASE)
# A line that may be data: digits, signs, exponents, decimal marks, delimiters, quotes, NaN/inf.
_DATA_CHARS = re.compile(r"[\s\d.,;+\-eE\"']*")
_HEAD_LINES = 200  # numeric lines that decide the delimiter


@dataclass(frozen=True)
class _Dialect:
    """How one file writes its numbers: the column delimiter (None: runs of whitespace, tabs included)
    and the decimal mark; the other of ``.`` and ``,`` may group thousands (``1.234,5``, ``1,234.5``).
    ``evidence`` is the (line number, field) that showed the decimal mark, for error messages."""

    delimiter: str | None = None
    decimal: str = "."
    evidence: tuple[int, str] | None = None
    grouped: bool = True  # the text has thousands-separating spaces or apostrophes to remove

    def fields(self, line: str) -> list[str]:
        line = line.strip()
        if self.grouped:
            line = _GROUP_SPACE.sub("", line)
        if self.delimiter is None:
            raw = line.split()
        elif '"' in line:
            raw = next(csv.reader([line], delimiter=self.delimiter, skipinitialspace=True))
        else:
            raw = line.split(self.delimiter)
        out = [f.strip().strip("\"'").strip() for f in raw]
        while out and not out[-1]:  # a trailing delimiter
            out.pop()
        return out

    def number(self, field: str) -> float:
        """The value of one field, or ValueError; thousands groups must be groups of three digits."""
        group = "," if self.decimal == "." else "."
        if group not in field and " " not in field and "_" not in field:
            return float(field if self.decimal == "." else field.replace(",", "."))  # the usual case
        if _NON_FINITE.fullmatch(field):
            return float(field)
        group = "," if self.decimal == "." else "[. ]"
        m = re.fullmatch(
            rf"([-+]?)(\d{{1,3}}(?:{group}\d{{3}})+|\d*)(?:{re.escape(self.decimal)}(\d*))?([eE][-+]?\d+)?",
            field,
        )
        if m is None or not (m.group(2) or m.group(3)):
            raise ValueError(field)
        sign, whole, frac, exp = m.groups()
        return float(f"{sign}{re.sub(r'[^0-9]', '', whole) or '0'}.{frac or '0'}{exp or ''}")

    def numbers(self, line: str) -> list[float] | None:
        try:
            return [self.number(f) for f in self.fields(line)]
        except ValueError:
            return None

    def describe(self) -> str:
        """What a reader of an error message needs to know about how the numbers were read."""
        name = "decimal commas" if self.decimal == "," else "decimal points"
        if self.evidence is None:
            return f"read with {name}"
        return f"read with {name}, as line {self.evidence[0]} writes {self.evidence[1]!r}"


def _looks_numeric(line: str) -> bool:
    line = _NON_FINITE.sub("0", _GROUP_SPACE.sub("", line))
    return _DATA_CHARS.fullmatch(line) is not None and any(c.isdigit() for c in line)


def _decimal_vote(field: str, is_x: bool) -> str | None:
    """The decimal mark one field proves (``"."``, ``","``), or None when it could be either.

    x (2θ in degrees or radians, Q in Å⁻¹ or nm⁻¹, d in Å) is always below 1000, so a single mark in
    the x column is the decimal mark; elsewhere ``1,234`` could be 1.234 or 1234 and proves nothing.
    """
    mantissa, _, exponent = field.lstrip("+-").replace("E", "e").partition("e")
    if "." in mantissa and "," in mantissa:
        return "." if mantissa.rfind(".") > mantissa.rfind(",") else ","
    for mark, other in ((",", "."), (".", ",")):
        if mark in mantissa:
            whole, *groups = mantissa.split(mark)
            if len(groups) > 1:
                return other  # 1,234,567: the mark groups thousands
            if is_x or exponent or not whole.lstrip("0") or len(groups[0]) != 3 or len(whole) > 3:
                return mark  # 12,5 / 1,5E+03 / 0,500 / 1234,567: only a decimal mark reads so
    return None


def _dialect(lines: list[str]) -> _Dialect:
    """The delimiter and decimal mark of a file (``lines``: its non-comment lines), decided once for
    the whole file, so that one line is never read one way and the next another.

    - ``;`` in the data: ``;`` delimits (a European spreadsheet export);
    - else commas, and every comma-separated field is free of inner whitespace: ``,`` delimits;
    - else whitespace (spaces, tabs) delimits, and a comma inside a field is a decimal comma
      (``12,5  300``) or a thousands separator (``12.5  1,234``).

    The first field that proves a decimal mark decides it: ``12,5``, ``1,5E+03``, ``1.234,5`` or any x
    with a comma (``10,000``: x is below 1000) proves decimal commas; ``12.5`` or ``1,234.5`` decimal
    points. A file that proves neither but writes commas uses decimal commas. A later field written
    in the other convention (``12.5`` among decimal commas) is then not a number, and the line an error,
    never a thousand-fold misreading.
    """
    joined = "\n".join(lines)
    grouped = any(c in joined for c in _GROUP_CHARS)
    data = ((n, line.strip()) for n, line in enumerate(lines, start=1) if _looks_numeric(line))
    head = list(itertools.islice(data, _HEAD_LINES))
    if any(";" in line for _, line in head):
        delimiter = ";"
    elif any("," in line for _, line in head) and all(
        not re.search(r"\S\s+\S", f.strip()) for _, line in head for f in line.split(",")
    ):
        return _Dialect(",", ".", grouped=grouped)
    else:
        delimiter = None
    split = _Dialect(delimiter, grouped=grouped)
    commas = False
    for n, line in itertools.chain(head, data):
        commas = commas or "," in line
        fields = split.fields(line)
        if len(fields) < 2:
            continue  # a point count or a date, not a data row
        for i, f in enumerate(fields):
            if (mark := _decimal_vote(f, i == 0)) is not None:
                return _Dialect(delimiter, mark, (n, f), grouped)
    return _Dialect(delimiter, "," if commas else ".", grouped=grouped)


def _header_names(text: str) -> list[str]:
    """Column labels of a header line; labels may contain spaces when the delimiter is not a space."""
    text = text.strip()
    if any(c in text for c in ",;\t"):
        return [t.strip() for t in re.split(r"[,;\t]", text) if t.strip()]
    names: list[str] = []
    for tok in text.split():
        if names and tok[0] in "([{":
            names[-1] += " " + tok  # "2theta (deg)" is one label
        else:
            names.append(tok)
    return names


def _strip_comment(line: str) -> str | None:
    s = line.lstrip()
    for p in COMMENT_PREFIXES:
        if s.startswith(p):
            return s[len(p):].strip()
    return None


def _unit_rest(label: str, match: re.Match) -> str:
    rest = (label[: match.start()] + label[match.end():]).lower()
    rest = rest.replace("å", "a").replace("⁻¹", "^-1").replace("−", "-")
    return re.sub(r"[\s_()\[\]{}:'\"./]+", " ", rest).strip()


def classify_axis(label: str, where: str) -> tuple[str, float | str] | None:
    """``(axis, scale)`` for an x-column label, where x_file × scale gives the package's units
    (``"rad"`` for 2θ in radians); None if the label names no known axis; PatternError if it names a
    known axis in units we cannot convert, or an axis that is not a diffraction angle, Q or d."""
    lab = label.strip().strip("'\"").strip()
    if _NOT_DIFFRACTION.search(lab):
        raise PatternError(
            f"{where}: the x axis is {label!r}, which is not 2θ, Q or d; "
            "xrdid reads angle-dispersive patterns only"
        )
    if m := _Q.search(lab):
        unit = _unit_rest(lab, m)
        # pyFAI "q_nm^-1", "Q (1/nm)", "q [AA^-1]", McXtrace "Angs-1": Å⁻¹ unless nm is said.
        unit = re.sub(r"\^?-1|1 ?|\^|-", " ", unit).split()
        if not unit or unit == ["a"] or unit[0] in ("a", "aa", "angs", "angstrom", "angstroms", "inv"):
            return "q", 1.0
        if unit[0] == "nm":
            return "q", 0.1
        raise PatternError(f"{where}: unknown unit for Q in x label {label!r} (expected Å⁻¹ or nm⁻¹)")
    if m := _TWO_THETA.search(lab):
        unit = _unit_rest(lab, m)
        if re.search(r"\brad", unit) and "deg" not in unit:
            return "two_theta", "rad"
        words = set(unit.split()) - {"pos", "position", "deg", "degs", "degree", "degrees", "°", "°2th", "2th"}
        if not unit or "deg" in unit or "°" in unit or not words:
            return "two_theta", 1.0
        raise PatternError(f"{where}: unknown unit for 2θ in x label {label!r} (expected deg or rad)")
    if m := _D.search(lab):
        unit = _unit_rest(lab, m).split()
        if not unit or unit[0] in ("a", "aa", "angstrom", "angstroms", "angs"):
            return "d", 1.0
        if unit[0] == "nm":
            return "d", 10.0
        raise PatternError(f"{where}: unknown unit for d in x label {label!r} (expected Å or nm)")
    return None


def _wavelength_from_header(lines: list[str], where: str) -> float | None:
    for line in lines:
        if m := _WAVELENGTH.search(line):
            raw = m.group("value")
            if raw.lower() in ("none", "nan", "null"):
                continue
            value = float(raw)
            unit = (m.group("kunit") or m.group("vunit") or "").lower()
            if unit == "nm":
                value *= 10.0
            elif unit == "m" or (not unit and 0 < value < 1e-6):
                value *= 1e10  # pyFAI states λ in metres, often without a unit
            return check_wavelength(value, where, "wavelength in the file header")
        if m := _ENERGY.search(line):
            e_kev = float(m.group("value")) / (1000.0 if m.group("unit").lower() == "ev" else 1.0)
            if e_kev > 0:
                return check_wavelength(HC_KEV_A / e_kev, where, "wavelength from the stated energy")
    return None


def read_text(path, text: str, *, axis: str | None = None) -> Pattern:
    """Parse column text (see module docstring) into a validated Pattern; λ is the file's or None."""
    where = str(path)
    header: list[str] = []       # comment text and non-numeric lines, for metadata
    pre_data: list[str] = []     # the same, but only those before the first data row
    rows: list[list[float]] = []
    ncol = 0
    lines = text.splitlines()
    dialect = _dialect([line if _strip_comment(line) is None else "" for line in lines])
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        comment = _strip_comment(line)
        if comment is not None:
            header.append(comment)
            if not rows:
                pre_data.append(comment)
            continue
        nums = dialect.numbers(line)
        if nums is None or len(nums) < 2:
            if not rows:  # a title, column names, or a point count before the data
                header.append(line.strip())
                pre_data.append(line.strip())
                continue
            what = "non-numeric data" if nums is None else "only one column"
            if nums is None and any(c in line for c in ".,"):
                what += f" ({dialect.describe()})"
            raise PatternError(f"{where}: line {lineno}: {what}: {line.strip()[:80]!r}")
        if not rows:
            ncol = len(nums)
        elif len(nums) != ncol:
            raise PatternError(
                f"{where}: line {lineno}: {len(nums)} columns where earlier rows have {ncol}"
            )
        rows.append(nums)
    if not rows:
        if not header:
            raise PatternError(f"{where}: the file has no data (only blank lines)")
        raise PatternError(f"{where}: no numeric data rows found (is this a diffraction pattern?)")
    data = np.asarray(rows, dtype=np.float64)

    meta: dict = {"format": "text", "n_columns": ncol}
    keys = {}
    for h in header:
        if m := _KEY_VALUE.match(h):
            keys.setdefault(m.group(1).strip().lower(), m.group(2))
    names: list[str] | None = None
    declared: str | None = None  # an explicit axis statement: unknown → error
    if any(h.lower().startswith("type: array_1d") for h in header):
        meta["format"] = "mcxtrace"
        declared = keys.get("xlabel", "").strip().strip("'\"") or None
        if "variables" in keys:
            names = keys["variables"].split()
        if declared is None and names:
            declared = names[0]
        meta["params"] = {
            k.strip(): v.strip()
            for h in header if h.lower().startswith("param:")
            for k, _, v in [h.split(":", 1)[1].partition("=")]
        }
    elif "unit" in keys or any("pyfai" in h.lower() for h in header):
        meta["format"] = "pyfai"
        declared = keys.get("unit") or None
    if "columns" in keys and names is None:
        names = _header_names(keys["columns"])
    if names is None:
        for h in reversed(pre_data):
            cand = _header_names(h)
            if len(cand) >= 2 and dialect.numbers(h) is None and not _KEY_VALUE.match(h):
                names = cand
                break
    if names:
        meta["columns"] = names

    found = None
    if declared is not None:
        found = classify_axis(declared, where)
        if found is None:
            raise PatternError(f"{where}: unknown x axis {declared!r}; expected 2θ, Q or d")
    elif names:
        found = classify_axis(names[0], where)
    if axis is not None:
        if found is not None and found[0] != axis:
            raise PatternError(
                f"{where}: the file says the x axis is {found[0]} but {axis} was requested"
            )
        meta["axis_source"] = "argument"
        if found is None:
            found = (axis, 1.0)
    elif found is None:
        found = ("two_theta", 1.0)
        meta["axis_assumed"] = True
    x_axis, scale = found
    x = data[:, 0]
    x = np.degrees(x) if scale == "rad" else x * scale
    if x_axis == "q" and scale != 1.0:
        meta["x_unit_in_file"] = "nm^-1"

    sigma = None
    if ncol >= 3:
        third = names[2] if names and len(names) >= 3 else None
        if (third is not None and _SIGMA_NAME.search(third)) or (
            third is None and ncol == 3 and np.all(data[:, 2] >= 0)
        ) or meta["format"] == "mcxtrace":
            sigma = data[:, 2]
    wavelength = _wavelength_from_header(header, where)
    return finalise(
        x, data[:, 1], axis=x_axis, path=path, wavelength_A=wavelength, meta=meta, sigma=sigma
    )

