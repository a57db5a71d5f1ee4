"""Ours end to end (read + sticks + peaks) at another commit against the working tree, interleaved.

The CIF reader (``xrdid.structures.cif``) and the kernel (``xrdid.simulate.sticks``) of ``--base``
(``git show REV:…``) are loaded beside the working tree's, and the CIFs of benchmarks/end_to_end.py's
draw (same sets, seed and counts) are read, simulated and turned into peaks by each in turn, file
by file (which side first alternating), ``--rounds`` rounds, CPU time of one thread. Peaks must agree (same count, 2θ and
intensity within 1e-9). A before/after ratio measured in one run, so that load moves both alike.

    python benchmarks/end_to_end_ab.py [--base main] [--rounds 5]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # one core: before numpy is imported

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import real_cifs

MODULES = {"cif": "src/xrdid/structures/cif.py", "sticks": "src/xrdid/simulate/sticks.py"}


def load_at(rev: str, tmp: Path, modules: dict | None = None) -> dict:
    """The modules of ``modules`` (default MODULES: key → path in the repository) as they are at ``rev``,
    imported under private names."""
    out = {}
    for key, rel in (modules or MODULES).items():
        path = tmp / f"{key}_base.py"
        path.write_text(subprocess.run(["git", "show", f"{rev}:{rel}"], cwd=HERE.parent, check=True, capture_output=True, text=True).stdout)
        name = f"_base_{key}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        out[key] = module
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--n-mof", type=int, default=4)
    parser.add_argument("--mof-max-atoms", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    real_cifs.one_thread()
    import xrdid.simulate.sticks as new_sticks
    import xrdid.structures.cif as new_cif

    rng = np.random.default_rng(args.seed)
    files = []
    for name in real_cifs.SETS:  # the draw of end_to_end.py
        files += real_cifs.drawn(name, rng, n=args.n, n_mof=args.n_mof, seed=args.seed, mof_max_atoms=args.mof_max_atoms)
    d_min = new_sticks.d_min_for(0.7297, 90.0)

    def ours(cif, sticks, path):
        try:
            entries = [e for e in cif.read_cif_file(path) if e.crystal is not None]
            return sticks.sticks_to_peaks(sticks.compute_sticks(entries[0].crystal, d_min), 0.7297, 5.0, 90.0) if entries else None
        except Exception:  # refused by either: compared below
            return None

    with tempfile.TemporaryDirectory() as tmp:
        base = load_at(args.base, Path(tmp))
        sides = {args.base: (base["cif"], base["sticks"]), "working tree": (new_cif, new_sticks)}
        results = {name: [ours(*mods, f) for f in files] for name, mods in sides.items()}
        a, b = results.values()
        worst = 0.0
        for path, x, y in zip(files, a, b):
            if (x is None) != (y is None) or (x is not None and len(x["two_theta"]) != len(y["two_theta"])):
                raise SystemExit(f"{path.name}: the two sides disagree on the peaks")
            if x is not None and len(x["two_theta"]):
                worst = max(worst, float(np.abs(x["two_theta"] - y["two_theta"]).max()), float(np.abs(x["intensity"] - y["intensity"]).max()))
        if worst > 1e-9:
            raise SystemExit(f"peaks differ by {worst:.1e}")
        # Interleaved file by file (the two sides in turn, which first alternating), so that a change of
        # load during a round weighs on both alike.
        times = {name: [] for name in sides}
        order = list(sides)
        for r in range(args.rounds):
            spent = dict.fromkeys(sides, 0.0)
            for i, f in enumerate(files):
                for name in order if (r + i) % 2 == 0 else order[::-1]:
                    t0 = time.process_time()
                    ours(*sides[name], f)
                    spent[name] += time.process_time() - t0
            for name in sides:
                times[name].append(spent[name])
    med = {name: float(np.median(t)) for name, t in times.items()}
    ratio = med[args.base] / med["working tree"]
    print(f"{len(files)} CIFs, peaks agree (worst difference {worst:.1e}); CPU s per round ({args.rounds} rounds, the sides in turn file by file, one thread):")
    for name, t in times.items():
        print(f"  {name:14s} " + " ".join(f"{x:.2f}" for x in t) + f"  median {med[name]:.2f} s")
    print(f"{args.base} / working tree: {ratio:.3f}x; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return {"files": len(files), "median_s": med, "ratio": ratio}


if __name__ == "__main__":
    main()
