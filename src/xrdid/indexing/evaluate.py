r"""How often indexing finds the right cell: simulated real structures, measured patterns, a workflow's test split.

The right cell: lattice parameters within 0.5 % of a Niggli-equivalent cell of the true one
(:func:`xrdid.indexing.lattice.same_lattice` on primitive cells: both Niggli-reduced and matched up to a
change of basis, lengths within 0.5 %, angles within 0.5 % of 90°). A pattern counts as found at rank r
when the r-th accepted cell is right; "top 3" is rank ≤ 3.

Simulated patterns are rendered with the realistic augmentation (:class:`xrdid.instrument.Augment`) except
its lattice strain, which changes the true cell itself (by up to ±1 %, beyond the 0.5 % criterion): zero
shift, sample displacement, broadening, texture, intensity errors, impurity peaks, background, counting
noise and cropped ranges all stay.

:func:`evaluate_indexing` is the workflow's step (rule ``evaluate_indexing``): the test split of a run's
sticks, true cells from its structures table, the run's instrument. Times are CPU seconds of the process
(the search budget's clock, see :mod:`xrdid.indexing.search`).
"""

from __future__ import annotations

import csv
import json
import logging
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from xrdid.indexing.combine import index_pattern
from xrdid.indexing.lattice import same_lattice
from xrdid.indexing.peaks import IndexingError
from xrdid.indexing.search import confidence
from xrdid.labels import CRYSTAL_SYSTEMS

log = logging.getLogger(__name__)


def primitive_lattice_of(structure, symprec: float = 0.01):
    """The primitive standard lattice (pymatgen) of a structure."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    return SpacegroupAnalyzer(structure, symprec=symprec).get_primitive_standard_structure().lattice


def right_rank(cells, truths) -> int | None:
    """1-based rank of the first cell matching any of ``truths`` (primitive lattices), or None."""
    for i, c in enumerate(cells, 1):
        try:
            prim = c.primitive()
        except Exception:  # a degenerate cell cannot be compared; it is not the right one
            continue
        if any(same_lattice(prim, t) for t in truths):
            return i
    return None


def rendered_patterns(items, instrument, augment, *, seed: int = 0):
    """(item, Pattern) of (id, crystal system, StickBatch of one, [true lattices]) items, item n rendered with
    ``augment`` less lattice strain (it would change the true cell) and seed ``seed + n``, on a counts-like scale."""
    from xrdid.instrument import Augment, Renderer
    from xrdid.readers import Pattern

    aug = replace(augment if augment is not None else Augment(), lattice_strain_frac=(0.0, 0.0))
    renderer = Renderer(instrument, aug)
    grid = instrument.grid()
    for n, item in enumerate(items):
        y, mask = renderer(item[2], torch.Generator().manual_seed(seed + n))
        m = mask[0].numpy() > 0
        # Counts-like scale: the renderer normalises to a maximum of 1.
        yield item, Pattern(grid[m], y[0].numpy()[m].astype(np.float64) * 1e4, "two_theta", wavelength_A=instrument.wavelength_A, path=item[0])


def index_rendered(items, instrument, augment, *, seed: int = 0, time_budget_s: float = 10.0, n_cells: int = 3) -> list[dict]:
    """Render (:func:`rendered_patterns`) and index (id, crystal system, StickBatch of one, [true lattices]) items;
    one row each."""
    rows = []
    for (sid, system, _, truths), pattern in rendered_patterns(items, instrument, augment, seed=seed):
        t0 = time.process_time()
        try:
            _, result = index_pattern(pattern, time_budget_s=time_budget_s)
            rank = right_rank(result.cells[:n_cells], truths)
            best = result.best.bravais if result.best else None
            msg = result.message
            tentative = confidence(result.cells[rank - 1]) == "tentative" if rank else None
        except IndexingError as exc:
            rank, best, msg, tentative = None, None, str(exc), None
        rows.append({"id": sid, "crystal_system": system, "rank": rank, "best": best, "seconds": time.process_time() - t0, "message": msg,
                     "right_tentative": tentative})
    return rows


def summarise(rows: list[dict], n_top: int = 3) -> dict:
    """Success (right cell first; among the first ``n_top``) overall and per crystal system, and times."""

    def block(rs):
        if not rs:
            return None
        return {
            "n": len(rs),
            "top1": float(np.mean([r["rank"] == 1 for r in rs])),
            f"top{n_top}": float(np.mean([r["rank"] is not None and r["rank"] <= n_top for r in rs])),
            "median_seconds": float(np.median([r["seconds"] for r in rs])),
            "mean_seconds": float(np.mean([r["seconds"] for r in rs])),
        }

    out = {"all": block(rows)}
    for s in CRYSTAL_SYSTEMS:
        b = block([r for r in rows if r["crystal_system"] == s])
        if b:
            out[s] = b
    return out


def measured_items(folder: str | Path):
    """(file, wavelength, [(crystal system, true primitive lattice) of each phase's CIF]) of ``folder/index.csv``,
    patterns with a stated wavelength only (xrdid never guesses one)."""
    from pymatgen.io.cif import CifParser
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    folder = Path(folder)
    out = []
    for r in csv.DictReader((folder / "index.csv").open()):
        if not r.get("wavelength_A"):
            continue
        prefix = r["file"].split("__")[0]
        truths = []
        for cif in sorted(folder.glob(f"iucr__{prefix}__*.cif")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = CifParser(str(cif)).parse_structures(primitive=False)[0]
            a = SpacegroupAnalyzer(s, symprec=0.01)
            truths.append((a.get_crystal_system(), a.get_primitive_standard_structure().lattice))
        out.append((folder / r["file"], float(r["wavelength_A"]), truths))
    return out


def index_measured(folder: str | Path, *, time_budget_s: float = 10.0, n_cells: int = 3) -> list[dict]:
    """Index every measured pattern of ``folder`` with a stated wavelength; one row each (rank of the right cell)."""
    from xrdid.readers import PatternError, read_pattern

    rows = []
    for path, lam, truths in measured_items(folder):
        t0 = time.process_time()
        try:
            _, result = index_pattern(read_pattern(path, wavelength_A=lam), time_budget_s=time_budget_s)
            rank = right_rank(result.cells[:n_cells], [t for _, t in truths])
            best = result.best.to_dict() if result.best else None
            msg = result.message
            tentative = confidence(result.cells[rank - 1]) == "tentative" if rank else None
        except (PatternError, IndexingError) as exc:
            rank, best, msg, tentative = None, None, str(exc), None
        rows.append({"file": path.name, "crystal_system": truths[0][0] if truths else None, "rank": rank,
                     "best": best, "seconds": time.process_time() - t0, "message": msg, "right_tentative": tentative})
    return rows


def evaluate_indexing(*, sticks: str | Path, structures, out: str | Path, instrument: dict, augment: dict | None = None,
                      seed: int = 0, max_patterns: int = 100, time_budget_s: float = 5.0, split: str = "test") -> dict:
    """The workflow's indexing evaluation (module docstring): writes and returns the summary JSON.
    ``structures``: the run's structures table, or a list of them (one per source)."""
    import pyarrow.parquet as pq

    from xrdid.data import StickTable
    from xrdid.instrument import Augment, StickBatch, get_instrument
    from xrdid.io import write_text
    from xrdid.labels import crystal_system
    from xrdid.structures.table import structure_from_row

    inst = get_instrument(instrument)
    table = StickTable.from_parquet(sticks, split=split, d_min_A=inst.d_min_A)
    ids = table.ids[:max_patterns]
    rows_by_id = {}
    wanted = set(ids)
    for path in [structures] if isinstance(structures, str | Path) else structures:
        for r in pq.read_table(path, columns=["id", "space_group", "lattice", "species", "frac_coords"]).to_pylist():
            if r["id"] in wanted:
                rows_by_id[r["id"]] = r
    items = []
    for i, sid in enumerate(ids):
        r = rows_by_id.get(sid)
        if r is None:
            continue
        try:
            truth = primitive_lattice_of(structure_from_row(r))
        except Exception as exc:  # a structure spglib cannot reduce is left out, with its reason logged
            log.warning("%s: no true cell (%s); left out", sid, exc)
            continue
        sticks_i = StickBatch(table.d[i : i + 1], table.f2m[i : i + 1])
        items.append((sid, crystal_system(int(r["space_group"])), sticks_i, [truth]))
    aug = Augment.from_dict(augment) if isinstance(augment, dict) else augment
    rows = index_rendered(items, inst, aug, seed=seed, time_budget_s=time_budget_s)
    summary = {"split": split, "n_patterns": len(rows), "instrument": inst.name, "time_budget_s": time_budget_s,
               "criterion": "lattice parameters within 0.5 % of a Niggli-equivalent cell", "success": summarise(rows),
               "patterns": rows}
    write_text(json.dumps(summary, indent=2, default=str), out)
    s = summary["success"]["all"]
    if s:
        log.info("indexing on %d test patterns: right cell first %.1f %%, in the top 3 %.1f %%, median %.2f s", s["n"], 100 * s["top1"],
                 100 * s["top3"], s["median_seconds"])
    return summary
