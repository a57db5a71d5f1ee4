"""Structure sources (synthetic, Materials Project, local CIFs) and the structures table.

Every source yields rows of the table described in DESIGN.md; a structure that cannot be used goes to
the ``failed`` table with its reason, never lost and never fatal. The table's names are loaded on
first use, so that ``xrdid.structures.crystal`` and ``xrdid.structures.cif`` (numpy and gemmi only)
import without pyarrow or spglib.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "FAILED_SCHEMA": "xrdid.structures.table",
    "STRUCTURE_SCHEMA": "xrdid.structures.table",
    "StructureError": "xrdid.structures.table",
    "describe_crystal": "xrdid.structures.table",
    "describe_structure": "xrdid.structures.table",
    "write_structure_tables": "xrdid.structures.table",
    "Crystal": "xrdid.structures.crystal",
    "read_cif_file": "xrdid.structures.cif",
    "read_cif_text": "xrdid.structures.cif",
    "rows_from_cif": "xrdid.structures.cif",
}

__all__ = [  # noqa: RUF022 (grouped by module, as _LAZY)
    "FAILED_SCHEMA",
    "STRUCTURE_SCHEMA",
    "StructureError",
    "describe_crystal",
    "describe_structure",
    "write_structure_tables",
    "Crystal",
    "read_cif_file",
    "read_cif_text",
    "rows_from_cif",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
