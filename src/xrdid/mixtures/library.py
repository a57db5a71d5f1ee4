"""A library of reference phases for mixture fitting: structures → sticks, cell volume and cell mass.

A library is a folder of CIFs (each data block with a cell and atoms is one phase, id = relative path,
``#i`` appended for the i-th block of a multi-block file) or a structures parquet (columns ``id`` and
``cif``; ``formula`` and ``space_group`` used when present). Partially occupied sites are allowed (a
reference phase may be a solid solution). Sticks are computed once per library and d-range and cached
on disk by content (see :func:`load_library`), because parsing and simulating 100 CIFs takes seconds
while a fit takes about as long.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xrdid.io import atomic_path

log = logging.getLogger(__name__)

# Bump when what is cached (sticks, volumes, masses) would change.
_CACHE_VERSION = 2


class LibraryError(ValueError):
    """The library cannot be used: missing, empty, or no entry could be parsed."""


class NoPhaseOfElements(LibraryError):
    """The library holds no phase made only of the elements asked for (the user's chemistry, not the library,
    is what to change)."""


# Two entries of one formula and space group whose densities differ by at most this are one structure
# (Library.same_structure), their cells within the fit's lattice range of each other (4σ: 2 % in d, about
# 6 % in density). In the shared development library the duplicates of one structure agree within 3 % (rutile
# from three sources 1.5 %, two Li2O refinements 2.9 %) and its one pair of distinct polymorphs of one space
# group (ZrO2 Pnma, orthorhombic-I and cotunnite) differs by 15 %.
SAME_STRUCTURE_DENSITY = 0.05


@dataclass
class LibraryPhase:
    """One reference phase: sticks (d Å, |F|²·m, one representative hkl each) of the cell whose volume (Å³)
    and mass (amu) are given, with what lattice refinement and texture need.

    recip_metric: G* (3×3, Å⁻²), 1/d² = h G* hᵀ for a row h = (h, k, l) in the basis of the CIF's cell.
    rotations: (m, 3, 3) int, the Laue group's rotations acting on rows as h ↦ h R (spglib, symprec 0.01,
        with the inversion), for the symmetry-allowed lattice deformations and texture equivalents.
    """

    id: str
    formula: str
    space_group: int | None
    volume_A3: float
    cell_mass_amu: float
    d: np.ndarray
    f2m: np.ndarray
    hkl: np.ndarray
    recip_metric: np.ndarray
    rotations: np.ndarray


@dataclass
class Library:
    phases: list[LibraryPhase]
    source: str
    d_min_A: float
    errors: list[str] = field(default_factory=list)
    # Renders shared by every pattern on the same grid (see fit._screen_columns).
    screen_cache: dict = field(default_factory=dict, repr=False)
    # Per phase (by index), what rendering it under refinement needs (model.PhaseData): computed once per
    # library, shared by every pattern and hypothesis.
    phase_data: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.phases)

    def same_structure(self, i: int) -> list[int]:
        """The other entries of phase ``i``'s structure: the same formula and space group and a density
        (cell mass over cell volume, whatever cell the CIF chose) within ``SAME_STRUCTURE_DENSITY``. When a
        library holds one structure twice (rutile from two sources), the fit answers one entry and names the
        others: the pattern cannot choose between them beyond their small differences of cell."""
        p = self.phases[i]
        if p.space_group is None:
            return []
        rho = p.cell_mass_amu / p.volume_A3
        return [j for j, q in enumerate(self.phases)
                if j != i and q.formula == p.formula and q.space_group == p.space_group
                and abs(q.cell_mass_amu / q.volume_A3 / rho - 1) <= SAME_STRUCTURE_DENSITY]

    def restricted_to(self, elements) -> Library:
        """The phases made only of ``elements`` (symbols; a chemistry filter such as the elements of the
        weighed precursors). LibraryError naming the elements when no phase is left; ValueError for a
        symbol that is not an element."""
        allowed = parse_elements(elements)
        keep = [p for p in self.phases if formula_elements(p.formula) <= allowed]
        if not keep:
            raise NoPhaseOfElements(f"{self.source}: no library phase is made only of {', '.join(sorted(allowed))}")
        return Library(keep, self.source, self.d_min_A, list(self.errors))


def formula_elements(formula: str) -> frozenset[str]:
    """The element symbols of a chemical formula ("La(HO)3" → {La, H, O})."""
    from pymatgen.core import Composition

    return frozenset(str(e) for e in Composition(formula).elements)


def parse_elements(elements) -> frozenset[str]:
    """Element symbols from an iterable or a comma/space-separated string; ValueError naming a bad one."""
    from pymatgen.core import Element

    if isinstance(elements, str):
        elements = elements.replace(",", " ").split()
    out = set()
    for e in elements:
        e = e.strip()
        if not Element.is_valid_symbol(e):
            raise ValueError(f"{e!r} is not an element symbol")
        out.add(e)
    if not out:
        raise ValueError("no element given")
    return frozenset(out)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "xrdid" / "phases"


def _entries(path: Path) -> list[tuple[str, str]]:
    """(id, CIF text) of every library entry; LibraryError if there is nothing to read."""
    if path.is_dir():
        from xrdid.structures.local import find_cifs

        files = find_cifs(path)
        if not files:
            raise LibraryError(f"{path}: the library folder contains no .cif files")
        out = []
        for f in files:
            rel = f.relative_to(path).as_posix()
            try:
                out.append((rel, f.read_text(encoding="utf-8", errors="replace")))
            except OSError as e:
                out.append((rel, f"#unreadable: {e}"))
        return out
    if path.is_file() and path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:
            raise LibraryError(f"{path}: cannot read the parquet library: {e}") from None
        if "cif" not in table.column_names:
            raise LibraryError(f"{path}: the parquet library has no 'cif' column (columns: {', '.join(table.column_names)})")
        ids = table.column("id").to_pylist() if "id" in table.column_names else [f"row{i}" for i in range(table.num_rows)]
        out = [(str(i), c or "") for i, c in zip(ids, table.column("cif").to_pylist())]
        if not out:
            raise LibraryError(f"{path}: the parquet library has no rows")
        return out
    if path.is_file() and path.suffix.lower() in (".cif", ".mcif"):
        return [(path.name, path.read_text(encoding="utf-8", errors="replace"))]
    if not path.exists():
        raise LibraryError(f"{path}: no such library folder or file")
    raise LibraryError(f"{path}: a library is a folder of CIFs or a structures .parquet")


def _structures(text: str):
    """Every structure in a CIF text (pymatgen), in block order."""
    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns on harmless CIF issues
        parser = CifParser(io.StringIO(text), occupancy_tolerance=1.05)
        structures = parser.parse_structures(primitive=False)
    if not structures:
        raise ValueError("no structure in the CIF")
    return structures


# Default isotropic displacement parameter of hydrogen, as a multiple of the default B of the other atoms:
# the riding-model convention U_iso(H) = 1.5 U_eq of the O it is bonded to (hydroxyl and water hydrogens;
# SHELXL, Sheldrick 2008, Acta Cryst. A64, 112-122).
HYDROGEN_B_FACTOR = 1.5


def _cif_number(value) -> float | None:
    """A CIF number without its standard uncertainty ("0.0111(15)" → 0.0111); None for '.', '?' or text."""
    try:
        return float(str(value).split("(")[0])
    except ValueError:
        return None


def _column(data: dict, name: str) -> list | None:
    """A loop column of a pymatgen CifBlock's data (names compared case-insensitively), as a list."""
    for key, value in data.items():
        if key.lower() == name:
            return value if isinstance(value, list) else [value]
    return None


def stated_displacements(block: dict, lattice) -> dict[str, float]:
    """The isotropic displacement parameter B (Å²) each atom site of a CIF block states, by site label.

    ``block``: a pymatgen ``CifBlock.data``; ``lattice``: the block's pymatgen Lattice. From
    ``_atom_site_B_iso_or_equiv`` or ``_atom_site_U_iso_or_equiv`` (B = 8π² U); for a site stating neither
    ('.' or '?'), the equivalent isotropic value of its anisotropic parameters (``_atom_site_aniso_U_ij``,
    ``_B_ij`` or ``_beta_ij``): B_eq = 8π²/3 Σ_ij U^ij a*_i a*_j a_i·a_j (Fischer & Tillmanns 1988, Acta Cryst.
    C44, 775), with β_ij = 2π² a*_i a*_j U^ij. Sites stating nothing usable are left out.
    """
    out: dict[str, float] = {}
    labels = _column(block, "_atom_site_label")
    if labels:
        for name, scale in (("_atom_site_b_iso_or_equiv", 1.0), ("_atom_site_u_iso_or_equiv", 8 * np.pi**2)):
            values = _column(block, name)
            if values is None:
                continue
            for label, value in zip(labels, values):
                b = _cif_number(value)
                if b is not None and b > 0 and label not in out:
                    out[label] = b * scale
    aniso = _column(block, "_atom_site_aniso_label")
    if aniso:
        metric = np.asarray(lattice.metric_tensor, float)  # a_i·a_j
        astar = np.asarray(lattice.reciprocal_lattice_crystallographic.abc, float)
        for kind in ("u", "b", "beta"):
            cols = {ij: _column(block, f"_atom_site_aniso_{kind}_{ij}") for ij in ("11", "22", "33", "12", "13", "23")}
            if any(c is None for c in cols.values()):
                continue
            for n, label in enumerate(aniso):
                if label in out:
                    continue
                t = np.zeros((3, 3))
                ok = True
                for ij, col in cols.items():
                    v = _cif_number(col[n])
                    if v is None:
                        ok = False
                        break
                    i, j = int(ij[0]) - 1, int(ij[1]) - 1
                    t[i, j] = t[j, i] = v
                if not ok:
                    continue
                if kind == "beta":  # β_ij = 2π² a*_i a*_j U^ij: B_eq = 4/3 Σ β_ij a_i·a_j
                    b = 4.0 / 3.0 * float((t * metric).sum())
                else:
                    b = float((t * np.outer(astar, astar) * metric).sum()) / 3.0
                    if kind == "u":
                        b *= 8 * np.pi**2
                if b > 0:
                    out[label] = b
    return out


def element_displacements(structure, stated: dict[str, float], default_B: float) -> dict[str, float]:
    """B (Å²) per element of ``structure`` for :func:`compute_sticks`' ``debye_waller``: the mean over the
    element's sites (weighted by occupancy) of the B its CIF site states (``stated``, by site label), else
    ``default_B`` (``HYDROGEN_B_FACTOR`` times it for hydrogen)."""
    total: dict[str, float] = {}
    weight: dict[str, float] = {}
    for site in structure:
        b_site = stated.get(getattr(site, "label", None))
        for sp, occ in site.species.items():
            el = sp.symbol
            b = b_site if b_site is not None else default_B * (HYDROGEN_B_FACTOR if el in ("H", "D") else 1.0)
            total[el] = total.get(el, 0.0) + occ * b
            weight[el] = weight.get(el, 0.0) + occ
    return {el: total[el] / weight[el] for el in total if weight[el] > 0}


def _blocks_of(text: str, structures) -> list:
    """The CIF block (pymatgen ``CifBlock.data``) each structure was read from: the first unused block in
    file order whose atom-site labels include all of the structure's (None where none does)."""
    from pymatgen.io.cif import CifFile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = [b.data for b in CifFile.from_str(text).data.values()]
    except Exception as exc:  # the structures were read: only the displacements are lost
        log.debug("CIF blocks not readable for displacements (%s)", exc)
        return [None] * len(structures)
    out, used = [], set()
    for s in structures:
        labels = {getattr(site, "label", None) for site in s}
        pick = None
        for i, b in enumerate(blocks):
            if i not in used and labels <= set(_column(b, "_atom_site_label") or ()):
                pick = i
                break
        if pick is not None:
            used.add(pick)
        out.append(blocks[pick] if pick is not None else None)
    return out


def _phase_from_structure(pid: str, structure, d_min: float, anomalous=None, debye_waller=None) -> LibraryPhase:
    from xrdid.simulate.sticks import compute_sticks

    sticks = compute_sticks(structure, d_min, anomalous=anomalous, debye_waller=debye_waller)
    if len(sticks) == 0:
        raise ValueError(f"no reflection with d ≥ {d_min:.3f} Å")
    comp = structure.composition
    sg = None
    try:
        sg = int(structure.get_space_group_info(symprec=0.1)[1])
    except Exception as exc:  # the space group is informative only
        log.debug("%s: no space group at symprec 0.1 (%s)", pid, exc)
    lattice = np.array(structure.lattice.matrix, dtype=np.float64)
    recip = np.linalg.inv(lattice).T  # rows a*, b*, c*
    return LibraryPhase(
        id=pid, formula=comp.reduced_formula, space_group=sg, volume_A3=float(structure.volume),
        cell_mass_amu=float(comp.weight), d=np.asarray(sticks.d, float), f2m=np.asarray(sticks.f2m, float),
        hkl=np.asarray(sticks.hkl, np.int32), recip_metric=recip @ recip.T, rotations=_laue_rotations(structure),
    )


def _laue_rotations(structure) -> np.ndarray:
    """The Laue group (point group + inversion) as integer matrices acting on hkl rows, h ↦ h R.

    spglib's rotations W act on fractional coordinates x ↦ W x; h·x is invariant when h ↦ h W⁻¹, and
    the group contains W⁻¹ with W, so {W} acting on rows is the same set. Only the identity and the
    inversion if spglib finds nothing (the lattice is then refined as triclinic: never wrongly constrained).
    """
    import spglib

    # One type per distinct site occupancy (a mixed site is its own type).
    kinds: dict[str, int] = {}
    types = [kinds.setdefault(str(sorted(site.species.as_dict().items())), len(kinds) + 1) for site in structure]
    cell = (structure.lattice.matrix, structure.frac_coords, types)
    rots = None
    try:
        sym = spglib.get_symmetry(cell, symprec=0.01)
        if sym is not None:
            rots = np.asarray(sym["rotations"], dtype=np.int32)
    except Exception as exc:  # spglib raises on degenerate cells
        log.debug("spglib failed (%s): triclinic constraints", exc)
    if rots is None or len(rots) == 0:
        rots = np.eye(3, dtype=np.int32)[None]
    rots = np.concatenate([rots, -rots])
    return np.unique(rots.reshape(len(rots), 9), axis=0).reshape(-1, 3, 3)


def load_library(
    path: str | os.PathLike, d_min_A: float, *, cache_dir: str | os.PathLike | None = None,
    wavelength_A: float | None = None, displacement_B: float | None = None,
) -> Library:
    """Load a CIF folder or structures parquet and simulate its sticks down to ``d_min_A`` (Å).

    With ``wavelength_A`` (the pattern's, Kα1 for a tube), the sticks include the elements' anomalous
    dispersion f′ + i f″ there (:mod:`xrdid.simulate.dispersion`); with None, f0 alone. With ``displacement_B``
    (Å²), the sticks include a Debye–Waller factor exp(−B s²) per element: B from the CIF's own displacement
    parameters where it states them (:func:`stated_displacements`), else ``displacement_B``
    (``HYDROGEN_B_FACTOR`` times it for H; :func:`element_displacements`); with None, B = 0 for every atom.
    With ``cache_dir``, each entry's result is cached under the
    SHA-1 of its CIF text, the d_min, the dispersion's wavelength, the default B and :data:`_CACHE_VERSION`: a second
    call parses nothing. Entries that fail are reported in ``Library.errors`` (one line each, naming
    the entry); LibraryError if none is usable.
    """
    from xrdid.simulate.dispersion import anomalous_for

    path = Path(path)
    entries = _entries(path)
    anomalous = anomalous_for(wavelength_A) if wavelength_A else None
    tag = ""
    if anomalous is not None:
        tag = f"|f'@{float(wavelength_A):.6f}"
    if displacement_B is not None:
        if not (displacement_B >= 0 and np.isfinite(displacement_B)):
            raise ValueError(f"displacement_B must be a finite B ≥ 0 (Å²), got {displacement_B}")
        tag += f"|B{float(displacement_B):.6f}"
    cache: dict = {}
    cache_file = None
    if cache_dir is not None:
        key = hashlib.sha1(f"{path.resolve()}|{d_min_A:.6f}|{_CACHE_VERSION}{tag}".encode()).hexdigest()[:16]
        cache_file = Path(cache_dir) / f"{key}.npz"
        cache = _read_cache(cache_file)
    phases, errors, fresh = [], [], {}
    for pid, text in entries:
        h = hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()
        if h in cache:
            phases.extend(LibraryPhase(**{**p, "id": pid if i == 0 else f"{pid}#{i}"}) for i, p in enumerate(cache[h]))
            fresh[h] = cache[h]
            continue
        try:
            structures = _structures(text)
            blocks = _blocks_of(text, structures) if displacement_B is not None else [None] * len(structures)
            got = [
                _phase_from_structure(
                    pid if i == 0 else f"{pid}#{i}", s, d_min_A, anomalous,
                    None if displacement_B is None else element_displacements(
                        s, stated_displacements(b, s.lattice) if b is not None else {}, displacement_B),
                )
                for i, (s, b) in enumerate(zip(structures, blocks))
            ]
        except Exception as e:
            errors.append(f"{path}: {pid}: {type(e).__name__}: {e}")
            continue
        phases.extend(got)
        fresh[h] = [{k: v for k, v in p.__dict__.items() if k != "id"} for p in got]
    if not phases:
        raise LibraryError(f"{path}: no usable phase in the library ({len(errors)} failed: " + "; ".join(errors[:3]) + ")")
    if cache_file is not None and fresh.keys() != cache.keys():
        _write_cache(cache_file, fresh)
    for e in errors:
        log.warning("%s", e)
    return Library(phases=phases, source=str(path), d_min_A=d_min_A, errors=errors)


_ARRAYS = ("d", "f2m", "hkl", "recip_metric", "rotations")


def _read_cache(file: Path) -> dict:
    try:
        with np.load(file, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            out = {}
            for h, items in meta.items():
                out[h] = [{**m, **{k: z[f"{h}_{i}_{k}"] for k in _ARRAYS}} for i, m in enumerate(items)]
            return out
    except FileNotFoundError:
        return {}
    except Exception as e:
        log.warning("ignoring unreadable phase cache %s: %s", file, e)
        return {}


def _write_cache(file: Path, entries: dict) -> None:
    arrays, meta = {}, {}
    for h, items in entries.items():
        meta[h] = []
        for i, p in enumerate(items):
            meta[h].append({k: v for k, v in p.items() if k not in _ARRAYS})
            for k in _ARRAYS:
                arrays[f"{h}_{i}_{k}"] = p[k]
    try:
        # A file object: np.savez would append ".npz" to the temporary name.
        with atomic_path(file) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
    except OSError as e:  # a read-only home must not stop the fit
        log.warning("cannot write the phase cache %s: %s", file, e)
