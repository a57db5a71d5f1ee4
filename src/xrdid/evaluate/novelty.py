r"""Novelty benchmark: how well a score separates patterns of known structures from what is not one.

One command: ``python -m xrdid.evaluate.novelty --sticks results/vae/sticks.parquet --vae DIR [--cnn CKPT]
[--measured DIR --mixtures DIR] --out results.json [--markdown results.md]``.

The **known** set is the test split's structures of space groups the VAE was trained on, rendered with the
training augmentation. Against it, AUROC (1 = perfect separation, 0.5 = chance) for five kinds of patterns,
all made with the same instrument, noise model and range cropping as the known ones:

* ``unseen_space_groups`` — structures of the VAE's ``holdout_space_groups`` (never in its training or
  validation), rendered like the known ones;
* ``mixtures_2``, ``mixtures_3`` — two or three known test structures in one pattern: their sticks together,
  each phase scaled so its strongest reflection is proportional to its fraction (each ≥ 15 %, drawn from a
  flat Dirichlet), then rendered with the augmentation once (one background, one noise);
* ``amorphous`` — one or two broad humps in Q (centre 1.0–3.0 Å⁻¹, FWHM 0.4–1.5 Å⁻¹, where glasses and
  amorphous oxides scatter) over a low-angle decay, plus the 1–5 strongest reflections of a known structure at
  5–40 % of the hump's height, with counting noise (300–10⁵ counts at the top);
* ``noise`` — no diffraction at all: half a random smooth background (the renderer's basis of polynomials,
  low-angle decays and humps) with counting noise of 30–10⁴ counts, half a flat level with Gaussian noise.

Scores compared: the VAE's calibrated ``score`` and its two components (:mod:`xrdid.novelty`), and
max-softmax (1 − the largest calibrated space-group probability) of the VAE's latent classifier (trained on
the same data, so it too never saw the held-out groups) and of a CNN when ``cnn`` is given (the shipped one
saw every space group, so its unseen-space-group row is not a like-for-like one); and the CNN's mixture probe
(:mod:`xrdid.mixture_probe`) and its mixture detector (:mod:`xrdid.mixture_detector`) when it has them. The
probe is fitted on its checkpoint's validation split and the detector trained on its training split, so their
rows are held-out figures when ``sticks`` is that checkpoint's table (whose test split neither saw).

With the development data (``measured``: single-phase measured patterns with ``index.csv``; ``mixtures``:
measured multi-phase patterns with ``labels.csv``), also the AUROC of real single-phase against real
multi-phase patterns, and each measured pattern's score.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from xrdid.data import StickTable
from xrdid.instrument import Augment, Instrument, Renderer, StickBatch
from xrdid.io import write_text
from xrdid.novelty import NoveltyModel, load_novelty
from xrdid.train.loop import model_input
from xrdid.train.vae import subset, subset_index

log = logging.getLogger(__name__)

SETS = ("unseen_space_groups", "mixtures_2", "mixtures_3", "amorphous", "noise")
TARGET_AUROC = 0.90


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _log_uniform(lo: float, hi: float, n: int, g: torch.Generator) -> torch.Tensor:
    return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand((n, 1), generator=g))


def _crop(n: int, points: int, augment: Augment, g: torch.Generator) -> torch.Tensor:
    """Coverage masks cropped as the renderer crops (each end with probability crop_probability/2)."""
    r = torch.rand((n, 4), generator=g)
    p, f = augment.crop_probability if augment.enabled else 0.0, augment.crop_max_fraction
    low = torch.where(r[:, :1] < p / 2, (r[:, 2:3] * f * points).floor(), torch.zeros(n, 1))
    high = torch.where(r[:, 1:2] < p / 2, points - (r[:, 3:4] * f * points).floor(), torch.full((n, 1), float(points)))
    i = torch.arange(points, dtype=torch.float32)
    return ((i >= low) & (i < high)).float()


def _counted(y: torch.Tensor, counts: torch.Tensor, augment: Augment, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Poisson counts of ``y`` scaled to ``counts`` at its maximum, cropped and normalised: model inputs."""
    lam = y / y.amax(1, keepdim=True).clamp_min(1e-30) * counts
    x = torch.poisson(lam, generator=g)
    mask = _crop(len(y), y.shape[1], augment, g)
    x = x * mask
    return x / x.amax(1, keepdim=True).clamp_min(1e-30), mask


def _background(renderer: Renderer, n: int, g: torch.Generator) -> torch.Tensor:
    """Random nonnegative combinations of the renderer's smooth background basis (decays, humps switched on
    in about a third of patterns each, as in training)."""
    basis = renderer.bg_basis
    coef = torch.rand((n, basis.shape[0]), generator=g)
    coef[:, 5:] *= torch.rand((n, basis.shape[0] - 5), generator=g) < 0.3
    return coef @ basis + 1e-3


def render_known(table: StickTable, renderer: Renderer, seed: int) -> torch.Tensor:
    """Every structure of ``table`` rendered once with ``renderer``'s augmentation: model inputs (S, 2, N)."""
    g = _gen(seed)
    out = []
    for start in range(0, len(table), 256):
        sticks, _, _ = table.batch(torch.arange(start, min(start + 256, len(table))))
        out.append(model_input(*renderer(sticks, g)))
    return torch.cat(out) if out else torch.zeros(0, 2, len(renderer.grid))


def _lp(d: torch.Tensor, instrument: Instrument) -> torch.Tensor:
    """Lorentz–polarisation factor of the first line at spacing d (0 off the grid), unpolarised."""
    s = (instrument.wavelengths_A[0] / (2 * d.clamp_min(1e-6))).clamp(max=0.999999)
    theta = torch.asin(s)
    lp = (1 + torch.cos(2 * theta) ** 2) / (torch.sin(theta) ** 2 * torch.cos(theta))
    lo, hi = np.radians(instrument.two_theta_min_deg) / 2, np.radians(instrument.two_theta_max_deg) / 2
    return torch.where((d > 0) & (theta >= lo) & (theta <= hi), lp, torch.zeros_like(lp))


def mixture_draws(n_structures: int, n: int, phases: int, seed: int, min_fraction: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """The structures (row indices, (n, phases)) and scales ((n, phases), each ≥ ``min_fraction``, summing to 1:
    the height of each phase's strongest line) of :func:`render_mixtures`'s ``n`` mixtures of the same arguments,
    drawn in the same order (the draws of each block of 128, as rendered)."""
    rng = np.random.default_rng(seed)
    picks, weights = [], []
    for start in range(0, n, 128):
        m = min(128, n - start)
        picks.append(np.stack([rng.choice(n_structures, phases, replace=False) for _ in range(m)]))
        w = rng.dirichlet(np.ones(phases), size=m)
        while (w < min_fraction).any():  # rejection keeps the flat Dirichlet's shape above the floor
            bad = (w < min_fraction).any(1)
            w[bad] = rng.dirichlet(np.ones(phases), size=int(bad.sum()))
        weights.append(w)
    if not picks:
        return np.zeros((0, phases), np.int64), np.zeros((0, phases))
    return np.concatenate(picks), np.concatenate(weights)


def render_mixtures(table: StickTable, renderer: Renderer, n: int, phases: int, seed: int, min_fraction: float = 0.15) -> torch.Tensor:
    """``n`` patterns of ``phases`` distinct structures of ``table`` each (module docstring)."""
    if len(table) < phases:
        raise ValueError(f"need at least {phases} known structures for {phases}-phase mixtures, got {len(table)}")
    g = _gen(seed)
    inst = renderer.instrument
    out = []
    all_picks, all_w = mixture_draws(len(table), n, phases, seed, min_fraction)
    for start in range(0, n, 128):
        m = min(128, n - start)
        ds, fs = [], []
        picks, w = all_picks[start : start + m], all_w[start : start + m]
        for k in range(phases):
            sticks, _, _ = table.batch(torch.as_tensor(picks[:, k]))
            strongest = (sticks.f2m * _lp(sticks.d, inst)).amax(1, keepdim=True).clamp_min(1e-30)
            ds.append(sticks.d)
            fs.append(sticks.f2m / strongest * torch.as_tensor(w[:, k : k + 1], dtype=torch.float32))
        out.append(model_input(*renderer(StickBatch(torch.cat(ds, 1), torch.cat(fs, 1)), g)))
    return torch.cat(out)


def render_amorphous(table: StickTable, renderer: Renderer, n: int, seed: int) -> torch.Tensor:
    """``n`` amorphous-like patterns: broad humps and a few weak peaks (module docstring)."""
    g = _gen(seed)
    inst = renderer.instrument
    grid = renderer.grid
    q = 4 * math.pi * torch.sin(torch.deg2rad(grid) / 2) / inst.wavelength_A
    clean = Renderer(inst, Augment(enabled=False))
    picks = torch.randint(len(table), (n,), generator=g)
    sticks, _, _ = table.batch(picks)
    # Keep the k strongest reflections (by intensity on the grid) of each structure, k = 1-5.
    strength = sticks.f2m * _lp(sticks.d, inst)
    k = torch.randint(1, 6, (n, 1), generator=g)
    rank = strength.argsort(1, descending=True).argsort(1)
    keep = (rank < k) & (strength > 0)
    peaks, _ = clean(StickBatch(torch.where(keep, sticks.d, 0.0), torch.where(keep, sticks.f2m, 0.0)))
    hump = torch.zeros(n, len(grid))
    for j in range(2):
        centre = 1.0 + 2.0 * torch.rand((n, 1), generator=g)
        fwhm = 0.4 + 1.1 * torch.rand((n, 1), generator=g)
        height = torch.ones(n, 1) if j == 0 else 0.8 * torch.rand((n, 1), generator=g) * (torch.rand((n, 1), generator=g) < 0.5)
        hump += height * torch.exp(-4 * math.log(2) * ((q - centre) / fwhm) ** 2)
    decay = 0.5 * torch.rand((n, 1), generator=g) * torch.exp(-(grid - grid[0]) / (2.0 + 10.0 * torch.rand((n, 1), generator=g)))
    y = hump + decay
    y = y / y.amax(1, keepdim=True)
    y = y + (0.05 + 0.35 * torch.rand((n, 1), generator=g)) * peaks
    return model_input(*_counted(y, _log_uniform(300.0, 1e5, n, g), renderer.augment, g))


def render_noise(renderer: Renderer, n: int, seed: int) -> torch.Tensor:
    """``n`` patterns without diffraction: smooth backgrounds with counting noise, and flat Gaussian noise."""
    g = _gen(seed)
    half = n // 2
    bg = _background(renderer, half, g)
    smooth, mask = _counted(bg, _log_uniform(30.0, 1e4, half, g), renderer.augment, g)
    flat = 1.0 + 0.02 * _log_uniform(1.0, 25.0, n - half, g) * torch.randn((n - half, len(renderer.grid)), generator=g)
    flat = flat.clamp_min(0.0)
    fmask = _crop(n - half, len(renderer.grid), renderer.augment, g)
    flat = flat * fmask
    flat = flat / flat.amax(1, keepdim=True).clamp_min(1e-30)
    return torch.cat([model_input(smooth, mask), model_input(flat, fmask)])


def auroc(known: np.ndarray, novel: np.ndarray) -> float:
    """Area under the ROC curve of a score higher for ``novel`` than for ``known`` (0.5 chance), on any
    scale: the Mann–Whitney U of ``novel`` over the pairs (ties count ½). (torchmetrics' binary_auroc takes
    scores outside [0, 1] for logits and squashes them, so raw distances all tie at 1.)"""
    from scipy.stats import mannwhitneyu

    known, novel = np.asarray(known, dtype=np.float64), np.asarray(novel, dtype=np.float64)
    return float(mannwhitneyu(novel, known).statistic / (len(novel) * len(known)))


@torch.no_grad()
def _all_scores(novelty: NoveltyModel, x: torch.Tensor, cnn=None, batch: int = 256) -> dict[str, np.ndarray]:
    parts: dict[str, list] = {}
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        s = novelty.scores(xb)
        sg_p, _ = novelty.vae.predict_proba(xb)
        s["max_softmax_vae"] = (1 - sg_p.max(1).values).numpy()
        if cnn is not None:
            sg, cs, features = cnn.model.forward_features(xb)
            p, _ = cnn.probabilities(sg, cs, prior=False)
            s["max_softmax_cnn"] = (1 - p.max(1).values).numpy()
            if cnn.mixture_probe is not None:
                s["mixture_probe"] = cnn.mixture_probe.probability(features.double().numpy())
            if cnn.mixture_detector is not None:
                s["mixture_detector"] = cnn.mixture_detector.probability(xb)
        for k, v in s.items():
            parts.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in parts.items()}


SCORES = ("score", "p_reconstruction", "p_latent", "max_softmax_vae", "max_softmax_cnn", "mixture_probe", "mixture_detector")


def _measured_inputs(bundle, folder: Path, rows: list[tuple[str, float | None, int]]) -> tuple[torch.Tensor, list[dict]]:
    """Model inputs of measured patterns (file, wavelength, phases); unreadable ones are listed, not dropped."""
    from xrdid.predict import PredictionError, prepare
    from xrdid.readers import PatternError, read_pattern

    xs, info = [], []
    for name, lam, phases in rows:
        item = {"file": name, "phases": phases}
        try:
            pattern = read_pattern(folder / name, wavelength_A=lam)
            y, mask = prepare(bundle, pattern, wavelength_A=lam)
        except (PatternError, PredictionError) as exc:
            item["skipped"] = str(exc)
            info.append(item)
            continue
        xs.append(model_input(torch.as_tensor(y)[None], torch.as_tensor(mask)[None]))
        info.append(item)
    return (torch.cat(xs) if xs else torch.zeros(0, 2, len(bundle.grid))), info


def measured_rows(measured: dict | None, mixtures: str | Path | None) -> list[tuple[Path, str, float | None, int]]:
    """(folder, file, wavelength or None, number of phases) of measured patterns: the single-phase sets
    ``measured`` (name → {folder, labels}, as the workflow's ``measured.sets``) and the multi-phase folder
    ``mixtures`` (a ``labels.csv`` with ``xy``, ``n_phases`` and ``wavelength_A``, as the development data's)."""
    from xrdid.evaluate.measured import read_measured_labels

    rows = []
    for spec in (measured or {}).values():
        for item in read_measured_labels(spec["folder"], spec["labels"]):
            rows.append((item.file.parent, item.file.name, item.wavelength_A, 1))
    if mixtures is not None:
        folder = Path(mixtures)
        for r in csv.DictReader((folder / "labels.csv").open()):
            rows.append((folder, r["xy"], float(r["wavelength_A"]) if r.get("wavelength_A") else None, int(r["n_phases"])))
    return rows


def evaluate_novelty(
    *, sticks: str | Path, vae: str | Path, cnn: str | Path | None = None, measured: dict | None = None,
    mixtures: str | Path | None = None, n_per_set: int = 1000, max_known: int = 2000, seed: int = 2025,
) -> dict:
    """The benchmark of the module docstring; returns a JSON-able dict (``auroc[set][score]``, sizes, and the
    measured patterns' scores)."""
    novelty = load_novelty(vae)
    inst = Instrument.from_dict(novelty.meta["instrument"])
    augment = Augment.from_dict(novelty.meta.get("augment"))
    holdout = novelty.meta.get("train", {}).get("holdout_space_groups", [])
    renderer = Renderer(inst, augment)
    test = StickTable.from_parquet(sticks, split="test", d_min_A=inst.d_min_A)
    known, _ = subset(test, None, holdout)
    if len(known) > max_known:
        known = subset_index(known, torch.randperm(len(known), generator=_gen(seed))[:max_known])
    cnn_bundle = None
    if cnn is not None:
        from xrdid.novelty import same_grid
        from xrdid.predict import load_model

        cnn_bundle = load_model(None if cnn == "pretrained" else cnn, prior="none")
        if not same_grid(cnn_bundle.instrument.to_dict(), inst.to_dict()):
            raise ValueError(f"{cnn}: the CNN's grid differs from the VAE's; both must see the same inputs")
    inputs = {"known": render_known(known, renderer, seed)}
    if holdout:
        everything = StickTable.from_parquet(sticks, d_min_A=inst.d_min_A)
        held = torch.nonzero(torch.isin(everything.space_group, torch.as_tensor([g - 1 for g in holdout]))).squeeze(1)
        held = held[torch.randperm(len(held), generator=_gen(seed + 1))[:n_per_set]]
        inputs["unseen_space_groups"] = render_known(subset_index(everything, held), renderer, seed + 1)
    for phases in (2, 3):
        if len(known) >= phases:
            inputs[f"mixtures_{phases}"] = render_mixtures(known, renderer, n_per_set, phases, seed + phases)
        else:
            log.warning("only %d known test structures: no %d-phase mixtures", len(known), phases)
    inputs["amorphous"] = render_amorphous(known, renderer, n_per_set, seed + 4)
    inputs["noise"] = render_noise(renderer, n_per_set, seed + 5)
    scores = {name: _all_scores(novelty, x, cnn_bundle) for name, x in inputs.items()}
    result = {"vae": str(vae), "cnn": None if cnn is None else str(cnn), "sizes": {k: len(v) for k, v in inputs.items()},
              "holdout_space_groups": holdout, "target_auroc": TARGET_AUROC, "auroc": {},
              "known_score_above_0.95": float((scores["known"]["score"] >= 0.95).mean())}
    for name in inputs:
        if name == "known":
            continue
        result["auroc"][name] = {s: auroc(scores["known"][s], scores[name][s]) for s in SCORES if s in scores[name]}
        result.setdefault("median_score", {})[name] = float(np.median(scores[name]["score"]))
    result.setdefault("median_score", {})["known"] = float(np.median(scores["known"]["score"]))
    rows = measured_rows(measured, mixtures)
    if rows:
        from xrdid.novelty import input_bundle

        bundle = input_bundle(novelty)
        per = []
        for folder in dict.fromkeys(r[0] for r in rows):
            x, info = _measured_inputs(bundle, folder, [r[1:] for r in rows if r[0] == folder])
            s = _all_scores(novelty, x, cnn_bundle) if len(x) else {}
            used = [i for i in info if "skipped" not in i]
            for j, item in enumerate(used):
                item.update({k: float(s[k][j]) for k in SCORES if k in s})
            per += info
        single = [r for r in per if "skipped" not in r and r["phases"] == 1]
        multi = [r for r in per if "skipped" not in r and r["phases"] >= 2]
        result["measured"] = {"patterns": per, "n_single": len(single), "n_multi": len(multi)}
        if single and multi:
            result["measured"]["auroc_multi_vs_single"] = {
                s: auroc(np.array([r[s] for r in single]), np.array([r[s] for r in multi])) for s in SCORES if s in single[0]
            }
        # How many of each get the mixture warning (probability above the method's warn_above).
        thresholds = {"mixture_probe": getattr(cnn_bundle, "mixture_probe", None), "mixture_detector": getattr(cnn_bundle, "mixture_detector", None)}
        result["measured"]["mixture_warnings"] = {
            s: {"warn_above": m.meta["warn_above"], "single": sum(r[s] > m.meta["warn_above"] for r in single),
                "multi": sum(r[s] > m.meta["warn_above"] for r in multi)}
            for s, m in thresholds.items() if m is not None and single and s in single[0]
        }
    return result


def markdown(result: dict) -> str:
    """The benchmark as a Markdown table (AUROC per set and score; target marked)."""
    names = {"score": "VAE novelty", "p_reconstruction": "VAE reconstruction", "p_latent": "VAE latent distance",
             "max_softmax_vae": "max-softmax, VAE classifier", "max_softmax_cnn": "max-softmax, CNN",
             "mixture_probe": "mixture probe, CNN features", "mixture_detector": "mixture detector, fine-tuned CNN"}
    sets = list(result["auroc"])
    scores = [s for s in SCORES if any(s in result["auroc"][k] for k in sets)]
    lines = ["| AUROC, known vs … | " + " | ".join(f"{k} (n={result['sizes'][k]})" for k in sets) + " |",
             "|---|" + "---|" * len(sets)]
    for s in scores:
        cells = []
        for k in sets:
            v = result["auroc"][k].get(s)
            cells.append("–" if v is None else (f"**{v:.3f}**" if v >= result["target_auroc"] else f"{v:.3f}"))
        lines.append(f"| {names[s]} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Known: {result['sizes']['known']} test-split patterns of the VAE's known space groups; "
                 f"{100 * result['known_score_above_0.95']:.1f} % of them score ≥ 0.95. Bold: ≥ {result['target_auroc']}.")
    m = result.get("measured")
    if m and "auroc_multi_vs_single" in m:
        a = m["auroc_multi_vs_single"]
        lines.append("")
        lines.append(f"Measured patterns ({m['n_single']} single-phase vs {m['n_multi']} multi-phase), AUROC: "
                     + ", ".join(f"{names[s]} {a[s]:.3f}" for s in scores if s in a))
        for s, w in m.get("mixture_warnings", {}).items():
            lines.append("")
            lines.append(f"{names[s]} warns (p > {w['warn_above']:.3f}) on {w['multi']} of {m['n_multi']} multi-phase and "
                         f"{w['single']} of {m['n_single']} single-phase measured patterns.")
    return "\n".join(lines) + "\n"


def write_novelty(*, sticks: str | Path, vae: str | Path, json_out: str | Path, markdown_out: str | Path,
                  html_out: str | Path, cnn: str | Path | None = None, measured: dict | None = None,
                  n_per_set: int = 1000, threads: int | None = None) -> dict:
    """:func:`evaluate_novelty`, written as JSON, Markdown and an HTML page for ``snakemake --report``."""
    from xrdid.report import markdown_page

    if threads:
        torch.set_num_threads(int(threads))
    result = evaluate_novelty(sticks=sticks, vae=vae, cnn=cnn, measured=measured, n_per_set=n_per_set)
    write_text(json.dumps(result, indent=1), json_out)
    text = markdown(result)
    write_text(text, markdown_out)
    write_text(markdown_page(text, "Novelty: AUROC of known vs novel patterns"), html_out)
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m xrdid.evaluate.novelty", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sticks", required=True, help="sticks table the VAE was trained from (its test split is used)")
    ap.add_argument("--vae", default=None, help="directory with vae.json and vae.pt (default: the shipped one)")
    ap.add_argument("--cnn", default=None, help="CNN checkpoint for the max-softmax baseline ('pretrained': the shipped one)")
    ap.add_argument("--measured", default=None, help="folder of measured single-phase patterns with index.csv (file, "
                    "wavelength_A; CIFs named after the file's prefix, as ../shared/data/measured)")
    ap.add_argument("--mixtures", default=None, help="folder of measured multi-phase patterns with labels.csv")
    ap.add_argument("--n", type=int, default=1000, help="patterns per novel set")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--markdown", default=None, help="write the table as Markdown here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    from xrdid.weights import pretrained_path

    measured = {"measured": {"folder": args.measured, "labels": str(Path(args.measured) / "index.csv")}} if args.measured else None
    result = evaluate_novelty(sticks=args.sticks, vae=args.vae or pretrained_path(), cnn=args.cnn, measured=measured,
                              mixtures=args.mixtures, n_per_set=args.n)
    table = markdown(result)
    print(table)
    if args.out:
        write_text(json.dumps(result, indent=1), args.out)
    if args.markdown:
        write_text(table, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
