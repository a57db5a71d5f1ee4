"""Simulate a chunk of a structures table into a sticks table, and merge chunks with a group-wise split.

Sticks table (DESIGN.md): one row per structure with its labels (``id``, ``source``, ``formula``,
``space_group``, ``crystal_system``, ``group_key``) and list columns ``d`` (Å, descending), ``f2m``
(|F|²·multiplicity) and ``hkl``; the merged table adds ``split`` (train/val/test).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from xrdid.io import atomic_path, write_parquet

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

    ``max_sticks``: keep only the strongest sticks (by |F|²·multiplicity) of each structure, in d order.

    A structure whose simulation fails is logged with its reason and left out of the chunk (it is
    still listed, with the reason, in the chunk's log).
    """
    from xrdid.simulate.sticks import compute_sticks
    from xrdid.structures.table import structure_from_row

    # Read only this chunk's rows (slice pushed down into the scan), so a job's memory depends on the
    # chunk size, not on the number of structures.
    n_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in structures)
    start, stop = chunk_bounds(n_rows, chunk, n_chunks)
    # Tables of several sources are read as one; a table written before a column existed reads it as null.
    frame = pl.scan_parquet([str(p) for p in structures], missing_columns="insert").slice(start, stop - start).collect()
    rows = frame.to_dicts()
    out_rows, failed = [], 0
    t0 = time.perf_counter()
    for row in rows:
        try:
            structure = structure_from_row(row)
            sticks = compute_sticks(structure, d_min_A)
            if max_sticks is not None and len(sticks.d) > max_sticks:
                sticks = strongest_sticks(sticks, max_sticks)
        except Exception as exc:  # one bad structure never sinks the chunk
            failed += 1
            log.warning("structure %s: simulation failed: %s: %s", row["id"], type(exc).__name__, exc)
            continue
        out_rows.append(
            {
                "id": row["id"],
                "source": row["source"],
                "formula": row["formula"],
                "space_group": row["space_group"],
                "crystal_system": row["crystal_system"],
                "group_key": row_group_key(row, group_by),
                "d": sticks.d.astype(np.float32),
                "f2m": sticks.f2m.astype(np.float32),
                "hkl": sticks.hkl.astype(np.int16),
            }
        )
    elapsed = time.perf_counter() - t0
    write_parquet(_sticks_table(out_rows), out)
    log.info(
        "chunk %d/%d: %d structures simulated in %.2f s (%.1f/s), %d failed",
        chunk, n_chunks, len(out_rows), elapsed, len(out_rows) / max(elapsed, 1e-9), failed,
    )
    return len(out_rows)


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
    paths = [str(p) for p in chunks]
    keys = pl.scan_parquet(paths).select("group_key").unique().collect().get_column("group_key").to_list()
    mapping = pl.DataFrame(
        {"group_key": keys, "split": [split_of(k, seed, tuple(fractions)) for k in keys]},
        schema={"group_key": pl.String, "split": pl.String},
    )
    # Streamed from the chunk files to the output: memory stays flat with the number of structures.
    # Rows keep the chunk order, i.e. the order of the structures table.
    with atomic_path(out) as tmp:
        (
            pl.scan_parquet(paths)
            .join(mapping.lazy(), on="group_key", how="left", maintain_order="left")
            .sink_parquet(tmp, compression="zstd")
        )
    counts = dict(pl.scan_parquet(str(out)).group_by("split").len().collect().iter_rows())
    log.info("merged %d chunks into %s: %s", len(chunks), out, counts)
    return counts
