import itertools

import polars as pl
import pytest

from xrdid.simulate.chunks import chunk_bounds, group_key, merge_sticks, split_of


def test_chunks_partition_rows():
    n, k = 103, 7
    bounds = [chunk_bounds(n, i, k) for i in range(k)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1
    with pytest.raises(ValueError):
        chunk_bounds(n, 7, 7)


def test_split_is_a_stable_function_of_the_group():
    fr = (0.8, 0.1, 0.1)
    assert split_of("NaCl", 0, fr) == split_of("NaCl", 0, fr)
    splits = [split_of(f"k{i}", 0, fr) for i in range(5000)]
    assert 0.77 < splits.count("train") / 5000 < 0.83
    assert 0.08 < splits.count("test") / 5000 < 0.12


def test_group_keys():
    assert group_key("NaCl", 225, "formula") == "NaCl"
    assert group_key("NaCl", 225, "prototype") == group_key("KBr", 225, "prototype") == "AB|225"
    with pytest.raises(ValueError, match="straddle"):
        group_key("NaCl", 225, "id")


def test_simulated_chunk_and_merge(sticks_table):
    frame = pl.read_parquet(sticks_table)
    assert frame.height == 6
    assert set(frame["split"]) <= {"train", "val", "test"}
    nacl = frame.filter(pl.col("id") == "NaCl").row(0, named=True)
    d = nacl["d"]
    assert d == sorted(d, reverse=True)
    # NaCl (a = 5.64 Å): the first reflections are 111 and 200.
    assert d[0] == pytest.approx(5.64 / 3**0.5, rel=1e-5)
    assert d[1] == pytest.approx(5.64 / 2, rel=1e-5)
    assert len(nacl["hkl"][0]) == 3


def test_groups_never_straddle_splits(tmp_path, sticks_table):
    frame = pl.read_parquet(sticks_table)
    twice = pl.concat([frame.drop("split"), frame.drop("split").with_columns(pl.col("id") + "-copy")])
    twice.write_parquet(tmp_path / "c.parquet")
    merge_sticks([tmp_path / "c.parquet"], out=tmp_path / "m.parquet", seed=1)
    merged = pl.read_parquet(tmp_path / "m.parquet")
    per_group = merged.group_by("group_key").agg(pl.col("split").n_unique().alias("n"))
    assert per_group["n"].max() == 1


def test_structure_rows_carry_arrays_that_rebuild_the_structure(small_structures):
    import numpy as np

    from xrdid.simulate.sticks import compute_sticks
    from xrdid.structures.table import describe_structure, structure_from_row

    for name, structure in small_structures:
        row = describe_structure(structure, id=name, source="test")
        from_arrays = structure_from_row(row)
        a, b = compute_sticks(from_arrays, 0.7), compute_sticks(structure, 0.7)
        assert np.array_equal(a.d, b.d) and np.allclose(a.f2m, b.f2m, rtol=1e-12), name
        # Without the arrays (older tables) the CIF is parsed: same lattice and sites within its rounding.
        from_cif = structure_from_row({**row, "lattice": None, "species": None})
        assert np.allclose(from_cif.lattice.matrix, structure.lattice.matrix, atol=1e-5), name
        assert len(from_cif) == len(structure), name


def test_stick_table_keeps_the_hkl_of_the_kept_sticks(sticks_table):
    import numpy as np

    from xrdid.data import StickTable

    table = StickTable.from_parquet(sticks_table, d_min_A=1.0, max_peaks=5, with_hkl=True)
    i = table.ids.index("NaCl")
    d = table.d[i][table.d[i] > 0].numpy()
    hkl = table.hkl_rows[i]
    assert len(d) == len(hkl) == 5 and (d >= 1.0).all()
    assert np.allclose(5.64 / np.sqrt((hkl**2).sum(1)), d, rtol=1e-5)
    assert StickTable.from_parquet(sticks_table).hkl_rows is None
