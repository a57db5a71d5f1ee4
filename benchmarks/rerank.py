"""Does the extinction check on the indexed cell improve on the classifier alone? (xrdid.indexing.combine)

    .venv/bin/python benchmarks/rerank.py [--model CKPT] [--draws 1] [--points 8192] [--limit N]
                                          [--measured ../shared/data/measured] [--weights W BETA UNFITTED]
                                          [--sticks results/pretrain4/sticks.parquet]

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


def _score_rows(bundle, items):
    """Classifier probabilities and the extinction fits of all 230 groups, per pattern; and the times."""
    from xrdid.indexing.combine import group_scores
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
        t1 = time.perf_counter()
        sg_p, cs_p = sg_p[0].numpy().astype(np.float64), cs_p[0].numpy().astype(np.float64)
        try:
            peaks = find_peaks(pattern)
            idx = index_peaks(peaks, system_probabilities={s: float(cs_p[i]) for i, s in enumerate(CRYSTAL_SYSTEMS)}, time_budget_s=4.0)
            fits = group_scores(idx, peaks, range(1, 231))
        except IndexingError:
            fits = {}
        t2 = time.perf_counter()
        t_cnn.append(t1 - t0)
        t_idx.append(t2 - t1)
        m = np.zeros(230)
        miss = np.zeros(230)
        fitted = np.zeros(230, bool)
        for g, f in fits.items():
            if f is not None:
                m[g - 1], miss[g - 1], fitted[g - 1] = f[0], f[1], True
        rows.append({"name": name, "true": true, "sg_p": sg_p, "cs_p": cs_p, "m": m, "miss": miss, "fitted": fitted})
        if (n + 1) % 50 == 0:
            log.info("%d/%d patterns, %.2f s each", n + 1, len(items), np.mean(t_idx))
    return rows, np.asarray(t_cnn), np.asarray(t_idx)


def _predict(row, weights):
    """(space groups best first, crystal system index) for a row; weights None: the classifier alone."""
    if weights is None:
        return np.argsort(-row["sg_p"], kind="stable") + 1, int(np.argmax(row["cs_p"]))
    logp = np.log(np.clip(row["sg_p"], 1e-30, None))
    bonus = np.where(row["fitted"], weights.w * (row["m"] - weights.beta * row["miss"]), weights.w * weights.unfitted)
    score = logp + bonus
    post = np.exp(score - score.max())
    per_system = np.bincount(_SYS_OF, weights=post, minlength=len(CRYSTAL_SYSTEMS))
    return np.argsort(-score, kind="stable") + 1, int(np.argmax(per_system))


def _metrics(rows, weights):
    if not rows:
        return {"top1": float("nan"), "top5": float("nan"), "cs": float("nan")}
    preds = [_predict(r, weights) for r in rows]
    return {
        "top1": float(np.mean([p[0][0] == r["true"] for p, r in zip(preds, rows, strict=True)])),
        "top5": float(np.mean([r["true"] in p[0][:5] for p, r in zip(preds, rows, strict=True)])),
        "cs": float(np.mean([CRYSTAL_SYSTEMS[p[1]] == crystal_system(r["true"]) for p, r in zip(preds, rows, strict=True)])),
    }


def _per_system(rows, weights):
    out = {}
    for cs in CRYSTAL_SYSTEMS:
        rs = [r for r in rows if crystal_system(r["true"]) == cs]
        if rs:
            out[cs] = _metrics(rs, weights)
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


def _table(title: str, rows, weights) -> str:
    lines = [title, "", "| true crystal system | n | SG top-1 before → after | SG top-5 before → after | crystal system before → after |",
             "|---|---|---|---|---|"]
    groups = [("all", rows)] + [(cs, [r for r in rows if crystal_system(r["true"]) == cs]) for cs in CRYSTAL_SYSTEMS]
    for name, rs in groups:
        if not rs:
            continue
        b, a = _metrics(rs, None), _metrics(rs, weights)
        lines.append(f"| {name} | {len(rs)} | {100 * b['top1']:.1f} → {100 * a['top1']:.1f} % | {100 * b['top5']:.1f} → {100 * a['top5']:.1f} % | "
                     f"{100 * b['cs']:.1f} → {100 * a['cs']:.1f} % |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from xrdid.indexing.combine import WEIGHTS, Weights
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
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("xrdid").setLevel(logging.ERROR)
    torch.set_num_threads(1)

    bundle = load_model(args.model, prior=args.prior)
    print(f"model {bundle.path}; prior {args.prior}; draws {args.draws}; load average {os.getloadavg()[0]:.1f}")
    if args.sticks:
        what = f"Real structures of {args.sticks}"
        val, t_cnn, t_idx = _score_rows(bundle, _real_items(args.sticks, "val", args.limit, args.seed))
        test, t_cnn2, t_idx2 = _score_rows(bundle, _real_items(args.sticks, "test", args.limit, args.seed))
        t_cnn, t_idx = np.concatenate([t_cnn, t_cnn2]), np.concatenate([t_idx, t_idx2])
    else:
        what = "AFLOW prototypes"
        rows, t_cnn, t_idx = _score_rows(bundle, _prototype_items(bundle, args.points, args.draws, args.seed, args.limit))
        val = [r for r in rows if zlib.crc32(r["name"].encode()) % 2 == 0]
        test = [r for r in rows if zlib.crc32(r["name"].encode()) % 2 == 1]
    weights = Weights(*args.weights) if args.weights else tune(val)
    print(f"indexing + extinction ranking: median {np.median(t_idx):.2f} s, mean {np.mean(t_idx):.2f} s per pattern "
          f"({np.mean(t_idx < 1.0) * 100:.0f} % under 1 s); the classifier alone {1e3 * np.median(t_cnn):.1f} ms "
          f"(× {np.median(t_idx) / max(np.median(t_cnn), 1e-9):.0f}); load average {os.getloadavg()[0]:.1f}")
    print(f"weights: {weights} ({'given' if args.weights else 'tuned on the validation half'}; module default {WEIGHTS})\n")
    print(_table(f"{what}, validation ({len(val)} patterns; weights chosen here)", val, weights) + "\n")
    print(_table(f"{what}, test ({len(test)} patterns)", test, weights) + "\n")
    folder = Path(args.measured)
    if (folder / "index.csv").is_file():
        mrows, _, _ = _score_rows(bundle, _measured_items(folder))
        print(_table(f"Measured patterns ({len(mrows)} with a stated wavelength)", mrows, weights) + "\n")
        print("| file | true | classifier top-1 | combined top-1 | true rank before → after |\n|---|---|---|---|---|")
        for r in mrows:
            before, after = _predict(r, None)[0].tolist(), _predict(r, weights)[0].tolist()
            print(f"| {r['name']} | {r['true']} | {before[0]} | {after[0]} | {before.index(r['true']) + 1} → {after.index(r['true']) + 1} |")
    else:
        print(f"no measured patterns at {folder}; skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
