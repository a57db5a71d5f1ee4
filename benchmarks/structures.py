"""Synthetic structure generation throughput vs. stick simulation, on one core, in the same run.

    python benchmarks/structures.py [--groups-step 10] [--per-group 4]

Generates crystals for every ``groups-step``-th space group with the ``wyckoff`` generator (the
default), with it and real crystals' Wyckoff statistics (``wyckoff_statistics: 0.8``, species weights
1:3:3, as config/pretrain-stage2.yaml), with pyxtal alone (the reference) and with pyxtal plus
variants=4 (element substitution + strain of each pyxtal crystal), then simulates the sticks of the wyckoff crystals, and prints
structures/s for each and their ratios. Generation is the synthetic path's bottleneck when its rate is
below the simulation rate.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups-step", type=int, default=10)
    parser.add_argument("--per-group", type=int, default=4)
    args = parser.parse_args()

    import polars as pl
    from pymatgen.core import Structure

    from xrdid.simulate.sticks import compute_sticks
    from xrdid.structures.synthetic import SyntheticSpec, generate_synthetic

    groups = list(range(1, 231, args.groups_step))
    tmp = tempfile.mkdtemp()
    rates = {}
    frames = {}
    runs = {
        "wyckoff": {"generator": "wyckoff"},
        "wyckoff+statistics": {"generator": "wyckoff", "wyckoff_statistics": 0.8, "species_weights": (1, 3, 3)},
        "pyxtal": {"generator": "pyxtal"},
        "pyxtal+variants=4": {"generator": "pyxtal", "variants": 4},
    }
    for name, settings in runs.items():
        spec = SyntheticSpec(space_groups=groups, per_group=args.per_group, **settings)
        t0 = time.perf_counter()
        n, n_failed = generate_synthetic(spec, out=f"{tmp}/{name}.parquet", failed_out=f"{tmp}/{name}.failed.parquet")
        dt = time.perf_counter() - t0
        frame = frames[name] = pl.read_parquet(f"{tmp}/{name}.parquet")
        relabelled = int((frame["space_group"] != frame["space_group_source"]).sum())
        rates[name] = n / dt
        print(f"generation, {name}: {n} structures ({n_failed} failed, {relabelled} relabelled by spglib, "
              f"{frame['n_sites'].mean():.1f} sites on average) in {dt:.1f} s = {n / dt:.1f} structures/s on one core")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = [Structure.from_str(c, fmt="cif") for c in frames["wyckoff"]["cif"]]
    t0 = time.perf_counter()
    for s in structures:
        compute_sticks(s, 0.5)
    sim = len(structures) / (time.perf_counter() - t0)
    print(f"stick simulation (d >= 0.5 Å) of the same structures: {sim:.1f} structures/s on one core")
    print("ratio simulation / generation: " + ", ".join(f"{sim / r:.1f}x ({name})" for name, r in rates.items()))
    print(f"wyckoff vs pyxtal generation: {rates['wyckoff'] / rates['pyxtal']:.1f}x; "
          f"wyckoff+statistics vs pyxtal: {rates['wyckoff+statistics'] / rates['pyxtal']:.1f}x; "
          f"vs pyxtal+variants=4: {rates['wyckoff'] / rates['pyxtal+variants=4']:.1f}x")


if __name__ == "__main__":
    main()
