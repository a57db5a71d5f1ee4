"""Evaluation on measured (or McXtrace-simulated) patterns: the model against reality.

A measured set is a folder of pattern files and a labels CSV with a ``file`` column, optionally
``wavelength_A`` (used when the file states none), and the truth as either ``space_group`` (numbers,
``|``-separated when several are acceptable, e.g. an unresolved polymorph) or ``cif`` (CIF paths
relative to the folder, ``|``-separated; spglib gives their space groups). Without either column,
CIFs in the folder whose name contains the pattern's stem prefix (the part before the first ``__``)
are used — the convention of the development data set.

A prediction counts as right when it is any of the acceptable answers. Files that cannot be read or
classified (no wavelength, too little coverage …) are listed with their reason and counted as
failures, never silently dropped.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from xrdid.io import atomic_path, write_text
from xrdid.labels import CRYSTAL_SYSTEMS, crystal_system

log = logging.getLogger(__name__)


@dataclass
class MeasuredItem:
    file: Path
    space_groups: set[int]
    wavelength_A: float | None = None
    cifs: list[str] = field(default_factory=list)

    @property
    def crystal_systems(self) -> set[str]:
        return {crystal_system(g) for g in self.space_groups}


def _space_group_of_cif(path: Path, symprec: float) -> int:
    import warnings

    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = Structure.from_file(path)
    return int(SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number())


def read_measured_labels(folder: str | Path, labels: str | Path, *, symprec: float = 0.01) -> list[MeasuredItem]:
    """The patterns of a measured set with their acceptable space groups (see module docstring)."""
    folder = Path(folder)
    items = []
    with open(labels, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "file" not in rows[0]:
        raise ValueError(f"{labels}: expected a CSV with a 'file' column")
    for row in rows:
        file = folder / row["file"]
        wl = row.get("wavelength_A") or None
        wavelength = float(wl) if wl not in (None, "") and math.isfinite(float(wl)) else None
        if row.get("space_group"):
            groups = {int(g) for g in row["space_group"].split("|")}
            cifs: list[str] = []
        else:
            if row.get("cif"):
                cifs = [c.strip() for c in row["cif"].split("|")]
            else:
                prefix = Path(row["file"]).stem.split("__")[0]
                cifs = sorted(p.name for p in folder.glob("*.cif") if prefix in p.name)
            if not cifs:
                raise ValueError(f"{labels}: no space group and no CIF found for {row['file']}")
            groups = {_space_group_of_cif(folder / c, symprec) for c in cifs}
        items.append(MeasuredItem(file=file, space_groups=groups, wavelength_A=wavelength, cifs=cifs))
    return items


def evaluate_measured(
    *,
    checkpoint: str | Path | None,
    folder: str | Path,
    labels: str | Path,
    predictions_out: str | Path,
    metrics_out: str | Path,
    top_k: int = 5,
) -> dict:
    """Predict every pattern of a measured set and score it; writes predictions CSV and metrics JSON."""
    from xrdid.predict import PredictionError, load_model, predict_patterns
    from xrdid.readers import PatternError, read_pattern

    bundle = load_model(checkpoint)
    items = read_measured_labels(folder, labels)
    rows = []
    for item in items:
        row = {
            "file": item.file.name,
            "true_space_groups": "|".join(str(g) for g in sorted(item.space_groups)),
            "true_crystal_systems": "|".join(sorted(item.crystal_systems)),
        }
        try:
            pattern = read_pattern(item.file, wavelength_A=item.wavelength_A)
            result = predict_patterns(bundle, [pattern], wavelength_A=item.wavelength_A, top_k=top_k, cell=False)[0]  # the classifier alone
        except (PatternError, PredictionError, ValueError) as exc:
            log.warning("%s: not classified: %s", item.file.name, exc)
            rows.append({**row, "error": str(exc)})
            continue
        top = [t["number"] for t in result["top_k"]]
        row.update(
            {
                "predicted_space_group": result["space_group"]["number"],
                "probability": round(result["space_group"]["probability"], 4),
                "top_k": "|".join(str(n) for n in top),
                "predicted_crystal_system": result["crystal_system"]["name"],
                "crystal_system_probability": round(result["crystal_system"]["probability"], 4),
                "space_group_correct": result["space_group"]["number"] in item.space_groups,
                "space_group_top_k_correct": bool(set(top) & item.space_groups),
                "crystal_system_correct": result["crystal_system"]["name"] in item.crystal_systems,
                "coverage": round(result.get("coverage", float("nan")), 3),
                "error": "",
            }
        )
        rows.append(row)
    metrics = _summarise(rows, top_k)
    metrics["model"] = bundle.path
    fields = [
        "file", "true_space_groups", "predicted_space_group", "probability", "top_k", "true_crystal_systems",
        "predicted_crystal_system", "crystal_system_probability", "space_group_correct",
        "space_group_top_k_correct", "crystal_system_correct", "coverage", "error",
    ]
    with atomic_path(predictions_out) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    write_text(json.dumps(metrics, indent=2), metrics_out)
    log.info(
        "measured set %s: %d patterns, %d classified; space group %.1f %% (top-%d %.1f %%), crystal system %.1f %%",
        folder, metrics["n_patterns"], metrics["n_classified"], 100 * metrics["space_group_accuracy"], top_k,
        100 * metrics["space_group_top_k_accuracy"], 100 * metrics["crystal_system_accuracy"],
    )
    return metrics


def _summarise(rows: list[dict], top_k: int) -> dict:
    """Accuracies over all patterns (unclassified ones count as wrong) and per true crystal system."""
    n = len(rows)
    ok = [r for r in rows if not r.get("error")]

    def frac(key, subset):
        return sum(bool(r.get(key)) for r in subset) / len(subset) if subset else 0.0

    per_system = {}
    for system in CRYSTAL_SYSTEMS:
        subset = [r for r in rows if system in r["true_crystal_systems"].split("|")]
        if subset:
            per_system[system] = {
                "n": len(subset),
                "crystal_system_accuracy": frac("crystal_system_correct", subset),
                "space_group_accuracy": frac("space_group_correct", subset),
            }
    return {
        "n_patterns": n,
        "n_classified": len(ok),
        "failures": {r["file"]: r["error"] for r in rows if r.get("error")},
        "space_group_accuracy": frac("space_group_correct", rows),
        "space_group_top_k_accuracy": frac("space_group_top_k_correct", rows),
        "top_k": top_k,
        "crystal_system_accuracy": frac("crystal_system_correct", rows),
        "per_crystal_system": per_system,
    }
