"""Does the extinction check on the indexed cell improve on the classifier alone? (xrdid.indexing.combine)

    .venv/bin/python benchmarks/rerank.py [--model CKPT] [--draws 1] [--points 8192] [--limit N]
                                          [--measured ../shared/data/measured] [--weights W BETA UNFITTED]
                                          [--sticks results/novelty-real/sticks.parquet] [--index-budget 4]
                                          [--only val|test|measured ... --save-rows ROWS.pkl] [--load-rows ROWS.pkl ...]
                                          [--gate MIN_M20 MAX_LOG10P MIN_INDEXED MAX_TOP_P LEVEL] [--tune-gate]

1. The AFLOW prototypes shipped with pymatgen (labels by spglib), rendered ``--draws`` times with the
   realistic augmentation (``Augment()``) on the model's instrument at ``--points`` points (a measurement),
   put on the model's grid as ``xrdid predict`` does for the classifier, and indexed on the measurement.
   They are split by a hash of the prototype label into a *validation* half (the weights are chosen
   there: a grid over w, β and the unfitted constant, maximising space-group top-1 + crystal-system
   accuracy, with no crystal system losing recall) and a *test* half (reported).
   With ``--sticks`` (a sticks table with a split), the real structures of its validation split (prototypes
   and CoRE MOF frameworks held out by structure type; every k-th, about ``--limit``) are rendered once as
   lab Cu Kα scans as :mod:`xrdid.evaluate.real_split` renders them, the weights are chosen on them, and
   those of its test split are reported: the classifier's own held-out types rather than prototypes it
   largely trained on.
2. The measured patterns of ``--measured`` (index.csv; the two without a wavelength are skipped) go the
   same way with the chosen weights.

Prints space-group top-1/top-5 and crystal-system accuracy before and after, overall and per true crystal
system, and the time per pattern of indexing + ranking against the classifier's own time measured in the
same run. Re-run it for a new checkpoint (``--model``) and put the weights it prints into
``xrdid.indexing.combine.WEIGHTS``. ``--weights w beta unfitted`` skips the tuning.

3. Gates (:class:`xrdid.indexing.combine.Gate`): ``--gate`` reports one beside the ungated ranking (with the
   weights above); ``--tune-gate`` chooses one and its weights on the validation set over ``GATE_GRID`` ×
   ``GATE_WEIGHTS`` (same criterion) and reports it on every set. Each row keeps its best accepted cell's M20,
   chance log10 p and lines indexed (``combine.cell_quality``), so gates need no re-indexing.

The scoring (indexing) is the slow part: ``--only val --save-rows v.pkl`` and ``--only test measured
--save-rows t.pkl`` run as two processes, then ``--load-rows v.pkl t.pkl`` tunes and reports in seconds.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import os
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from xrdid.labels import CRYSTAL_SYSTEMS, crystal_system

log = logging.getLogger("benchmarks.rerank")
_SYS_OF = np.array([CRYSTAL_SYSTEMS.index(crystal_system(n)) for n in range(1, 231)])


def _prototype_items(bundle, points: int, draws: int, seed: int, limit: int | None):
    """(label, true number, Pattern) of every rendered prototype."""
    import dataclasses

    from xrdid.evaluate.real import aflow_prototypes, sticks_table
    from xrdid.instrument import Augment, Renderer
    from xrdid.readers import Pattern

    protos = aflow_prototypes()
    if limit:
        protos = protos[:: max(1, len(protos) // limit)][:limit]
    inst = dataclasses.replace(bundle.instrument, n_points=points)
    table = sticks_table(protos, inst.d_min_A)
    renderer = Renderer(inst, Augment())
    grid = inst.grid()
    out = []
    for k in range(draws):
        sticks, sg, _ = table.batch(torch.arange(len(table)))
        y, mask = renderer(sticks, torch.Generator().manual_seed(seed + k))
        for i, sid in enumerate(table.ids):
            m = mask[i].numpy() > 0
            out.append((sid, int(sg[i]) + 1, Pattern(grid[m], y[i].numpy()[m].astype(np.float64) * 1e4, "two_theta",
                                                     wavelength_A=inst.wavelength_A, path=sid)))
    return out


def _real_items(sticks: str, split: str, limit: int | None, seed: int):
    """(id, true number, Pattern) of the real structures of ``split`` in a sticks table (prototypes and
    MOFs held out by structure type), rendered once as a lab Cu Kα scan the way
    :mod:`xrdid.evaluate.real_split` renders them; ``limit``: every k-th structure, about that many."""
    from xrdid.evaluate.real_split import real_table, render_patterns
    from xrdid.readers import Pattern

    table = real_table(sticks, split, d_min_A=0.5)
    if limit and len(table) > limit:
        keep = np.arange(0, len(table), len(table) / limit).astype(int)[:limit]
        table = type(table)(ids=[table.ids[i] for i in keep], d=table.d[keep], f2m=table.f2m[keep],
                            space_group=table.space_group[keep], crystal_system=table.crystal_system[keep],
                            sources=[table.sources[i] for i in keep])
    return [(table.ids[i], int(table.space_group[i]) + 1, Pattern(x, y.astype(np.float64) * 1e4, "two_theta", wavelength_A=lam,
                                                                   path=table.ids[i]))
            for i, x, y, lam in render_patterns(table, "cu", draws=1, seed=seed)]


def _measured_items(folder: Path):
    from xrdid.evaluate.real import _true_space_group
    from xrdid.readers import PatternError, read_pattern

    items = []
    for r in csv.DictReader((folder / "index.csv").open()):
        if not r["wavelength_A"]:
            continue
        cifs = sorted(folder.glob(f"iucr__{r['file'].split('__')[0]}__*.cif"))
        try:
            items.append((r["file"], _true_space_group(cifs[0], 0.01), read_pattern(folder / r["file"], wavelength_A=float(r["wavelength_A"]))))
        except (PatternError, IndexError, ValueError) as exc:
            log.warning("%s: skipped (%s)", r["file"], exc)
    return items


def _score_rows(bundle, items, budget_s: float = 4.0):
    """Classifier probabilities and the extinction fits of all 230 groups, per pattern; and the times."""
    from xrdid.indexing.combine import cell_quality, group_scores
    from xrdid.indexing.peaks import IndexingError, find_peaks
    from xrdid.indexing.search import index_peaks
    from xrdid.predict import PredictionError, prepare

    rows, t_cnn, t_idx = [], [], []
    for n, (name, true, pattern) in enumerate(items):
        try:
            y, mask = prepare(bundle, pattern)
        except PredictionError as exc:
            log.warning("%s: not classified (%s)", name, exc)
            continue
        t0 = time.perf_counter()
        with torch.no_grad():
            from xrdid.train.loop import model_input

            yt, mt = torch.as_tensor(y)[None], torch.as_tensor(mask)[None]
            sg_p, cs_p = bundle.probabilities(*bundle.model(model_input(yt, mt)))
        t1, c1 = time.perf_counter(), time.process_time()
        sg_p, cs_p = sg_p[0].numpy().astype(np.float64), cs_p[0].numpy().astype(np.float64)
        best, t_fit, c_fit = None, 0.0, 0.0
        try:
            peaks = find_peaks(pattern)
            idx = index_peaks(peaks, system_probabilities={s: float(cs_p[i]) for i, s in enumerate(CRYSTAL_SYSTEMS)}, time_budget_s=budget_s)
            best = idx.best
            t_fit, c_fit = time.perf_counter(), time.process_time()
            fits = group_scores(idx, peaks, range(1, 231))
            t_fit, c_fit = time.perf_counter() - t_fit, time.process_time() - c_fit
        except IndexingError:
            fits, best, t_fit, c_fit = {}, None, 0.0, 0.0
        t2, c2 = time.perf_counter(), time.process_time()
        t_cnn.append(t1 - t0)
        t_idx.append(t2 - t1)
        m = np.zeros(230)
        miss = np.zeros(230)
        fitted = np.zeros(230, bool)
        for g, f in fits.items():
            if f is not None:
                m[g - 1], miss[g - 1], fitted[g - 1] = f[0], f[1], True
        rows.append({"name": name, "true": true, "sg_p": sg_p, "cs_p": cs_p, "m": m, "miss": miss, "fitted": fitted,
                     "cell": cell_quality(best), "t_index": t2 - t1, "t_fit": t_fit,
                     "cpu_index": c2 - c1, "cpu_fit": c_fit})
        if (n + 1) % 50 == 0:
            log.info("%d/%d patterns, %.2f s each", n + 1, len(items), np.mean(t_idx))
    return rows, np.asarray(t_cnn), np.asarray(t_idx)


def _predict(row, weights, gate=None):
    """(space groups best first, crystal system index) for a row; weights None: the classifier alone; ``gate``
    (combine.Gate): the combined ranking only where it opens, as ``second_opinion`` applies it."""
    from xrdid.indexing.combine import gate_open, system_first

    if weights is None or not gate_open(gate, row["cell"], row["sg_p"]):
        return np.argsort(-row["sg_p"], kind="stable") + 1, int(np.argmax(row["cs_p"]))
    logp = np.log(np.clip(row["sg_p"], 1e-30, None))
    bonus = np.where(row["fitted"], weights.w * (row["m"] - weights.beta * row["miss"]), weights.w * weights.unfitted)
    score = logp + bonus
    post = np.exp(score - score.max())
    per_system = np.bincount(_SYS_OF, weights=post, minlength=len(CRYSTAL_SYSTEMS))
    c = int(np.argmax(per_system))
    if gate is not None and gate.level == "crystal_system":
        return system_first(row["sg_p"], CRYSTAL_SYSTEMS[c]) + 1, c
    return np.argsort(-score, kind="stable") + 1, c


def _metrics(rows, weights, gate=None):
    if not rows:
        return {"top1": float("nan"), "top5": float("nan"), "cs": float("nan")}
    preds = [_predict(r, weights, gate) for r in rows]
    return {
        "top1": float(np.mean([p[0][0] == r["true"] for p, r in zip(preds, rows, strict=True)])),
        "top5": float(np.mean([r["true"] in p[0][:5] for p, r in zip(preds, rows, strict=True)])),
        "cs": float(np.mean([CRYSTAL_SYSTEMS[p[1]] == crystal_system(r["true"]) for p, r in zip(preds, rows, strict=True)])),
    }


def _per_system(rows, weights, gate=None):
    out = {}
    for cs in CRYSTAL_SYSTEMS:
        rs = [r for r in rows if crystal_system(r["true"]) == cs]
        if rs:
            out[cs] = _metrics(rs, weights, gate)
    return out


def tune(rows):
    """Weights maximising top-1 + crystal-system accuracy on ``rows`` with no crystal system losing recall."""
    from xrdid.indexing.combine import Weights

    before = _per_system(rows, None)
    best = None
    for w, beta, u in itertools.product((0.0, 1, 2, 3, 4, 6, 8, 12, 16), (0.0, 0.5, 1, 2), (0.0, 0.25, 0.5, 0.75)):
        weights = Weights(w, beta, u)
        m = _metrics(rows, weights)
        after = _per_system(rows, weights)
        losses = sum(max(0.0, before[s]["cs"] - after[s]["cs"]) for s in after)
        key = (-round(losses, 6), m["top1"] + m["cs"], m["top5"], -w)
        if best is None or key > best[0]:
            best = (key, weights)
    return best[1]


GATE_GRID = {"min_m20": (0.0, 5.0, 10.0, 20.0), "max_log10p": (0.0, -5.0, -10.0, -20.0), "min_indexed": (0, 10, 15, 20),
             "max_top_probability": (1.0, 0.8, 0.6, 0.4), "level": ("space_group", "crystal_system")}
GATE_WEIGHTS = [(w, b, 0.0) for w in (1, 3, 6, 12) for b in (0.0, 1.0)]


def tune_gate(rows):
    """(weights, gate) maximising top-1 + crystal-system accuracy on ``rows`` with no crystal system losing recall
    (ties: top-5, then the gate that overrides least): a grid over ``GATE_GRID`` × ``GATE_WEIGHTS``."""
    from xrdid.indexing.combine import Gate, Weights, gate_open

    systems = np.array([CRYSTAL_SYSTEMS.index(crystal_system(r["true"])) for r in rows])

    def hits(weights, level):
        g = Gate(level=level)  # open for every indexed row; the grid's thresholds select among them below
        out = np.zeros((len(rows), 3), bool)
        for i, r in enumerate(rows):
            order, c = _predict(r, weights, g if r["cell"]["indexed"] else None)
            out[i] = order[0] == r["true"], r["true"] in order[:5], c == systems[i]
        return out

    base = np.array([[p[0][0] == r["true"], r["true"] in p[0][:5], p[1] == s]
                     for r, s, p in ((r, s, _predict(r, None)) for r, s in zip(rows, systems, strict=True))])
    before = np.array([base[systems == k, 2].mean() if (systems == k).any() else 0.0 for k in range(len(CRYSTAL_SYSTEMS))])
    best = None
    for wt in GATE_WEIGHTS:
        weights = Weights(*wt)
        for level in GATE_GRID["level"]:
            after_all = hits(weights, level)
            for m20, lp, ni, tp in itertools.product(*(GATE_GRID[k] for k in ("min_m20", "max_log10p", "min_indexed", "max_top_probability"))):
                gate = Gate(m20, lp, ni, tp, level)
                open_ = np.array([gate_open(gate, r["cell"], r["sg_p"]) for r in rows])
                h = np.where(open_[:, None], after_all, base)
                after = np.array([h[systems == k, 2].mean() if (systems == k).any() else 0.0 for k in range(len(CRYSTAL_SYSTEMS))])
                losses = float(np.clip(before - after, 0.0, None).sum())
                key = (-round(losses, 6), round(h[:, 0].mean() + h[:, 2].mean(), 6), round(h[:, 1].mean(), 6), -int(open_.sum()))
                if best is None or key > best[0]:
                    best = (key, weights, gate)
    return best[1], best[2]


def _table(title: str, rows, weights, gate=None) -> str:
    lines = [title, "", "| true crystal system | n | SG top-1 before → after | SG top-5 before → after | crystal system before → after |",
             "|---|---|---|---|---|"]
    groups = [("all", rows)] + [(cs, [r for r in rows if crystal_system(r["true"]) == cs]) for cs in CRYSTAL_SYSTEMS]
    for name, rs in groups:
        if not rs:
            continue
        b, a = _metrics(rs, None), _metrics(rs, weights, gate)
        lines.append(f"| {name} | {len(rs)} | {100 * b['top1']:.1f} → {100 * a['top1']:.1f} % | {100 * b['top5']:.1f} → {100 * a['top5']:.1f} % | "
                     f"{100 * b['cs']:.1f} → {100 * a['cs']:.1f} % |")
    return "\n".join(lines)


def _cost(rows) -> str:
    """Wall and CPU seconds of indexing + ranking a pattern, and of the extinction fits alone (what --rerank adds
    to the indexing ``xrdid predict`` runs by default); the fits include filling the per-group absence cache."""
    out = []
    for kind, ti, tf in (("wall", "t_index", "t_fit"), ("CPU", "cpu_index", "cpu_fit")):
        if not rows or ti not in rows[0]:
            continue
        t, f = np.array([r[ti] for r in rows]), np.array([r[tf] for r in rows])
        out.append(f"{kind}: indexing + ranking median {np.median(t):.2f} s, mean {np.mean(t):.2f} s ({np.mean(t < 1.0) * 100:.0f} % under 1 s), "
                   f"of which the extinction fits median {np.median(f):.2f} s, mean {np.mean(f):.2f} s")
    return "; ".join(out)


def main(argv=None) -> int:
    import dataclasses
    import pickle

    from xrdid.indexing.combine import RERANK_GATE, WEIGHTS, Gate, Weights, gate_open
    from xrdid.predict import load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the pretrained model)")
    ap.add_argument("--prior", default="checkpoint", help="label prior (see xrdid predict --prior)")
    ap.add_argument("--draws", type=int, default=1, help="augmented renderings per prototype")
    ap.add_argument("--points", type=int, default=8192, help="points of the rendered measurement (the model's 2θ range)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--limit", type=int, default=None, help="about this many prototypes (quick looks)")
    ap.add_argument("--measured", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "measured"))
    ap.add_argument("--sticks", default=None,
                    help="a sticks table with a split: tune on its real validation structures and report on its real test "
                         "structures (held out by type) instead of the AFLOW prototype halves")
    ap.add_argument("--weights", type=float, nargs=3, metavar=("W", "BETA", "UNFITTED"), default=None,
                    help="use these weights instead of tuning on the validation half")
    ap.add_argument("--index-budget", type=float, default=4.0, help="indexing time budget, s a pattern (predict's: 4)")
    ap.add_argument("--only", choices=("val", "test", "measured"), nargs="+", default=None,
                    help="score only these sets (with --save-rows: run the sets as parallel processes, then --load-rows)")
    ap.add_argument("--save-rows", default=None, help="write the scored rows (pickle) for --load-rows, and stop")
    ap.add_argument("--load-rows", nargs="+", default=None, help="rows written by --save-rows (merged) instead of scoring")
    ap.add_argument("--gate", nargs=5, metavar=("MIN_M20", "MAX_LOG10P", "MIN_INDEXED", "MAX_TOP_P", "LEVEL"), default=None,
                    help="a combine.Gate to report beside the ungated ranking (LEVEL space_group | crystal_system)")
    ap.add_argument("--tune-gate", action="store_true", help="choose a gate and its weights on the validation set (GATE_GRID)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("xrdid").setLevel(logging.ERROR)
    torch.set_num_threads(1)

    sets = {"val": [], "test": [], "measured": []}
    if args.load_rows:
        for path in args.load_rows:
            with open(path, "rb") as fh:
                saved = pickle.load(fh)
            what = saved.pop("what")
            for k, v in saved.items():
                sets[k] += v
        print(f"rows of {', '.join(args.load_rows)}; load average {os.getloadavg()[0]:.1f}")
    else:
        only = set(args.only or ("val", "test", "measured"))
        bundle = load_model(args.model, prior=args.prior)
        print(f"model {bundle.path}; prior {args.prior}; draws {args.draws}; load average {os.getloadavg()[0]:.1f}")
        t_cnn = []
        if args.sticks:
            what = f"Real structures of {args.sticks}"
            for split in ("val", "test"):
                if split in only:
                    sets[split], tc, _ = _score_rows(bundle, _real_items(args.sticks, split, args.limit, args.seed), args.index_budget)
                    t_cnn.append(tc)
        else:
            what = "AFLOW prototypes"
            if only & {"val", "test"}:
                rows, tc, _ = _score_rows(bundle, _prototype_items(bundle, args.points, args.draws, args.seed, args.limit), args.index_budget)
                t_cnn.append(tc)
                sets["val"] = [r for r in rows if zlib.crc32(r["name"].encode()) % 2 == 0 and "val" in only]
                sets["test"] = [r for r in rows if zlib.crc32(r["name"].encode()) % 2 == 1 and "test" in only]
        folder = Path(args.measured)
        if "measured" in only:
            if (folder / "index.csv").is_file():
                sets["measured"], tc, _ = _score_rows(bundle, _measured_items(folder), args.index_budget)
                t_cnn.append(tc)
            else:
                print(f"no measured patterns at {folder}; skipped")
        if t_cnn:
            print(f"the classifier alone {1e3 * np.median(np.concatenate(t_cnn)):.1f} ms a pattern (median)")
        if args.save_rows:
            with open(args.save_rows, "wb") as fh:
                pickle.dump({"what": what, **sets}, fh)
            print(f"rows written to {args.save_rows}: " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()))
            return 0
    val, test, mrows = sets["val"], sets["test"], sets["measured"]
    weights = Weights(*args.weights) if args.weights else tune(val)
    print(_cost(val + test) + f"; load average {os.getloadavg()[0]:.1f}")
    print(f"weights: {weights} ({'given' if args.weights else 'tuned on the validation half'}; module default {WEIGHTS}; "
          f"module gate {RERANK_GATE})\n")
    print(_table(f"{what}, validation ({len(val)} patterns; weights chosen here)", val, weights) + "\n")
    print(_table(f"{what}, test ({len(test)} patterns)", test, weights) + "\n")
    if mrows:
        print(_table(f"Measured patterns ({len(mrows)} with a stated wavelength)", mrows, weights) + "\n")
        print("| file | true | classifier top-1 | combined top-1 | true rank before → after |\n|---|---|---|---|---|")
        for r in mrows:
            before, after = _predict(r, None)[0].tolist(), _predict(r, weights)[0].tolist()
            print(f"| {r['name']} | {r['true']} | {before[0]} | {after[0]} | {before.index(r['true']) + 1} → {after.index(r['true']) + 1} |")
        print()
    gates = []
    if args.gate:
        g = args.gate
        gates.append((weights, Gate(float(g[0]), float(g[1]), int(g[2]), float(g[3]), g[4]), "given"))
    if args.tune_gate:
        gw, gg = tune_gate(val)
        gates.append((gw, gg, "tuned on the validation set"))
    for gw, gg, how in gates:
        print(f"gate: {gg}, weights {gw} ({how})")
        for name, rows in (("validation", val), ("test", test), ("measured", mrows)):
            if rows:
                n_open = sum(gate_open(gg, r["cell"], r["sg_p"]) for r in rows)
                print(f"{name}: the ranking overrides on {n_open} of {len(rows)}")
        print()
        for name, rows in (("validation", val), ("test", test), ("measured", mrows)):
            if rows:
                print(_table(f"{what if name != 'measured' else 'Measured patterns'}, {name}, gated ({dataclasses.astuple(gg)})", rows, gw, gg) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
