"""How the simulation stage scales with cores: measured 1 vs N cores, and an extrapolation to a big run.

    python benchmarks/scaling.py                      # ~150 synthetic structures, 8 chunks, cores 1 and 2
    python benchmarks/scaling.py --per-group 2 --chunks 16 --cores 1 4 --target-cores 64 --target-structures 118399

It builds one synthetic structures table in a scratch copy of the workflow, then runs only the
simulation stage (every `simulate_chunk` job, then `merge_sticks`) on that same table with each
`--cores` value, from scratch each time, and prints the wall-clock speed-up against the 1-core run.

The extrapolation uses the per-chunk `benchmark:` files of the 1-core run
(results/{dataset}/benchmarks/simulate_chunk/{i}.tsv, wall seconds of the whole job) and the
compute time each chunk logs ("N structures simulated in T s"): a chunk costs
    t_chunk = t_start + n_structures × t_structure,
with t_start the job start-up (Python, imports, reading the table) and t_structure the simulation of
one structure. For the target, the chunk count is what `simulate.chunks: auto` picks (4 per core)
and chunks run in waves of `target_cores`:
    T = ceil(chunks / cores) × (t_start + (structures / chunks) × t_structure) + t_merge.
t_merge is measured in-process (no start-up) on the chunk files listed `--merge-copies` times over,
and scaled linearly to the target (the merge streams chunk files, so its cost is about linear).
On a shared machine wall times include waiting for a core. So the same extrapolation is also made
from CPU times, which are what a dedicated core takes: the CPU seconds of the whole 1-core stage
(Snakemake and every job, from getrusage) and of simulating the table in-process (t_structure); the
rest, spread over the chunks, is the start-up of a chunk job.
It assumes the target's structures cost what these synthetic ones cost (Materials Project cells are
on average larger: measure a sample of them for a real estimate) and that cores do not slow each
other down (the measured 1 → N core efficiency is printed so the assumption can be judged).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASET = "scaling"
CHUNK_LOG = re.compile(r"chunk \d+/\d+: (\d+) structures simulated in ([0-9.]+) s")


# The scratch copy of the workflow is the one the workflow tests make.
sys.path.insert(0, str(ROOT / "tests" / "workflow"))
from test_workflow import make_project


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def snakemake(path: Path, cores: int, *targets: str) -> float:
    """Run Snakemake on ``targets``; returns wall seconds. Exits with its output if it fails."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--workflow-profile",
           "workflow/profiles/default", *targets]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=path, check=False, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"snakemake {' '.join(targets)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall


def chunk_times(path: Path, n_chunks: int) -> list[dict]:
    """Per chunk: wall seconds of the job (benchmark TSV) and structures / seconds of the computation (log)."""
    out = []
    for i in range(n_chunks):
        with open(path / "results" / DATASET / "benchmarks" / "simulate_chunk" / f"{i}.tsv") as fh:
            bench = next(csv.DictReader(fh, delimiter="\t"))
        match = CHUNK_LOG.search((path / "results" / DATASET / "logs" / "simulate_chunk" / f"{i}.log").read_text())
        if match is None:
            sys.exit(f"chunk {i}: no 'structures simulated' line in its log")
        out.append({"chunk": i, "job_s": float(bench["s"]), "n": int(match.group(1)), "compute_s": float(match.group(2))})
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space-groups", default="all", help='"all" or comma-separated numbers')
    parser.add_argument("--per-group", type=int, default=1, help="synthetic crystals per space group")
    parser.add_argument("--max-atoms", type=int, default=40)
    parser.add_argument("--chunks", type=int, default=8, help="simulation chunks (the same for every --cores)")
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2], help="core counts to measure; the first is the reference")
    parser.add_argument("--target-cores", type=int, default=64)
    parser.add_argument("--target-structures", type=int, default=118399)
    parser.add_argument("--merge-copies", type=int, default=50, help="times the chunks are merged over, to time the merge")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)

    groups = "all" if args.space_groups == "all" else [int(g) for g in args.space_groups.split(",")]
    config = {
        "dataset": DATASET,
        "structures": {"source": "synthetic",
                       "synthetic": {"space_groups": groups, "per_group": args.per_group, "max_atoms": args.max_atoms}},
        "simulate": {"chunks": args.chunks},
    }
    scratch = args.workdir or Path(tempfile.mkdtemp(prefix="xrdid-scaling-"))
    try:
        make_project(scratch, config)
        table = f"resources/structures/{DATASET}/synthetic.parquet"
        print(f"generating the structures table once ({scratch}) ...", flush=True)
        snakemake(scratch, max(args.cores), table)
        import pyarrow.parquet as pq

        n_structures = pq.read_metadata(scratch / table).num_rows
        sticks = scratch / "results" / DATASET / "sticks"
        runs = {}
        for cores in args.cores:
            shutil.rmtree(sticks, ignore_errors=True)
            (scratch / "results" / DATASET / "sticks.parquet").unlink(missing_ok=True)
            load = os.getloadavg()[0]
            cpu0 = children_cpu_s()
            wall = snakemake(scratch, cores, f"results/{DATASET}/sticks.parquet")
            runs[cores] = {"wall_s": wall, "cpu_s": children_cpu_s() - cpu0,
                           "chunks": chunk_times(scratch, args.chunks), "load_before": load}
            print(f"--cores {cores}: {n_structures} structures in {args.chunks} chunks: {wall:.1f} s wall "
                  f"(load average before: {load:.1f} on {os.cpu_count()} CPUs)", flush=True)

        ref_cores = args.cores[0]
        ref = runs[ref_cores]
        print()
        for cores in args.cores[1:]:
            speedup = ref["wall_s"] / runs[cores]["wall_s"]
            efficiency = speedup / (cores / ref_cores)
            print(f"speed-up {ref_cores} -> {cores} cores: {speedup:.2f}x (parallel efficiency {100 * efficiency:.0f} %)")
            runs[cores]["speedup"] = speedup
            runs[cores]["efficiency"] = efficiency

        chunks = ref["chunks"]
        t_structure = sum(c["compute_s"] for c in chunks) / max(sum(c["n"] for c in chunks), 1)
        t_start = sum(c["job_s"] - c["compute_s"] for c in chunks) / len(chunks)
        with open(scratch / "results" / DATASET / "benchmarks" / "merge_sticks.tsv") as fh:
            merge_s = float(next(csv.DictReader(fh, delimiter="\t"))["s"])
        from xrdid.simulate.chunks import merge_sticks

        chunk_files = sorted(sticks.glob("chunk-*.parquet")) * args.merge_copies
        t0 = time.perf_counter()
        merge_sticks(chunk_files, out=scratch / "merge-timing.parquet")
        t_merge_structure = (time.perf_counter() - t0) / (n_structures * args.merge_copies)
        print(f"per structure {1000 * t_structure:.1f} ms; per chunk job start-up {t_start:.1f} s "
              f"(from the {ref_cores}-core run's benchmark TSVs and chunk logs); merge job {merge_s:.1f} s for "
              f"{n_structures}, in-process merge {1e6 * t_merge_structure:.0f} us per structure "
              f"({n_structures * args.merge_copies} rows)")

        n, c = args.target_structures, args.target_cores
        target_chunks = 4 * c  # simulate.chunks: auto on a c-core machine
        waves = math.ceil(target_chunks / c)

        # CPU times: simulate the whole table in this process (after a warm-up that pays the imports).
        from xrdid.simulate.chunks import simulate_chunk

        structures_table = [scratch / table]
        simulate_chunk(structures_table, chunk=0, n_chunks=n_structures, out=scratch / "warm.parquet", d_min_A=0.5)
        t0 = time.process_time()
        simulate_chunk(structures_table, chunk=0, n_chunks=1, out=scratch / "all.parquet", d_min_A=0.5)
        cpu_structure = (time.process_time() - t0) / n_structures
        t0 = time.process_time()
        merge_sticks(chunk_files, out=scratch / "merge-timing.parquet")
        cpu_merge_structure = (time.process_time() - t0) / (n_structures * args.merge_copies)
        cpu_start = max(ref["cpu_s"] - n_structures * cpu_structure, 0.0) / args.chunks
        cpu = {"stage_cpu_s": ref["cpu_s"], "t_structure_s": cpu_structure, "t_start_s": cpu_start,
               "t_merge_structure_s": cpu_merge_structure}
        print(f"CPU time of the {ref_cores}-core stage {ref['cpu_s']:.1f} s (wall {ref['wall_s']:.1f} s); "
              f"per structure {1000 * cpu_structure:.1f} ms CPU; per chunk start-up (the rest) {cpu_start:.1f} s CPU")

        def extrapolate(label, t_start_, t_structure_, t_merge_structure_):
            per_chunk = t_start_ + (n / target_chunks) * t_structure_
            merge_target = t_start_ + n * t_merge_structure_
            parallel = waves * per_chunk + merge_target
            serial = n * t_structure_ + t_start_ + merge_target
            print(f"extrapolated from {label}: {n} structures on {c} cores, {target_chunks} chunks (auto) of "
                  f"{n / target_chunks:.0f}: {waves} waves x {per_chunk:.0f} s + merge {merge_target:.0f} s = "
                  f"{parallel / 60:.1f} min (one core: {serial / 3600:.1f} h, speed-up {serial / parallel:.0f}x)")
            return {"structures": n, "cores": c, "chunks": target_chunks, "minutes": parallel / 60,
                    "one_core_hours": serial / 3600, "speedup": serial / parallel}

        print()
        target_wall = extrapolate("wall times (this machine, as loaded)", t_start, t_structure, t_merge_structure)
        target_cpu = extrapolate("CPU times (dedicated cores)", cpu_start, cpu_structure, cpu_merge_structure)
        result = {
            "n_structures": n_structures, "chunks": args.chunks, "runs": runs,
            "t_structure_s": t_structure, "t_start_s": t_start, "merge_s": merge_s,
            "t_merge_structure_s": t_merge_structure,
            "cpu": cpu, "target_from_wall": target_wall, "target_from_cpu": target_cpu,
        }
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return result
    finally:
        if args.workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
