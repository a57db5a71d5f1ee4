"""Does re-ranking the CNN's top-k space groups by a constrained lattice fit help? (xrdid.rerank)

    .venv/bin/python benchmarks/rerank.py [--model CKPT] [--draws 1] [--k 15] [--measured ../shared/data/measured]

1. The AFLOW prototypes shipped with pymatgen (labels by spglib), rendered on the model's instrument with
   the realistic augmentation (``Augment()``), ``--draws`` seeds each, are split by a hash of the
   prototype label into a *validation* half (weights chosen there: a grid over w, β and the unfitted
   constant, maximising top-1) and a *test* half (reported).
2. The measured patterns of ``--measured`` (index.csv; the two without a wavelength are skipped, as in
   ``xrdid.evaluate.real``) are classified as ``xrdid predict`` does and re-ranked with the chosen weights.

Prints top-1 / top-5 space-group accuracy before and after, overall and per true crystal system, and the
top-k ceiling (the true group among the k candidates at all). ``--weights w beta unfitted`` skips the tuning.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import math
import os
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from xrdid.labels import CRYSTAL_SYSTEMS, crystal_system

log = logging.getLogger("benchmarks.rerank")


def _patterns_prototypes(bundle, draws: int, seed: int):
    """(label, true number, y, mask) of every rendered prototype, draws × prototypes."""
    from xrdid.evaluate.real import aflow_prototypes, sticks_table
    from xrdid.instrument import Augment, Renderer

    table = sticks_table(aflow_prototypes(), bundle.instrument.d_min_A)
    renderer = Renderer(bundle.instrument, Augment())
    out = []
    for k in range(draws):
        gen = torch.Generator().manual_seed(seed + k)
        sticks, sg, _ = table.batch(torch.arange(len(table)))
        y, mask = renderer(sticks, gen)
        for i, sid in enumerate(table.ids):
            out.append((sid, int(sg[i]) + 1, y[i].numpy(), mask[i].numpy()))
    return out


def _score_rows(bundle, items, k: int):
    """CNN top-k and the fits of its candidates, per pattern."""
    from xrdid.rerank import fit_candidates

    from xrdid.predict import predict_arrays

    inst = bundle.instrument
    rows = []
    t0 = time.perf_counter()
    for n, (name, true, y, mask) in enumerate(items):
        (res,) = predict_arrays(bundle, y, mask, top_k=k)
        cands = [(t["number"], t["probability"]) for t in res["top_k"]]
        fits = fit_candidates([c for c, _ in cands], bundle.grid, y, mask, wavelengths_A=inst.wavelengths_A, line_weights=inst.weights)
        rows.append({"name": name, "true": true, "cands": cands, "fits": fits})
        if (n + 1) % 50 == 0:
            log.info("%d/%d patterns, %.2f s each", n + 1, len(items), (time.perf_counter() - t0) / (n + 1))
    return rows, (time.perf_counter() - t0) / max(len(items), 1)


def _ranked(row, weights) -> list[int]:
    from xrdid.rerank import combined_score

    if weights is None:
        return [c for c, _ in row["cands"]]
    s = [(combined_score(math.log(max(p, 1e-30)), row["fits"][c], weights), c) for c, p in row["cands"]]
    return [c for _, c in sorted(s, key=lambda t: -t[0])]


def _accuracy(rows, weights) -> tuple[float, float]:
    if not rows:
        return float("nan"), float("nan")
    r = [_ranked(row, weights) for row in rows]
    return (float(np.mean([x[0] == row["true"] for x, row in zip(r, rows, strict=True)])),
            float(np.mean([row["true"] in x[:5] for x, row in zip(r, rows, strict=True)])))


def tune(rows):
    """Weights maximising top-1 on ``rows`` (ties: top-5, then the smaller w)."""
    from xrdid.rerank import Weights

    best = None
    for w, beta, u in itertools.product((0.0, 0.5, 1, 2, 3, 4, 6, 8, 12), (0.0, 0.5, 1, 2, 4), (0.0, 0.25, 0.5, 0.75, 1.0)):
        weights = Weights(w, beta, u)
        top1, top5 = _accuracy(rows, weights)
        key = (top1, top5, -w)
        if best is None or key > best[0]:
            best = (key, weights)
    return best[1]


def _table(title: str, rows, weights, k: int) -> str:
    lines = [f"{title}", "", f"| true crystal system | n | top-1 before | top-1 after | top-5 before | top-5 after | in top-{k} |", "|---|---|---|---|---|---|---|"]
    groups = [("all", rows)] + [(cs, [r for r in rows if crystal_system(r["true"]) == cs]) for cs in CRYSTAL_SYSTEMS]
    for name, rs in groups:
        if not rs:
            continue
        b1, b5 = _accuracy(rs, None)
        a1, a5 = _accuracy(rs, weights)
        ceiling = np.mean([r["true"] in [c for c, _ in r["cands"]] for r in rs])
        lines.append(f"| {name} | {len(rs)} | {b1:.3f} | {a1:.3f} | {b5:.3f} | {a5:.3f} | {ceiling:.3f} |")
    return "\n".join(lines)


def _measured_items(bundle, folder: Path):
    from xrdid.evaluate.real import _true_space_group
    from xrdid.predict import PredictionError, prepare
    from xrdid.readers import PatternError, read_pattern

    items = []
    for r in csv.DictReader((folder / "index.csv").open()):
        if not r["wavelength_A"]:
            continue
        stem = r["file"].rsplit(".", 1)[0]
        cifs = sorted(folder.glob(f"iucr__{stem.split('__')[0]}__*.cif"))
        try:
            true = _true_space_group(cifs[0], 0.01)
            y, mask = prepare(bundle, read_pattern(folder / r["file"], wavelength_A=float(r["wavelength_A"])))
        except (PatternError, PredictionError, IndexError, ValueError) as exc:
            log.warning("%s: skipped (%s)", r["file"], exc)
            continue
        items.append((r["file"], true, y, mask))
    return items


def main(argv=None) -> int:
    from xrdid.rerank import WEIGHTS, Weights

    from xrdid.predict import load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the pretrained model)")
    ap.add_argument("--draws", type=int, default=1, help="augmented renderings per prototype")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--k", type=int, default=15, help="CNN candidates re-ranked")
    ap.add_argument("--limit", type=int, default=None, help="only the first prototypes (quick looks)")
    ap.add_argument("--measured", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "measured"))
    ap.add_argument("--weights", type=float, nargs=3, metavar=("W", "BETA", "UNFITTED"), default=None,
                    help="use these weights instead of tuning on the validation half")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("xrdid").setLevel(logging.ERROR)
    torch.set_num_threads(1)

    bundle = load_model(args.model)
    print(f"model {bundle.path}; k = {args.k}; draws = {args.draws}; load average {os.getloadavg()[0]:.1f}")
    items = _patterns_prototypes(bundle, args.draws, args.seed)
    if args.limit:
        names = list(dict.fromkeys(name for name, *_ in items))[: args.limit]
        items = [it for it in items if it[0] in set(names)]
    rows, per = _score_rows(bundle, items, args.k)
    val = [r for r in rows if zlib.crc32(r["name"].encode()) % 2 == 0]
    test = [r for r in rows if zlib.crc32(r["name"].encode()) % 2 == 1]
    weights = Weights(*args.weights) if args.weights else tune(val)
    print(f"fits: {per:.2f} s per pattern ({args.k} candidates, 1 thread)")
    print(f"weights: {weights} ({'given' if args.weights else 'tuned on the validation half'}; module default {WEIGHTS})\n")
    print(_table(f"AFLOW prototypes, validation half ({len(val)} patterns; weights chosen here)", val, weights, args.k) + "\n")
    print(_table(f"AFLOW prototypes, test half ({len(test)} patterns)", test, weights, args.k) + "\n")

    folder = Path(args.measured)
    if (folder / "index.csv").is_file():
        mrows, _ = _score_rows(bundle, _measured_items(bundle, folder), args.k)
        print(_table(f"Measured patterns ({len(mrows)} with a stated wavelength)", mrows, weights, args.k) + "\n")
        print("| file | true | CNN top-1 | re-ranked top-1 | true rank before → after |\n|---|---|---|---|---|")
        for r in mrows:
            before, after = _ranked(r, None), _ranked(r, weights)
            rb, ra = (x.index(r["true"]) + 1 if r["true"] in x else "-" for x in (before, after))
            print(f"| {r['name']} | {r['true']} | {before[0]} | {after[0]} | {rb} → {ra} |")
    else:
        print(f"no measured patterns at {folder}; skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
