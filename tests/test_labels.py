import numpy as np
import pytest

from xrdid.labels import CRYSTAL_SYSTEMS, crystal_system, space_group_symbol, space_group_to_system_map


@pytest.mark.parametrize(
    "number, system",
    [(1, "triclinic"), (2, "triclinic"), (3, "monoclinic"), (14, "monoclinic"), (15, "monoclinic"),
     (16, "orthorhombic"), (74, "orthorhombic"), (75, "tetragonal"), (142, "tetragonal"), (143, "trigonal"),
     (167, "trigonal"), (168, "hexagonal"), (194, "hexagonal"), (195, "cubic"), (230, "cubic")],
)
def test_crystal_system_boundaries(number, system):
    assert crystal_system(number) == system


def test_map_covers_all_groups_and_counts():
    m = space_group_to_system_map()
    assert m.shape == (230,)
    assert np.bincount(m).tolist() == [2, 13, 59, 68, 25, 27, 36]
    assert len(CRYSTAL_SYSTEMS) == 7


def test_symbols_and_bad_numbers():
    assert space_group_symbol(225) == "Fm-3m"
    assert space_group_symbol(14) == "P2_1/c"
    with pytest.raises(ValueError, match="1-230"):
        crystal_system(231)
