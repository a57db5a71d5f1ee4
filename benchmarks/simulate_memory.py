"""Peak memory of one simulation chunk and of the merge as the structures table grows.

    python benchmarks/simulate_memory.py STRUCTURES.parquet [--chunk-rows 100] [--scales 1 10]

Replicates the rows of a structures table (e.g. resources/structures/default/synthetic.parquet) to
each scale, then, in a fresh process each, simulates one chunk of ``chunk-rows`` structures and merges
that many chunks; prints the peak resident memory (ru_maxrss) of each against the smallest scale,
measured in the same run. Flat means a job's memory depends on its chunk, not on the table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import resource, sys
from xrdid.simulate.chunks import simulate_chunk, merge_sticks
mode, table, n_chunks, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if mode == "chunk":
    simulate_chunk([table], chunk=0, n_chunks=n_chunks, out=out, d_min_A=0.5)
else:
    merge_sticks([table] * n_chunks, out=out)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_mb(*args: str) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, *args], check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1]) / 1024


def main() -> None:
    import polars as pl

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("structures")
    parser.add_argument("--chunk-rows", type=int, default=100)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()
    base = pl.read_parquet(args.structures)
    tmp = Path(tempfile.mkdtemp())
    results = []
    for scale in args.scales:
        table = pl.concat([base] * scale)
        path = tmp / f"s{scale}.parquet"
        table.write_parquet(path)
        n_chunks = max(1, table.height // args.chunk_rows)
        chunk_mb = peak_mb("chunk", str(path), str(n_chunks), str(tmp / f"c{scale}.parquet"))
        merge_mb = peak_mb("merge", str(tmp / f"c{scale}.parquet"), str(scale), str(tmp / f"m{scale}.parquet"))
        results.append((scale, table.height, n_chunks, chunk_mb, merge_mb))
    ref = results[0]
    for scale, rows, n_chunks, chunk_mb, merge_mb in results:
        print(
            f"{rows:>8} structures ({n_chunks} chunks of ~{args.chunk_rows}): one chunk job peak {chunk_mb:.0f} MB "
            f"({chunk_mb / ref[3]:.2f}x), merge of {scale}x chunk files peak {merge_mb:.0f} MB ({merge_mb / ref[4]:.2f}x)"
        )


if __name__ == "__main__":
    main()
