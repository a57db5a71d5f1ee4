"""The structures table: one row per usable structure, and a failures table with reasons.

Columns (DESIGN.md): ``id``, ``source``, ``formula``, ``elements``, ``space_group`` (spglib on the
parsed structure at ``symprec``), ``space_group_symbol``, ``symprec``, ``space_group_source`` (the
label the source gave, null when none), ``crystal_system``, ``n_sites``, ``cif``; and ``lattice``,
``species``, ``frac_coords`` (the ordered structure as arrays, read by :func:`structure_from_row`);
``parent_id``, ``parent_formula``, ``parent_space_group``: for a crystal derived from another
(:mod:`xrdid.structures.derived`), that crystal's id and labels, so the split keeps a structure type and
everything derived from it on one side (null otherwise).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import spglib

from xrdid.io import write_parquet
from xrdid.labels import crystal_system

log = logging.getLogger(__name__)

STRUCTURE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("formula", pa.string()),
        ("elements", pa.list_(pa.string())),
        ("space_group", pa.int16()),
        ("space_group_symbol", pa.string()),
        ("symprec", pa.float32()),
        ("space_group_source", pa.int16()),
        ("crystal_system", pa.string()),
        ("n_sites", pa.int32()),
        ("cif", pa.string()),
        # The same structure as arrays, so simulation needs no CIF parsing (the slow part of a chunk):
        # lattice matrix rows (Å), one element per site, fractional coordinates.
        ("lattice", pa.list_(pa.float64(), 9)),
        ("species", pa.list_(pa.string())),
        ("frac_coords", pa.list_(pa.list_(pa.float64(), 3))),
        ("parent_id", pa.string()),
        ("parent_formula", pa.string()),
        ("parent_space_group", pa.int16()),
    ]
)
FAILED_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("reason", pa.string())])


class StructureError(ValueError):
    """A structure that cannot be used; the message is the reason recorded in the failures table."""


def describe_structure(
    structure,
    *,
    id: str,
    source: str,
    symprec: float = 0.01,
    space_group_source: int | None = None,
    dataset=None,
    parent: dict | None = None,
) -> dict:
    """One row of the structures table for a pymatgen ``Structure``.

    Raises StructureError for partial occupancies, a (near-)zero cell volume, or a cell spglib cannot
    symmetrise at ``symprec``. ``dataset``: spglib's dataset of this very cell at ``symprec``, when the
    caller has it already. ``parent``: the structures-table row this crystal was derived from.
    """
    from pymatgen.io.cif import CifWriter

    if len(structure) == 0:
        raise StructureError("no atoms")
    if not structure.is_ordered:
        raise StructureError("partial occupancy (disordered sites are not simulated)")
    from xrdid.simulate.sticks import _scattering_params

    unknown = sorted({site.specie.symbol for site in structure} - set(_scattering_params()))
    if unknown:
        # e.g. "Nh": the AFLOW encyclopedia writes the ammonium ion as a pseudo-atom read as nihonium.
        raise StructureError(f"no X-ray scattering factors for element(s) {', '.join(unknown)}")
    volume = structure.lattice.volume
    if not math.isfinite(volume) or volume < 1e-3 or volume < 0.5 * len(structure):
        raise StructureError(f"degenerate cell volume {volume:.3g} Å³ for {len(structure)} sites")
    cell = (
        structure.lattice.matrix,
        structure.frac_coords,
        [site.specie.Z for site in structure],
    )
    try:
        dataset = dataset or spglib.get_symmetry_dataset(cell, symprec=symprec)
    except Exception as exc:  # newer spglib raises instead of returning None
        raise StructureError(f"spglib could not find the symmetry at symprec={symprec}: {exc}") from None
    if dataset is None:
        raise StructureError(f"spglib could not find the symmetry at symprec={symprec}")
    number = int(dataset.number)
    with warnings.catch_warnings():
        # Site labels repeated across an orbit are fine for provenance; pymatgen warns on every one.
        warnings.simplefilter("ignore")
        cif = str(CifWriter(structure))
    return {
        "id": str(id),
        "source": source,
        "formula": structure.composition.reduced_formula,
        "elements": sorted({el.symbol for el in structure.composition.elements}),
        "space_group": number,
        "space_group_symbol": str(dataset.international),
        "symprec": float(symprec),
        "space_group_source": None if space_group_source is None else int(space_group_source),
        "crystal_system": crystal_system(number),
        "n_sites": len(structure),
        "cif": cif,
        "lattice": [float(v) for v in structure.lattice.matrix.reshape(-1)],
        "species": [site.specie.symbol for site in structure],
        "frac_coords": [[float(v) for v in site.frac_coords] for site in structure],
        "parent_id": None if parent is None else parent["id"],
        "parent_formula": None if parent is None else parent["formula"],
        "parent_space_group": None if parent is None else int(parent["space_group"]),
    }


def structure_from_row(row: dict):
    """The pymatgen Structure of a structures-table row: from its arrays when present, else its CIF."""
    from pymatgen.core import Lattice, Structure

    if row.get("lattice") is not None and row.get("species"):
        return Structure(Lattice(list(zip(*[iter(row["lattice"])] * 3))), row["species"], row["frac_coords"])
    import warnings

    with warnings.catch_warnings():
        # CIF rounding notices are expected for CIFs we wrote ourselves.
        warnings.simplefilter("ignore")
        return Structure.from_str(row["cif"], fmt="cif")


def write_structure_tables(
    rows: Iterable[dict], failures: Iterable[dict], out: str | Path, failed_out: str | Path
) -> tuple[int, int]:
    """Write both tables atomically; returns (n_structures, n_failed) and logs the failure count."""
    rows, failures = list(rows), list(failures)
    write_parquet(pa.Table.from_pylist(rows, schema=STRUCTURE_SCHEMA), out)
    write_parquet(pa.Table.from_pylist(failures, schema=FAILED_SCHEMA), failed_out)
    log.info("%d structures written to %s; %d failed (see %s)", len(rows), out, len(failures), failed_out)
    return len(rows), len(failures)
