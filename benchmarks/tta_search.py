"""The search that chose ``xrdid.tta.VARIANTS``: sets of test-time variants scored on the validation split's
real structures, with both averages, as ``python -m xrdid.evaluate.real_split --split val`` scores them
(Cu and MARS profiles, 2 draws, seed 12345, the answer with the stored prior, as is and MP-weighted).

Every pattern is rendered and prepared once; each candidate variant is run through the model once; a set
is then scored from the stored logits. One line per set and average: SG top-1 / top-5 / crystal system
(%) / SG log-loss and triclinic recall (%) for Cu as is, Cu MP-weighted, MARS as is, MARS MP-weighted,
then the criterion (the mean over the four rows of (top-1 + crystal system) / 2, %) and the mean log-loss.
Only the validation split: the test split is scored once, after the choice, by ``real_split --tta``.

    .venv/bin/python benchmarks/tta_search.py --sticks results/novelty-real/sticks.parquet > val_search.txt
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from xrdid.evaluate.real_split import real_table, render_patterns
from xrdid.predict import PredictionError, load_model, prepare
from xrdid.priors import mp_weights, weighted_scores
from xrdid.readers import Pattern
from xrdid.train.loop import model_input
from xrdid.tta import Variant, apply_variant, combine_logits


def pool() -> dict[str, Variant]:
    out = {"id": Variant()}
    for s in (0.01, 0.02, 0.03, 0.04, 0.05):
        out[f"s+{s}"], out[f"s-{s}"] = Variant(shift_deg=s), Variant(shift_deg=-s)
    for e in (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01):
        out[f"e+{e}"], out[f"e-{e}"] = Variant(strain=e), Variant(strain=-e)
    for b in (0.5, 0.7, 1.0, 1.5):
        out[f"b{b}"] = Variant(blur_points=b)
    for c in (0.05, 0.1, 0.2):
        out[f"cl{c}"], out[f"ch{c}"] = Variant(crop_low=c), Variant(crop_high=c)
    for s, e in ((0.05, 0.005), (-0.05, -0.005), (0.05, -0.005), (-0.05, 0.005)):
        out[f"s{s:+}e{e:+}"] = Variant(shift_deg=s, strain=e)
    return out


def sets() -> list[list[str]]:
    """The candidate sets, in the order they were tried (three rounds)."""
    out = [["id"]]
    out += [["id", f"s+{s}", f"s-{s}"] for s in (0.01, 0.02, 0.03, 0.04, 0.05)]
    out += [["id", f"e+{e}", f"e-{e}"] for e in (0.001, 0.002, 0.003, 0.005)]
    out += [["id", f"b{b}"] for b in (0.5, 0.7, 1.0, 1.5)]
    for s in (0.02, 0.03, 0.04):
        for e in (0.002, 0.003):
            out += [["id", f"s+{s}", f"s-{s}", f"e+{e}", f"e-{e}"], ["id", f"s+{s}", f"s-{s}", f"e+{e}", f"e-{e}", "b0.7"]]
    out += [["id", "s+0.02", "s-0.02", "s+0.04", "s-0.04"],
            ["id", "s+0.02", "s-0.02", "s+0.04", "s-0.04", "e+0.002", "e-0.002", "e+0.005", "e-0.005"],
            ["id", "s+0.02", "s-0.02", "e+0.002", "e-0.002", "b0.7", "s+0.04", "s-0.04", "e+0.003", "e-0.003"],
            ["id", "s+0.01", "s-0.01", "s+0.02", "s-0.02", "s+0.03", "s-0.03"]]
    # Round 2: larger strains, cropped ends, shift and strain together.
    out += [["id", f"e+{e}", f"e-{e}"] for e in (0.0075, 0.01)]
    for c in (0.05, 0.1, 0.2):
        out += [["id", f"cl{c}"], ["id", f"ch{c}"], ["id", f"cl{c}", f"ch{c}"]]
    out += [["id", "s+0.05e+0.005", "s-0.05e-0.005", "s+0.05e-0.005", "s-0.05e+0.005"],
            ["id", "e+0.005", "e-0.005", "e+0.01", "e-0.01"],
            ["id", "s+0.04", "s-0.04", "e+0.005", "e-0.005"],
            ["id", "s+0.04", "s-0.04", "e+0.005", "e-0.005", "ch0.1", "cl0.05"],
            ["id", "e+0.005", "e-0.005", "ch0.1", "cl0.05"]]
    # Round 3: the high-end crop with strains.
    out += [["id", "ch0.1", "ch0.2"], ["id", "ch0.05", "ch0.1", "ch0.2"], ["id", "ch0.1", "e+0.01", "e-0.01"],
            ["id", "ch0.1", "e+0.005", "e-0.005"], ["id", "ch0.1", "ch0.2", "e+0.005", "e-0.005", "e+0.01", "e-0.01"],
            ["id", "ch0.1", "e+0.005", "e-0.005", "e+0.01", "e-0.01"], ["id", "ch0.1", "ch0.2", "e+0.01", "e-0.01"]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sticks", required=True)
    ap.add_argument("--split", default="val", choices=["val"], help="validation only: the choice is made there")
    args = ap.parse_args()
    torch.set_num_threads(1)
    bundle = load_model(vae=None)
    table = real_table(args.sticks, args.split, d_min_A=0.5)
    variants = pool()
    logits: dict[str, dict] = {}
    for name in ("cu", "mars"):
        ys, ms, truth = [], [], []
        for i, x, y, lam in render_patterns(table, name, draws=2, seed=12345):
            try:
                a, m = prepare(bundle, Pattern(x, y, "two_theta", wavelength_A=lam))
            except PredictionError:
                continue
            ys.append(a)
            ms.append(m)
            truth.append(int(table.space_group[i]) + 1)
        y_arr, m_arr, truth = np.stack(ys), np.stack(ms), np.asarray(truth)
        per = {"truth": truth, "weights": mp_weights(truth)}
        for key, v in variants.items():
            a, m = apply_variant(y_arr, m_arr, bundle.grid, v)
            with torch.no_grad():
                per[key] = bundle.model(model_input(torch.as_tensor(a), torch.as_tensor(m)))
        logits[name] = per
    t = bundle.model.temperature
    print("set average | Cu as is | Cu MP | MARS as is | MARS MP (top-1/top-5/CS/log-loss triclinic) | criterion, mean log-loss")
    for keys in sets():
        for average in ("probability", "logit") if len(keys) > 1 else ("probability",):
            rows = []
            for name in ("cu", "mars"):
                per = logits[name]
                sg = combine_logits(torch.cat([per[k][0] for k in keys]), len(keys), t[0], average)
                cs = combine_logits(torch.cat([per[k][1] for k in keys]), len(keys), t[1], average)
                sg_p, cs_p = bundle.probabilities(sg, cs)
                lsg, lcs = (np.log(np.clip(p.double().numpy(), 1e-30, None)) for p in (sg_p, cs_p))
                rows += [weighted_scores(lsg, lcs, per["truth"]), weighted_scores(lsg, lcs, per["truth"], per["weights"])]
            cells = " | ".join(f"{100 * r['space_group_top1']:.1f}/{100 * r['space_group_top5']:.1f}/{100 * r['crystal_system']:.1f}/"
                               f"{r['space_group_log_loss']:.2f} {100 * r['crystal_system_recall'].get('triclinic', 0):.0f}" for r in rows)
            criterion = np.mean([(r["space_group_top1"] + r["crystal_system"]) / 2 for r in rows])
            print(f"{','.join(keys)} {average} | {cells} | {100 * criterion:.2f}, {np.mean([r['space_group_log_loss'] for r in rows]):.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
