"""CIF text to crystal arrays, fast: gemmi (the C++ CIF reader) first, pymatgen when gemmi cannot.

:func:`read_cif_text` / :func:`read_cif_file` give one :class:`CifEntry` per ``data_`` block, with the
block's :class:`~xrdid.structures.crystal.Crystal` (every site of the cell, expanded by the block's
symmetry operations) or the reason it has none; :func:`rows_from_cif` turns them into rows of the
structures table. Any structure source that has CIFs (a folder, a package's data) can call them.

How a block becomes a crystal:

* Blocks are split at ``data_`` lines and read one by one, so one malformed block spoils only itself.
  A block with neither a cell nor atom sites (the publication block of IUCr CIFs, a measured powder
  pattern) is skipped, not failed.
* gemmi reads the cell (all six parameters required), the atom sites (fractional coordinates,
  occupancy, type symbol or else label) and the symmetry: the block's own operations
  (``_space_group_symop_operation_xyz`` or ``_symmetry_equiv_pos_as_xyz``), else its Hall or
  Hermann-Mauguin symbol, else its space-group number; with none of them the block is taken as P1, as
  pymatgen does.
* Coordinates written as thirds to finite precision (0.3333) are set to 1/3 and 2/3, as pymatgen does.
* Every site is mapped through every operation; images of one site closer than :data:`MERGE_A` (Å) are
  one atom (the first image is kept, i.e. the site as written). Sites are never merged with other
  sites: two atoms of a substitutionally disordered site stay two entries at one position.
* An atom type that is not an element ("OH", "H2O", "NH4") is a failure with that reason, not a guess.
* When gemmi cannot read a block at all (CIF syntax it rejects, symmetry operations it cannot parse),
  pymatgen's parser tries; if it fails too, the reason recorded is pymatgen's, with gemmi's beside it.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xrdid.structures.crystal import Crystal, crystal_from_structure, element_of_type_symbol, element_symbol, grid_keys

log = logging.getLogger(__name__)

# Images of one site closer than this (Å) are the same atom. Coordinates printed with 3-4 decimals put
# the images of an atom on a special position up to ~0.03 Å apart; distinct atoms are > 0.3 Å apart
# (measured on the 1,092 AFLOW-encyclopedia CIFs: the same atom count for any value in 0.001-0.1 Å,
# and the one count that changes above that is a structure whose two atoms are 0.36 Å apart).
MERGE_A = 0.05
# Coordinates within this relative distance of 1/3 or 2/3 are taken as exactly that (as pymatgen does).
THIRDS_TOL = 1e-4
# Tags that carry the space-group number the CIF's authors gave (CIF1 and CIF2/mmCIF spellings).
SPACE_GROUP_TAGS = (
    "_space_group_it_number",
    "_space_group.it_number",
    "_symmetry_int_tables_number",
    "_symmetry.int_tables_number",
)
_CELL_TAGS = ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma")
# A block is a structure when a line starts (after blanks) with one of these tags (any letter case).
_STRUCTURE_TAGS = ("_cell_length", "_cell.length", "_atom_site_", "_atom_site.")


@dataclass(frozen=True, eq=False)
class CifEntry:
    """One ``data_`` block of a CIF.

    index: the block's position in the file (from 0, every block counted). name: the block name.
    text: the block's own text (provenance). crystal: its arrays, or None. space_group_source: the
    number the block states, if any. error: why there is no crystal (None when there is one, or when
    the block was skipped). skipped: a metadata-only block, not a structure. reader: "gemmi" or
    "pymatgen" (the fallback).
    """

    index: int
    name: str
    text: str
    crystal: Crystal | None = None
    space_group_source: int | None = None
    error: str | None = None
    skipped: bool = False
    reader: str = "gemmi"


class _Unreadable(Exception):
    """gemmi cannot read the block (syntax, unparseable operations): pymatgen gets to try."""


class _Unusable(ValueError):
    """The block reads but cannot be a crystal (missing cell, no sites, not an element...): final."""


def read_cif_file(path: str | os.PathLike) -> list[CifEntry]:
    """Every block of the CIF file at ``path`` (UTF-8, else Latin-1). Raises OSError if it cannot be read."""
    return read_cif_text(decode_cif(Path(path).read_bytes()))


def decode_cif(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Older CIFs from vendor software are often Latin-1; every byte sequence decodes in it.
        return data.decode("latin-1")


def read_cif_text(text: str) -> list[CifEntry]:
    """Every block of a CIF given as text; an empty list when it has no ``data_`` block."""
    starts = _line_starts(text, "data_", " \t\r\f\v")
    pieces = [text[a:b].strip() + "\n" for a, b in zip(starts, [*starts[1:], len(text)])]
    return [_read_block(index, piece) for index, piece in enumerate(pieces)]


def _line_starts(text: str, token: str, blanks: str, *, first: bool = False) -> list[int]:
    """Offsets of the lines on which ``token`` comes first, after only ``blanks`` (the offset is the
    line's start). With ``first``, at most one. str.find and a look back: far cheaper than a multiline
    regular expression on the long CIFs of large cells."""
    found = []
    at = text.find(token)
    while at >= 0:
        line = text.rfind("\n", 0, at) + 1
        if not text[line:at].strip(blanks):
            found.append(line)
            if first:
                break
        at = text.find(token, at + len(token))
    return found


def rows_from_cif(
    cif: str | os.PathLike,
    *,
    id: str,
    source: str,
    symprec: float = 0.01,
) -> tuple[list[dict], list[dict], int]:
    """Rows of the structures table from a CIF file (a path) or CIF text (a ``str`` of several lines).

    Each structure block gets the id ``f"{id}#{block index}"``; its ``cif`` column is the block's own
    text and ``space_group_source`` the number it states. Returns ``(rows, failures, n_skipped)``:
    failures are ``{id, source, reason}`` records; skipped blocks are metadata-only.
    """
    from xrdid.structures.table import StructureError, describe_crystal

    if isinstance(cif, str) and "\n" in cif:
        entries, what = read_cif_text(cif), "CIF text"
    else:
        try:
            entries, what = read_cif_file(cif), str(cif)
        except OSError as exc:
            return [], [{"id": f"{id}#0", "source": source, "reason": f"unreadable file: {describe_error(exc)}"}], 0
    if not entries:
        return [], [{"id": f"{id}#0", "source": source, "reason": "unparseable CIF: no data_ block"}], 0
    rows, failures, skipped = [], [], 0
    for entry in entries:
        entry_id = f"{id}#{entry.index}"
        if entry.skipped:
            log.debug("%s (%s): block data_%s has no cell or atom sites; skipped", entry_id, what, entry.name)
            skipped += 1
            continue
        if entry.crystal is None:
            failures.append({"id": entry_id, "source": source, "reason": entry.error})
            continue
        try:
            rows.append(
                describe_crystal(
                    entry.crystal,
                    id=entry_id,
                    source=source,
                    symprec=symprec,
                    space_group_source=entry.space_group_source,
                    cif=entry.text,
                )
            )
        except StructureError as exc:
            failures.append({"id": entry_id, "source": source, "reason": str(exc)})
    return rows, failures, skipped


def _read_block(index: int, piece: str) -> CifEntry:
    name = piece[5:].split(None, 1)[0] if len(piece) > 5 else ""
    lowered = piece.lower()
    if "powder_pattern" in name or not any(_line_starts(lowered, tag, " \t", first=True) for tag in _STRUCTURE_TAGS):
        # Measured-pattern blocks (Pauling file; pymatgen skips them too) and publication blocks.
        return CifEntry(index, name, piece, skipped=True)
    try:
        crystal, stated = _read_with_gemmi(piece)
        return CifEntry(index, name, piece, crystal, stated)
    except _Unusable as exc:
        return CifEntry(index, name, piece, error=f"unparseable CIF block: {exc}")
    except _Unreadable as exc:
        gemmi_reason = str(exc)
    try:
        structure, stated = _read_with_pymatgen(piece)
    except _Unusable as exc:
        return CifEntry(index, name, piece, error=f"unparseable CIF block: {exc} (gemmi: {gemmi_reason})", reader="pymatgen")
    log.debug("block %d (data_%s): gemmi could not read it (%s); read by pymatgen", index, name, gemmi_reason)
    return CifEntry(index, name, piece, crystal_from_structure(structure), stated, reader="pymatgen")


# -- gemmi -------------------------------------------------------------------------------------------


def _read_with_gemmi(piece: str) -> tuple[Crystal, int | None]:
    import gemmi

    try:
        block = gemmi.cif.read_string(piece).sole_block()
    except Exception as exc:  # gemmi raises ValueError/RuntimeError on syntax it rejects
        raise _Unreadable(describe_error(exc)) from None
    cell = []
    for tag in _CELL_TAGS:
        raw = block.find_value(f"_cell_{tag}")
        if raw is None:
            raw = block.find_value(f"_cell.{tag}")
        if raw is None:
            raise _Unusable(f"missing CIF tag _cell_{tag}")
        value = gemmi.cif.as_number(raw)
        if not math.isfinite(value):
            raise _Unusable(f"_cell_{tag} is not a number: {raw!r}")
        cell.append(value)
    stated = stated_space_group(block.find_value)
    structure = gemmi.make_small_structure_from_block(block)
    if not structure.sites:
        raise _Unusable("no atom sites (a loop of _atom_site_label and _atom_site_fract_x, _y, _z) in the block")

    has_type = bool(block.find_values("_atom_site_type_symbol")) or bool(block.find_values("_atom_site.type_symbol"))
    symbols, coords, occupancies = [], [], []
    for site in structure.sites:
        if has_type:
            try:
                symbols.append(element_of_type_symbol(site.type_symbol))
            except ValueError as exc:
                raise _Unusable(f"atom site {site.label}: {exc}") from None
        else:
            if site.element.atomic_number == 0:
                raise _Unusable(f"atom site label {site.label!r} does not start with an element and there is no _atom_site_type_symbol")
            symbols.append(element_symbol(site.element.name))
        coords.append(site.fract.tolist())
        occupancies.append(site.occ)
    coords = np.asarray(coords, dtype=np.float64)
    occupancies = np.asarray(occupancies, dtype=np.float64)
    if not np.isfinite(coords).all():
        bad = structure.sites[int(np.flatnonzero(~np.isfinite(coords).all(axis=1))[0])].label
        raise _Unusable(f"atom site {bad} has a coordinate that is not a number")
    if not np.isfinite(occupancies).all():
        occupancies = np.where(np.isfinite(occupancies), occupancies, 1.0)  # '?' or '.': unknown, taken as full
    coords = snap_thirds(coords)

    rotations, translations = _symmetry_operations(structure, stated)
    lattice = _lattice_matrix(*cell)
    species, frac, occ = expand_sites(lattice, symbols, coords, occupancies, rotations, translations)
    return Crystal(lattice, tuple(species), frac, occ), stated


def _symmetry_operations(structure, stated: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(rotations (m, 3, 3), translations (m, 3)) from the block's operations, symbol or number.

    Read-only arrays, shared by every block with the same operations (see :func:`_seitz`).
    """
    if structure.symops:
        return _seitz(("ops", tuple(dict.fromkeys(structure.symops))))
    if structure.spacegroup is not None:
        return _seitz(("hall", structure.spacegroup.hall))
    if structure.spacegroup_hm.strip() or structure.spacegroup_hall.strip():
        symbol = structure.spacegroup_hall.strip() or structure.spacegroup_hm.strip()
        raise _Unreadable(f"space-group symbol {symbol!r} not recognised and no symmetry operations listed")
    if stated is not None:
        return _seitz(("number", stated))
    return _seitz(("ops", ("x,y,z",)))  # no symmetry given: P1, as pymatgen assumes


@functools.lru_cache(maxsize=4096)
def _seitz(source: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The operations of ``("ops", (xyz strings...))``, ``("hall", symbol)`` or ``("number", n)`` as
    (rotations, translations), the identity first. Cached: CIFs of one space group repeat the same
    operations, and turning them into matrices costs more than expanding the sites."""
    import gemmi

    kind, value = source
    if kind == "ops":
        try:
            ops = [gemmi.Op(op) for op in value]
        except Exception as exc:  # gemmi cannot parse an operation: let pymatgen try
            raise _Unreadable(f"symmetry operation: {describe_error(exc)}") from None
    elif kind == "hall":
        ops = list(gemmi.symops_from_hall(value))  # the order of SpaceGroup.operations()
    else:
        ops = list(gemmi.find_spacegroup_by_number(value).operations())
    seitz = np.array([op.float_seitz() for op in ops], dtype=np.float64)[:, :3, :]
    # The identity first, so that the image kept of each atom is the site as the CIF writes it.
    identity = np.flatnonzero((seitz == np.eye(4)[:3]).all(axis=(1, 2)))
    if len(identity) and identity[0] != 0:
        seitz = seitz[np.r_[identity[0], np.delete(np.arange(len(seitz)), identity[0])]]
    rotations, translations = np.ascontiguousarray(seitz[:, :, :3]), np.ascontiguousarray(seitz[:, :, 3])
    rotations.flags.writeable = False
    translations.flags.writeable = False
    return rotations, translations


def _lattice_matrix(a: float, b: float, c: float, alpha: float, beta: float, gamma: float) -> np.ndarray:
    """Rows a, b, c (Å) of the cell with these parameters: a along x, b in the xy plane.

    Degenerate parameters (zero length, angles that close the cell) give a singular or non-finite
    matrix; the caller's volume check reports them.
    """
    ca, cb, cg = (math.cos(math.radians(x)) for x in (alpha, beta, gamma))
    sg = math.sin(math.radians(gamma))
    if abs(sg) < 1e-12:
        return np.full((3, 3), np.nan)
    cx = c * cb
    cy = c * (ca - cb * cg) / sg
    cz2 = c * c - cx * cx - cy * cy
    cz = math.sqrt(cz2) if cz2 > 0 else 0.0
    return np.array([[a, 0.0, 0.0], [b * cg, b * sg, 0.0], [cx, cy, cz]], dtype=np.float64)


def expand_sites(
    lattice: np.ndarray,
    species: list[str],
    frac: np.ndarray,
    occupancies: np.ndarray,
    rotations: np.ndarray,
    translations: np.ndarray,
    merge_A: float = MERGE_A,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every atom of the cell: each site through each operation, wrapped into [0, 1), its images
    closer than ``merge_A`` (Å) counted once (the first, i.e. the site as written when the identity
    comes first). Returns species, fractional coordinates (n, 3) and occupancies, site by site."""
    if len(rotations) == 1 and np.array_equal(rotations[0], np.eye(3)) and not translations.any():
        return list(species), frac.copy(), occupancies.copy()  # P1: nothing to expand
    images = np.einsum("mij,sj->smi", rotations, frac) + translations[None]  # (sites, ops, 3)
    images -= np.floor(images)
    images[images >= 1.0 - 1e-12] = 0.0  # -1e-17 wraps to 1.0 in floating point
    keep = ~_repeated_images(images, lattice, merge_A)
    counts = keep.sum(axis=1)
    out_species = [symbol for symbol, n in zip(species, counts.tolist()) for _ in range(n)]
    return out_species, images[keep], np.repeat(occupancies, counts)


# Largest sites x operations² for which _repeated_images compares all pairs of a site's images.
_ALL_PAIRS_MAX = 16384


@functools.lru_cache(maxsize=64)
def _later(n: int) -> np.ndarray:
    """(n, n) mask of the pairs (i, j) with i < j."""
    mask = np.triu(np.ones((n, n), dtype=bool), 1)
    mask.flags.writeable = False
    return mask


def _repeated_images(images: np.ndarray, lattice: np.ndarray, merge_A: float) -> np.ndarray:
    """(sites, ops) mask of images that lie within ``merge_A`` (Å) of an earlier image of the same site.

    Few images (sites x ops² up to ``_ALL_PAIRS_MAX``): all pairs of each site's images. Else not all
    pairs (ops² per site): two images closer than merge_A differ in each fractional coordinate
    i by less than merge_A |a*_i|, so candidates are found by sorting on x (with periodic copies near
    0 and 1) and taking each image's neighbours within that x window; their y, z and then the exact
    distance are checked, after the images on one point of a 1e-9 grid are counted once (so the
    result can differ from all pairs only for a pair within ~1e-9 of a cell edge of merge_A apart).
    """
    n_sites, n_ops, _ = images.shape
    if n_sites * n_ops * n_ops <= _ALL_PAIRS_MAX:
        # Few images: every pair of one site's images at once (fewer, larger numpy calls; same result).
        d = images[:, :, None, :] - images[:, None, :, :]  # [site, i, j] = image i - image j
        d -= np.rint(d)
        cart = d.reshape(-1, 3) @ lattice
        close = np.einsum("ij,ij->i", cart, cart).reshape(n_sites, n_ops, n_ops) < merge_A * merge_A
        close &= _later(n_ops)
        return close.any(axis=1)
    flat = images.reshape(-1, 3)
    site = np.repeat(np.arange(n_sites), n_ops)
    # An atom on a special position has many images on one point (192 operations, a handful of
    # points): images on one point of the 1e-9 grid (grid_keys) are within 1e-9 x the cell of each
    # other, so all but the first are repeated, and only the first of each point goes into the search.
    keys = grid_keys(flat)
    # The first image of each (site, point): a stable lexsort (site ids ascend already), then the
    # positions where the key changes (np.unique(axis=0) does the same through a slower row sort).
    order = np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0], site))
    ordered = keys[order]
    new = np.empty(len(order), dtype=bool)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1]).any(axis=1, out=new[1:])
    new[1:] |= site[order[1:]] != site[order[:-1]]
    distinct = np.sort(order[new])
    repeated = np.ones(len(flat), dtype=bool)
    repeated[distinct] = False
    close_pairs = _close_later_images(flat[distinct], site[distinct], lattice, merge_A)
    repeated[distinct[close_pairs]] = True
    return repeated.reshape(n_sites, n_ops)



def _close_later_images(flat: np.ndarray, site: np.ndarray, lattice: np.ndarray, merge_A: float) -> np.ndarray:
    """Indices j of the images (rows of ``flat``, site ids ``site`` ascending) within ``merge_A`` (Å) of
    an earlier image i < j of the same site, by the sorted-window search of :func:`_repeated_images`."""
    window = merge_A * np.linalg.norm(np.linalg.inv(lattice), axis=0)  # |a*_i| merge_A, per axis
    x = flat[:, 0]
    low, high = np.flatnonzero(x < window[0]), np.flatnonzero(x > 1.0 - window[0])
    index = np.concatenate([np.arange(len(flat)), low, high])
    # Sites 4 apart on the key: x (with copies) spans (-1, 2), so windows never join two sites.
    key = (site * 4.0)[index] + np.concatenate([x, x[low] + 1.0, x[high] - 1.0])
    order = np.argsort(key, kind="stable")
    key, index = key[order], index[order]
    first = np.searchsorted(key, key - window[0], side="left")
    last = np.searchsorted(key, key + window[0], side="right")
    counts = last - first
    a = np.repeat(np.arange(len(key)), counts)
    b = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts - first, counts)
    i, j = index[a], index[b]
    pairs = i < j  # each unordered pair once; j is the later image (same site, later operation)
    i, j = i[pairs], j[pairs]
    d = flat[j] - flat[i]
    d -= np.round(d)
    close = (np.abs(d[:, 1]) < window[1]) & (np.abs(d[:, 2]) < window[2])
    i, j, d = i[close], j[close], d[close]
    close = np.einsum("ij,ij->i", d @ (lattice @ lattice.T), d) < merge_A * merge_A
    return j[close]


def snap_thirds(frac: np.ndarray, tol: float = THIRDS_TOL) -> np.ndarray:
    """Coordinates written as thirds to finite precision (0.3333, 0.66667) set to 1/3 and 2/3 exactly.

    Otherwise the symmetry images of an atom on such a position differ by the rounding, and reflections
    that the symmetry extinguishes come out weakly present. The rule is pymatgen's (``CifParser``:
    within a relative ``tol`` of 1/3 or 2/3), so both readers give the same crystal.
    """
    out = frac.copy()
    for third in (1.0 / 3.0, 2.0 / 3.0):
        out[np.abs(frac / third - 1.0) <= tol] = third
    return out


def stated_space_group(find_value) -> int | None:
    """The space-group number a block states, or None when absent, unknown ('?', '.') or invalid.

    find_value: tag -> raw value or None (gemmi's ``Block.find_value``, or a dict's ``get``).
    """
    for tag in SPACE_GROUP_TAGS:
        value = find_value(tag)
        if isinstance(value, list):  # a looped value (pymatgen): take the first
            value = value[0] if value else None
        if value is None:
            continue
        match = re.match(r"\s*['\"]?(\d+)", str(value))
        if match and 1 <= int(match.group(1)) <= 230:
            return int(match.group(1))
    return None


# -- pymatgen (the fallback) -------------------------------------------------------------------------


def _read_with_pymatgen(piece: str):
    """A pymatgen Structure from one block, raising _Unusable with pymatgen's reasons."""
    from pymatgen.io.cif import CifBlock, CifParser

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            block = CifBlock.from_str(piece)
        except Exception as exc:
            raise _Unusable(describe_error(exc)) from None
        lowered = {k.lower(): v for k, v in block.data.items()}
        stated = stated_space_group(lowered.get)
        try:
            parser = CifParser.from_str(str(block))
            structures = parser.parse_structures(primitive=False, on_error="raise")
        except Exception as exc:
            # parse_structures wraps the real error as "No structure parsed for section N"; report the cause.
            cause = exc.__cause__ or exc
            if isinstance(cause, KeyError):
                reason = f"missing CIF tag {cause}"
            elif "singular matrix" in str(cause).lower() or "below threshold" in str(cause):
                reason = f"degenerate cell (zero or near-zero volume): {describe_error(cause)}"
            else:
                reason = describe_error(cause)
            raise _Unusable(f"{reason}{_warning_text(caught, exclude=str(exc))}") from None
    if len(structures) != 1:  # pragma: no cover — one block in, one structure out
        raise _Unusable(f"pymatgen returned {len(structures)} structures")
    return structures[0], stated


def describe_error(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _warning_text(caught, exclude: str = "") -> str:
    messages = []
    for w in caught:
        text = " ".join(str(w.message).split())
        if text and text not in exclude and text not in messages:
            messages.append(text)
    return f" (pymatgen warnings: {'; '.join(messages)})" if messages else ""
