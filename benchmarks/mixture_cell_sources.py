"""The one-cell mixture benchmark's single phases by structure source (AFLOW and other prototypes, crystals derived from them, frameworks).

    .venv/bin/python benchmarks/mixture_cell_sources.py results/novelty-real/sticks.parquet \
        results/novelty-real/mixture_cell/test-2025.parquet:test:2025 ...

Each table is FILE:SPLIT:SEED of a ``python -m xrdid.evaluate.mixture_cell --n 50`` run; its single phases are the
same draw of the split's structures (rows without a ``name`` are matched by that draw, in order, when none was
dropped). Prints, per source, the singles' mean detector probability and one-cell features, and the AUROC of the
2-phase mixtures of the same tables against those singles, detector and ``unindexed_strong`` each, and with
``--combination mixture_cell.json`` (e.g. the shipped one) the combined probability's too.
"""

from __future__ import annotations

import sys

import pandas as pd
import torch

from xrdid.data import StickTable
from xrdid.evaluate.novelty import _gen, auroc
from xrdid.train.vae import subset_index


def main(sticks: str, specs: list[str], n: int = 50, combination: str | None = None) -> None:
    singles, mixtures = [], []
    for spec in specs:
        path, split, seed = spec.rsplit(":", 2)
        df = pd.read_parquet(path)
        s = df[df["kind"] == "single"].copy()
        if "name" not in s or s["name"].isna().any():
            table = StickTable.from_parquet(sticks, split=split, d_min_A=1.0)
            ids = subset_index(table, torch.randperm(len(table), generator=_gen(int(seed)))[:n]).ids
            if len(ids) != len(s):
                print(f"{path}: {len(ids) - len(s)} singles were dropped; cannot match them by draw, skipped")
                continue
            s["name"] = list(ids)
        s["source"] = ["derived" if "~d" in str(i) else str(i).split("/")[0] for i in s["name"]]
        singles.append(s)
        mixtures.append(df[df["kind"] == "mixture_2"])
    s, m2 = pd.concat(singles), pd.concat(mixtures)
    extra = ""
    if combination:
        from xrdid.evaluate.mixture_cell import combined_logit
        from xrdid.mixture_detector import read_cell_combination

        cell = read_cell_combination(combination)
        fit = {"features": ["logit_p_detector", *cell.features], "coef": cell.coef, "intercept": cell.intercept}
        s["combined"], m2["combined"] = combined_logit(s, fit), combined_logit(m2, fit)
    print(s.groupby("source")[["p_detector", "unindexed_strong", "not_indexed"]].mean().round(3).assign(n=s.groupby("source").size()).to_string())
    for source, g in s.groupby("source"):
        if combination:
            extra = f", combined {auroc(g.combined, m2.combined):.3f}"
        print(f"{source}: 2-phase vs these singles, AUROC detector {auroc(g.p_detector, m2.p_detector):.3f}, "
              f"unindexed_strong {auroc(g.unindexed_strong, m2.unindexed_strong):.3f}{extra} (n={len(g)} vs {len(m2)})")


if __name__ == "__main__":
    args = sys.argv[1:]
    comb = None
    if "--combination" in args:
        i = args.index("--combination")
        comb = args[i + 1]
        del args[i : i + 2]
    main(args[0], args[1:], combination=comb)
