"""`xrdid index FILE... [--wavelength Å | --instrument NAME] [--json] [--cells N] [--time-budget S] [--kalpha2 MODE]`:
the unit cell of measured powder patterns, by powder indexing (no model involved).

Each pattern goes through the peak search (background, Kα₂ stripping for tube wavelengths, positions with
uncertainties) and the search for cells of all 14 Bravais lattices (xrdid.indexing), and the best
candidate cells are listed with their figures of merit (de Wolff M20, Smith–Snyder F_N), the indexed and
unindexed lines and the refined zero shift; a cell that could be a chance fit (few lines) is marked
"tentative" with the reason (``confidence``, ``confidence_reason`` in the JSON); ``--json`` prints one object per file instead (``file``,
``indexed``, ``message``, ``cells`` […], ``peaks``). A pattern no cell indexes says so ("not indexed" and
why); no cell is invented. A file that cannot be read is reported on stderr, naming it; the other files
are still processed and the exit status is 1.
"""

from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    from xrdid.commands import add_pattern_arguments

    p = sub.add_parser("index", help="unit cell of measured patterns (powder indexing)", description=__doc__.split("\n\n", 1)[1])
    add_pattern_arguments(p, "pattern files (.xy, .xye, .csv, .xrdml, …); x in 2θ, Q or d")
    p.add_argument("--json", action="store_true", help="one JSON object per file instead of a table")
    p.add_argument("--cells", type=int, default=3, metavar="N", help="candidate cells listed per pattern (default 3)")
    p.add_argument("--time-budget", type=float, default=10.0, metavar="S", help="CPU seconds of search per pattern (default 10)")
    p.add_argument("--kalpha2", choices=("auto", "strip", "none"), default="auto",
                   help="Kα2 lines of a tube wavelength: detect and strip (auto, default), always strip, or leave")
    p.set_defaults(run=run)


def _table(name: str, result, peaks) -> str:
    lines = [f"{name}: {len(peaks)} peaks (λ = {peaks.wavelength_A:g} Å, Kα2 {peaks.kalpha2}); {result.message}; {result.seconds:.1f} s"]
    for i, c in enumerate(result.cells, 1):
        d = c.to_dict()
        zero = "" if d["zero_shift_deg"] is None else f", zero {d['zero_shift_deg']:+.4f}°"
        lines.append(
            f"  {i}. {d['bravais']:3s} a {d['a']:.4f}  b {d['b']:.4f}  c {d['c']:.4f} Å  α {d['alpha']:.3f}  β {d['beta']:.3f}  "
            f"γ {d['gamma']:.3f}°  V {d['volume']:.2f} Å³  M{d['F_N']['N']} {d['M20']:.1f}  F{d['F_N']['N']} {d['F_N']['value']:.1f}"
            f"  ({d['indexed']} indexed, {d['unindexed']} unindexed{zero})"
        )
        if d["confidence"] == "tentative":
            lines.append(f"     tentative: {d['confidence_reason']}")
    return "\n".join(lines)


def run(args) -> int:
    from xrdid.commands import wavelength_of
    from xrdid.indexing.combine import index_pattern
    from xrdid.indexing.peaks import IndexingError
    from xrdid.readers import PatternError, read_patterns

    if args.cells < 1 or args.time_budget <= 0:
        print("xrdid index: --cells must be ≥ 1 and --time-budget > 0", file=sys.stderr)
        return 2
    wavelength = wavelength_of(args)
    failed = 0
    for path, pattern in read_patterns(args.files, wavelength_A=wavelength):
        try:
            if isinstance(pattern, PatternError):
                raise pattern
            peaks, result = index_pattern(pattern, wavelength_A=wavelength, time_budget_s=args.time_budget, kalpha2=args.kalpha2)
        except (PatternError, IndexingError) as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        except Exception as exc:  # one broken file must not stop the batch
            failed += 1
            print(f"error: {path}: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        result.cells = result.cells[: args.cells]
        if args.json:
            print(json.dumps({"file": str(path), "indexed": result.indexed, "message": result.message, "seconds": round(result.seconds, 3),
                              "cells": [c.to_dict() for c in result.cells], "peaks": peaks.to_dict()}), flush=True)
        else:
            print(_table(str(path), result, peaks), flush=True)
    if failed:
        print(f"xrdid index: {failed} of {len(args.files)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0
