"""Powder indexing: is the right cell (within 0.5 % of a Niggli-equivalent cell) among the top 3? (xrdid.indexing)

    .venv/bin/python benchmarks/indexing.py [--instrument cu] [--points 8501] [--draws 1] [--limit N] [--time-budget 10]
                                            [--measured ../shared/data/measured] [--tuning SEED …] [--out results.json]

1. The AFLOW prototypes shipped with pymatgen (ordered ones; truth: spglib's primitive cell), each rendered
   ``--draws`` times on a laboratory Cu Kα1/Kα2 scan (5–90°, 0.01° steps by default) with the realistic
   augmentation of ``xrdid.instrument.Augment`` except lattice strain (it changes the true cell; see
   xrdid.indexing.evaluate), then peak search + indexing with the default settings.
2. The measured development patterns of ``--measured`` with a stated wavelength (13), truth from their
   refined CIFs (any phase of a two-phase pattern counts).
3. With ``--random N``: N lists of lines at random angles (12–85°, Cu Kα1; list i from seed i, 8–15 lines
   for i < 16, 16–24 lines after), indexed with a 3 s budget: every cell accepted there is a false one.
   ``--random-short N``: N lists of 5–7 lines (seeds 1000 + i), where the chance bound has the fewest lines.
   Each false cell is counted as marked tentative or not, as are the right cells of 1 and 2
   (xrdid.indexing.search.confidence). The random lists are line lists: a change of the peak search (such as
   ``--weak-line-retry``, xrdid.indexing.combine.WEAK_LINE_RETRY; ``--weak-line-search``, that and WEAK_LINE_SEARCH;
   ``--supercell-weak-lines``, SUPERCELL_WEAK_LINES) does not touch them; ``--random-patterns N``
   draws the first N of the short lists as noisy patterns and indexes them through the peak search.
4. With ``--tuning SEED …``: instead of 1 (the test half) and 2, the 56 tuning prototypes — every 5th ordered
   prototype from the 3rd (indices 2, 7, 12, …; disjoint from the test half's 0, 5, 10, …, though two AFLOW labels
   occur in both, each time for a different structure) — rendered once per seed (pattern n with seed SEED + n, as
   1) and indexed as 1; a table per seed and one pooled. The draws tuned on: ``--tuning 7000 8000 9000``.

Prints success per true crystal system (right cell first, in the top 3) and time per pattern, with the
time of the peak search alone measured in the same run as the reference (the indexing's cost is the
ratio; both in CPU seconds, the clock of the search budget). Targets (issue 14): top 3 ≥ 95 % cubic to orthorhombic, ≥ 80 % monoclinic and triclinic;
≥ 10 of the 13 measured patterns.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("benchmarks.indexing")


def _table(title: str, summary: dict) -> str:
    lines = [title, "", "| true crystal system | n | right cell first | in the top 3 | median s/pattern | mean s/pattern |",
             "|---|---|---|---|---|---|"]
    for name, b in summary.items():
        lines.append(f"| {name} | {b['n']} | {100 * b['top1']:.1f} % | {100 * b['top3']:.1f} % | {b['median_seconds']:.2f} | {b['mean_seconds']:.2f} |")
    return "\n".join(lines)


def prototype_items(inst, limit: int | None, draws: int = 1, tuning: bool = False) -> list:
    """(id, crystal system, StickBatch of one, [true lattice]) of the ordered AFLOW prototypes (module docstring,
    1), every k-th so that about ``limit`` are used, each ``draws`` times; ``tuning``: the 56 tuning prototypes
    instead (module docstring, 4; ``limit`` ignored)."""
    from xrdid.evaluate.real import aflow_prototypes, spglib_number
    from xrdid.indexing.evaluate import primitive_lattice_of
    from xrdid.instrument import StickBatch
    from xrdid.labels import crystal_system
    from xrdid.simulate.sticks import compute_sticks

    protos = [(label, s) for label, s in aflow_prototypes() if s.is_ordered]
    if tuning:
        protos = protos[TUNING_START::TUNING_STEP][:TUNING_N]
    elif limit:
        protos = protos[:: max(1, len(protos) // limit)][:limit]
    items = []
    for label, s in protos:
        try:
            st = compute_sticks(s, inst.d_min_A)
            truth = primitive_lattice_of(s)
            system = crystal_system(spglib_number(s))
        except Exception as exc:  # a prototype pymatgen cannot simulate is skipped, and said so
            log.warning("%s: skipped (%s)", label, exc)
            continue
        sticks = StickBatch(torch.tensor(np.asarray(st.d, np.float32))[None], torch.tensor(np.asarray(st.f2m, np.float32))[None])
        for k in range(draws):
            items.append((f"{label}#{k}", system, sticks, [truth]))
    return items


# The tuning prototypes (module docstring, 4): every TUNING_STEP-th ordered prototype from index TUNING_START.
TUNING_START, TUNING_STEP, TUNING_N = 2, 5, 56


def _tuning(args, inst) -> dict:
    """Render and index the tuning prototypes once per seed of ``args.tuning`` (module docstring, 4)."""
    from xrdid.indexing.evaluate import index_rendered, summarise
    from xrdid.instrument import Augment

    items = prototype_items(inst, None, tuning=True)
    print(f"{len(items)} tuning prototypes × {len(args.tuning)} draws ({inst.name}, {args.points} points); load average {os.getloadavg()[0]:.1f}")
    draws, pooled = {}, []
    for seed in args.tuning:
        t0 = time.perf_counter()
        rows = [{**r, "seed": seed} for r in index_rendered(items, inst, Augment(), seed=seed, time_budget_s=args.time_budget)]
        summary = summarise(rows)
        print(_table(f"Tuning prototypes, seeds {seed} + n ({len(rows)} patterns, {time.perf_counter() - t0:.0f} s wall, "
                     f"{sum(r['seconds'] for r in rows):.1f} CPU s)", summary))
        print("failures (top 3):", ", ".join(f"{r['id']} [{r['crystal_system']}: {r['best']}]" for r in rows if not (r["rank"] and r["rank"] <= 3)))
        print()
        draws[seed] = {"summary": summary, "rows": rows}
        pooled += rows
    summary = summarise(pooled)
    print(_counts_table(f"Tuning prototypes pooled over seeds {', '.join(map(str, args.tuning))} ({len(pooled)} patterns, "
                        f"{sum(r['seconds'] for r in pooled):.1f} CPU s)", pooled))
    print("per draw (top 3 / first):", ", ".join(f"{s}: {_n(d['rows'], 3)} / {_n(d['rows'], 1)}" for s, d in draws.items()))
    print(_tentative_line(pooled))
    return {"summary": summary, "draws": draws, "rows": pooled}


def _n(rows: list[dict], top: int) -> int:
    return sum(1 for r in rows if r["rank"] and r["rank"] <= top)


def _counts_table(title: str, rows: list[dict]) -> str:
    """Per true crystal system: right cell in the top 3 / first as counts (the README's tuning tables)."""
    lines = [title, "", "| true crystal system | n | in the top 3 / first |", "|---|---|---|"]
    for name in ("cubic", "tetragonal", "hexagonal", "trigonal", "orthorhombic", "monoclinic", "triclinic"):
        rs = [r for r in rows if r["crystal_system"] == name]
        if rs:
            lines.append(f"| {name} | {len(rs)} | {_n(rs, 3)} / {_n(rs, 1)} |")
    lines.append(f"| **pooled** | {len(rows)} | **{_n(rows, 3)} / {_n(rows, 1)}** |")
    return "\n".join(lines)


def _simulated(args, inst) -> dict:
    """Render, index and score the AFLOW prototypes (module docstring, 1)."""
    from xrdid.indexing.evaluate import index_rendered, rendered_patterns, summarise
    from xrdid.indexing.peaks import find_peaks
    from xrdid.instrument import Augment

    items = prototype_items(inst, args.limit, args.draws)
    print(f"{len(items)} simulated patterns ({inst.name}, {args.points} points, {inst.two_theta_min_deg}–{inst.two_theta_max_deg}°); "
          f"load average {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    rows = index_rendered(items, inst, Augment(), seed=args.seed, time_budget_s=args.time_budget)
    wall = time.perf_counter() - t0
    # Reference in the same run: the peak search alone on the first patterns.
    ref = []
    for _, p in rendered_patterns(items[:40], inst, Augment(), seed=args.seed):
        t = time.process_time()
        find_peaks(p)
        ref.append(time.process_time() - t)
    summary = summarise(rows)
    print(_table(f"Simulated AFLOW prototypes ({len(rows)} patterns, {wall:.0f} s wall)", summary))
    med = summary["all"]["median_seconds"]
    print(f"\npeak search alone (reference): median {np.median(ref):.3f} s; indexing incl. peak search: median {med:.2f} s "
          f"= {med / max(np.median(ref), 1e-9):.0f}× the peak search; load average {os.getloadavg()[0]:.1f}\n")
    print("failures (top 3):", ", ".join(f"{r['id']} [{r['crystal_system']}: {r['best']}]" for r in rows if not (r["rank"] and r["rank"] <= 3)))
    print(_tentative_line(rows))
    return {"summary": summary, "rows": rows}


def _tentative_line(rows: list[dict]) -> str:
    """How many right cells (in the top 3) are marked tentative — right cells the output casts doubt on."""
    right = [r for r in rows if r["rank"] and r["rank"] <= 3]
    names = [r.get("id") or r.get("file") for r in right if r["right_tentative"]]
    return f"right cells marked tentative: {len(names)} of {len(right)}" + (f" ({', '.join(names)})" if names else "")


def _random_lists(n: int, wavelength_A: float, short: bool = False) -> dict:
    """Index random line lists (module docstring, 3); how many were (falsely) indexed. ``short``: 5–7 lines each,
    seeds 1000 + i."""
    from xrdid.indexing.peaks import PeakList
    from xrdid.indexing.search import confidence, index_peaks

    rows = []
    for seed in range(1000, 1000 + n) if short else range(n):
        rng = np.random.default_rng(seed)
        if short:
            k = int(rng.integers(5, 8))
        else:
            k = int(rng.integers(8, 16)) if seed < 16 else int(rng.integers(16, 25))
        peaks = PeakList.from_positions(np.sort(rng.uniform(12, 85, k)), wavelength_A, intensity=rng.uniform(5, 100, k))
        result = index_peaks(peaks, time_budget_s=3.0)
        rows.append({"seed": seed, "lines": k, "indexed": result.indexed, "best": result.best.bravais if result.best else None,
                     "tentative": confidence(result.best) == "tentative" if result.best else None})
    return _false_cells(rows, f"Random line lists{' of 5–7 lines' if short else ''}", "lines")


def _false_cells(rows: list[dict], what: str, count: str) -> dict:
    """Print and return how many of ``rows`` (random inputs) were indexed, and how many of those tentatively."""
    bad = [r for r in rows if r["indexed"]]
    n_tent = sum(bool(r["tentative"]) for r in bad)
    print(f"\n{what} falsely indexed: {len(bad)} of {len(rows)}, {n_tent} of them marked tentative"
          + (" (" + ", ".join(f"seed {r['seed']}: {r[count]} {count} → {r['best']}{' tentative' if r['tentative'] else ''}" for r in bad) + ")" if bad else ""))
    return {"n_indexed": len(bad), "n_tentative": n_tent, "rows": rows}


def random_pattern(seed: int, wavelength_A: float):
    """``--random-short``'s line list of ``seed`` drawn as a noisy pattern (see _random_patterns): (lines, Pattern)."""
    from xrdid.readers import Pattern

    rng = np.random.default_rng(seed)
    k = int(rng.integers(5, 8))
    pos, height = np.sort(rng.uniform(12, 85, k)), rng.uniform(5, 100, k)
    x = np.arange(5, 90, 0.01)
    lam = 100 + 2 * (90 - x)
    for p, h in zip(pos, height, strict=True):
        lam = lam + 50 * h * np.exp(-0.5 * ((x - p) / 0.035) ** 2)
    y = np.random.default_rng(seed + 99).poisson(lam).astype(np.float64)
    return k, Pattern(x, y, "two_theta", wavelength_A=wavelength_A, path=str(seed))


def _random_patterns(n: int, wavelength_A: float) -> dict:
    """The line lists of ``--random-short`` (seeds 1000 + i) drawn as patterns — Gaussians of FWHM 0.08° and
    250–5000 counts on a sloping background of 100–270 counts with Poisson noise, 5–90° in 0.01° steps — and
    indexed through the peak search (xrdid.indexing.combine.index_pattern, Kα₂ off, 3 s budget): the false
    indexing of a change to the peak search, which the line lists do not see."""
    from xrdid.indexing.combine import index_pattern
    from xrdid.indexing.search import confidence

    rows = []
    for seed in range(1000, 1000 + n):
        k, pattern = random_pattern(seed, wavelength_A)
        peaks, result = index_pattern(pattern, kalpha2="none", time_budget_s=3.0)
        rows.append({"seed": seed, "lines": k, "peaks": len(peaks), "indexed": result.indexed, "best": result.best.bravais if result.best else None,
                     "tentative": confidence(result.best) == "tentative" if result.best else None})
    return _false_cells(rows, "Random 5–7-line patterns", "peaks")


def main(argv=None) -> int:
    from xrdid.indexing.evaluate import index_measured
    from xrdid.instrument import get_instrument

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instrument", default="cu")
    ap.add_argument("--points", type=int, default=8501)
    ap.add_argument("--draws", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--limit", type=int, default=None, help="every k-th prototype so that about this many are used")
    ap.add_argument("--time-budget", type=float, default=10.0)
    ap.add_argument("--measured", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "measured"))
    ap.add_argument("--out", default=None, help="write all rows and summaries as JSON here")
    ap.add_argument("--measured-only", action="store_true", help="skip the simulated patterns")
    ap.add_argument("--tuning", type=int, nargs="+", default=None, metavar="SEED",
                    help="index the 56 tuning prototypes rendered with each seed (SEED + n) instead of the test half and the measured "
                         "patterns (module docstring, 4; the draws tuned on: 7000 8000 9000)")
    ap.add_argument("--random", type=int, default=0, help="also index this many random line lists (false indexing)")
    ap.add_argument("--random-short", type=int, default=0, help="also index this many random lists of 5–7 lines")
    ap.add_argument("--random-patterns", type=int, default=0, help="also index the first N random-short line lists drawn as noisy patterns")
    ap.add_argument("--weak-line-retry", action="store_true", help="turn on xrdid.indexing.combine.WEAK_LINE_RETRY (off by default)")
    ap.add_argument("--weak-line-search", action="store_true",
                    help="turn on xrdid.indexing.combine.WEAK_LINE_RETRY and WEAK_LINE_SEARCH (off by default; its noise guard WEAK_LINE_SEARCH_LOG10P)")
    ap.add_argument("--supercell-weak-lines", action="store_true", help="turn on xrdid.indexing.combine.SUPERCELL_WEAK_LINES (off by default)")
    ap.add_argument("--matched-filter", type=float, default=None, metavar="SIGMA",
                    help="set xrdid.indexing.peaks.MATCHED_FILTER_SIGMA (matched-filter peak detection; 0 = off, the default)")
    ap.add_argument("--refine-first-lines", type=int, default=None, metavar="N",
                    help="set xrdid.indexing.search.REFINE_FIRST_LINES (trial cells refined on their first N lines first; 0 = off, the default)")
    ap.add_argument("--blend-weight", type=float, default=None, metavar="W",
                    help="set xrdid.indexing.search.BLEND_WEIGHT (weight of overlapped lines in the cell refinement; 1 = off, the default)")
    ap.add_argument("--blend-keep-better", action="store_true",
                    help="turn on xrdid.indexing.search.BLEND_KEEP_BETTER (with --blend-weight: both refinements, the one indexing more kept)")
    ap.add_argument("--dedupe-acceptable-first", action=argparse.BooleanOptionalAction, default=None,
                    help="set xrdid.indexing.search.DEDUPE_ACCEPTABLE_FIRST (an acceptable description of a lattice kept before a rejected one; "
                         "on, the default)")
    ap.add_argument("--supercell-near-parent", type=float, default=None, metavar="FWHMS",
                    help="set xrdid.indexing.search.SUPERCELL_NEAR_PARENT_FWHM (a parent's unindexed line within this many FWHM of one of "
                         "its calculated reflections is not counted as added by a super-cell; 1.0, the default; 0 = off)")
    ap.add_argument("--supercell-min-added", type=int, default=None, metavar="N",
                    help="set xrdid.indexing.search.SUPERCELL_MIN_ADDED (the fewest lines a super-cell must add; 1, the default)")
    ap.add_argument("--search-keep", nargs="+", default=None, metavar="SYSTEM=N",
                    help="set entries of xrdid.indexing.search.SEARCH_KEEP (trial cells refined per system; monoclinic=24 triclinic=24 …)")
    ap.add_argument("--monoclinic-zone-keep", type=int, default=None, metavar="N",
                    help="set xrdid.indexing.search.MONOCLINIC_ZONE_KEEP (h0l zones the monoclinic trials start from; 24, the default)")
    ap.add_argument("--triclinic-first-lines", type=int, default=None, metavar="N",
                    help="set xrdid.indexing.search.TRICLINIC_FIRST_LINES (lines that may be a*, b*, c*; 10, the default)")
    ap.add_argument("--triclinic-cross-order", type=int, default=None, metavar="N",
                    help="set xrdid.indexing.search.TRICLINIC_CROSS_ORDER (largest multiple in the zone relations; 2, the default)")
    ap.add_argument("--triclinic-complete", type=int, default=None, metavar="N",
                    help="set xrdid.indexing.search.TRICLINIC_COMPLETE (a cross term solved from a line off the zones; 0 = off; 2, the default)")
    ap.add_argument("--monoclinic-complete", type=int, default=None, metavar="N",
                    help="set xrdid.indexing.search.MONOCLINIC_COMPLETE (an h0l zone's cross term solved from one of the first N lines "
                         "as 1k1; 0 = off; 6, the default)")
    ap.add_argument("--monoclinic-triple-zones", type=int, default=None, metavar="N",
                    help="set xrdid.indexing.search.MONOCLINIC_TRIPLE_ZONES (h0l zones solved from three lines as h0l forms, the best N "
                         "kept; 0 = off, the default; 2000 measured)")
    ap.add_argument("--consensus-zero-offsets", type=float, nargs="+", default=None, metavar="DEG",
                    help="set xrdid.indexing.search.CONSENSUS_ZERO_OFFSETS_DEG (offsets from an estimated zero shift also tried in the "
                         "monoclinic search; 0 alone = off, the default; -0.02 0.02 measured)")
    ap.add_argument("--consensus-zero-unindexed", type=int, choices=(0, 1), default=None,
                    help="set xrdid.indexing.search.CONSENSUS_ZERO_UNINDEXED (1, the default: the offsets only when no cell is acceptable "
                         "after every system's search, the monoclinic search run again around the estimated zero; 0: in every "
                         "monoclinic search)")
    ap.add_argument("--few-parameter-spare-lines", type=int, default=None, metavar="N",
                    help="set xrdid.indexing.search.FEW_PARAMETER_SPARE_LINES (the cubic to orthorhombic searches run on 2 × parameters "
                         "+ N lines or more; 2, the default; 1 measured)")
    ap.add_argument("--guarded-few-line-search", type=float, default=None, metavar="PER_LINE",
                    help="set xrdid.indexing.search.GUARDED_LOG10P_PER_LINE (the cubic to orthorhombic searches also run on 2 × "
                         "parameters + 1 lines, keeping only cells with p under 10^(−PER_LINE × lines); 0.48, the default; 0 = off: "
                         "GUARDED_FEW_LINE_SEARCH False)")
    ap.add_argument("--settled-monoclinic-m20", type=float, default=None, metavar="M",
                    help="set xrdid.indexing.search.SETTLED_MONOCLINIC_M20 (the monoclinic search skipped only behind a convincing cell of "
                         "M_N ≥ M; 0 = off, the default: GOOD_M20; 50 measured)")
    ap.add_argument("--guarded-orthorhombic", type=float, default=None, metavar="PER_LINE",
                    help="set xrdid.indexing.search.GUARDED_ORTHORHOMBIC_LOG10P_PER_LINE (the guarded orthorhombic search on 7 lines "
                         "keeps cells with p under 10^(−PER_LINE × lines); 0.40, the default; 0 = the general bound)")
    ap.add_argument("--supercell-extra-parameters", type=int, default=None, metavar="N",
                    help="set xrdid.indexing.search.SUPERCELL_EXTRA_PARAMETERS (super-cells of up to N more free parameters than "
                         "their parent, refined from scaled starts too, adding more lines beyond chance than parameters; 1, the default; "
                         "0 = off)")
    ap.add_argument("--supercell-rejected-parents", type=int, default=None, metavar="N",
                    help="set xrdid.indexing.search.SUPERCELL_REJECTED_PARENTS (when no cell is acceptable, super-cells of the best N "
                         "rejected cells too; 0 = off, the default; 3 measured)")
    ap.add_argument("--supercell-same-lines", nargs="*", default=None, metavar="SYSTEM",
                    help="set xrdid.indexing.search.SUPERCELL_SAME_LINES_SYSTEMS (the winner's pseudo-symmetric super-cells, indexing "
                         "the same lines, second; none = off, the default; cubic measured)")
    ap.add_argument("--supercell-same-lines-extra-parameters", type=int, default=None, metavar="N",
                    help="set xrdid.indexing.search.SUPERCELL_SAME_LINES_EXTRA_PARAMETERS (0, the default: same symmetry only)")
    args = ap.parse_args(argv)
    from xrdid.indexing import combine, peaks, search

    # Settings given on the command line (None: the module's default).
    for name, module, attr in (("matched_filter", peaks, "MATCHED_FILTER_SIGMA"), ("refine_first_lines", search, "REFINE_FIRST_LINES"),
                               ("blend_weight", search, "BLEND_WEIGHT"), ("dedupe_acceptable_first", search, "DEDUPE_ACCEPTABLE_FIRST"),
                               ("supercell_near_parent", search, "SUPERCELL_NEAR_PARENT_FWHM"),
                               ("supercell_min_added", search, "SUPERCELL_MIN_ADDED"),
                               ("monoclinic_zone_keep", search, "MONOCLINIC_ZONE_KEEP"),
                               ("triclinic_cross_order", search, "TRICLINIC_CROSS_ORDER"),
                               ("triclinic_first_lines", search, "TRICLINIC_FIRST_LINES"),
                               ("triclinic_complete", search, "TRICLINIC_COMPLETE"),
                               ("monoclinic_complete", search, "MONOCLINIC_COMPLETE"),
                               ("monoclinic_triple_zones", search, "MONOCLINIC_TRIPLE_ZONES"),
                               ("few_parameter_spare_lines", search, "FEW_PARAMETER_SPARE_LINES"),
                               ("guarded_orthorhombic", search, "GUARDED_ORTHORHOMBIC_LOG10P_PER_LINE"),
                               ("supercell_extra_parameters", search, "SUPERCELL_EXTRA_PARAMETERS"),
                               ("supercell_rejected_parents", search, "SUPERCELL_REJECTED_PARENTS"),
                               ("settled_monoclinic_m20", search, "SETTLED_MONOCLINIC_M20"),
                               ("supercell_same_lines_extra_parameters", search, "SUPERCELL_SAME_LINES_EXTRA_PARAMETERS")):
        if getattr(args, name) is not None:
            setattr(module, attr, getattr(args, name))
    if args.guarded_few_line_search is not None:
        search.GUARDED_FEW_LINE_SEARCH = args.guarded_few_line_search > 0
        search.GUARDED_LOG10P_PER_LINE = args.guarded_few_line_search or search.GUARDED_LOG10P_PER_LINE
    if args.supercell_same_lines is not None:
        search.SUPERCELL_SAME_LINES_SYSTEMS = tuple(args.supercell_same_lines)
    if args.consensus_zero_offsets is not None:
        search.CONSENSUS_ZERO_OFFSETS_DEG = tuple(d for d in args.consensus_zero_offsets if d != 0.0)
    if args.consensus_zero_unindexed is not None:
        search.CONSENSUS_ZERO_UNINDEXED = bool(args.consensus_zero_unindexed)
    search.BLEND_KEEP_BETTER = search.BLEND_KEEP_BETTER or args.blend_keep_better
    if args.search_keep:
        search.SEARCH_KEEP = {**search.SEARCH_KEEP, **{k: int(v) for k, v in (kv.split("=") for kv in args.search_keep)}}

    combine.WEAK_LINE_RETRY = combine.WEAK_LINE_RETRY or args.weak_line_retry or args.weak_line_search
    combine.WEAK_LINE_SEARCH = combine.WEAK_LINE_SEARCH or args.weak_line_search
    combine.SUPERCELL_WEAK_LINES = combine.SUPERCELL_WEAK_LINES or args.supercell_weak_lines
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("xrdid").setLevel(logging.ERROR)
    torch.set_num_threads(1)

    inst = get_instrument({"preset": args.instrument, "n_points": args.points})
    out = {}
    if args.tuning:
        out["tuning"] = _tuning(args, inst)
    elif not args.measured_only:
        out["simulated"] = _simulated(args, inst)
    folder = Path(args.measured)
    if args.tuning:  # the tuning draws only (module docstring, 4)
        pass
    elif (folder / "index.csv").is_file():
        mrows = index_measured(folder, time_budget_s=args.time_budget)
        n_ok = sum(1 for r in mrows if r["rank"] and r["rank"] <= 3)
        print(f"\nMeasured patterns with a stated wavelength: right cell in the top 3 for {n_ok} of {len(mrows)}\n")
        print("| file | true crystal system | rank of the right cell | best cell | s |\n|---|---|---|---|---|")
        for r in mrows:
            b = r["best"]
            best = f"{b['bravais']} {b['a']:.3f} {b['b']:.3f} {b['c']:.3f} {b['alpha']:.1f} {b['beta']:.1f} {b['gamma']:.1f} M{b['F_N']['N']} {b['M20']:.0f}" if b else r["message"]
            print(f"| {r['file']} | {r['crystal_system']} | {r['rank'] or '-'} | {best} | {r['seconds']:.1f} |")
        print(_tentative_line(mrows))
        out["measured"] = {"n_top3": n_ok, "rows": mrows}
    else:
        print(f"no measured patterns at {folder}; skipped")
    if args.random:
        out["random"] = _random_lists(args.random, inst.wavelength_A)
    if args.random_short:
        out["random_short"] = _random_lists(args.random_short, inst.wavelength_A, short=True)
    if args.random_patterns:
        out["random_patterns"] = _random_patterns(args.random_patterns, inst.wavelength_A)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
