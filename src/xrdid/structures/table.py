"""The structures table: one row per usable structure, and a failures table with reasons.

Columns (DESIGN.md): ``id``, ``source``, ``formula`` (pymatgen's reduced formula), ``elements``,
``space_group`` (spglib on the parsed structure at ``symprec``), ``space_group_symbol``, ``symprec``,
``space_group_source`` (the label the source gave, null when none), ``crystal_system``, ``n_sites``;
the crystal as arrays, written once at ingestion and all that simulation reads: ``lattice`` (3 x 3,
rows a, b, c in Å, flattened), ``species``, ``frac_coords``, ``occupancies``; for provenance and
export ``cif`` (the source's own CIF block, or a P1 CIF written from the arrays) and ``document`` (the
source's record when it is not a CIF, e.g. the Materials Project API's JSON; null otherwise); and
``parent_id``, ``parent_formula``, ``parent_space_group``: for a crystal derived from another
(:mod:`xrdid.structures.derived`), that crystal's id and labels, so the split keeps a structure type and
everything derived from it on one side (null otherwise).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Self

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import spglib

from xrdid.io import atomic_path
from xrdid.labels import crystal_system
from xrdid.structures.crystal import OCCUPANCY_TOL, Crystal, crystal_from_arrays, crystal_from_structure

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
        # lattice matrix rows (Å), one element, position and occupancy per site.
        ("lattice", pa.list_(pa.float64(), 9)),
        ("species", pa.list_(pa.string())),
        ("frac_coords", pa.list_(pa.list_(pa.float64(), 3))),
        ("occupancies", pa.list_(pa.float64())),
        ("document", pa.string()),
        ("parent_id", pa.string()),
        ("parent_formula", pa.string()),
        ("parent_space_group", pa.int16()),
    ]
)
FAILED_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("reason", pa.string())])
# Rows per Parquet row group: a simulation chunk reads (and decompresses) only the groups it needs.
ROW_GROUP_ROWS = 1000


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
    """One row of the structures table for a pymatgen ``Structure`` (see :func:`describe_crystal`).

    ``dataset``: spglib's dataset of this very cell at ``symprec``, when the caller has it already.
    ``parent``: the structures-table row this crystal was derived from.
    """
    return describe_crystal(
        crystal_from_structure(structure),
        id=id,
        source=source,
        symprec=symprec,
        space_group_source=space_group_source,
        dataset=dataset,
        parent=parent,
    )


def describe_crystal(
    crystal: Crystal,
    *,
    id: str,
    source: str,
    symprec: float = 0.01,
    space_group_source: int | None = None,
    cif: str | None = None,
    document: str | None = None,
    dataset=None,
    parent: dict | None = None,
) -> dict:
    """One row of the structures table for a crystal given as arrays.

    Raises StructureError for partial occupancies, two atoms on one position, a (near-)zero cell
    volume, an element without X-ray scattering factors, or a cell spglib cannot symmetrise at
    ``symprec``. ``cif``: the source's CIF text (else a P1 CIF is written from the arrays);
    ``document``: the source's own record, when not a CIF; ``parent``: the structures-table row this
    crystal was derived from.
    """
    n = len(crystal)
    if n == 0:
        raise StructureError("no atoms")
    if not np.all(np.abs(crystal.occupancies - 1.0) <= OCCUPANCY_TOL):
        raise StructureError("partial occupancy (disordered sites are not simulated)")
    volume = crystal.volume
    if not math.isfinite(volume) or volume < 1e-3 or volume < 0.5 * n:
        raise StructureError(f"degenerate cell volume {volume:.3g} Å³ for {n} sites")
    if not crystal.is_ordered:
        raise StructureError("two atoms on one position (a duplicated site)")
    numbers = crystal.atomic_numbers()
    if not numbers.all():
        bad = crystal.species[int(np.flatnonzero(numbers == 0)[0])]
        raise StructureError(f"species {bad!r} is not an element")
    from xrdid.simulate.sticks import _scattering_params

    unknown = sorted(set(crystal.species) - set(_scattering_params()))
    if unknown:
        # e.g. "Nh": pymatgen reads the AFLOW encyclopedia's ammonium pseudo-atom "NH4" as nihonium.
        raise StructureError(f"no X-ray scattering factors for element(s) {', '.join(unknown)}")
    try:
        dataset = dataset or spglib.get_symmetry_dataset((crystal.lattice, crystal.frac_coords, numbers), symprec=symprec)
    except Exception as exc:  # newer spglib raises instead of returning None
        raise StructureError(f"spglib could not find the symmetry at symprec={symprec}: {exc}") from None
    if dataset is None:
        raise StructureError(f"spglib could not find the symmetry at symprec={symprec}")
    number = int(dataset.number)
    return {
        "id": str(id),
        "source": source,
        "formula": crystal.formula,
        "elements": sorted(set(crystal.species)),
        "space_group": number,
        "space_group_symbol": str(dataset.international),
        "symprec": float(symprec),
        "space_group_source": None if space_group_source is None else int(space_group_source),
        "crystal_system": crystal_system(number),
        "n_sites": n,
        "cif": crystal.to_cif(str(id)) if cif is None else cif,
        "lattice": crystal.lattice.reshape(-1).tolist(),
        "species": list(crystal.species),
        "frac_coords": crystal.frac_coords.tolist(),
        "occupancies": crystal.occupancies.tolist(),
        "document": document,
        "parent_id": None if parent is None else parent["id"],
        "parent_formula": None if parent is None else parent["formula"],
        "parent_space_group": None if parent is None else int(parent["space_group"]),
    }


def crystal_from_row(row: dict) -> Crystal:
    """The arrays of a structures-table row; rows of older tables without arrays have their CIF read."""
    if row.get("lattice") is not None and row.get("species"):
        return crystal_from_arrays(row["lattice"], row["species"], row["frac_coords"], row.get("occupancies"))
    from xrdid.structures.cif import read_cif_text

    for entry in read_cif_text(row.get("cif") or ""):
        if entry.crystal is not None:
            return entry.crystal
        if entry.error:
            raise StructureError(f"structure {row.get('id')}: {entry.error}")
    raise StructureError(f"structure {row.get('id')}: neither arrays nor a CIF with a structure")


def structure_from_row(row: dict):
    """The pymatgen Structure of a structures-table row: from its arrays when present, else its CIF."""
    from pymatgen.core import Structure

    if row.get("lattice") is not None and row.get("species"):
        return crystal_from_row(row).to_structure()
    import warnings

    with warnings.catch_warnings():
        # CIF rounding notices are expected for CIFs we wrote ourselves.
        warnings.simplefilter("ignore")
        return Structure.from_str(row["cif"], fmt="cif")


def _import_what_writing_needs() -> None:
    """Import, before a table is opened, what writing its rows imports on first use: ``pa.Table.from_pylist``
    imports pandas and pyarrow.compute. Ctrl-C during the import of a native module can abort the process
    without unwinding (see :func:`xrdid.simulate.chunks._import_what_the_loop_needs`)."""
    import pandas  # noqa: F401
    import pyarrow.compute  # noqa: F401


def import_what_describing_needs() -> None:
    """Import what describing crystals (and reading CIFs) imports on first use, for a caller that does it while
    its output is open to do before: gemmi (element data, the CIF reader) and pymatgen.core (the reduced
    formula). Ctrl-C during the import of a native module can abort the process without unwinding (see
    :func:`xrdid.simulate.chunks._import_what_the_loop_needs`)."""
    import gemmi  # noqa: F401
    import pymatgen.core  # noqa: F401


def write_rows(rows: list[dict], schema: pa.Schema, path: str | Path) -> None:
    """Write table rows atomically, in row groups of ROW_GROUP_ROWS."""
    _import_what_writing_needs()
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)


def write_structure_tables(
    rows: Iterable[dict], failures: Iterable[dict], out: str | Path, failed_out: str | Path
) -> tuple[int, int]:
    """Write both tables atomically; returns (n_structures, n_failed) and logs the failure count."""
    with StructureTableWriter(out, failed_out) as writer:
        writer.add(rows, failures)
    return writer.counts


class StructureTableWriter:
    """Streams rows into the structures table, a row group at a time, so memory stays flat.

    ``with StructureTableWriter(out, failed_out) as w: w.add(rows, failures)``: ``out`` appears
    (atomically) only when the block ends without an exception, followed by ``failed_out``.
    """

    def __init__(self, out: str | Path, failed_out: str | Path):
        self.out, self.failed_out = Path(out), Path(failed_out)
        self.failures: list[dict] = []
        self.n_rows = 0
        self._rows: list[dict] = []

    def __enter__(self) -> Self:
        _import_what_writing_needs()
        with contextlib.ExitStack() as stack:  # a writer that cannot be opened closes the atomic block at once
            tmp = stack.enter_context(atomic_path(self.out))
            self._writer = stack.enter_context(pq.ParquetWriter(tmp, STRUCTURE_SCHEMA, compression="zstd"))
            self._stack = stack.pop_all()
        return self

    def add(self, rows: Iterable[dict] = (), failures: Iterable[dict] = ()) -> None:
        for row in rows:
            self._rows.append(row)
            if len(self._rows) >= ROW_GROUP_ROWS:
                self._flush()
        self.failures.extend(failures)

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=STRUCTURE_SCHEMA), row_group_size=ROW_GROUP_ROWS)
            self.n_rows += len(self._rows)
            self._rows = []

    @property
    def counts(self) -> tuple[int, int]:
        return self.n_rows, len(self.failures)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self._flush()
            except BaseException as err:  # the table is incomplete: nothing is renamed onto `out`
                self._stack.__exit__(type(err), err, err.__traceback__)
                raise
        self._stack.__exit__(exc_type, exc, tb)
        if exc_type is None:
            write_rows(self.failures, FAILED_SCHEMA, self.failed_out)
            log.info("%d structures written to %s; %d failed (see %s)", self.n_rows, self.out, len(self.failures), self.failed_out)
