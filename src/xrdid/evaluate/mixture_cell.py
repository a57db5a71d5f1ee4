r"""Does one cell index the strong lines? The indexing result as a mixture signal, beside the detector.

``xrdid predict`` indexes every pattern by default (:mod:`xrdid.indexing.combine`); a single phase's lines
all belong to one lattice, a mixture's strong lines to two or more. :func:`xrdid.indexing.combine.one_cell_features`
reads that off the search's best cell (accepted or not): the share of the strong lines' intensity it leaves
unindexed, the share of lines it leaves unindexed, whether any cell was accepted, and log M20. This
benchmark measures how well those separate single phases from mixtures, alone and combined with the mixture
detector's probability p (:mod:`xrdid.mixture_detector`) by a logistic regression on
(logit p, features) fitted on one split and scored on another:

    python -m xrdid.evaluate.mixture_cell --sticks results/novelty-real/sticks.parquet --split val --n 150 \
        --out results/novelty-real/mixture_cell/val.parquet
    python -m xrdid.evaluate.mixture_cell --sticks results/novelty-real/sticks.parquet --split test --n 150 \
        --out results/novelty-real/mixture_cell/test.parquet
    python -m xrdid.evaluate.mixture_cell --fit results/novelty-real/mixture_cell/val.parquet \
        --score results/novelty-real/mixture_cell/test.parquet [--json out.json] [--write-combination mixture_cell.json]

The first two render single phases (the split's structures, as :mod:`xrdid.evaluate.novelty` renders its
known set, with the VAE's augmentation) and two- and three-phase mixtures of them
(:func:`xrdid.evaluate.novelty.render_mixtures`) as 0.01° scans, read them as ``xrdid predict`` reads a file
(onto the model's grid for the networks, indexed as they are), and write per pattern the detector's
probability, the indexing features and the CPU seconds the indexing took. ``--measured DIR --mixtures DIR``
does the same for the measured development patterns. The third fits the combinations on the first tables
(``--fit``, several runs concatenated; also 5-fold cross-validated on them, to choose the features there) and
reports AUROC on the others (``--score``), the detector alone beside them; ``--write-combination`` writes the
fit of ``--features`` as the ``mixture_cell.json`` that ``predict`` combines with the detector when it lies
beside the detector file. The rendered tables also carry the second-cell search's features
(:func:`xrdid.indexing.combine.second_cell_features`, its CPU time apart as ``second_cpu_s``) and the
classifier's crystal-system probabilities; ``--candidates`` compares (and cross-validates on ``--fit``) the
combinations with them (:func:`candidate_sets`), ``--reference mixture_cell.json`` adds a written combination
(the shipped one) and each combination's paired difference to it. ``--framework-gates`` cross-validates on
``--fit`` the shipped features left to the detector alone where a further gate (:data:`FRAMEWORK_GATES`: the
best cell's volume, the classifier's P(triclinic), the first strong line's d) says the pattern looks like a
framework, beside each the AUROC of the 2-phase mixtures against the frameworks' single phases alone
(:func:`framework_auroc`); ``--gate G --score T`` scores only the ``--features`` gated by G (against
``--reference``). The rendered tables also record what each pattern's draw was (:data:`FACTS`,
:func:`mixture_facts`: the minor phase's scale and intensity share, the phases' crystal systems and cell volumes,
whether one phase's lattice indexes the others' lines, how many phases are frameworks), for finding where the
misses lie, never as features; ``--add-facts TABLE`` adds them to a table written before (rendering the same
patterns again without indexing); ``--misses --score T --reference J`` breaks J's AUROC on T down by them
(:func:`misses`), and against the single phases whose best cell is or is not their own (:func:`own_cell`).
The tables also record the search's best and next cell (:data:`CELLS`, :func:`cell_facts`: lattice system,
chance figure, …), for analysis; ``--add-cells TABLE`` adds them to a table written before (re-rendering and
re-indexing the same patterns). Results: reports/vae/mixture_cell.md.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xrdid.indexing.combine import (
    CONTEXT,
    FEATURES,
    PREDICT_TIME_BUDGET_S,
    SECOND,
    grid_pattern,
    indexability,
    one_cell_features,
    second_cell_features,
)
from xrdid.io import atomic_path
from xrdid.labels import CRYSTAL_SYSTEMS

log = logging.getLogger(__name__)

# The step of the rendered scans (°2θ): a laboratory scan's, finer than the model's grid.
FINE_STEP_DEG = 0.01
# Where the one-cell evidence is trusted (a term of xrdid.mixture_detector.term_value): enough lines for a
# search and a first strong line at small d. Elsewhere (few lines; a framework's or other large cell's first
# strong line, mostly not indexed) a single phase is as often left unindexed as a mixture. The validation
# split's choice among GATES (3 × 5-fold cross-validation, reports/vae/mixture_cell.md).
INDEXABLE = "n_lines>7.5*d_first_strong<10"
# The gates the cross-validation on --fit compares (the choice of INDEXABLE).
GATES = tuple(f"n_lines>{n - 0.5}*d_first_strong<{d}" for n in (8, 12) for d in (6, 8, 10, 12)) + ("n_lines>7.5",)


# The further gates --framework-gates compares: where one fails, a pattern is left to the detector alone (large
# cells: ln V ≥ 7–8, V ≳ 1100–3000 Å³; triclinic by the classifier; a first strong line at d ≥ 6–8 Å).
FRAMEWORK_GATES = ("log_volume<7", "log_volume<7.5", "log_volume<8", "p_triclinic<0.1", "p_triclinic<0.2",
                   "p_triclinic<0.3", "d_first_strong<6", "d_first_strong<8")


def gated(features: tuple[str, ...], gate: str = INDEXABLE) -> tuple[str, ...]:
    """``features`` counted only where ``gate`` is 1, and the gate itself (its own intercept)."""
    return tuple(f"{f}*{gate}" for f in features) + (gate,)


# What rendered_features records of the search's cells besides the features (cell_facts): for finding whether
# the best cell is the phase's own, never in the shipped combination unless measured.
CELLS = ("cell_system", "cell_log10p", "cell_n_possible", "cell_n_indexed", "cell_accepted", "cell_budget_exhausted",
         "next_system", "next_log_volume", "next_log_m20")


def cell_facts(result) -> dict:
    """The search's best cell (accepted or not, as :func:`xrdid.indexing.combine.one_cell_features` takes it) and
    the next one (the second accepted, else the first rejected after it) as columns (:data:`CELLS`):
    ``cell_system`` its lattice system (None without a cell), ``cell_log10p`` its chance log10 p,
    ``cell_n_possible`` its calculated lines up to the last line used, ``cell_n_indexed`` the lines it indexes,
    ``cell_accepted`` how many cells were accepted, ``cell_budget_exhausted`` 1 when the search ran out of time,
    ``next_system``, ``next_log_volume`` and ``next_log_m20`` the next cell's (None/NaN without one)."""
    cells = [] if result is None else list(result.cells) + list(result.rejected)
    best = cells[0] if cells else None
    nxt = cells[1] if len(cells) > 1 else None
    return {"cell_system": best.system if best else None,
            "cell_log10p": float(best.chance_log10p) if best else math.nan,
            "cell_n_possible": float(best.n_possible) if best else math.nan,
            "cell_n_indexed": float(best.n_indexed) if best else math.nan,
            "cell_accepted": float(len(result.cells)) if result is not None else 0.0,
            "cell_budget_exhausted": float(result.budget_exhausted) if result is not None else 0.0,
            "next_system": nxt.system if nxt else None,
            "next_log_volume": math.log(max(float(nxt.volume), 1.0)) if nxt else math.nan,
            "next_log_m20": math.log1p(max(nxt.m20, 0.0)) if nxt else math.nan}


def cell_system_probability(df: pd.DataFrame) -> np.ndarray:
    """The classifier's probability of the crystal system of each row's best cell (``cell_system``; hexagonal and
    rhombohedral lattices: P(hexagonal) + P(trigonal)); NaN without a cell."""
    out = np.full(len(df), math.nan)
    for i, s in enumerate(df["cell_system"].to_numpy()):
        if s in ("hexagonal", "rhombohedral"):
            out[i] = df["p_hexagonal"].iat[i] + df["p_trigonal"].iat[i]
        elif isinstance(s, str):
            out[i] = df[f"p_{s}"].iat[i]
    return out


def _index(pattern, cs_p: np.ndarray, wavelength_A: float | None = None, second: bool = True) -> tuple[dict, float]:
    """The indexing ``xrdid predict`` runs (same search order and budget), as features (and :func:`cell_facts`),
    and its CPU time; ``second`` False: without the second-cell search."""
    from xrdid.indexing.peaks import IndexingError, find_peaks
    from xrdid.indexing.search import index_peaks

    t0 = time.process_time()
    probs = {name: float(cs_p[i]) for i, name in enumerate(CRYSTAL_SYSTEMS)}
    try:
        peaks = find_peaks(pattern, wavelength_A=wavelength_A)
        idx = index_peaks(peaks, system_probabilities=probs, time_budget_s=PREDICT_TIME_BUDGET_S)
    except IndexingError:
        peaks, idx = None, None
    feats = {**one_cell_features(idx, peaks), **cell_facts(idx)}
    seconds = time.process_time() - t0
    if not second:
        return feats, seconds
    # The second-cell search on the leftover lines (xrdid.indexing.combine.second_cell_features), timed apart.
    t1 = time.process_time()
    feats.update(second_cell_features(idx, peaks))
    feats["second_cpu_s"] = time.process_time() - t1
    return feats, seconds


def _peaks_context(pattern, wavelength_A: float | None = None) -> tuple[dict, float]:
    """Only what the peaks give of the indexing's context (:func:`xrdid.indexing.combine.indexability`)."""
    from xrdid.indexing.peaks import IndexingError, find_peaks

    t0 = time.process_time()
    try:
        peaks = find_peaks(pattern, wavelength_A=wavelength_A)
    except IndexingError:
        peaks = None
    return indexability(peaks), time.process_time() - t0


@torch.no_grad()
def _rows(bundle, x: torch.Tensor | None, kind: str, phases: int, patterns=None, names=None, wavelengths=None,
          index: bool | str = True, facts: list[dict] | None = None) -> list[dict]:
    """Detector probability, classifier crystal-system probabilities and indexing features of inputs ``x``
    (None: ``patterns`` prepared as xrdid predict prepares them); ``index`` False: the peaks' context only;
    ``facts`` (one dict per pattern, :func:`mixture_facts`) joined to each row."""
    from xrdid.predict import PredictionError, prepare
    from xrdid.train.loop import model_input

    if x is None:
        prepared, kept, kept_names, kept_facts = [], [], [], []
        for i, p in enumerate(patterns):
            try:
                prepared.append(prepare(bundle, p))
                kept.append(p)
                kept_names.append(None if names is None else names[i])
                kept_facts.append(None if facts is None else facts[i])
            except PredictionError as exc:  # xrdid predict refuses it too (e.g. cropped to too little range)
                log.info("%s: %s", kind, exc)
        patterns, names = kept, (None if names is None else kept_names)
        facts = None if facts is None else kept_facts
        x = model_input(torch.as_tensor(np.stack([a for a, _ in prepared])), torch.as_tensor(np.stack([b for _, b in prepared])))
    p_det = bundle.mixture_detector.probability(x)
    rows = []
    for i in range(len(x)):
        y, m = x[i, 0].numpy(), x[i, 1].numpy()
        pattern = patterns[i] if patterns else grid_pattern(bundle.grid, y, m, bundle.instrument.wavelength_A)
        lam = None if wavelengths is None else wavelengths[i]
        sg, cs, _ = bundle.model.forward_features(x[i : i + 1])
        _, cs_p = bundle.probabilities(sg, cs)
        if index:
            feats, seconds = _index(pattern, cs_p[0].numpy(), lam, second=index != "cells")
        else:
            feats, seconds = _peaks_context(pattern, lam)
        systems = {f"p_{name}": float(cs_p[0, k]) for k, name in enumerate(CRYSTAL_SYSTEMS)}
        rows.append({"kind": kind, "phases": phases, "name": None if names is None else names[i], "p_detector": float(p_det[i]),
                     **feats, **systems, "index_cpu_s": seconds, **({} if facts is None else facts[i])})
        if (i + 1) % 25 == 0:
            log.info("%s: %d of %d indexed", kind, i + 1, len(x))
    return rows


# The facts of each rendered pattern's draw that rendered_features records (mixture_facts): what a miss can be
# traced to, never a feature of the combination (predict does not know them).
FACTS = ("minor_scale", "minor_intensity", "major_system", "minor_system", "major_volume", "minor_volume",
         "one_cell_share", "minor_strong_lines", "framework")
# A line of one phase counts as a line of another phase's lattice within this many degrees 2θ.
LATTICE_TOL_DEG = 0.03


def reciprocal_metric(d: np.ndarray, hkl: np.ndarray | None) -> np.ndarray | None:
    """The reciprocal metric tensor G* (1/d² = hklᵀ G* hkl) that the sticks' spacings and Miller indices give
    (least squares); None without Miller indices or with fewer than six independent ones."""
    if hkl is None or len(hkl) < 6:
        return None
    h, k, l = (hkl[:, i].astype(np.float64) for i in range(3))
    a = np.column_stack([h * h, k * k, l * l, 2 * h * k, 2 * h * l, 2 * k * l])
    if np.linalg.matrix_rank(a) < 6:
        return None
    g = np.linalg.lstsq(a, 1 / np.asarray(d, np.float64) ** 2, rcond=None)[0]
    m = np.array([[g[0], g[3], g[4]], [g[3], g[1], g[5]], [g[4], g[5], g[2]]])
    return m if np.linalg.det(m) > 0 else None


def cell_volume(d: np.ndarray, hkl: np.ndarray | None) -> float:
    """The cell volume (Å³) of the sticks' lattice (:func:`reciprocal_metric`); NaN without one."""
    return _metric_volume(reciprocal_metric(d, hkl))


def _metric_volume(metric: np.ndarray | None) -> float:
    """The cell volume (Å³) of reciprocal metric ``metric``; NaN for None."""
    return float(1 / np.sqrt(np.linalg.det(metric))) if metric is not None else math.nan


def lattice_two_theta(metric: np.ndarray, wavelength_A: float, two_theta_max_deg: float, max_index: int = 40) -> np.ndarray:
    """Sorted 2θ (°) of every line of the primitive lattice of reciprocal metric ``metric`` (every hkl, no
    extinctions) up to ``two_theta_max_deg``."""
    q2_max = (2 * np.sin(np.radians(two_theta_max_deg) / 2) / wavelength_A) ** 2
    real = np.linalg.inv(metric)
    bound = [min(int(np.sqrt(real[i, i] * q2_max)) + 1, max_index) for i in range(3)]
    grids = np.meshgrid(*(np.arange(-b, b + 1) for b in bound), indexing="ij")
    hkl = np.stack([g.ravel() for g in grids], 1).astype(np.float64)
    q2 = np.einsum("ni,ij,nj->n", hkl, metric, hkl)
    q2 = np.unique(np.round(q2[(q2 > 0) & (q2 <= q2_max)], 12))
    return np.degrees(2 * np.arcsin(np.clip(np.sqrt(q2) * wavelength_A / 2, 0, 1)))


def _indexed_by(two_theta: np.ndarray, lattice: np.ndarray, tol_deg: float = LATTICE_TOL_DEG) -> np.ndarray:
    """Whether each of ``two_theta`` lies within ``tol_deg`` of a line of ``lattice`` (sorted)."""
    if len(lattice) == 0:
        return np.zeros(len(two_theta), bool)
    i = np.clip(np.searchsorted(lattice, two_theta), 1, len(lattice) - 1) if len(lattice) > 1 else np.zeros(len(two_theta), int)
    near = np.minimum(np.abs(lattice[i] - two_theta), np.abs(lattice[np.maximum(i - 1, 0)] - two_theta))
    return near <= tol_deg


def mixture_facts(table, picks: np.ndarray, scales: np.ndarray, instrument) -> list[dict]:
    """Per drawn pattern (rows ``picks`` of ``table``, a StickTable read ``with_hkl``, at strongest-line heights
    ``scales``; one column: single phases) what its draw was, as the sticks give it (before broadening and the
    augmentation):

    * ``minor_scale`` — the minor phase's (smallest scale's) scale, its strongest line's height against the
      pattern's others (NaN for one phase; ≥ 0.15 as drawn);
    * ``minor_intensity`` — its share of the sticks' intensity (|F|²·m·Lp) on the scan's range;
    * ``major_system``, ``minor_system`` — the crystal systems of the largest- and smallest-scale phases;
    * ``major_volume``, ``minor_volume`` — their cell volumes (Å³, from the sticks' hkl);
    * ``one_cell_share`` — the largest share of the pattern's intensity that one phase's lattice (every hkl,
      within :data:`LATTICE_TOL_DEG`) indexes: near 1, one cell indexes the mixture's lines;
    * ``minor_strong_lines`` — the minor phase's strong lines (≥ STRONG_LINE of the pattern's strongest) that the
      major phase's lattice does not index: what a search on the major cell leaves to show the mixture;
    * ``framework`` — how many of the phases are frameworks (CoRE MOF)."""
    from xrdid.evaluate.novelty import _lp
    from xrdid.indexing.combine import STRONG_LINE

    lam, top = instrument.wavelength_A, instrument.two_theta_max_deg
    out = []
    for row, scale in zip(np.atleast_2d(picks), np.atleast_2d(scales), strict=True):
        phases = []
        for i, w in zip(row, scale, strict=True):
            i = int(i)
            n = int((table.d[i] > 0).sum())
            d, f = table.d[i, :n], table.f2m[i, :n]
            inten = (f * _lp(d, instrument)).double().numpy()
            inten = inten / max(inten.max(initial=0), 1e-30) * float(w)
            hkl = table.hkl_rows[i] if table.hkl_rows is not None else None
            d = d.double().numpy()
            on = inten > 0
            metric = reciprocal_metric(d, hkl)
            phases.append({"id": table.ids[i], "system": CRYSTAL_SYSTEMS[int(table.crystal_system[i])], "scale": float(w),
                           "volume": _metric_volume(metric),
                           "metric": metric, "tt": np.degrees(2 * np.arcsin(np.clip(lam / (2 * d[on]), 0, 1))), "i": inten[on]})
        total = sum(float(p["i"].sum()) for p in phases) or 1.0
        strongest = max(float(p["i"].max(initial=0)) for p in phases) or 1.0
        order = np.argsort([p["scale"] for p in phases], kind="stable")
        minor, major = phases[order[0]], phases[order[-1]]
        lattices = [lattice_two_theta(p["metric"], lam, top) if p["metric"] is not None else None for p in phases]
        shares = [sum(float(q["i"][_indexed_by(q["tt"], lat)].sum()) for q in phases) / total
                  for lat in lattices if lat is not None]
        multi = len(phases) > 1
        major_lat = lattices[order[-1]]
        strong = minor["i"] >= STRONG_LINE * strongest
        if major_lat is not None:
            strong &= ~_indexed_by(minor["tt"], major_lat)
        out.append({"minor_scale": minor["scale"] if multi else math.nan,
                    "minor_intensity": float(minor["i"].sum()) / total if multi else math.nan,
                    "major_system": major["system"], "minor_system": minor["system"] if multi else None,
                    "major_volume": major["volume"], "minor_volume": minor["volume"] if multi else math.nan,
                    "one_cell_share": max(shares) if shares else math.nan,
                    "minor_strong_lines": float(strong.sum()) if multi else math.nan,
                    "framework": float(sum(p["id"].startswith("core_mof/") for p in phases)),
                    "phase_ids": "+".join(p["id"] for p in phases)})
    return out


def rendered_features(*, sticks: str | Path, split: str, n: int, cnn: str | Path | None = None, vae: str | Path | None = None,
                      seed: int = 2025, threads: int = 1, index: bool | str = True) -> pd.DataFrame:
    """Single phases and 2-/3-phase mixtures of ``split``'s structures (``n`` each), rendered as the novelty
    benchmark renders them, with the detector's probability, the indexing features (module docstring) and what
    each pattern's draw was (:func:`mixture_facts`; ``name`` the structures' ids, joined by "+");
    ``index`` False: the same patterns with only the peaks' context (to add it to a table of the same
    arguments written without it); ``"cells"``: indexed without the second-cell search (:func:`add_cells`)."""
    from xrdid.data import StickTable
    from xrdid.evaluate.novelty import _gen, mixture_draws, render_known, render_mixtures
    from xrdid.instrument import Augment, Instrument, Renderer
    from xrdid.novelty import load_novelty
    from xrdid.predict import load_model
    from xrdid.train.vae import subset_index
    from xrdid.weights import pretrained_path

    torch.set_num_threads(threads)
    bundle = load_model(cnn, vae=None)
    if bundle.mixture_detector is None:
        raise ValueError(f"{bundle.path}: no mixture detector beside the checkpoint")
    novelty = load_novelty(vae or pretrained_path())
    inst, augment = Instrument.from_dict(novelty.meta["instrument"]), Augment.from_dict(novelty.meta.get("augment"))
    # Rendered as a scan (FINE_STEP_DEG steps), then read as xrdid predict reads a file: put onto the model's
    # grid for the networks, indexed as it is.
    fine = replace(inst, n_points=round((inst.two_theta_max_deg - inst.two_theta_min_deg) / FINE_STEP_DEG) + 1)
    renderer = Renderer(fine, augment)
    table = StickTable.from_parquet(sticks, split=split, d_min_A=inst.d_min_A, with_hkl=True)
    picked = torch.randperm(len(table), generator=_gen(seed))[:n] if len(table) > n else torch.arange(len(table))
    known = subset_index(table, picked) if len(table) > n else table

    def scans(x: torch.Tensor):
        grid = fine.grid()
        return [grid_pattern(grid, x[i, 0].numpy(), x[i, 1].numpy(), fine.wavelength_A) for i in range(len(x))]

    facts = mixture_facts(table, picked.numpy()[:, None], np.ones((len(picked), 1)), inst)
    rows = _rows(bundle, None, "single", 1, patterns=scans(render_known(known, renderer, seed)), names=list(known.ids), index=index,
                 facts=facts)
    for phases in (2, 3):
        facts = mixture_facts(table, *mixture_draws(len(table), n, phases, seed + phases), inst)
        rows += _rows(bundle, None, f"mixture_{phases}", phases, patterns=scans(render_mixtures(table, renderer, n, phases, seed + phases)),
                      names=[f["phase_ids"] for f in facts], index=index, facts=facts)
    return pd.DataFrame(rows)


def measured_features(*, measured: str | Path, mixtures: str | Path, cnn: str | Path | None = None) -> pd.DataFrame:
    """The measured development patterns (single phases with ``index.csv``, mixtures with ``labels.csv``), each
    prepared and indexed as ``xrdid predict`` does it (on the scan as read)."""
    from xrdid.evaluate.novelty import measured_rows
    from xrdid.predict import PredictionError, load_model, prepare
    from xrdid.readers import PatternError, read_pattern
    from xrdid.train.loop import model_input

    bundle = load_model(cnn, vae=None)
    spec = {"measured": {"folder": str(measured), "labels": str(Path(measured) / "index.csv")}}
    rows = []
    for folder, name, lam, phases in measured_rows(spec, mixtures):
        try:
            pattern = read_pattern(Path(folder) / name, wavelength_A=lam)
            y, mask = prepare(bundle, pattern, wavelength_A=lam)
        except (PatternError, PredictionError) as exc:
            log.warning("%s skipped: %s", name, exc)
            continue
        x = model_input(torch.as_tensor(y)[None], torch.as_tensor(mask)[None])
        rows += _rows(bundle, x, "measured_single" if phases == 1 else f"measured_mixture_{phases}", phases,
                      patterns=[pattern], names=[name], wavelengths=[lam])
    return pd.DataFrame(rows)


def add_context(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``old`` with what ``new``, the same patterns rendered again without indexing, has and it lacks (the peaks'
    context ``d_first_strong``, ``n_lines``; the classifier's crystal-system probabilities); ``log_volume``
    (which needs the indexing) NaN. ValueError when the two are not the same patterns (kinds or detector
    probabilities differ)."""
    if len(old) != len(new) or list(old["kind"]) != list(new["kind"]) or not np.allclose(old["p_detector"], new["p_detector"], atol=1e-5):
        raise ValueError("not the same patterns: render with the --split, --n and --seed the table was written with")
    out = old.copy()
    for c in new.columns:
        if c not in out.columns:
            out[c] = new[c].to_numpy()
    out["log_volume"] = np.nan
    return out


def add_facts(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``old`` (a table written before the tables carried :data:`FACTS`) with ``new``'s facts and names, ``new``
    the same patterns rendered again (without indexing). ValueError when they are not the same patterns."""
    if len(old) != len(new) or list(old["kind"]) != list(new["kind"]) or not np.allclose(old["p_detector"], new["p_detector"], atol=1e-5):
        raise ValueError("not the same patterns: render with the --split, --n and --seed the table was written with")
    out = old.copy()
    for c in (*FACTS, "phase_ids", "name"):
        out[c] = new[c].to_numpy()
    return out


def _write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write a feature table atomically: ``--add-*`` without ``--out`` rewrites its input, which an interrupted
    write must not leave half-written."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp)


def add_cells(old: pd.DataFrame, new: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """``old`` (a table written before the tables carried :data:`CELLS`) with ``new``'s, ``new`` the same patterns
    rendered and indexed again, and the share of patterns whose one-cell features came out the same (the search
    stops on CPU time, so a few may differ). ValueError when they are not the same patterns."""
    if len(old) != len(new) or list(old["kind"]) != list(new["kind"]) or not np.allclose(old["p_detector"], new["p_detector"], atol=1e-5):
        raise ValueError("not the same patterns: render with the --split, --n and --seed the table was written with")
    out = old.copy()
    for c in CELLS:
        out[c] = new[c].to_numpy()
    same = np.ones(len(old), bool)
    for c in FEATURES:
        same &= np.isclose(old[c].to_numpy(np.float64), new[c].to_numpy(np.float64), atol=1e-6)
    return out, float(same.mean())


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def design(df: pd.DataFrame, features: tuple[str, ...] = FEATURES) -> np.ndarray:
    """(logit p_detector, indexing features or terms of them (:func:`xrdid.mixture_detector.term_value`)…) per row."""
    from xrdid.mixture_detector import term_value

    return np.column_stack([_logit(df["p_detector"])] + [np.broadcast_to(term_value(f, df), (len(df),)) for f in features])


def fit_combination(df: pd.DataFrame, features: tuple[str, ...] = FEATURES, l2: float = 1e-3) -> dict:
    """Logistic regression of "more than one phase" on :func:`design`, single phases and mixtures weighing half each."""
    from xrdid.mixture_probe import fit_logistic

    y = (df["phases"].to_numpy() > 1).astype(np.float64)
    w = np.where(y > 0, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    mean, scale, weight, bias = fit_logistic(design(df, features), y, w, l2=l2)
    # One linear function of the raw inputs: logit P = Σ c_j x_j + c_0.
    coef = weight / scale
    return {"features": ["logit_p_detector", *features], "coef": [float(v) for v in coef],
            "intercept": float(bias - (coef * mean).sum())}


def combined_logit(df: pd.DataFrame, fit: dict) -> np.ndarray:
    return design(df, tuple(fit["features"][1:])) @ np.asarray(fit["coef"]) + fit["intercept"]


def aurocs(df: pd.DataFrame, score: np.ndarray) -> dict:
    """AUROC of ``score`` for each kind of multi-phase pattern against the single phases of the same table."""
    from xrdid.evaluate.novelty import auroc

    single = df["phases"].to_numpy() == 1
    out = {}
    for kind in sorted(df.loc[~single, "kind"].unique()):
        sel = (df["kind"] == kind).to_numpy()
        out[kind] = auroc(score[single], score[sel])
    if (~single).sum() and len(out) > 1:
        out["all_multi"] = auroc(score[single], score[~single])
    return out


def paired_difference(df: pd.DataFrame, score: np.ndarray, reference: np.ndarray, n_boot: int = 400, seed: int = 0) -> dict:
    """AUROC(score) − AUROC(reference) per kind of multi-phase pattern (:func:`aurocs`), and its standard error
    by a bootstrap over patterns (each kind resampled on its own; both scores on the same draws)."""
    rng = np.random.default_rng(seed)
    diff = {k: v - aurocs(df, reference)[k] for k, v in aurocs(df, score).items()}
    by_kind = [np.flatnonzero((df["kind"] == k).to_numpy()) for k in df["kind"].unique()]
    draws = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(i, len(i)) for i in by_kind])
        sub = df.iloc[idx]
        a, b = aurocs(sub, score[idx]), aurocs(sub, reference[idx])
        draws.append({k: a[k] - b[k] for k in a})
    return {k: {"difference": float(v), "se": float(np.std([d[k] for d in draws], ddof=1))} for k, v in diff.items()}


# The facts (FACTS) --misses breaks the AUROC down by, with their bins' edges (left-open, right-closed);
# ``larger_log_volume`` is ln of the larger of the two phases' cell volumes (Å³).
MISS_BINS = {"minor_scale": (0.15, 0.25, 0.35, 0.5), "minor_intensity": (0.0, 0.15, 0.3, 0.5, 1.0),
             "minor_strong_lines": (-1, 0, 2, 5, 1000), "one_cell_share": (0.0, 0.8, 0.95, 0.999, 1.0),
             "framework": (-0.5, 0.5, 1.5, 2.5), "larger_log_volume": (0.0, 6.0, 7.0, 8.0, 20.0)}


def misses(df: pd.DataFrame, score: np.ndarray, kind: str = "mixture_2", bins: dict | None = None) -> dict[str, pd.DataFrame]:
    """Where ``kind``'s misses lie, per fact of :data:`MISS_BINS` (``bins``): for each bin, its patterns (``n``), their
    AUROC against all the table's single phases (``auroc``: the mean over them of the share of single phases scored
    below each, ties ½) and the bin's share of all the pairs ``kind`` loses (``lost_share``)."""
    single = np.sort(score[(df["kind"] == "single").to_numpy()])
    sel = (df["kind"] == kind).to_numpy()
    x = score[sel]
    below = (np.searchsorted(single, x, "left") + np.searchsorted(single, x, "right")) / (2 * len(single))
    facts = df.loc[sel].copy()
    if "major_volume" in facts:
        facts["larger_log_volume"] = np.log(np.fmax(facts["major_volume"], facts["minor_volume"]))
    lost = 1 - below
    out = {}
    for column, edges in (bins or MISS_BINS).items():
        if column not in facts:
            continue
        b = pd.cut(facts[column].to_numpy(np.float64), list(edges))
        t = pd.DataFrame({"bin": b, "below": below, "lost": lost}).groupby("bin", observed=True)
        out[column] = pd.DataFrame({"n": t.size(), "auroc": t["below"].mean(), "lost_share": t["lost"].sum() / max(lost.sum(), 1e-12)})
    return out


# A best cell is a phase's own where its volume is within this (relative) of ¼, ⅓, ½, 1, 2, 3 or 4 times the
# structure's: centred, reduced and doubled settings of the same lattice.
OWN_CELL_TOL = 0.05
OWN_CELL_MULTIPLES = (1 / 4, 1 / 3, 1 / 2, 1, 2, 3, 4)


def own_cell(df: pd.DataFrame) -> np.ndarray:
    """Per row whether the search's best cell (``log_volume``) is the major phase's own (``major_volume``, a fact):
    "own" (within :data:`OWN_CELL_TOL` of one of :data:`OWN_CELL_MULTIPLES` of it), "other", or "none" (no cell,
    or no volume to compare)."""
    lv = df["log_volume"].to_numpy(np.float64)
    v = df["major_volume"].to_numpy(np.float64)
    none = ~np.isfinite(lv) | (lv == 0) | ~np.isfinite(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.log(np.exp(lv) / v)
    own = np.any([np.abs(ratio - np.log(m)) < OWN_CELL_TOL for m in OWN_CELL_MULTIPLES], axis=0)
    return np.where(none, "none", np.where(own, "own", "other"))


def against_own_cell(df: pd.DataFrame, score: np.ndarray, kind: str = "mixture_2") -> pd.DataFrame:
    """``kind``'s AUROC against the single phases whose best cell is their own, another, or none
    (:func:`own_cell`), and how many single phases each is."""
    from xrdid.evaluate.novelty import auroc

    single = (df["kind"] == "single").to_numpy()
    which = own_cell(df)
    x = score[(df["kind"] == kind).to_numpy()]
    rows = {w: {"n": int((single & (which == w)).sum()), "auroc": auroc(score[single & (which == w)], x)}
            for w in ("own", "other", "none") if (single & (which == w)).any()}
    return pd.DataFrame(rows).T.rename_axis("single phases' best cell")


# The classifier's crystal-system probabilities as terms (one left out: they sum to 1); candidate_sets tries
# them and the second-cell search's features (SECOND, xrdid.indexing.combine.second_cell_features).
SYSTEM_TERMS = tuple(f"p_{s}" for s in CRYSTAL_SYSTEMS if s != "cubic")


def candidate_sets(df: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """The combinations beside the shipped one (all four where indexable) that ``df``'s columns allow: with
    the second-cell features (where indexable, or everywhere), with the crystal-system probabilities, both."""
    sets = {f"all where {INDEXABLE}": gated(FEATURES)}
    if all(c in df for c in SECOND):
        sets["all + second cell where indexable"] = gated(FEATURES + SECOND)
        sets["all + second-cell share, accepted where indexable"] = gated(FEATURES + ("second_indexed", "second_accepted"))
        sets["all where indexable + second cell everywhere"] = gated(FEATURES) + SECOND
    if all(c in df and df[c].notna().all() for c in SYSTEM_TERMS):
        sets["all where indexable + crystal-system probabilities"] = gated(FEATURES) + SYSTEM_TERMS
        if all(c in df for c in SECOND):
            sets["all + second cell where indexable + crystal-system probabilities"] = gated(FEATURES + SECOND) + SYSTEM_TERMS
    return sets


def framework_sets(df: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """The shipped features (FEATURES + SECOND where :data:`INDEXABLE`) and the same with each of
    :data:`FRAMEWORK_GATES` that ``df``'s columns allow joined to the gate."""
    base = FEATURES + SECOND
    sets = {f"all + second cell where {INDEXABLE}": gated(base)}
    for g in FRAMEWORK_GATES:
        column = g.split("<")[0]
        if column in df and df[column].notna().all():
            sets[f"all + second cell where {INDEXABLE}*{g}"] = gated(base, f"{INDEXABLE}*{g}")
    return sets


def framework_auroc(df: pd.DataFrame, score: np.ndarray) -> float:
    """AUROC of ``score`` for the 2-phase mixtures against the single phases that are frameworks (CoRE MOF,
    by ``name``); NaN without either."""
    from xrdid.evaluate.novelty import auroc

    name = df["name"] if "name" in df else pd.Series([None] * len(df))
    framework = ((df["kind"] == "single") & name.fillna("").astype(str).str.startswith("core_mof/")).to_numpy()
    two = (df["kind"] == "mixture_2").to_numpy()
    return auroc(score[framework], score[two]) if framework.any() and two.any() else math.nan


def reference_logit(df: pd.DataFrame, path: str | Path) -> np.ndarray:
    """logit of a written combination's (``mixture_cell.json``) probability on ``df``'s rows, as predict gives it."""
    from xrdid.mixture_detector import read_cell_combination

    cell = read_cell_combination(path)
    return combined_logit(df, {"features": ["logit_p_detector", *cell.features], "coef": list(cell.coef), "intercept": cell.intercept})


def compare(fit_table: pd.DataFrame, score_table: pd.DataFrame, feature_sets: dict[str, tuple[str, ...]] | None = None,
            n_boot: int = 400, reference: str | Path | None = None) -> dict:
    """AUROC on ``score_table`` of the detector alone, of each indexing feature alone, and of the
    combinations fitted on ``fit_table`` (module docstring); with ``reference`` (a written combination, the
    shipped one), its AUROC too and each combination's paired difference to it."""
    feature_sets = feature_sets or {"detector + all indexing features": FEATURES,
                                    "detector + unindexed_strong": ("unindexed_strong",),
                                    "detector + not_indexed": ("not_indexed",),
                                    "detector + unindexed_strong + not_indexed": ("unindexed_strong", "not_indexed"),
                                    f"detector + all indexing features where {INDEXABLE}": gated(FEATURES),
                                    f"detector + unindexed_strong + not_indexed where {INDEXABLE}": gated(("unindexed_strong", "not_indexed"))}
    out = {"n": {k: int(v) for k, v in score_table["kind"].value_counts().items()},
           "auroc": {"detector alone": aurocs(score_table, score_table["p_detector"].to_numpy())}, "fits": {}}
    for f in FEATURES:
        out["auroc"][f"{f} alone"] = aurocs(score_table, score_table[f].to_numpy(np.float64))
    ref = None
    if reference is not None:
        ref = reference_logit(score_table, reference)
        out["auroc"][f"written combination {Path(reference).name}"] = aurocs(score_table, ref)
    for name, feats in feature_sets.items():
        fit = fit_combination(fit_table, feats)
        out["fits"][name] = fit
        score = combined_logit(score_table, fit)
        out["auroc"][name] = aurocs(score_table, score)
        out.setdefault("against_detector", {})[name] = paired_difference(score_table, score, score_table["p_detector"].to_numpy(), n_boot)
        if ref is not None:
            out.setdefault("against_reference", {})[name] = paired_difference(score_table, score, ref, n_boot)
    out["index_cpu_s"] = {"median": float(score_table["index_cpu_s"].median()), "mean": float(score_table["index_cpu_s"].mean())}
    return out


def cross_validated(df: pd.DataFrame, features: tuple[str, ...], folds: int = 5, seed: int = 0,
                    frameworks: bool = False, train_fraction: float = 1.0) -> dict:
    """AUROC of the combination on ``df`` itself, each pattern scored by a fit on the other folds (to choose
    the features on the fitting table without touching the scoring one); with ``frameworks``, also
    :func:`framework_auroc` of those scores. ``train_fraction`` < 1 fits on that share of the other folds
    only (drawn at random; the scored folds are the same), for :data:`LEARNING_CURVE`."""
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, folds, len(df))
    score = np.zeros(len(df))
    for k in range(folds):
        train = np.flatnonzero(fold != k)
        if train_fraction < 1:
            train = np.sort(rng.choice(train, max(round(train_fraction * len(train)), 1), replace=False))
        fit = fit_combination(df.iloc[train], features)
        score[fold == k] = combined_logit(df[fold == k], fit)
    return {**aurocs(df, score), **({"frameworks": framework_auroc(df, score)} if frameworks else {})}


# Shares of the fitting table a learning curve (--learning-curve) fits on: does the cross-validated AUROC still
# grow at the full table (then more fitting data would help) or has it levelled off?
LEARNING_CURVE = (0.25, 0.5, 0.75, 1.0)


def learning_curve(df: pd.DataFrame, features: tuple[str, ...], fractions: tuple[float, ...] = LEARNING_CURVE,
                   repeats: int = 10) -> dict[float, dict]:
    """:func:`cross_validated` AUROC with the fits on each share ``fractions`` of the other folds, averaged
    over ``repeats`` fold assignments (the same ones for every share)."""
    out = {}
    for f in fractions:
        runs = [cross_validated(df, features, seed=k, train_fraction=f) for k in range(repeats)]
        out[f] = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    return out


def combination_file(df: pd.DataFrame, features: tuple[str, ...], detector_path: str | Path, measured: dict | None = None) -> dict:
    """The ``mixture_cell.json`` of :class:`xrdid.mixture_detector.CellCombination`: the fit on ``df``, and
    ``warn_above`` the 95th percentile of its single phases' combined probability (5 % false warnings)."""
    from xrdid.weights import file_digest

    fit = fit_combination(df, features)
    p = 1 / (1 + np.exp(-combined_logit(df, fit)))
    single = df["phases"].to_numpy() == 1
    return {**fit, "warn_above": float(np.quantile(p[single], 0.95)), "detector_digest": file_digest(detector_path),
            "fitted_on": {k: int(v) for k, v in df["kind"].value_counts().items()}, **({"measured": measured} if measured else {})}


def markdown(result: dict) -> str:
    kinds = [k for k in next(iter(result["auroc"].values()))]
    lines = ["| AUROC, single phase vs … | " + " | ".join(f"{k} (n={result['n'].get(k, '')})" for k in kinds) + " |",
             "|---|" + "---|" * len(kinds)]
    for name, row in result["auroc"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row.get(k, math.nan):.3f}" for k in kinds) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m xrdid.evaluate.mixture_cell", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sticks", help="sticks table: render single phases and mixtures of its --split")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=150, help="patterns per kind (single, 2-phase, 3-phase)")
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--cnn", default=None, help="checkpoint with a mixture detector (default: the shipped one)")
    ap.add_argument("--measured", default=None, help="measured single-phase patterns with index.csv")
    ap.add_argument("--mixtures", default=None, help="measured multi-phase patterns with labels.csv")
    ap.add_argument("--out", default=None, help="per-pattern features (parquet)")
    ap.add_argument("--add-context", default=None,
                    help="a table written by --sticks with the same --split/--n/--seed but without the indexing's "
                         "context: render the same patterns again, add what their peaks give (no indexing) and write --out")
    ap.add_argument("--add-facts", default=None,
                    help="a table written by --sticks with the same --split/--n/--seed before the tables carried FACTS: "
                         "render the same patterns again (no indexing), add their draws' facts and names and write --out")
    ap.add_argument("--add-cells", default=None,
                    help="a table written by --sticks with the same --split/--n/--seed before the tables carried CELLS: "
                         "render and index the same patterns again (no second-cell search), add the cells' columns, write --out")
    ap.add_argument("--fit", nargs="+", default=None, help="feature tables to fit the combination on")
    ap.add_argument("--score", nargs="+", default=None, help="feature tables to report AUROC on")
    ap.add_argument("--json", default=None, help="write the comparison here")
    ap.add_argument("--write-combination", default=None, help="write the combination fitted on --fit (mixture_cell.json) here")
    ap.add_argument("--features", nargs="+", default=list(FEATURES),
                    help="indexing features (or terms: xrdid.mixture_detector.term_value) of --write-combination")
    ap.add_argument("--gate", default=None,
                    help=f"count --features only where this term is 1 (the gate joins as its own term), e.g. {INDEXABLE}; "
                         "then only these gated --features are cross-validated on --fit and compared on --score")
    ap.add_argument("--candidates", action="store_true",
                    help="compare (and cross-validate on --fit) the shipped gated combination against the candidates with the "
                         "second-cell features and the crystal-system probabilities (candidate_sets) instead of the default sets")
    ap.add_argument("--reference", default=None,
                    help="a written combination (e.g. src/xrdid/pretrained/mixture_cell.json): its AUROC on --score and each "
                         "combination's paired difference to it")
    ap.add_argument("--framework-gates", action="store_true",
                    help="cross-validate on --fit the shipped features left to the detector alone where each of "
                         "FRAMEWORK_GATES fails (framework_sets), with the frameworks' AUROC beside")
    ap.add_argument("--learning-curve", action="store_true",
                    help="cross-validate on --fit the shipped features (or --gate/--features) fitted on shares "
                         "LEARNING_CURVE of the other folds: would more fitting data help?")
    ap.add_argument("--misses", action="store_true",
                    help="where the --reference combination's misses lie on --score: AUROC and share of the lost pairs per "
                         "bin of each of the tables' facts (MISS_BINS; tables written with them, or --add-facts)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.add_cells:
        old = pd.read_parquet(args.add_cells)
        new = rendered_features(sticks=args.sticks, split=args.split, n=args.n, cnn=args.cnn, seed=args.seed, index="cells")
        df, same = add_cells(old, new)
        _write_table(df, args.out or args.add_cells)
        print(f"one-cell features the same as the table's for {same:.1%} of the patterns")
        print(pd.crosstab(df["kind"], df["cell_system"].fillna("none")).to_string())
    elif args.add_facts:
        old = pd.read_parquet(args.add_facts)
        new = rendered_features(sticks=args.sticks, split=args.split, n=args.n, cnn=args.cnn, seed=args.seed, index=False)
        df = add_facts(old, new)
        _write_table(df, args.out or args.add_facts)
        print(df.groupby("kind")[["p_detector", *(f for f in FACTS if "system" not in f)]].mean().to_string())
    elif args.add_context:
        old = pd.read_parquet(args.add_context)
        new = rendered_features(sticks=args.sticks, split=args.split, n=args.n, cnn=args.cnn, seed=args.seed, index=False)
        df = add_context(old, new)
        _write_table(df, args.out or args.add_context)
        print(df.groupby("kind")[["p_detector", *CONTEXT]].mean().to_string())
    elif args.sticks or args.measured:
        if args.sticks:
            df = rendered_features(sticks=args.sticks, split=args.split, n=args.n, cnn=args.cnn, seed=args.seed)
        else:
            df = measured_features(measured=args.measured, mixtures=args.mixtures, cnn=args.cnn)
        if args.out:
            _write_table(df, args.out)
        print(df.groupby("kind")[["p_detector", *FEATURES, *CONTEXT, *(c for c in SECOND if c in df), "index_cpu_s"]].mean().to_string())
    if args.misses:
        if not (args.score and args.reference):
            ap.error("--misses needs --score tables and --reference mixture_cell.json")
        score_table = pd.concat([pd.read_parquet(p) for p in args.score], ignore_index=True)
        score = reference_logit(score_table, args.reference)
        for kind in ("mixture_2", "mixture_3"):
            print(f"{kind}: AUROC {aurocs(score_table, score)[kind]:.3f} against {int((score_table['kind'] == 'single').sum())} single phases")
            for column, t in misses(score_table, score, kind).items():
                print(t.round(3).rename_axis(column).to_string(), "\n")
            if "major_volume" in score_table:
                print(against_own_cell(score_table, score, kind).round(3).to_string(), "\n")
        return 0
    if args.fit and args.score:
        fit_table = pd.concat([pd.read_parquet(p) for p in args.fit], ignore_index=True)
        score_table = pd.concat([pd.read_parquet(p) for p in args.score], ignore_index=True)
        sets = None
        if args.candidates:
            sets = {k: v for k, v in candidate_sets(fit_table).items() if k in candidate_sets(score_table)}
        if args.gate:
            sets = {f"{' + '.join(args.features)} where {args.gate}": gated(tuple(args.features), args.gate)}
        result = compare(fit_table, score_table, sets, reference=args.reference)
        print(markdown(result))
        for name, d in result.get("against_detector", {}).items():
            print(f"{name} − detector alone:", ", ".join(f"{k} {v['difference']:+.3f} ± {v['se']:.3f}" for k, v in d.items()))
        for name, d in result.get("against_reference", {}).items():
            print(f"{name} − {args.reference}:", ", ".join(f"{k} {v['difference']:+.3f} ± {v['se']:.3f}" for k, v in d.items()))
        print(json.dumps(result["fits"], indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
    if args.fit:
        fit_table = pd.concat([pd.read_parquet(p) for p in args.fit], ignore_index=True)
        sets = {"nothing": (), "all": FEATURES, **{f: (f,) for f in FEATURES}, "strong + not indexed": ("unindexed_strong", "not_indexed")}
        sets.update({f"all where {g}": gated(FEATURES, g) for g in GATES})
        sets.update({f"strong + not indexed where {g}": gated(("unindexed_strong", "not_indexed"), g) for g in GATES})
        if args.candidates:
            sets = candidate_sets(fit_table)
        if args.framework_gates:
            sets = {"nothing": (), **framework_sets(fit_table)}
        elif args.gate:
            sets = {f"{' + '.join(args.features)} where {args.gate}": gated(tuple(args.features), args.gate)}
        if args.learning_curve:
            feats = gated(tuple(args.features), args.gate) if args.gate else gated(FEATURES + SECOND)
            for f, cv in learning_curve(fit_table, feats).items():
                print(f"learning curve, fit on {f:.0%} of the other folds:", json.dumps({k: round(v, 3) for k, v in cv.items()}))
            sets = {}
        for name, feats in sets.items():
            # Three fold assignments, averaged (one is ±0.005 on 450 patterns); ten for --framework-gates.
            runs = [cross_validated(fit_table, feats, seed=k, frameworks=args.framework_gates)
                    for k in range(10 if args.framework_gates else 3)]
            cv = {k: round(float(np.mean([r[k] for r in runs])), 3) for k in runs[0]}
            print(f"cross-validated on --fit, detector + {name}:", json.dumps(cv))
        if args.write_combination:
            from xrdid.mixture_detector import FILENAME
            from xrdid.predict import load_model

            where = Path(load_model(args.cnn, vae=None).path)
            detector = where / FILENAME if (where / FILENAME).is_file() else where.parent / FILENAME
            feats = gated(tuple(args.features), args.gate) if args.gate else tuple(args.features)
            out = combination_file(fit_table, feats, detector)
            Path(args.write_combination).write_text(json.dumps(out, indent=1) + "\n")
            print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
