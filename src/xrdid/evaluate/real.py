"""Evaluation on real structures and measured patterns, never used for training.

* :func:`evaluate_prototypes` — the 288 AFLOW prototypes shipped in pymatgen's wheel
  (``pymatgen/analysis/prototypes/aflow_prototypes.json.gz``): real, mostly simple structures, unlike
  the random synthetic crystals the model is trained on. Each is labelled by spglib (``symprec``),
  simulated (:func:`xrdid.simulate.sticks.compute_sticks`) and rendered on the model's own instrument
  with the realistic augmentation (``Augment()``), ``draws`` times with different seeds.
* :func:`evaluate_measured` — measured patterns listed in an ``index.csv`` (file, cif_file, wavelength_A…)
  beside their refined CIFs, as in the development data (``../shared/data/measured``): each pattern goes
  through :func:`xrdid.predict.predict_patterns` exactly as ``xrdid predict`` does; the true space group is
  spglib's on the refined structure. Patterns with no stated wavelength are skipped (no Cu Kα guess).

Both return a dict with per-item rows and summary accuracies, and the majority-class baseline.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import torch

from xrdid.data import StickTable
from xrdid.evaluate.metrics import classification_metrics
from xrdid.instrument import Augment, Renderer
from xrdid.labels import CRYSTAL_SYSTEMS, N_SPACE_GROUPS, PRIORS, crystal_system, crystal_system_index
from xrdid.structures.prototypes import pymatgen_prototypes as aflow_prototypes
from xrdid.train.loop import predict_logits

log = logging.getLogger(__name__)


def spglib_number(structure, symprec: float = 0.01) -> int:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    return int(SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number())


def sticks_table(structures, d_min_A: float, *, symprec: float = 0.01, max_peaks: int = 512) -> StickTable:
    """A :class:`StickTable` of ``(id, Structure)`` pairs, labelled by spglib; unusable ones skipped."""
    from xrdid.simulate.sticks import compute_sticks

    ids, rows, labels = [], [], []
    for sid, s in structures:
        try:
            if not s.is_ordered:
                continue
            st = compute_sticks(s, d_min_A)
            sg = spglib_number(s, symprec)
        except Exception as exc:
            log.warning("%s: skipped (%s)", sid, exc)
            continue
        d, f = np.asarray(st.d, np.float32), np.asarray(st.f2m, np.float32)
        if len(d) == 0:
            continue
        if len(d) > max_peaks:
            top = np.argsort(f)[::-1][:max_peaks]
            d, f = d[top], f[top]
        ids.append(sid)
        rows.append((d, f))
        labels.append(sg)
    width = max(len(d) for d, _ in rows)
    D = np.zeros((len(rows), width), np.float32)
    F = np.zeros((len(rows), width), np.float32)
    for i, (d, f) in enumerate(rows):
        D[i, : len(d)], F[i, : len(f)] = d, f
    sg = np.asarray(labels)
    return StickTable(
        ids=ids, d=torch.from_numpy(D), f2m=torch.from_numpy(F), space_group=torch.from_numpy(sg - 1),
        crystal_system=torch.tensor([crystal_system_index(int(n)) for n in sg]),
    )


def evaluate_prototypes(
    checkpoint, *, augment: Augment | None = None, draws: int = 4, seed: int = 2024, symprec: float = 0.01, limit: int | None = None,
    prior: str = "checkpoint",
) -> dict:
    """Accuracy of ``checkpoint`` on the AFLOW prototypes rendered ``draws`` times each (see module doc);
    ``limit``: only the first prototypes (tests); ``prior``: see :func:`xrdid.predict.load_model`."""
    from xrdid.predict import load_model

    bundle = load_model(checkpoint, prior=prior)
    table = sticks_table(aflow_prototypes()[:limit], bundle.instrument.d_min_A, symprec=symprec)
    renderer = Renderer(bundle.instrument, augment if augment is not None else Augment())
    sg_all, cs_all = [], []
    for k in range(draws):
        sg_logits, cs_logits = predict_logits(bundle.model, renderer, table, seed=seed + k)
        sg_p, cs_p = bundle.probabilities(sg_logits, cs_logits)
        sg_all.append(sg_p)
        cs_all.append(cs_p)
    sg_p, cs_p = torch.cat(sg_all), torch.cat(cs_all)
    sg_true, cs_true = table.space_group.repeat(draws), table.crystal_system.repeat(draws)
    sg_m = classification_metrics(sg_p, sg_true, N_SPACE_GROUPS, top_k=5)
    cs_m = classification_metrics(cs_p, cs_true, len(CRYSTAL_SYSTEMS))
    for m in (sg_m, cs_m):
        m.pop("per_class_accuracy")
    return {"n_structures": len(table), "draws": draws, "augmented": renderer.augment.enabled, "space_group": sg_m, "crystal_system": cs_m}


def _true_space_group(cif: Path, symprec: float) -> int:
    from pymatgen.io.cif import CifParser

    structures = CifParser(str(cif)).parse_structures(primitive=False)
    return spglib_number(structures[0], symprec)


def evaluate_measured(checkpoint, folder: str | Path, *, symprec: float = 0.01, top_k: int = 5, prior: str = "checkpoint",
                      tta: int = 1) -> dict:
    """Predict every pattern of ``folder/index.csv`` and compare with its refined CIF (see module doc);
    ``prior``, ``tta`` (test-time augmentation): see :func:`xrdid.predict.load_model`."""
    from xrdid.predict import PredictionError, load_model, predict_patterns
    from xrdid.readers import PatternError, read_pattern

    folder = Path(folder)
    bundle = load_model(checkpoint, prior=prior, tta=tta)
    rows = []
    for r in csv.DictReader((folder / "index.csv").open()):
        pattern_file = folder / r["file"]
        stem = r["file"].rsplit(".", 1)[0]
        cifs = sorted(folder.glob(f"iucr__{stem.split('__')[0]}__*.cif"))
        row = {"file": r["file"], "wavelength_A": r["wavelength_A"] or None}
        try:
            true_sg = _true_space_group(cifs[0], symprec) if cifs else None
        except Exception as exc:
            true_sg, row["cif_error"] = None, str(exc)
        row["true_space_group"] = true_sg
        row["true_crystal_system"] = crystal_system(true_sg) if true_sg else None
        if not r["wavelength_A"]:
            row["skipped"] = "no wavelength stated"
            rows.append(row)
            continue
        try:
            pattern = read_pattern(pattern_file, wavelength_A=float(r["wavelength_A"]))
            (res,) = predict_patterns(bundle, [pattern], top_k=top_k, cell=False)  # the classifier alone
        except (PatternError, PredictionError) as exc:
            row["skipped"] = str(exc)
            rows.append(row)
            continue
        ranked = [t["number"] for t in res["top_k"]]
        row.update(
            predicted_space_group=res["space_group"]["number"], probability=res["space_group"]["probability"],
            predicted_crystal_system=res["crystal_system"]["name"], crystal_system_probability=res["crystal_system"]["probability"],
            coverage=res["coverage"], novelty=res["novelty"]["score"], top_k=ranked,
        )
        if true_sg:
            row["space_group_correct"] = ranked[0] == true_sg
            row[f"space_group_in_top{top_k}"] = true_sg in ranked
            row["crystal_system_correct"] = res["crystal_system"]["name"] == crystal_system(true_sg)
        rows.append(row)
    scored = [r for r in rows if "space_group_correct" in r]
    systems = [r["true_crystal_system"] for r in scored]
    majority = max((systems.count(s) for s in set(systems)), default=0) / max(len(scored), 1)
    summary = {
        "n_patterns": len(rows),
        "n_scored": len(scored),
        "space_group_accuracy": float(np.mean([r["space_group_correct"] for r in scored])) if scored else None,
        f"space_group_top{top_k}_accuracy": float(np.mean([r[f"space_group_in_top{top_k}"] for r in scored])) if scored else None,
        "crystal_system_accuracy": float(np.mean([r["crystal_system_correct"] for r in scored])) if scored else None,
        "crystal_system_majority_baseline": majority,
    }
    return {"summary": summary, "patterns": rows}


def main(argv: list[str] | None = None) -> int:
    """``python -m xrdid.evaluate.real [--model CKPT] [--measured DIR] [--out FILE.json]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m xrdid.evaluate.real", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the pretrained model)")
    ap.add_argument("--measured", default=None, help="folder with index.csv, patterns and refined CIFs")
    ap.add_argument("--draws", type=int, default=4, help="augmented renderings per prototype")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--prior", default="checkpoint", choices=PRIORS,
                    help="label prior: the checkpoint's (default), none, or Materials Project frequencies")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    out = {"prior": args.prior, "prototypes": evaluate_prototypes(args.model, draws=args.draws, prior=args.prior)}
    log.info("AFLOW prototypes: %s", {k: out["prototypes"][k]["accuracy"] for k in ("space_group", "crystal_system")})
    if args.measured:
        out["measured"] = evaluate_measured(args.model, args.measured, prior=args.prior)
        log.info("measured: %s", out["measured"]["summary"])
    text = json.dumps(out, indent=2, default=str)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
