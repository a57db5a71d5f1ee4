r"""Is this one phase or several? A linear probe on the classifier's features.

A classifier trained on single-phase patterns answers a space group for a mixture too, and the VAE's
novelty hardly tells a mixture from a single phase (AUROC near 0.5 on rendered two-phase mixtures,
``reports/vae/novelty.md``). The classifier's own features carry the difference: the probe is a logistic
regression on them (:meth:`xrdid.models.cnn.XRDClassifier.forward_features`: the hidden layer and the last
convolution stage's channels, max- and mean-pooled; standardised), fitted on patterns of one split's
structures, each structure alone and two- and three-phase mixtures of them
(:func:`xrdid.evaluate.novelty.render_mixtures`: weight fractions from a flat Dirichlet, each phase at least
15 %), half rendered with the checkpoint's own augmentation and half as measured scans look
(:func:`xrdid.novelty.measured_like`, as the VAE's novelty is calibrated). Singles and mixtures weigh half
each, so the probability is for even odds (a sample as likely to be a mixture as not); its AUROC on another
split's structures (types never fitted on), rendered both ways, is stored with it.

The probe belongs to one set of weights: its file (``mixture_probe.json``) records the digest of the
``weights.pt`` it was fitted on (:func:`xrdid.weights.init_digest`) and is used only with those. It is
looked up in the checkpoint directory, then beside it (where the workflow writes it).
``xrdid predict`` reports ``mixture`` = {probability, method} in the novelty object, and a warning in
words when the probability is above ``warn_above``: the 95th percentile of single-phase patterns of the
held-out split (5 % false warnings on single phases like them).

    python -m xrdid.mixture_probe --model results/<dataset>/train/model --sticks results/<dataset>/sticks.parquet \
        --out results/<dataset>/train/mixture_probe.json [--patterns 6000]
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xrdid.io import write_text
from xrdid.weights import bound_file, init_digest

log = logging.getLogger(__name__)

FILENAME = "mixture_probe.json"
FORMAT = 1
METHOD = "linear probe on the classifier's features"
# L2 penalty on the standardised weights, per fitted pattern (chosen on held-out types: 1e-2 and 1e-1 gave
# the same AUROC; the fit is not sensitive to it).
L2 = 1e-3
MIN_STRUCTURES = 2


@dataclass
class MixtureProbe:
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: float
    meta: dict

    def logits(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != len(self.weight):
            raise ValueError(f"the mixture probe takes (B, {len(self.weight)}) features, got {f.shape}")
        return ((f - self.mean) / self.scale) @ self.weight + self.bias

    def probability(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """P(more than one phase) of each pattern's features, at even odds (module docstring)."""
        return 1.0 / (1.0 + np.exp(-self.logits(features)))

    def to_dict(self) -> dict:
        return {"format": FORMAT, "method": METHOD, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "weight": self.weight.tolist(), "bias": float(self.bias), **self.meta}


def fit_logistic(x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray, l2: float = L2) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Weighted L2-penalised logistic regression on standardised ``x``: (mean, scale, weight, bias)."""
    from scipy.optimize import minimize

    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    w = sample_weight / sample_weight.sum()

    def loss(theta):
        a = z @ theta[:-1] + theta[-1]
        # log(1 + e^a) − y a, its gradient (σ(a) − y)
        value = np.sum(w * (np.logaddexp(0.0, a) - y * a)) + 0.5 * l2 * theta[:-1] @ theta[:-1]
        r = w * (1.0 / (1.0 + np.exp(-a)) - y)
        return value, np.r_[z.T @ r + l2 * theta[:-1], r.sum()]

    theta = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B", options={"maxiter": 2000}).x
    return mean, scale, theta[:-1], float(theta[-1])


@torch.no_grad()
def features(model, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    """The probe's features of model inputs ``x`` (B, 2, N)."""
    model.eval()
    return torch.cat([model.forward_features(x[s : s + batch])[2] for s in range(0, len(x), batch)]).double().numpy()


def rendered_inputs(table, renderer, n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Model inputs of ``n`` single-phase patterns of ``table`` and ``n`` mixtures (half two-, half
    three-phase; all two-phase when the table has two structures), and labels (0 single, 2 or 3 phases)."""
    from xrdid.evaluate.novelty import render_known, render_mixtures
    from xrdid.train.vae import subset_index

    if len(table) < MIN_STRUCTURES:
        raise ValueError(f"the mixture probe needs at least {MIN_STRUCTURES} structures to mix in a split, got {len(table)}")
    gen = torch.Generator().manual_seed(seed)
    singles = subset_index(table, torch.randperm(len(table), generator=gen)[:n])
    # A split of fewer than n structures is rendered several times over (other augmentation draws).
    draws = -(-n // len(singles))
    single = torch.cat([render_known(singles, renderer, seed + 1000 * k) for k in range(draws)])[:n]
    three = n // 2 if len(table) >= 3 else 0
    parts = [single, render_mixtures(table, renderer, n - three, 2, seed + 2)]
    if three:
        parts.append(render_mixtures(table, renderer, three, 3, seed + 3))
    labels = np.repeat([0, 2, 3][: len(parts)], [len(p) for p in parts])
    return torch.cat(parts), labels


def _rendered(model, table, renderer, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rendered_inputs`' features and labels."""
    x, labels = rendered_inputs(table, renderer, n, seed)
    return features(model, x), labels


def held_out(score, table, renderers: dict, n: int, seed: int) -> tuple[dict, np.ndarray]:
    """``score`` (model inputs → probabilities) on :func:`rendered_inputs` of ``table`` by each of
    ``renderers`` (seed + 100 + its index): the number of patterns, the AUROCs overall and per rendering; and
    the single phases' probabilities (where ``warn_above`` comes from)."""
    p, labels = {}, {}
    for k, (name, r) in enumerate(renderers.items()):
        x, labels[name] = rendered_inputs(table, r, n, seed + 100 + k)
        p[name] = score(x)
    singles = np.concatenate([p[name][labels[name] == 0] for name in p])
    return {"patterns": sum(len(v) for v in labels.values()),
            "auroc": _aurocs(np.concatenate(list(p.values())), np.concatenate(list(labels.values()))),
            "auroc_by_rendering": {name: _aurocs(p[name], labels[name]) for name in p}}, singles


def _aurocs(p: np.ndarray, labels: np.ndarray) -> dict:
    from xrdid.evaluate.novelty import auroc

    return {f"mixtures_{k}": auroc(p[labels == 0], p[labels == k]) for k in (2, 3) if (labels == k).any()}


def fit_mixture_probe(checkpoint: str | Path, sticks: str | Path, out: str | Path, *, patterns: int = 6000, seed: int = 31,
                      fit_split: str = "val", eval_split: str = "test", threads: int | None = None) -> dict:
    """Fit the probe of ``checkpoint`` on ``fit_split``'s structures of ``sticks`` and measure it on
    ``eval_split``'s (module docstring); write it to ``out`` (JSON, atomically) and return its dict."""
    from xrdid.data import StickTable
    from xrdid.instrument import Augment, Renderer
    from xrdid.models.checkpoint import load_checkpoint
    from xrdid.novelty import measured_like

    if threads:
        torch.set_num_threads(int(threads))
    checkpoint = Path(checkpoint)
    model, instrument, meta = load_checkpoint(checkpoint)
    augment = Augment.from_dict(meta.get("augment"))
    renderers = {"training": Renderer(instrument, augment), "measured_like": Renderer(instrument, measured_like(augment))}

    def rendered(table, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        parts = [_rendered(model, table, r, m, seed + 7 * k) for k, (r, m) in enumerate(zip(renderers.values(), (n - n // 2, n // 2)))]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    fit_table = StickTable.from_parquet(sticks, split=fit_split, d_min_A=instrument.d_min_A)
    x, labels = rendered(fit_table, patterns, seed)
    y = (labels > 0).astype(np.float64)
    weight = np.where(y > 0, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    mean, scale, w, b = fit_logistic(x, y, weight)
    probe = MixtureProbe(mean, scale, w, b, {})
    p_fit = probe.probability(x)
    result = {"weights_digest": init_digest(str(checkpoint)), "fitted_on": {"split": fit_split, "structures": len(fit_table),
              "patterns": len(y)}, "auroc_fit": _aurocs(p_fit, labels)}
    singles = p_fit[labels == 0]
    eval_table = StickTable.from_parquet(sticks, split=eval_split, d_min_A=instrument.d_min_A)
    if len(eval_table) >= MIN_STRUCTURES:
        held, singles = held_out(lambda x: probe.probability(features(model, x)), eval_table, renderers,
                                 max(patterns // 4, 100), seed)
        result["held_out"] = {"split": eval_split, "structures": len(eval_table), **held}
    else:
        log.warning("%s: fewer than %d structures in the %s split; the probe's AUROC is on its own fitting data only",
                    sticks, MIN_STRUCTURES, eval_split)
    # Warn above the 95th percentile of single phases (held-out ones when there are any).
    result["warn_above"] = float(np.quantile(singles, 0.95))
    probe.meta = result
    write_text(json.dumps(probe.to_dict()), out)
    log.info("mixture probe: %s", json.dumps({k: v for k, v in result.items() if k != "weights_digest"}))
    return probe.to_dict()


def read_probe(path: str | Path) -> MixtureProbe:
    """A probe file; ValueError naming it when it is not one."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
        if d.get("format") != FORMAT:
            raise ValueError(f"unsupported mixture probe format {d.get('format')!r}")
        missing = [k for k in ("weights_digest", "warn_above") if k not in d]
        if missing:
            raise ValueError(f"no {' or '.join(missing)}")
        arrays = [np.asarray(d.pop(k), dtype=np.float64) for k in ("mean", "scale", "weight")]
        if not (arrays[0].shape == arrays[1].shape == arrays[2].shape) or arrays[0].ndim != 1:
            raise ValueError("mean, scale and weight must be vectors of one length")
        return MixtureProbe(*arrays, bias=float(d.pop("bias")), meta=d)
    except (OSError, KeyError, TypeError, json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a usable mixture probe ({exc})") from exc


def probe_for(checkpoint: str | Path) -> MixtureProbe | None:
    """The probe fitted on ``checkpoint``'s weights, in the checkpoint directory or beside it, else None."""
    return bound_file(checkpoint, FILENAME, read_probe, "mixture probe")


def describe_mixture(probability: float, warn_above: float, method: str = METHOD) -> dict:
    """The ``mixture`` object of a prediction: probability, method and, above ``warn_above``, a warning."""
    out = {"probability": float(probability), "method": method}
    if probability > warn_above:
        out["warning"] = (
            "This pattern looks like a mixture of phases: more so than 95 % of single-phase patterns. The space "
            "group shown may belong to one phase or to none; with candidate structures, `xrdid phases` (or the "
            "page's phase library) can tell which phases are there."
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m xrdid.mixture_probe --model DIR --sticks FILE --out FILE``: :func:`fit_mixture_probe`."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m xrdid.mixture_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="checkpoint directory")
    ap.add_argument("--sticks", required=True, help="the merged sticks table the checkpoint was trained on (its splits)")
    ap.add_argument("--out", required=True, help="the probe's JSON")
    ap.add_argument("--patterns", type=int, default=6000, help="single-phase patterns to fit on (as many mixtures)")
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    fit_mixture_probe(args.model, args.sticks, args.out, patterns=args.patterns, seed=args.seed, threads=args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
