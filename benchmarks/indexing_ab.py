"""The indexing search at another commit against the working tree's, interleaved on the same peak lists.

``xrdid.indexing.search`` of ``--base`` (``git show REV:…``) is loaded beside the working tree's; the
simulated patterns of benchmarks/indexing.py (same prototypes, augmentation and seeds; every
``--every``-th) are peak-searched once, and each side indexes each peak list in turn (which side first
alternating), CPU time of one thread. A before/after ratio measured in one run, so that load on a shared
machine moves both alike (benchmarks/indexing.py's ratio to the peak search moves with its reference).

    python benchmarks/indexing_ab.py [--base main] [--every 2] [--limit 56]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # one core: before numpy is imported

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from end_to_end_ab import load_at


def peak_lists(limit: int, every: int, seed: int = 2024) -> list:
    """Peak lists of every ``every``-th of benchmarks/indexing.py's simulated patterns (pattern n rendered with
    seed + n)."""
    import torch
    from indexing import prototype_items

    from xrdid.indexing.evaluate import rendered_patterns
    from xrdid.indexing.peaks import find_peaks
    from xrdid.instrument import Augment, get_instrument

    torch.set_num_threads(1)
    inst = get_instrument({"preset": "cu", "n_points": 8501})
    patterns = rendered_patterns(prototype_items(inst, limit), inst, Augment(), seed=seed)
    return [find_peaks(p) for n, (_, p) in enumerate(patterns) if n % every == 0]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main")
    parser.add_argument("--limit", type=int, default=56)
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--time-budget", type=float, default=10.0)
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("xrdid").setLevel(logging.ERROR)
    from xrdid.indexing import search

    with tempfile.TemporaryDirectory() as tmp:
        base = load_at(args.base, Path(tmp), {"search": "src/xrdid/indexing/search.py"})["search"]
    sides = {args.base: base.index_peaks, "working tree": search.index_peaks}
    times: dict[str, list[float]] = {k: [] for k in sides}
    lists = peak_lists(args.limit, args.every)
    for i, pk in enumerate(lists):
        for name in list(sides)[:: 1 if i % 2 == 0 else -1]:
            t = time.process_time()
            sides[name](pk, time_budget_s=args.time_budget)
            times[name].append(time.process_time() - t)
    print(f"{len(lists)} peak lists; CPU s per pattern (the sides in turn, one thread; load average {os.getloadavg()[0]:.1f}):")
    for name, v in times.items():
        print(f"  {name:14s} sum {sum(v):7.1f}  median {np.median(v):.2f}  mean {np.mean(v):.2f}")
    ratio = sum(times[args.base]) / max(sum(times["working tree"]), 1e-9)
    print(f"{args.base} / working tree: {ratio:.2f}x (sums)")
    return {"times": times, "ratio": ratio}


if __name__ == "__main__":
    main()
