"""Structure sources (synthetic, Materials Project, local CIFs) and the structures table.

Every source yields rows of the table described in DESIGN.md; a structure that cannot be used goes to
the ``failed`` table with its reason, never lost and never fatal.
"""

from xrdid.structures.table import (
    FAILED_SCHEMA,
    STRUCTURE_SCHEMA,
    StructureError,
    describe_structure,
    write_structure_tables,
)

__all__ = [
    "FAILED_SCHEMA",
    "STRUCTURE_SCHEMA",
    "StructureError",
    "describe_structure",
    "write_structure_tables",
]
