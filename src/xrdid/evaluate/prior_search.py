"""The label prior's strengths chosen for the answer ``xrdid predict`` gives, from saved log-probabilities.

``python -m xrdid.evaluate.real_split --logits X.npz`` saves every pattern's calibrated log-probabilities
without a prior. From them, every setting of the answer (:func:`xrdid.priors.answer_log_probs`: the
Materials Project prior at strength α_SG on the space-group head and α_CS on the crystal-system head,
a triclinic offset δ, the consistent answer) is scored without rendering again, on four **rows**: each
instrument, every pattern counted once ("plain") and Materials Project-weighted.

``search`` scores a grid and picks the setting with the highest **criterion**, the mean over the rows of
(space-group top-1 + crystal-system accuracy)/2, among those where no crystal system's recall (mean
over the rows) falls more than ``max_recall_drop`` below the reference setting's; exact ties go to the
setting closest to the reference. ``score`` compares one setting with the reference on another split,
with paired bootstrap standard errors over crystals (every pattern of a resampled crystal counts).
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import numpy as np

from xrdid.io import write_text
from xrdid.labels import CRYSTAL_SYSTEMS, space_group_to_system_map
from xrdid.priors import answer_log_probs, weighted_scores

log = logging.getLogger(__name__)

STRENGTH_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
OFFSET_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
WEIGHTINGS: tuple[str, ...] = ("plain", "materials_project_weighted")


def load_logits(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a ``real_split --logits`` file."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def rows_of(logits: dict[str, np.ndarray]) -> list[tuple[str, str, np.ndarray]]:
    """(instrument, weighting, pattern indices) of every row, in file order of the instruments."""
    names = list(dict.fromkeys(logits["instrument"].tolist()))
    return [(name, w, np.flatnonzero(logits["instrument"] == name)) for name in names for w in WEIGHTINGS]


def _answer(logits: dict[str, np.ndarray], sg_ratio, cs_ratio, setting: dict) -> tuple[np.ndarray, np.ndarray]:
    """predict's answer (log-probabilities) under ``setting`` (:func:`xrdid.priors.answer_log_probs`)."""
    return answer_log_probs(logits["sg_logp"], logits["cs_logp"], sg_ratio, cs_ratio, sg_strength=setting["sg_strength"],
                            cs_strength=setting["cs_strength"], triclinic_offset=setting.get("triclinic_offset", 0.0),
                            consistent=setting.get("consistent", True))


def score_setting(logits: dict[str, np.ndarray], sg_ratio, cs_ratio, setting: dict) -> dict:
    """Scores of one setting (keys ``sg_strength``, ``cs_strength``, ``triclinic_offset``, optional
    ``consistent``) on every row, the criterion and the crystal-system recalls averaged over the rows."""
    sg, cs = _answer(logits, sg_ratio, cs_ratio, setting)
    rows = {}
    for name, weighting, index in rows_of(logits):
        weights = logits["mp_weight"][index] if weighting != "plain" else None
        rows[f"{name}/{weighting}"] = weighted_scores(sg[index], cs[index], logits["space_group"][index], weights)
    recall = {c: float(np.mean([r["crystal_system_recall"][c] for r in rows.values() if c in r["crystal_system_recall"]]))
              for c in CRYSTAL_SYSTEMS if any(c in r["crystal_system_recall"] for r in rows.values())}
    criterion = float(np.mean([(r["space_group_top1"] + r["crystal_system"]) / 2 for r in rows.values()]))
    return {**setting, "criterion": criterion, "mean_recall": recall, "rows": rows}


def _distance(a: dict, b: dict) -> float:
    return sum(abs(a[k] - b.get(k, 0.0)) for k in ("sg_strength", "cs_strength", "triclinic_offset"))


def search(
    logits: dict[str, np.ndarray], sg_ratio, cs_ratio, *, reference: dict, sg_strengths=STRENGTH_GRID,
    cs_strengths=STRENGTH_GRID, offsets=OFFSET_GRID, max_recall_drop: float = 0.05,
) -> tuple[dict, list[dict]]:
    """The chosen setting and the scores of every grid point (module docstring); each point records
    whether it passes the recall constraint (``allowed``)."""
    ref = score_setting(logits, sg_ratio, cs_ratio, reference)
    table = []
    for a, b, d in itertools.product(sg_strengths, cs_strengths, offsets):
        s = score_setting(logits, sg_ratio, cs_ratio, {"sg_strength": float(a), "cs_strength": float(b), "triclinic_offset": float(d),
                                                        "consistent": reference.get("consistent", True)})
        s["allowed"] = all(s["mean_recall"][c] >= ref["mean_recall"][c] - max_recall_drop for c in ref["mean_recall"])
        table.append(s)
    allowed = [s for s in table if s["allowed"]] or [ref]
    best = max(allowed, key=lambda s: (s["criterion"], -_distance(s, reference)))
    return best, table


def _hits(logits, sg_ratio, cs_ratio, setting) -> tuple[np.ndarray, np.ndarray]:
    sg, cs = _answer(logits, sg_ratio, cs_ratio, setting)
    truth = logits["space_group"]
    return (sg.argmax(1) == truth - 1).astype(float), (cs.argmax(1) == space_group_to_system_map()[truth - 1]).astype(float)


def paired_bootstrap(logits, sg_ratio, cs_ratio, setting: dict, reference: dict, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Per row: the change (setting − reference) of space-group top-1, crystal-system accuracy and
    the criterion, with its standard error over ``n_boot`` resamplings of the crystals (ids)."""
    new, old = _hits(logits, sg_ratio, cs_ratio, setting), _hits(logits, sg_ratio, cs_ratio, reference)
    rng = np.random.default_rng(seed)
    out = {}
    for name, weighting, index in rows_of(logits):
        w = logits["mp_weight"][index] if weighting != "plain" else np.ones(len(index))
        ids, crystal = np.unique(logits["id"][index], return_inverse=True)
        counts = rng.multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=n_boot)  # (B, crystals)
        per_crystal_w = np.bincount(crystal, weights=w, minlength=len(ids))
        deltas = {}
        for key, a, b in (("space_group_top1", new[0], old[0]), ("crystal_system", new[1], old[1])):
            per_crystal = np.bincount(crystal, weights=w * (a[index] - b[index]), minlength=len(ids))
            full = per_crystal.sum() / per_crystal_w.sum()
            boot = counts @ per_crystal / (counts @ per_crystal_w)
            deltas[key] = {"delta": float(full), "se": float(boot.std(ddof=1)), "boot": boot}
        crit = (deltas["space_group_top1"]["boot"] + deltas["crystal_system"]["boot"]) / 2
        deltas["criterion"] = {"delta": (deltas["space_group_top1"]["delta"] + deltas["crystal_system"]["delta"]) / 2,
                               "se": float(crit.std(ddof=1))}
        for v in deltas.values():
            v.pop("boot", None)
        out[f"{name}/{weighting}"] = deltas
    return out


def _ratios(model: str | Path | None):
    from xrdid.priors import materials_project_ratios
    from xrdid.weights import pretrained_path

    meta = json.loads((Path(model if model is not None else pretrained_path()) / "model.json").read_text())
    return materials_project_ratios(meta["train_space_group_counts"])


def _table_line(s: dict) -> str:
    rows = " | ".join(f"{100 * r['space_group_top1']:.1f}/{100 * r['crystal_system']:.1f}" for r in s["rows"].values())
    recall = " ".join(f"{c[:4]} {100 * v:.0f}" for c, v in s["mean_recall"].items())
    return (f"α_SG {s['sg_strength']:.2f} α_CS {s['cs_strength']:.2f} δ {s['triclinic_offset']:.2f}: criterion {100 * s['criterion']:.2f}"
            f"{'' if s.get('allowed', True) else ' (recall constraint)'} | {rows} | {recall}")


def main(argv: list[str] | None = None) -> int:
    """``python -m xrdid.evaluate.prior_search {search,score} --logits X.npz --out Y.json …``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m xrdid.evaluate.prior_search", description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("search", "score"), help="search: choose on a grid; score: one setting against the reference")
    ap.add_argument("--logits", required=True, help="a real_split --logits file")
    ap.add_argument("--model", default=None, help="checkpoint directory whose training labels give the prior (default: the shipped model)")
    ap.add_argument("--out", required=True, help="JSON output")
    ap.add_argument("--reference", nargs=3, type=float, default=(1.0, 1.0, 0.0), metavar=("α_SG", "α_CS", "δ"),
                    help="the setting compared with (default: the shipped one, 1 1 0)")
    ap.add_argument("--setting", nargs=3, type=float, default=None, metavar=("α_SG", "α_CS", "δ"), help="score: the setting scored")
    ap.add_argument("--no-consistent", dest="consistent", action="store_false", help="score the answer without the consistent space groups")
    ap.add_argument("--max-recall-drop", type=float, default=0.05)
    ap.add_argument("--bootstrap", type=int, default=2000)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logits = load_logits(args.logits)
    sg_ratio, cs_ratio = _ratios(args.model)
    keys = ("sg_strength", "cs_strength", "triclinic_offset")
    reference = {**dict(zip(keys, args.reference, strict=True)), "consistent": args.consistent}
    if args.mode == "search":
        best, table = search(logits, sg_ratio, cs_ratio, reference=reference, max_recall_drop=args.max_recall_drop)
        for s in table:
            log.info("%s", _table_line(s))
        log.info("reference %s", _table_line(score_setting(logits, sg_ratio, cs_ratio, reference)))
        log.info("chosen    %s", _table_line(best))
        result = {"reference": reference, "max_recall_drop": args.max_recall_drop, "chosen": best, "grid": table}
    else:
        if args.setting is None:
            ap.error("score needs --setting α_SG α_CS δ")
        setting = {**dict(zip(keys, args.setting, strict=True)), "consistent": args.consistent}
        result = {"reference": score_setting(logits, sg_ratio, cs_ratio, reference), "setting": score_setting(logits, sg_ratio, cs_ratio, setting),
                  "paired_bootstrap": paired_bootstrap(logits, sg_ratio, cs_ratio, setting, reference, n_boot=args.bootstrap)}
        log.info("reference %s", _table_line(result["reference"]))
        log.info("setting   %s", _table_line(result["setting"]))
        for row, d in result["paired_bootstrap"].items():
            log.info("%s: Δ SG top-1 %+.2f ± %.2f, Δ CS %+.2f ± %.2f, Δ criterion %+.2f ± %.2f", row,
                     *(100 * d[k][v] for k in ("space_group_top1", "crystal_system", "criterion") for v in ("delta", "se")))
    write_text(json.dumps(result, indent=2), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
