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


def test_merge_reads_the_next_row_group_while_writing_this_one_and_keeps_the_rows(tmp_path, sticks_table, monkeypatch):
    import threading

    import pyarrow.parquet as pq

    frame = pl.read_parquet(sticks_table).drop("split")
    chunks = []
    for i in range(3):  # 3 chunk files of 3 row groups each
        path = tmp_path / f"chunk-{i}.parquet"
        pq.write_table(frame.with_columns(pl.col("id") + f"-{i}").to_arrow(), path, row_group_size=2)
        chunks.append(path)
    reads, overlapped = [], []
    real_read, real_write = pq.ParquetFile.read_row_group, pq.ParquetWriter.write_table

    def read(self, i, *args, **kwargs):
        reads.append(i)
        return real_read(self, i, *args, **kwargs)

    def write(self, table, *args, **kwargs):
        # Has the read of the next row group begun before this one is written? (Read one after
        # another, write i would find exactly i + 1 reads, and none could begin until it returns.)
        wanted = len(overlapped) + 2
        waits = range(500) if wanted <= 9 else range(1)  # up to 5 s (a loaded machine), none after the last
        overlapped.append(any(len(reads) >= wanted or threading.Event().wait(0.01) for _ in waits))
        return real_write(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", read)
    monkeypatch.setattr(pq.ParquetWriter, "write_table", write)
    counts = merge_sticks(chunks, out=tmp_path / "m.parquet", fractions=(0.34, 0.33, 0.33), seed=3)
    assert len(reads) == 9 and overlapped == [True] * 8 + [False]
    merged = pl.read_parquet(tmp_path / "m.parquet")
    expected = pl.concat([frame.with_columns(pl.col("id") + f"-{i}") for i in range(3)])
    assert merged.drop("split").equals(expected)  # every row once, in the chunks' order
    assert sum(counts.values()) == merged.height == 18
    by_key = merged.group_by("group_key").agg(pl.col("split").n_unique().alias("n"))
    assert by_key["n"].max() == 1


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


def _table(tmp_path, small_structures, name="structures.parquet"):
    from xrdid.structures.table import describe_structure, write_structure_tables

    rows = [describe_structure(s, id=n, source="test") for n, s in small_structures]
    write_structure_tables(rows, [], tmp_path / name, tmp_path / f"{name}.failed")
    return tmp_path / name


def test_chunks_read_the_arrays_never_the_cif(tmp_path, small_structures):
    """A table whose CIFs are garbage simulates exactly as the good one: chunks read arrays only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xrdid.simulate.chunks import simulate_chunk

    good = _table(tmp_path, small_structures)
    table = pq.read_table(good)
    garbage = table.set_column(table.schema.get_field_index("cif"), "cif", pa.array(["not a CIF"] * table.num_rows))
    pq.write_table(garbage, tmp_path / "garbage.parquet")
    for name in ("structures.parquet", "garbage.parquet"):
        assert simulate_chunk([tmp_path / name], chunk=0, n_chunks=1, out=tmp_path / f"sticks-{name}", d_min_A=0.6) == 6
    a = pl.read_parquet(tmp_path / "sticks-structures.parquet")
    b = pl.read_parquet(tmp_path / "sticks-garbage.parquet")
    assert a.equals(b)


def test_older_tables_without_arrays_have_their_cif_read(tmp_path, small_structures):
    import pyarrow.parquet as pq

    from xrdid.simulate.chunks import simulate_chunk

    good = _table(tmp_path, small_structures)
    old = pq.read_table(good).drop(["lattice", "species", "frac_coords", "occupancies", "document"])
    pq.write_table(old, tmp_path / "old.parquet")
    for name in ("structures.parquet", "old.parquet"):
        simulate_chunk([tmp_path / name], chunk=0, n_chunks=1, out=tmp_path / f"sticks-{name}", d_min_A=0.6)
    a = pl.read_parquet(tmp_path / "sticks-structures.parquet")
    b = pl.read_parquet(tmp_path / "sticks-old.parquet")
    assert a["id"].to_list() == b["id"].to_list()
    for x, y in zip(a.iter_rows(named=True), b.iter_rows(named=True)):
        strong = [d for d, f in zip(x["d"], x["f2m"]) if f > 1e-6 * max(x["f2m"])]
        assert [d for d, f in zip(y["d"], y["f2m"]) if f > 1e-6 * max(y["f2m"])] == pytest.approx(strong, rel=1e-6)


def test_chunks_over_several_tables_and_row_groups_stream_the_same_rows(tmp_path, small_structures, monkeypatch):
    """Rows of several tables, read a row group at a time and written in batches: the same sticks,
    whatever the chunking, the row-group size or the batch size."""
    from xrdid.simulate import chunks
    from xrdid.structures import table

    whole = [_table(tmp_path, small_structures, "a.parquet"), _table(tmp_path, small_structures[:3], "b.parquet")]
    chunks.simulate_chunk(whole, chunk=0, n_chunks=1, out=tmp_path / "one.parquet", d_min_A=0.7)
    monkeypatch.setattr(table, "ROW_GROUP_ROWS", 2)
    monkeypatch.setattr(chunks, "WRITE_EVERY", 1)
    small = [_table(tmp_path, small_structures, "c.parquet"), _table(tmp_path, small_structures[:3], "d.parquet")]
    import pyarrow.parquet as pq

    assert pq.ParquetFile(small[0]).metadata.num_row_groups == 3
    parts = [tmp_path / f"part-{i}.parquet" for i in range(4)]
    counts = [chunks.simulate_chunk(small, chunk=i, n_chunks=4, out=p, d_min_A=0.7) for i, p in enumerate(parts)]
    assert counts == [2, 2, 2, 3]
    assert pq.ParquetFile(parts[3]).metadata.num_row_groups == 2  # written as it went, per row group read
    one = pl.read_parquet(tmp_path / "one.parquet")
    assert pl.concat([pl.read_parquet(p) for p in parts]).equals(one)


def test_derived_rows_take_their_parents_group_key_across_tables_and_max_sticks_keeps_the_strongest(tmp_path, small_structures):
    """One chunk over an older parents table (no parent columns) and a derived table: each derived crystal's
    group key is its parent's; ``max_sticks`` keeps the strongest sticks, in d order."""
    import numpy as np
    import pyarrow.parquet as pq

    from xrdid.simulate.chunks import simulate_chunk
    from xrdid.structures.derived import DeriveSpec, derive_from
    from xrdid.structures.table import write_structure_tables

    parents = _table(tmp_path, small_structures)
    old = pq.read_table(parents).drop(["parent_id", "parent_formula", "parent_space_group"])
    pq.write_table(old, tmp_path / "old.parquet")
    rows = [r for p in old.to_pylist() for r in derive_from({**p, "source": "x"}, DeriveSpec(per_structure=2, seed=3, substitute=1.0))[0]]
    assert rows and any(r["formula"] != r["parent_formula"] for r in rows)
    write_structure_tables(rows, [], tmp_path / "derived.parquet", tmp_path / "derived.failed.parquet")
    tables = [tmp_path / "old.parquet", tmp_path / "derived.parquet"]
    simulate_chunk(tables, chunk=0, n_chunks=1, out=tmp_path / "all.parquet", d_min_A=0.7, group_by="formula")
    sticks = {r["id"]: r for r in pl.read_parquet(tmp_path / "all.parquet").iter_rows(named=True)}
    assert len(sticks) == len(small_structures) + len(rows)
    for row in rows:
        assert sticks[row["id"]]["group_key"] == sticks[row["parent_id"]]["group_key"] == row["parent_formula"]

    simulate_chunk(tables, chunk=0, n_chunks=1, out=tmp_path / "capped.parquet", d_min_A=0.7, max_sticks=3)
    for capped in pl.read_parquet(tmp_path / "capped.parquet").iter_rows(named=True):
        full = sticks[capped["id"]]
        strongest = np.sort(np.argsort(full["f2m"], kind="stable")[::-1][:3])
        assert capped["d"] == [full["d"][i] for i in strongest]
        assert capped["f2m"] == [full["f2m"][i] for i in strongest]


def test_no_module_is_imported_while_a_chunk_is_open(tmp_path, small_structures, native_imports_while_writing):
    """Every native module a chunk needs is imported before its output is opened (a fresh interpreter)."""
    table = _table(tmp_path, small_structures)
    code = """
        import sys
        from xrdid.simulate.chunks import simulate_chunk
        simulate_chunk([sys.argv[1]], chunk=0, n_chunks=1, out=sys.argv[2], d_min_A=0.6)
    """
    assert native_imports_while_writing(code, table, tmp_path / "chunk.parquet") == {"chunk.parquet": []}


def test_no_module_is_imported_while_the_merged_table_is_open(tmp_path, small_structures, native_imports_while_writing):
    from xrdid.simulate.chunks import simulate_chunk

    table = _table(tmp_path, small_structures)
    simulate_chunk([table], chunk=0, n_chunks=1, out=tmp_path / "chunk.parquet", d_min_A=0.6)
    code = """
        import sys
        from xrdid.simulate.chunks import merge_sticks
        merge_sticks([sys.argv[1]], out=sys.argv[2])
    """
    assert native_imports_while_writing(code, tmp_path / "chunk.parquet", tmp_path / "sticks.parquet") == {"sticks.parquet": []}
