"""The model on real structures it never saw, measured the way a user meets it.

The validation (or test) split's *real* structures — rows of the sticks table whose source is a real
structure used as it is (:data:`xrdid.structures.sources.REAL_SOURCES`: prototypes, CoRE MOF, local CIFs,
Materials Project), held out by structure type like everything in the split — are rendered on each
instrument's own grid (lab Cu Kα1/Kα2 and the MARS beamline by default, 2θ 5–90°, realistic
augmentation of a whole scan — no range cropping —, ``draws`` renderings each), written as 2θ patterns and classified through
:func:`xrdid.predict.predict_arrays` after :func:`xrdid.predict.prepare`, exactly as ``xrdid predict``
classifies a file: resampled onto the model's grid through Q, normalised, both heads calibrated.

Two weightings of the same predictions: **plain** (every structure counts once) and
**Materials Project-weighted** (each structure weighted by p_MP(g)/n(g), :func:`xrdid.priors.mp_weights`,
so the set stands for real samples, where P2₁/c is common and Ia-3d rare). Each is reported with the
checkpoint's label prior and without one (``--prior none``), with per-crystal-system recall.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import torch

from xrdid.data import StickTable
from xrdid.instrument import Augment, Renderer, get_instrument
from xrdid.io import atomic_path, write_text
from xrdid.labels import CRYSTAL_SYSTEMS, space_group_to_system_map
from xrdid.priors import mp_weights, weighted_scores

log = logging.getLogger(__name__)

INSTRUMENTS: tuple[str, ...] = ("cu", "mars")
# Points of the rendered 2θ 5–90° patterns: a 0.02° step, as a routine lab scan.
N_POINTS = 4251


def real_table(sticks: str | Path, split: str, d_min_A: float) -> StickTable:
    """The ``split`` rows of ``sticks`` that are real structures (see the module docstring)."""
    from xrdid.train.loop import real_rows

    table = StickTable.from_parquet(sticks, split=split, d_min_A=d_min_A)
    index = real_rows(table)
    keep = index.tolist()
    return StickTable(
        ids=[table.ids[i] for i in keep], d=table.d[index], f2m=table.f2m[index], space_group=table.space_group[index],
        crystal_system=table.crystal_system[index], sources=[table.sources[i] for i in keep],
    )


def _log_probs(bundle, y: np.ndarray, mask: np.ndarray, prior: bool) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        sg, cs, _, _ = bundle.logits(torch.as_tensor(y), torch.as_tensor(mask))
        sg_p, cs_p = bundle.probabilities(sg, cs, prior=prior)
    return np.log(np.clip(sg_p.double().numpy(), 1e-30, None)), np.log(np.clip(cs_p.double().numpy(), 1e-30, None))


def render_patterns(table: StickTable, instrument_name: str, *, draws: int, seed: int, augment: Augment | None = None):
    """Yield (row index, 2θ grid, intensities, wavelength) of every structure rendered ``draws`` times."""
    instrument = get_instrument({"preset": instrument_name, "two_theta_min_deg": 5.0, "two_theta_max_deg": 90.0, "n_points": N_POINTS})
    # A whole scan by default: the range cropping of training would often leave a synchrotron pattern no
    # overlap with a Cu model's Q range, which says nothing about the model.
    renderer = Renderer(instrument, augment if augment is not None else Augment(crop_probability=0.0))
    grid = instrument.grid()
    for k in range(draws):
        gen = torch.Generator().manual_seed(seed + 1000 * k)
        for start in range(0, len(table), 128):
            index = torch.arange(start, min(start + 128, len(table)))
            sticks, _, _ = table.batch(index)
            y, mask = renderer(sticks, gen)
            for j, i in enumerate(index.tolist()):
                m = mask[j].numpy() > 0
                yield i, grid[m], y[j].numpy()[m], instrument.wavelength_A


def evaluate_real_split(
    checkpoint, sticks: str | Path, *, out: str | Path, predictions: str | Path | None = None, logits: str | Path | None = None,
    split: str = "val",
    instruments=INSTRUMENTS, draws: int = 2, seed: int = 2024, augment: Augment | None = None, threads: int | None = None,
    prior: str = "checkpoint", consistent: bool = True, triclinic_offset: float = 0.0, tta: int = 1, tta_average: str = "probability",
) -> dict:
    """Metrics of ``checkpoint`` (a directory; None: the shipped model) on the real structures of
    ``split`` (module docstring); writes JSON to ``out``, one CSV row per pattern to ``predictions``, and
    to ``logits`` (.npz) every pattern's calibrated log-probabilities without a prior (``sg_logp`` (S, 230),
    ``cs_logp`` (S, 7)) beside ``instrument``, ``id``, ``space_group`` (1–230) and ``mp_weight``, so
    corrections of the answer can be fitted and scored without rendering again.
    ``prior``: the label prior "with prior" means; ``consistent`` and ``triclinic_offset`` change the answer
    "with prior" as in :func:`xrdid.predict.load_model`; ``tta`` and ``tta_average`` (test-time augmentation)
    change both answers, as there."""
    from xrdid.predict import PredictionError, load_model, prepare
    from xrdid.readers import Pattern

    if threads:
        torch.set_num_threads(int(threads))
    bundle = load_model(checkpoint, prior=prior, consistent=consistent, triclinic_offset=triclinic_offset, tta=tta, tta_average=tta_average)
    table = real_table(sticks, split, d_min_A=0.5)
    result: dict = {"split": split, "n_structures": len(table), "draws": draws, "prior": prior, "consistent": consistent,
                    "triclinic_offset": triclinic_offset, "tta": tta, "tta_average": tta_average,
                    "checkpoint_prior": bundle.meta.get("prior"), "instruments": {}}
    rows_out = []
    saved: dict[str, list] = {"instrument": [], "id": [], "space_group": [], "mp_weight": [], "sg_logp": [], "cs_logp": []}
    if len(table) == 0:
        log.warning("%s: no real structures in the %s split; nothing to evaluate", sticks, split)
    for name in instruments:
        ys, masks, truth, ids = [], [], [], []
        for i, x, y, lam in render_patterns(table, name, draws=draws, seed=seed, augment=augment):
            try:
                a, m = prepare(bundle, Pattern(x, y, "two_theta", wavelength_A=lam))
            except PredictionError as exc:  # e.g. a cell whose reflections all fall outside the range
                log.warning("%s (%s): not classified: %s", table.ids[i], name, exc)
                continue
            ys.append(a)
            masks.append(m)
            truth.append(int(table.space_group[i]) + 1)
            ids.append(table.ids[i])
        if not ys:
            continue
        y_arr, m_arr, truth = np.stack(ys), np.stack(masks), np.asarray(truth)
        weights = mp_weights(truth)
        per_instrument = {"n_patterns": len(truth)}
        for label, use_prior in (("with_prior", True), ("without_prior", False)):
            sg_logp, cs_logp = _log_probs(bundle, y_arr, m_arr, use_prior)
            if not use_prior:
                for key, value in (("instrument", [name] * len(truth)), ("id", ids), ("space_group", truth), ("mp_weight", weights),
                                   ("sg_logp", sg_logp), ("cs_logp", cs_logp)):
                    saved[key].append(np.asarray(value))
            per_instrument[label] = {
                "plain": weighted_scores(sg_logp, cs_logp, truth),
                "materials_project_weighted": weighted_scores(sg_logp, cs_logp, truth, weights),
            }
            if use_prior:
                systems = space_group_to_system_map()
                for pid, t, s, c, w in zip(ids, truth, sg_logp.argmax(1) + 1, cs_logp.argmax(1), weights, strict=True):
                    rows_out.append({"instrument": name, "id": pid, "true_space_group": int(t), "predicted_space_group": int(s),
                                     "true_crystal_system": CRYSTAL_SYSTEMS[systems[t - 1]], "predicted_crystal_system": CRYSTAL_SYSTEMS[c],
                                     "mp_weight": float(w)})
        result["instruments"][name] = per_instrument
        wp = per_instrument["with_prior"]
        log.info(
            "%s split, %s: %d patterns; space group %.1f %% (MP-weighted %.1f %%), crystal system %.1f %% (MP-weighted %.1f %%)",
            split, name, len(truth), 100 * wp["plain"]["space_group_top1"], 100 * wp["materials_project_weighted"]["space_group_top1"],
            100 * wp["plain"]["crystal_system"], 100 * wp["materials_project_weighted"]["crystal_system"],
        )
    write_text(json.dumps(result, indent=2), out)
    if logits is not None and saved["id"]:
        with atomic_path(logits) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{k: np.concatenate(v) for k, v in saved.items()})
    if predictions is not None:
        with atomic_path(predictions) as tmp, open(tmp, "w", newline="") as fh:
            fields = ["instrument", "id", "true_space_group", "predicted_space_group", "true_crystal_system", "predicted_crystal_system", "mp_weight"]
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows_out)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m xrdid.evaluate.real_split --sticks results/<dataset>/sticks.parquet [--model CKPT] …``."""
    import argparse

    from xrdid.labels import PRIORS

    ap = argparse.ArgumentParser(prog="python -m xrdid.evaluate.real_split", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sticks", required=True, help="a merged sticks table with real sources")
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the shipped model)")
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--instruments", nargs="+", default=list(INSTRUMENTS))
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--prior", default="checkpoint", choices=PRIORS)
    ap.add_argument("--consistent", action=argparse.BooleanOptionalAction, default=True,
                    help="space groups' crystal-system marginal from the crystal-system head (default, as predict)")
    ap.add_argument("--triclinic-offset", type=float, default=0.0, help="added to triclinic's crystal-system log-probability")
    ap.add_argument("--tta", type=int, default=1, help="test-time augmentation: variants averaged (xrdid.tta; 1: none)")
    ap.add_argument("--tta-average", default="probability", choices=("probability", "logit"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", required=True, help="JSON output")
    ap.add_argument("--predictions", default=None, help="CSV of every pattern's prediction")
    ap.add_argument("--logits", default=None, help=".npz of every pattern's log-probabilities without a prior")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    evaluate_real_split(args.model, args.sticks, out=args.out, predictions=args.predictions, logits=args.logits, split=args.split,
                        instruments=args.instruments, draws=args.draws, seed=args.seed, threads=args.threads, prior=args.prior,
                        consistent=args.consistent, triclinic_offset=args.triclinic_offset, tta=args.tta,
                        tta_average=args.tta_average)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
