r"""Novelty: how unlike the patterns of known structures a pattern is, from the VAE alone.

A classifier always answers, even for an amorphous sample, a mixture or a phase unlike any it was trained
on. The VAE (:mod:`xrdid.models.vae`) gives two measures of how typical a pattern is that depend only on
the pattern, never on the CNN (so the CNN can be swapped):

* ``reconstruction`` — the reconstruction misfit beyond the pattern's own noise: the mean over covered
  points of :math:`(t - \hat t)^2` (t = √y, :math:`\hat t` decoded from the posterior mean) minus the
  noise variance of t estimated from its second differences (median of :math:`Δ^2t` squared, /6, /0.4549
  the median of χ²₁). Noise alone, which the decoder cannot and need not reproduce, then adds nothing, so a
  noisy scan of a known structure is not novel for being noisy.
* ``latent`` — the smallest Mahalanobis distance² of the posterior mean μ to the crystal systems' latent
  clusters (class-conditional Gaussians with a shared covariance, fitted on validation patterns; Lee et
  al., NeurIPS 2018): far from every cluster means unlike anything seen.

Both are taken on the pattern as prediction sees it: offset-removed as :func:`xrdid.predict.normalise`
does (:func:`as_prepared`), so the floor a rendered pattern has and a measured one never has after offset
removal is no novelty.

Calibration (:func:`calibrate`). Each raw score is turned into its empirical distribution function over
validation patterns of known structures, rendered ``draws`` times each with the training augmentation and
``draws`` times with a measured-like one (:func:`measured_like`: weak background, many counts, Kα1 only,
partial coverage — what real single-phase scans have and most training renderings lack; without it, real
single-phase patterns scored as novel):
p = the fraction of known patterns with a lower score. The pattern's ``score`` is the same transform of
max(p_reconstruction, p_latent), so it is a probability-like scale with a plain meaning: **score 0.99 means
the pattern is less typical than 99 % of patterns of known structures**; on known structures it is uniform
on [0, 1] by construction (5 % of them score above 0.95). The calibration lives in the checkpoint's
``vae.json``.

:func:`novelty_for` gives the CLI contract's ``novelty`` object: ``method`` "vae", ``score``, the two
components, a ``level`` (``typical`` < 0.95 ≤ ``unusual`` < 0.99 ≤ ``unlike_known``) and, from 0.95 on, a
``warning`` in words for the user. Without a VAE that fits the CNN's grid, :func:`max_softmax_novelty` is the
fallback (method ``max_softmax``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xrdid.models.vae import XRDVAE, has_vae, kl_divergence, load_vae, reconstruction_target
from xrdid.predict import OFFSET_PERCENTILE

log = logging.getLogger(__name__)

COMPONENTS = ("reconstruction", "latent")
# Levels of the calibrated score: above UNUSUAL 5 % of known patterns, above UNLIKE 1 %.
UNUSUAL, UNLIKE = 0.95, 0.99
_QUANTILE_LEVELS = 1001
_MEDIAN_CHI2_1 = 0.4549364


def noise_variance(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Robust per-pattern variance of white noise on ``t`` (B, N) over covered points: the median of squared
    second differences (variance 6σ² for white noise; smooth signal cancels) / (6 · median of χ²₁)."""
    d2 = t[:, 2:] - 2 * t[:, 1:-1] + t[:, :-2]
    ok = (mask[:, 2:] * mask[:, 1:-1] * mask[:, :-2]) > 0
    sq = torch.where(ok, d2.square(), torch.full_like(d2, float("nan")))
    med = torch.nanmedian(sq, dim=1).values
    return torch.nan_to_num(med, nan=0.0) / (6 * _MEDIAN_CHI2_1)


def as_prepared(x: torch.Tensor) -> torch.Tensor:
    """Model inputs ``x`` (B, 2, N) with the offset removal of :func:`xrdid.predict.normalise`: the
    ``OFFSET_PERCENTILE``-th percentile of the covered points subtracted, clipped at 0, rescaled to a maximum
    of 1. Every measured pattern reaches the model this way, rendered ones do not; the scores are taken on
    this form so that a pattern's floor (which measured data never has after offset removal, and rendered
    data always has) does not count as novelty. Prepared patterns pass nearly unchanged (the interpolated
    percentile of an offset-removed pattern is a hair above 0)."""
    y, mask = x[:, 0], x[:, 1]
    n = (mask > 0).sum(1, keepdim=True)
    # The percentile as np.percentile interpolates it, from the few smallest covered values (topk, not a sort).
    pos = OFFSET_PERCENTILE / 100 * (n - 1).clamp_min(0)
    low = pos.floor().long()
    k = min(y.shape[1], int(OFFSET_PERCENTILE / 100 * (y.shape[1] - 1)) + 2)
    smallest = torch.where(mask > 0, y, torch.full_like(y, float("inf"))).topk(k, dim=1, largest=False).values
    a = smallest.gather(1, low.clamp(max=k - 1))
    b = smallest.gather(1, (low + 1).clamp(max=k - 1))
    offset = torch.where(n > 0, a + (pos - low) * torch.where(torch.isfinite(b), b - a, torch.zeros_like(a)), torch.zeros_like(a))
    y = (y - offset).clamp_min(0.0) * mask
    return torch.stack([y / y.amax(1, keepdim=True).clamp_min(1e-30), mask], dim=1)


@torch.no_grad()
def raw_scores(model: XRDVAE, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-pattern quantities of model inputs ``x`` (B, 2, N), taken on :func:`as_prepared` ``x``: ``mu``,
    ``kl``, ``mse``, ``noise`` and ``reconstruction`` (mse − noise, module docstring). ``model`` must be in
    eval mode (as loaded)."""
    x = as_prepared(x)
    mu, logvar = model.encode(x)
    t_hat = torch.sigmoid(model.decode(mu))
    t, mask = reconstruction_target(x)
    n = mask.sum(1).clamp_min(1.0)
    mse = ((t_hat - t).square() * mask).sum(1) / n
    noise = noise_variance(t, mask)
    return {"mu": mu, "kl": kl_divergence(mu, logvar), "mse": mse, "noise": noise, "reconstruction": mse - noise}


def _ecdf_table(quantiles) -> tuple[np.ndarray, np.ndarray]:
    """(distinct quantile values, their levels) of quantiles at evenly spaced levels 0..1; ties (a floor of
    equal scores) take their lowest level."""
    quantiles = np.asarray(quantiles, dtype=np.float64)
    q, idx = np.unique(quantiles, return_index=True)
    return q, np.linspace(0.0, 1.0, len(quantiles))[idx]


def _ecdf(values: np.ndarray, quantiles) -> np.ndarray:
    """Empirical distribution function given by its quantiles at evenly spaced levels 0..1."""
    return np.interp(values, *_ecdf_table(quantiles), left=0.0, right=1.0)


def _quantiles(values: np.ndarray) -> list[float]:
    return np.quantile(values, np.linspace(0.0, 1.0, _QUANTILE_LEVELS)).astype(float).tolist()


@dataclass
class NoveltyModel:
    """A VAE with its calibration (``vae.json``'s ``novelty``), scoring model inputs."""

    vae: XRDVAE
    calibration: dict
    meta: dict
    path: str = ""

    def __post_init__(self):
        c = self.calibration
        self.means = torch.tensor(c["class_means"], dtype=torch.float32)
        self.precision = torch.tensor(c["precision"], dtype=torch.float32)
        self.tables = {k: _ecdf_table(c["quantiles"][k]) for k in (*COMPONENTS, "combined")}

    def latent_distance(self, mu: torch.Tensor) -> torch.Tensor:
        """Smallest Mahalanobis distance² of ``mu`` (B, latent) to the class means (shared covariance)."""
        diff = mu[:, None, :] - self.means[None]
        return torch.einsum("bci,ij,bcj->bc", diff, self.precision, diff).min(1).values

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """Raw and calibrated scores of model inputs ``x`` (B, 2, N): ``reconstruction``, ``latent`` (raw),
        ``p_reconstruction``, ``p_latent`` and ``score`` (calibrated, module docstring)."""
        raw = raw_scores(self.vae, x)
        out = {"reconstruction": raw["reconstruction"].numpy(), "latent": self.latent_distance(raw["mu"]).numpy()}
        for k in COMPONENTS:
            out[f"p_{k}"] = np.interp(out[k], *self.tables[k], left=0.0, right=1.0)
        out["score"] = np.interp(np.maximum(out["p_reconstruction"], out["p_latent"]), *self.tables["combined"], left=0.0, right=1.0)
        return out


def measured_like(augment):
    """The training augmentation ``augment`` moved towards what measured patterns have and rendered ones
    rarely do (seen on the single-phase development patterns, ../shared/data/measured): a weak background
    (up to 5 % of the strongest peak, none left after offset removal), many counts (10⁴–10⁶ at the strongest
    peak), half of them Kα1 only (a monochromator, or another wavelength mapped through Q), a third with the
    Lorentz–polarisation factor of another wavelength, and most of them covering only part of the grid
    (a Mo scan to 19° covers a third of a Cu grid's Q range)."""
    from dataclasses import replace

    return replace(augment, enabled=True, background_rel=(0.0, 0.05), peak_counts=(1e4, 1e6), monochromatic_probability=0.5,
                   other_wavelength_probability=0.3, crop_probability=0.8, crop_max_fraction=0.6)


@torch.no_grad()
def calibrate(model: XRDVAE, renderer, table, *, draws: int = 4, seed: int = 11, batch_size: int = 256,
              measured: bool = True) -> dict:
    """The ``novelty`` calibration of ``model`` from ``table`` (known structures, e.g. the validation split)
    rendered ``draws`` times by ``renderer`` and, with ``measured``, ``draws`` times more with the
    :func:`measured_like` augmentation (patterns covering less than the prediction's minimum left out): class
    means and shared precision of μ per crystal system, and the quantiles of each raw score and of the combined
    one (module docstring)."""
    from xrdid.instrument import Renderer
    from xrdid.predict import MIN_COVERAGE
    from xrdid.train.loop import model_input

    if len(table) == 0:
        raise ValueError("novelty calibration needs at least one known structure")
    model.eval()
    renderers = [renderer]
    if measured:
        renderers.append(Renderer(renderer.instrument, measured_like(renderer.augment), device=renderer.device))
    mus, recon, labels = [], [], []
    for r, rend in enumerate(renderers):
        for k in range(max(1, draws)):
            gen = torch.Generator(device=rend.device).manual_seed(seed + k + 1000 * r)
            for start in range(0, len(table), batch_size):
                index = torch.arange(start, min(start + batch_size, len(table)))
                sticks, _, cs = table.batch(index)
                y, mask = rend(sticks, gen)
                keep = mask.mean(1) >= MIN_COVERAGE
                raw = raw_scores(model, model_input(y[keep], mask[keep]))
                mus.append(raw["mu"])
                recon.append(raw["reconstruction"])
                labels.append(cs[keep])
    mu, labels = torch.cat(mus), torch.cat(labels)
    classes = torch.unique(labels)
    means = torch.stack([mu[labels == c].mean(0) for c in classes])
    centred = mu - means[torch.searchsorted(classes, labels)]
    cov = centred.T @ centred / max(len(mu) - len(classes), 1)
    # A little shrinkage towards the diagonal keeps the precision finite for collapsed latent directions.
    cov = 0.95 * cov + 0.05 * torch.diag(torch.diag(cov)) + 1e-4 * torch.eye(len(cov))
    precision = torch.linalg.inv(cov)
    calibration = {"class_means": means.tolist(), "precision": precision.tolist(), "n": len(mu), "draws": draws,
                   "sets": ["training"] + (["measured_like"] if measured else []), "input": "offset_removed"}
    scorer = NoveltyModel.__new__(NoveltyModel)
    scorer.means, scorer.precision = means, precision
    values = {"reconstruction": torch.cat(recon).numpy(), "latent": scorer.latent_distance(mu).numpy()}
    calibration["quantiles"] = {k: _quantiles(v) for k, v in values.items()}
    p = np.maximum(*(_ecdf(values[k], np.asarray(calibration["quantiles"][k])) for k in COMPONENTS))
    calibration["quantiles"]["combined"] = _quantiles(p)
    log.info("novelty calibrated on %d validation patterns (%d structures × %d draws × %d augmentations)",
             len(mu), len(table), draws, len(renderers))
    return calibration


def recalibrate(vae: str | Path, sticks: str | Path, out: str | Path, *, draws: int = 2, seed: int = 11,
                max_structures: int = 0) -> dict:
    """The VAE in directory ``vae`` with its novelty calibration redone (:func:`calibrate`) on the validation
    split of ``sticks`` (its held-out space groups left out, as in training; ``max_structures`` > 0: a seeded
    sample of that many), saved to directory ``out`` (weights unchanged)."""
    from xrdid.data import StickTable
    from xrdid.instrument import Augment, Renderer
    from xrdid.models.checkpoint import BASE_META_KEYS
    from xrdid.models.vae import save_vae
    from xrdid.train.vae import subset, subset_index

    model, instrument, meta = load_vae(vae)
    train = meta.get("train", {})
    table = StickTable.from_parquet(sticks, split="val", d_min_A=instrument.d_min_A, max_peaks=train.get("max_peaks", 512))
    table, _ = subset(table, None, train.get("holdout_space_groups", []))
    if 0 < max_structures < len(table):
        table = subset_index(table, torch.randperm(len(table), generator=torch.Generator().manual_seed(seed))[:max_structures].sort().values)
    novelty = calibrate(model, Renderer(instrument, Augment.from_dict(meta.get("augment"))), table, draws=draws, seed=seed)
    extra = {k: v for k, v in meta.items() if k not in BASE_META_KEYS}
    extra["novelty"] = novelty
    save_vae(model, instrument, out, extra=extra)
    return novelty


def load_novelty(path: str | Path) -> NoveltyModel:
    """The VAE in directory ``path`` with its calibration; ValueError when it has none."""
    vae, _instrument, meta = load_vae(path)
    if "novelty" not in meta:
        raise ValueError(f"{path}: the VAE has no novelty calibration (train it to the end)")
    return NoveltyModel(vae=vae, calibration=meta["novelty"], meta=meta, path=str(path))


def novelty_model_for(instrument, checkpoint: str | Path | None = None, vae: str | Path | None = "auto") -> NoveltyModel | None:
    """The VAE that scores patterns on ``instrument``'s grid.

    ``vae`` "auto": the one beside ``checkpoint`` if there is one, else the one shipped with the package, or
    None (max-softmax, with a log line) when neither exists or fits the grid; a directory: that VAE, and a
    ValueError when it cannot be loaded or has another grid; None: no VAE.
    """
    from xrdid.weights import pretrained_path

    if vae is None:
        return None
    if vae != "auto":
        model = load_novelty(vae)
        if not same_grid(model.meta["instrument"], instrument.to_dict()):
            raise ValueError(f"{vae}: the VAE's grid differs from the model's; it cannot score the model's inputs")
        return model
    for where in ([Path(checkpoint)] if checkpoint is not None else []) + [pretrained_path()]:
        if not has_vae(where):
            continue
        try:
            model = load_novelty(where)
        except ValueError as exc:
            log.warning("novelty: %s", exc)
            continue
        if same_grid(model.meta["instrument"], instrument.to_dict()):
            return model
        log.info("novelty: the VAE in %s has another grid than the model; using max-softmax", where)
    return None


def input_bundle(model: NoveltyModel):
    """A :class:`xrdid.predict.ModelBundle` without a classifier, on the VAE's grid: what
    :func:`xrdid.predict.prepare` needs to turn a measured pattern into the VAE's input."""
    from xrdid.instrument import Instrument
    from xrdid.predict import ModelBundle

    return ModelBundle(model=None, instrument=Instrument.from_dict(model.meta["instrument"]), meta={}, path=model.path)


def same_grid(a: dict, b: dict) -> bool:
    """Whether two instruments' dicts give the same model input (grid and wavelength)."""
    keys = ("two_theta_min_deg", "two_theta_max_deg", "n_points")
    return all(a.get(k) == b.get(k) for k in keys) and np.allclose(a["wavelengths_A"][0], b["wavelengths_A"][0])


def describe(score: float) -> tuple[str, str | None]:
    """The level of a calibrated score and, for the two high levels, a warning in plain words."""
    if score >= UNLIKE:
        return "unlike_known", (
            "This pattern is unlike the diffraction patterns of the known structures the models learnt from "
            f"(less typical than {100 * UNLIKE:.0f} % of them). The space group shown may be meaningless: the sample "
            "may be amorphous, a mixture of phases, a structure type unlike any in training, or the file may hold "
            "little diffraction signal."
        )
    if score >= UNUSUAL:
        return "unusual", (
            f"This pattern is less typical than {100 * UNUSUAL:.0f} % of the patterns of known structures: check the "
            "answer (a second phase, an unusual background or an unusual structure type are possible causes)."
        )
    return "typical", None


def novelty_objects(model: NoveltyModel | None, x: torch.Tensor, space_group_probabilities: torch.Tensor) -> list[dict]:
    """The ``novelty`` object of each model input in ``x`` (B, 2, N) (module docstring); without a VAE
    (``model`` None), max-softmax of the classifier's calibrated ``space_group_probabilities`` (B, 230)."""
    if model is None:
        return [max_softmax_novelty(float(p)) for p in space_group_probabilities.max(1).values]
    s = model.scores(x)
    out = []
    for i in range(len(s["score"])):
        level, warning = describe(float(s["score"][i]))
        obj = {"method": "vae", "score": float(s["score"][i]),
               "reconstruction": float(s["p_reconstruction"][i]), "latent": float(s["p_latent"][i]), "level": level}
        if warning:
            obj["warning"] = warning
        out.append(obj)
    return out


def max_softmax_novelty(top_probability: float) -> dict:
    """The fallback: 1 − the largest calibrated space-group probability (Hendrycks & Gimpel, ICLR 2017)."""
    return {"method": "max_softmax", "score": float(1.0 - top_probability)}


def main(argv: list[str] | None = None) -> int:
    """``python -m xrdid.novelty --vae DIR --sticks SFILE --out DIR [--draws 2]``: :func:`recalibrate`."""
    import argparse

    from xrdid.weights import pretrained_path

    ap = argparse.ArgumentParser(prog="python -m xrdid.novelty", description="Redo a VAE's novelty calibration (weights unchanged).")
    ap.add_argument("--vae", default=None, help="directory with vae.json and vae.pt (default: the shipped one)")
    ap.add_argument("--sticks", required=True, help="sticks table the VAE was trained from (its validation split is used)")
    ap.add_argument("--out", required=True, help="directory to write vae.json and vae.pt to (may be --vae itself)")
    ap.add_argument("--draws", type=int, default=2, help="renderings of each validation structure per augmentation")
    ap.add_argument("--max-structures", type=int, default=0, help="a seeded sample of this many validation structures (0: all)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    recalibrate(args.vae or pretrained_path(), args.sticks, args.out, draws=args.draws, max_structures=args.max_structures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
