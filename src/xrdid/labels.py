"""Space-group and crystal-system labels shared by every stage.

Space groups are the 230 International Tables numbers; the model's class index is ``number - 1``.
Crystal systems follow the International Tables ranges of space-group numbers.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

CRYSTAL_SYSTEMS: tuple[str, ...] = (
    "triclinic",
    "monoclinic",
    "orthorhombic",
    "tetragonal",
    "trigonal",
    "hexagonal",
    "cubic",
)
# Last space-group number of each crystal system, in the order of CRYSTAL_SYSTEMS.
_SYSTEM_UPPER = (2, 15, 74, 142, 167, 194, 230)
N_SPACE_GROUPS = 230
# Label priors a prediction can use (xrdid.predict.load_model): the checkpoint's, none, or Materials
# Project's space-group and crystal-system frequencies.
PRIORS: tuple[str, ...] = ("checkpoint", "none", "materials_project")


def crystal_system_index(space_group: int) -> int:
    """Index into CRYSTAL_SYSTEMS of a space-group number (1–230)."""
    if not 1 <= int(space_group) <= N_SPACE_GROUPS:
        raise ValueError(f"space group must be 1-230, got {space_group}")
    return int(np.searchsorted(_SYSTEM_UPPER, int(space_group)))


def crystal_system(space_group: int) -> str:
    return CRYSTAL_SYSTEMS[crystal_system_index(space_group)]


def space_group_to_system_map() -> np.ndarray:
    """Array of length 230: crystal-system index of class ``number - 1``."""
    return np.array([crystal_system_index(n) for n in range(1, N_SPACE_GROUPS + 1)], dtype=np.int64)


@lru_cache(maxsize=1)
def _short_symbols() -> dict[int, str]:
    import spglib

    symbols: dict[int, str] = {}
    for hall in range(1, 531):  # the first Hall setting of each group is the standard one
        sg = spglib.get_spacegroup_type(hall)
        symbols.setdefault(int(sg.number), str(sg.international_short))
    return symbols


def space_group_symbol(space_group: int) -> str:
    """Hermann–Mauguin short symbol of the standard setting, e.g. 225 → 'Fm-3m', 14 → 'P2_1/c'."""
    crystal_system_index(space_group)  # validates the number
    return _short_symbols()[int(space_group)]
