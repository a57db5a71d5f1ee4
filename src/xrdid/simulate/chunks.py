"""Simulate a chunk of a structures table into a sticks table, and merge chunks with a group-wise split.

Sticks table (DESIGN.md): one row per structure with its labels (``id``, ``source``, ``formula``,
``space_group``, ``crystal_system``, ``group_key``) and list columns ``d`` (Å, descending), ``f2m``
(|F|²·multiplicity) and ``hkl``; the merged table adds ``split`` (train/val/test).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xrdid.io import atomic_path

log = logging.getLogger(__name__)

STICKS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("formula", pa.string()),
        ("space_group", pa.int16()),
        ("crystal_system", pa.string()),
        ("group_key", pa.string()),
        ("d", pa.list_(pa.float32())),
        ("f2m", pa.list_(pa.float32())),
        ("hkl", pa.list_(pa.list_(pa.int16(), 3))),
    ]
)


def chunk_bounds(n_rows: int, chunk: int, n_chunks: int) -> tuple[int, int]:
    """Rows [start, stop) of chunk ``chunk`` out of ``n_chunks`` contiguous, near-equal chunks."""
    if not 0 <= chunk < n_chunks:
        raise ValueError(f"chunk {chunk} out of range for {n_chunks} chunks")
    return n_rows * chunk // n_chunks, n_rows * (chunk + 1) // n_chunks


@functools.lru_cache(maxsize=262144)
def group_key(formula: str, space_group: int, group_by: str) -> str:
    """Key that keeps near-duplicates together: the reduced formula, or a prototype (anonymous formula + group)."""
    if group_by == "formula":
        return formula
    if group_by == "prototype":
        from pymatgen.core import Composition

        return f"{Composition(formula).anonymized_formula}|{space_group}"
    if group_by == "id":
        raise ValueError("group_by 'id' is not allowed: it lets near-duplicates straddle the split")
    raise ValueError(f"unknown split group_by {group_by!r} (formula | prototype)")


# Dictionary encoding pays for the label columns only; tried on the float lists it is wasted work.
_DICTIONARY = ["id", "source", "formula", "crystal_system", "group_key", "split"]
# Structures simulated between two writes of a chunk's output (bounds a job's memory).
WRITE_EVERY = 1000
_LABELS = ["id", "source", "formula", "space_group", "crystal_system"]
# Read when a table has them (derived crystals): the parent's labels give the group key.
_PARENT = ["parent_formula", "parent_space_group"]
_ARRAYS = ["lattice", "species", "frac_coords", "occupancies"]


def strongest_sticks(sticks, n: int):
    """The ``n`` sticks of largest |F|²·multiplicity, kept in their d order."""
    from xrdid.simulate.sticks import Sticks

    keep = np.sort(np.argsort(sticks.f2m, kind="stable")[::-1][:n])
    return Sticks(sticks.d[keep], sticks.f2m[keep], sticks.hkl[keep])


def row_group_key(row: dict, group_by: str) -> str:
    """The group key of a structures-table row: a derived crystal takes its parent's (the structure type
    it was made from), so a type and everything derived from it fall on one side of the split."""
    if row.get("parent_formula"):
        return group_key(row["parent_formula"], int(row["parent_space_group"]), group_by)
    return group_key(row["formula"], int(row["space_group"]), group_by)


def simulate_chunk(
    structures: Sequence[str | Path],
    *,
    chunk: int,
    n_chunks: int,
    out: str | Path,
    d_min_A: float,
    group_by: str = "formula",
    max_sticks: int | None = None,
) -> int:
    """Compute sticks for chunk ``chunk`` of the concatenated structures tables; returns rows written.

    Reads only this chunk's rows, and of them only the labels and the crystal arrays (never the CIF,
    except in older tables that have no arrays), and writes the sticks in batches of WRITE_EVERY, so
    a job's memory depends on neither the table nor the chunk size. ``structures`` may be the tables
    of several sources, with different columns. ``max_sticks``: keep only the strongest sticks (by
    |F|²·multiplicity) of each structure, in d order. A structure whose simulation fails is logged
    with its reason and left out of the chunk.
    """
    from xrdid.simulate.sticks import compute_sticks

    _import_what_the_loop_needs()
    n_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in structures)
    start, stop = chunk_bounds(n_rows, chunk, n_chunks)
    written, failed, elapsed, cpu = 0, 0, 0.0, 0.0
    pending: list[dict] = []
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, STICKS_SCHEMA, compression="zstd", use_dictionary=_DICTIONARY) as writer:
        for labels, crystals in _read_crystals(structures, start, stop):
            t0, c0 = time.perf_counter(), time.process_time()
            for row, crystal in zip(labels, crystals):
                try:
                    if isinstance(crystal, Exception):
                        raise crystal
                    sticks = compute_sticks(crystal, d_min_A)
                    if max_sticks is not None and len(sticks.d) > max_sticks:
                        sticks = strongest_sticks(sticks, max_sticks)
                except Exception as exc:  # one bad structure never sinks the chunk
                    failed += 1
                    log.warning("structure %s: simulation failed: %s: %s", row["id"], type(exc).__name__, exc)
                    continue
                pending.append(
                    {
                        **{k: row[k] for k in _LABELS},
                        "group_key": row_group_key(row, group_by),
                        "d": sticks.d.astype(np.float32),
                        "f2m": sticks.f2m.astype(np.float32),
                        "hkl": sticks.hkl.astype(np.int16),
                    }
                )
            elapsed += time.perf_counter() - t0
            cpu += time.process_time() - c0
            if len(pending) >= WRITE_EVERY:
                writer.write_table(_sticks_table(pending))
                written += len(pending)
                pending = []
        if pending:
            writer.write_table(_sticks_table(pending))
            written += len(pending)
    log.info(
        "chunk %d/%d: %d structures simulated in %.2f s (%.1f/s, %.2f CPU s), %d failed; peak memory %.0f MB",
        chunk, n_chunks, written, elapsed, written / max(elapsed, 1e-9), cpu, failed, peak_memory_mb(),
    )
    return written


def _import_what_the_loop_needs() -> None:
    """Import, before a chunk's output is opened, every module its loop would otherwise import on first use.

    Ctrl-C (or a cancelled job's SIGINT) that lands during the import of a native module can abort the
    process outright: gemmi's import raises through C++ and ends in SIGABRT, so no ``finally`` runs and
    the temporary file of :func:`xrdid.io.atomic_path` is left behind. Imported here, an interrupt at that
    point happens before there is anything to clean up.
    """
    import gemmi  # noqa: F401  (element data, first used by compute_sticks)
    import pandas  # noqa: F401  (pyarrow imports it in to_numpy of the list lengths)

    import xrdid.structures.table  # noqa: F401  (spglib, numpy.typing; read by _read_crystals)
    from xrdid.simulate import sticks

    sticks._scattering_params()  # pymatgen's coefficient table, read once


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (MB), from getrusage (Linux reports KiB)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _read_crystals(paths: Sequence[str | Path], start: int, stop: int):
    """Yield (label rows, Crystals) for rows [start, stop) of the concatenated tables, a row group at a time.

    Only the row groups that hold these rows are read. A row without arrays (tables written before
    they existed) has its CIF read instead; one that cannot be read yields the exception in its place.
    """
    from xrdid.structures.crystal import Crystal
    from xrdid.structures.table import crystal_from_row

    offset = 0
    for path in paths:
        parquet = pq.ParquetFile(path)
        n = parquet.metadata.num_rows
        lo, hi = max(start - offset, 0), min(stop - offset, n)
        offset += n
        if lo >= hi:
            continue
        names = set(parquet.schema_arrow.names)
        arrays = [c for c in _ARRAYS if c in names]
        labels_read = _LABELS + [c for c in _PARENT if c in names]
        columns = labels_read + arrays + (["cif"] if "lattice" not in names and "cif" in names else [])
        group_start = 0
        for g in range(parquet.metadata.num_row_groups):
            group_rows = parquet.metadata.row_group(g).num_rows
            a, b = max(lo - group_start, 0), min(hi - group_start, group_rows)
            group_start += group_rows
            if a >= b:
                continue
            batch = parquet.read_row_group(g, columns=columns).slice(a, b - a)
            labels = batch.select(labels_read).to_pylist()
            if "lattice" not in names or batch.column("lattice").null_count:
                rows = batch.to_pylist()
                crystals = []
                for row in rows:
                    try:
                        crystals.append(crystal_from_row(row))
                    except Exception as exc:  # recorded per structure by the caller
                        crystals.append(exc)
                yield labels, crystals
                continue
            lattice = batch.column("lattice").combine_chunks().flatten().to_numpy().reshape(-1, 3, 3)
            species_col = batch.column("species").combine_chunks()
            lengths = pc.list_value_length(species_col).to_numpy(zero_copy_only=False)
            bounds = np.concatenate([[0], np.cumsum(lengths)])
            species = species_col.flatten().to_pylist()
            frac = batch.column("frac_coords").combine_chunks().flatten().flatten().to_numpy().reshape(-1, 3)
            if "occupancies" in arrays and not batch.column("occupancies").null_count:
                occ = batch.column("occupancies").combine_chunks().flatten().to_numpy()
            else:
                occ = np.ones(len(frac))
            crystals = [
                Crystal(lattice[i], tuple(species[bounds[i] : bounds[i + 1]]), frac[bounds[i] : bounds[i + 1]], occ[bounds[i] : bounds[i + 1]])
                for i in range(len(labels))
            ]
            yield labels, crystals


def _list_column(arrays: list[np.ndarray], value_type: pa.DataType, width: int | None = None) -> pa.Array:
    lengths = np.array([len(a) for a in arrays], dtype=np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    flat = np.concatenate(arrays) if arrays else np.zeros(0)
    if width is None:
        values = pa.array(flat.reshape(-1), type=value_type)
    else:
        values = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), type=value_type), width)
    return pa.ListArray.from_arrays(offsets, values)


def _sticks_table(rows: list[dict]) -> pa.Table:
    if not rows:
        return STICKS_SCHEMA.empty_table()
    scalars = {name: [r[name] for r in rows] for name in STICKS_SCHEMA.names if name not in ("d", "f2m", "hkl")}
    columns = {name: pa.array(values, type=STICKS_SCHEMA.field(name).type) for name, values in scalars.items()}
    columns["d"] = _list_column([r["d"] for r in rows], pa.float32())
    columns["f2m"] = _list_column([r["f2m"] for r in rows], pa.float32())
    columns["hkl"] = _list_column([r["hkl"].reshape(-1, 3) for r in rows], pa.int16(), width=3)
    return pa.Table.from_pydict(columns).cast(STICKS_SCHEMA)


def split_of(key: str, seed: int, fractions: tuple[float, float, float]) -> str:
    """Deterministic split of a group key: a hash, so adding structures never moves existing groups."""
    h = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    u = int.from_bytes(h, "little") / 2**64
    train, val, _test = fractions
    return "train" if u < train else ("val" if u < train + val else "test")


def merge_sticks(
    chunks: Sequence[str | Path],
    *,
    out: str | Path,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, int]:
    """Concatenate chunk tables and assign ``split`` by group key; returns the rows per split."""
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    # Pass 1: the group keys (one small column). Pass 2: the chunk files, a row group at a time, each
    # batch given its split and written out: memory stays flat with the number of structures, and the
    # sticks are decompressed and compressed once (no join). Rows keep the chunk order, i.e. the order
    # of the structures table. Reading (decompressing, decoding) and writing (encoding, compressing)
    # both run in Arrow's C++ without the GIL, so the next row group is read in a second thread while
    # this one is written: two row groups in memory at most.
    files = [pq.ParquetFile(p) for p in chunks]
    keys = pa.chunked_array([f.read(columns=["group_key"]).column("group_key").cast(pa.string()) for f in files]).unique()
    splits = pa.array([split_of(k, seed, tuple(fractions)) for k in keys.to_pylist()], pa.string())
    schema = STICKS_SCHEMA.append(pa.field("split", pa.string()))
    groups = [(f, g) for f in files for g in range(f.metadata.num_row_groups)]
    counts: dict[str, int] = {}
    with (
        atomic_path(out) as tmp,
        pq.ParquetWriter(tmp, schema, compression="zstd", use_dictionary=_DICTIONARY) as writer,
        ThreadPoolExecutor(max_workers=1) as reader,
    ):
        read = [reader.submit(f.read_row_group, g, columns=STICKS_SCHEMA.names) for f, g in groups[:1]]
        for i in range(len(groups)):
            batch = read.pop().result()
            if i + 1 < len(groups):
                f, g = groups[i + 1]
                read.append(reader.submit(f.read_row_group, g, columns=STICKS_SCHEMA.names))
            split = splits.take(pc.index_in(batch.column("group_key").cast(pa.string()), value_set=keys))
            writer.write_table(batch.cast(STICKS_SCHEMA).append_column("split", split))
            for name, n in zip(*np.unique(split.to_numpy(zero_copy_only=False), return_counts=True)):
                counts[str(name)] = counts.get(str(name), 0) + int(n)
    log.info("merged %d chunks into %s: %s", len(chunks), out, counts)
    return counts
