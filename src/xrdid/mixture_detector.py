r"""Is this one phase or several? A network trained for that question alone.

The mixture probe (:mod:`xrdid.mixture_probe`) reads the classifier's frozen features, which were trained to
name a space group, not to count phases; on structure types it never saw it separates two-phase mixtures
from single phases with AUROC 0.78. The detector is a copy of the classifier's trunk (stem, convolution
stages and hidden layer of :class:`xrdid.models.cnn.XRDClassifier`, initialised from its weights) with one
output, P(more than one phase), on the same pooled features the probe reads (its output layer starts as the
probe when one is given), and the whole network is fine-tuned end to end.

Training patterns are rendered on the fly from one split's structures (the classifier's own training split):
in every batch half single phases and half mixtures of two, three or four distinct structures
(:func:`xrdid.evaluate.novelty.render_mixtures`: weight fractions from a flat Dirichlet, each phase at least
15 %), and half of each rendered with the checkpoint's augmentation, half as measured scans look
(:func:`xrdid.novelty.measured_like`). Singles and mixtures weigh half each, so the probability is for even
odds. It is measured as the probe is (:func:`xrdid.mixture_probe.rendered_inputs`): on another split's
structures (types never trained on), rendered both ways; ``warn_above`` is the 95th percentile of those
held-out single phases (5 % false warnings on single phases like them).

The detector belongs to the classifier it was initialised from: its file (``mixture_detector.pt``: the
state dict and the metadata, read with ``weights_only``) records the digest of that ``weights.pt``
(:func:`xrdid.weights.init_digest`) and is used only with it, and only on the same grid. It is looked up in
the checkpoint directory, then beside it (where the workflow writes it); when there is one, ``xrdid predict``
reports it as the ``mixture`` method in place of the probe. An interrupted training resumes from
``<out>.resume.pt``.

    python -m xrdid.mixture_detector --model results/<dataset>/train/model --sticks results/<dataset>/sticks.parquet \
        --out results/<dataset>/train/mixture_detector.pt [--probe results/<dataset>/train/mixture_probe.json]
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xrdid.io import atomic_path
from xrdid.models.cnn import CNNConfig, XRDClassifier, pooled_features
from xrdid.weights import bound_file, file_digest, init_digest

log = logging.getLogger(__name__)

FILENAME = "mixture_detector.pt"
FORMAT = 1
METHOD = "mixture detector (CNN fine-tuned on mixtures)"
# The combination of the detector with the indexing result (CellCombination), beside the detector file.
CELL_FILENAME = "mixture_cell.json"
CELL_METHOD = "mixture detector and one-cell indexing"
# Phase counts of the training mixtures and their default shares: two-phase mixtures are the hardest to tell.
PHASES = (2, 3, 4)
PHASE_SHARES = (0.5, 0.35, 0.15)


class MixtureDetector(nn.Module):
    """The classifier's trunk and a one-logit head on its pooled features (module docstring)."""

    def __init__(self, config: CNNConfig):
        super().__init__()
        self.config = config
        trunk = XRDClassifier(config)
        self.stem, self.blocks, self.head = trunk.stem, trunk.blocks, trunk.head
        self.out = nn.Linear(config.hidden + 2 * config.stage_channels[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of P(more than one phase), (B,), of model inputs (B, 2, N)."""
        z = self.blocks(self.stem(x))
        return self.out(pooled_features(self.head(z), z)).squeeze(1)

    @classmethod
    def from_classifier(cls, classifier: XRDClassifier, probe=None) -> MixtureDetector:
        """A detector with ``classifier``'s trunk weights and, given a fitted
        :class:`xrdid.mixture_probe.MixtureProbe` of the same features, the probe as its output layer."""
        detector = cls(classifier.config)
        for name in ("stem", "blocks", "head"):
            getattr(detector, name).load_state_dict(getattr(classifier, name).state_dict())
        if probe is not None:
            w = probe.weight / probe.scale
            with torch.no_grad():
                detector.out.weight.copy_(torch.as_tensor(w, dtype=torch.float32)[None])
                detector.out.bias.fill_(float(probe.bias - (probe.mean * w).sum()))
        return detector


def term_value(name: str, features) -> np.ndarray:
    """One term of a :class:`CellCombination` from ``features`` (a one-cell dict, or a table's columns): a
    feature (``unindexed_strong``), an indicator (``d_first_strong<8``: 1 where below, 0 elsewhere; ``>``
    likewise) or a product of these (``unindexed_strong*d_first_strong<8``: the share where the first strong
    line lies below 8 Å, 0 elsewhere). KeyError for a feature ``features`` lacks, ValueError for a bad bound."""
    value = np.asarray(1.0)
    for factor in name.split("*"):
        op = "<" if "<" in factor else ">" if ">" in factor else None
        if op is None:
            value = value * np.asarray(features[factor], np.float64)
            continue
        key, bound = factor.split(op)
        x, c = np.asarray(features[key], np.float64), float(bound)
        value = value * ((x < c) if op == "<" else (x > c)).astype(np.float64)
    return value


def _feature_name(factor: str) -> str:
    """The feature a factor of a term (:func:`term_value`) reads."""
    for op in "<>":
        if op in factor:
            return factor.split(op)[0]
    return factor


@dataclass
class CellCombination:
    """The detector's probability p combined with the indexing result's one-cell features
    (:func:`xrdid.indexing.combine.one_cell_features`; optionally the second-cell search's,
    :func:`xrdid.indexing.combine.second_cell_features`, and the classifier's crystal-system probabilities
    ``p_cubic`` …): logit P = c₀ logit p + Σ c_j x_j + b, the x_j features or terms of them (:func:`term_value`: e.g. a feature counted only where the pattern looks
    indexable, ``unindexed_strong*n_lines>7.5*d_first_strong<8``), fitted by
    ``python -m xrdid.evaluate.mixture_cell`` on a validation split's single phases and mixtures; ``meta``
    holds ``warn_above`` (the 95th percentile of those single phases' P), ``detector_digest`` (the content
    digest of the detector file it was fitted for) and how it was measured."""

    features: tuple[str, ...]
    coef: np.ndarray
    intercept: float
    meta: dict

    @property
    def second_cell(self) -> bool:
        """Does a term use the second-cell search (:func:`xrdid.indexing.combine.second_cell_features`)? Then
        ``predict`` runs it (its cost is only paid for such a combination)."""
        from xrdid.indexing.combine import SECOND

        return any(_feature_name(f) in SECOND for t in self.features for f in t.split("*"))

    def probability(self, p_detector: float, features: dict) -> float:
        p = min(max(float(p_detector), 1e-6), 1 - 1e-6)
        x = np.array([np.log(p / (1 - p))] + [float(term_value(f, features)) for f in self.features])
        return float(1.0 / (1.0 + np.exp(-(x @ self.coef + self.intercept))))


def read_cell_combination(path: str | Path) -> CellCombination:
    """A ``mixture_cell.json``; ValueError naming it when it is not one."""
    try:
        d = json.loads(Path(path).read_text())
        features = tuple(d["features"][1:])
        coef = np.asarray(d["coef"], np.float64)
        if d["features"][0] != "logit_p_detector" or len(coef) != len(features) + 1:
            raise ValueError("features must be logit_p_detector and one coefficient each")
        from xrdid.indexing.combine import CONTEXT, FEATURES, SECOND
        from xrdid.labels import CRYSTAL_SYSTEMS

        known = dict.fromkeys((*FEATURES, *CONTEXT, *SECOND, *(f"p_{s}" for s in CRYSTAL_SYSTEMS)), 0.0)
        for f in features:
            term_value(f, known)  # KeyError for an unknown feature, ValueError for a bad bound
        meta = {k: v for k, v in d.items() if k not in ("features", "coef", "intercept")}
        if not isinstance(meta.get("warn_above"), (int, float)) or not meta.get("detector_digest"):
            raise ValueError("no warn_above or detector_digest")
        return CellCombination(features, coef, float(d["intercept"]), meta)
    except (OSError, KeyError, TypeError, IndexError, ValueError) as exc:
        raise ValueError(f"{path}: not a usable mixture-and-cell combination ({exc})") from None


@dataclass
class LoadedDetector:
    """A trained detector with its metadata (``warn_above``, ``weights_digest``, ``instrument``, …), and the
    combination with the indexing result fitted for it (:class:`CellCombination`) when there is one."""

    model: MixtureDetector
    meta: dict
    cell: CellCombination | None = None

    @torch.no_grad()
    def probability(self, x: torch.Tensor, batch: int = 256) -> np.ndarray:
        """P(more than one phase) of model inputs ``x`` (B, 2, N), at even odds."""
        self.model.eval()
        return torch.cat([torch.sigmoid(self.model(x[s : s + batch])) for s in range(0, len(x), batch)]).double().numpy()


@dataclass
class DetectorTrainConfig:
    steps: int = 300
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 30
    seed: int = 0
    # Updates per rendered batch: the fresh batch, then earlier ones drawn from the last ``replay`` batches
    # (rendering a mixture costs several times a training update on a CPU).
    reuse: int = 3
    replay: int = 32
    # Save the resume state every this many steps.
    save_every: int = 25
    # Stop at the first save after this many minutes of training (0: none); the learning rate keeps the
    # schedule of ``steps``, so a later run with more minutes resumes and continues it.
    max_minutes: float = 0.0
    # Single-phase patterns per rendering of the held-out evaluation (as many mixtures).
    eval_patterns: int = 1500
    # A detector file of the same classifier weights to continue from (its trunk and output layer) in place of
    # the classifier and probe; its content's digest enters the resume key.
    init_from: str | None = None
    # Shares of the batch's mixtures with 2, 3 and 4 phases (:data:`PHASES`); they sum to 1.
    phase_shares: tuple[float, ...] = PHASE_SHARES

    def __post_init__(self):
        shares = tuple(float(s) for s in self.phase_shares)
        if len(shares) != len(PHASES) or min(shares) < 0 or abs(sum(shares) - 1) > 1e-6:
            raise ValueError(f"phase_shares: {len(PHASES)} nonnegative shares of the {PHASES}-phase mixtures summing to 1, "
                             f"got {list(self.phase_shares)}")
        self.phase_shares = shares


def _batch(table, renderers: list, size: int, step: int, seed: int,
           shares: tuple[float, ...] = PHASE_SHARES) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch (inputs, labels 0 single / 1 mixture): per renderer, a half of single phases and a
    half of mixtures split over :data:`PHASES` by ``shares``."""
    from xrdid.evaluate.novelty import render_mixtures
    from xrdid.train.loop import model_input

    base = seed * 1_000_003 + step * 101
    g = torch.Generator().manual_seed(base)
    xs, ys = [], []
    per = size // len(renderers)
    for k, renderer in enumerate(renderers):
        singles = per // 2
        sticks, _, _ = table.batch(torch.randint(len(table), (singles,), generator=g))
        xs.append(model_input(*renderer(sticks, g)))
        ys.append(torch.zeros(singles))
        left = per - singles
        counts = [round(left * s) for s in shares[:-1]]
        counts.append(left - sum(counts))
        for j, (phases, n) in enumerate(zip(PHASES, counts, strict=True)):
            if n > 0 and len(table) >= phases:
                xs.append(render_mixtures(table, renderer, n, phases, base + 10 * k + j + 1))
                ys.append(torch.ones(n))
    return torch.cat(xs), torch.cat(ys)


def _lr(step: int, cfg: DetectorTrainConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    # A Python float: the optimiser's state (saved for resuming) is read back with weights_only.
    return float(cfg.lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(t, 1.0)))))


# Settings that do not change the training itself: a run that differs only in them resumes.
_NOT_IN_KEY = ("save_every", "max_minutes", "eval_patterns")


def _run_key(checkpoint: Path, sticks: Path, cfg: DetectorTrainConfig, split: str, probe) -> dict:
    train = {k: v for k, v in asdict(cfg).items() if k not in _NOT_IN_KEY}
    # The starting detector by content: another file at the same path starts another run.
    train["init_from"] = file_digest(cfg.init_from)
    train["phase_shares"] = list(cfg.phase_shares)  # as read back from JSON, for the resume check
    return {"weights_digest": init_digest(str(checkpoint)), "sticks": str(sticks), "split": split, "train": train,
            "probe": None if probe is None else str(probe)}


def _start_detector(classifier: XRDClassifier, checkpoint: Path, instrument, init_from: str | Path) -> MixtureDetector:
    """The detector in ``init_from``, refused (ValueError naming it) unless it was trained from ``checkpoint``'s
    weights, with its network, on its grid."""
    from xrdid.novelty import same_grid

    start = read_detector(init_from)
    if start.meta.get("weights_digest") != init_digest(str(checkpoint)):
        raise ValueError(f"{init_from}: the mixture detector was trained from other classifier weights than {checkpoint}")
    if start.meta["config"] != classifier.config.to_dict():
        raise ValueError(f"{init_from}: the mixture detector has another network than {checkpoint}")
    if not same_grid(start.meta["instrument"], instrument.to_dict()):
        raise ValueError(f"{init_from}: the mixture detector is for another grid than {checkpoint}")
    return start.model


def train_mixture_detector(checkpoint: str | Path, sticks: str | Path, out: str | Path, *, cfg: DetectorTrainConfig | None = None,
                           train_split: str = "train", eval_split: str = "test", threads: int | None = None,
                           probe: str | Path | None = None) -> dict:
    """Fine-tune a detector from ``checkpoint`` on ``train_split``'s structures of ``sticks``, measure it on
    ``eval_split``'s and write it to ``out`` (module docstring); returns its metadata. ``probe``: a mixture
    probe file of the checkpoint's weights to start the output layer from. Resumes from ``<out>.resume.pt``
    when that was written by a run of the same settings."""
    from xrdid.data import StickTable
    from xrdid.instrument import Augment, Renderer
    from xrdid.mixture_probe import MIN_STRUCTURES, held_out, read_probe
    from xrdid.models.checkpoint import load_checkpoint
    from xrdid.novelty import measured_like

    cfg = cfg or DetectorTrainConfig()
    if threads:
        torch.set_num_threads(int(threads))
    checkpoint, sticks, out = Path(checkpoint), Path(sticks), Path(out)
    classifier, instrument, meta = load_checkpoint(checkpoint)
    augment = Augment.from_dict(meta.get("augment"))
    renderers = {"training": Renderer(instrument, augment), "measured_like": Renderer(instrument, measured_like(augment))}
    table = StickTable.from_parquet(sticks, split=train_split, d_min_A=instrument.d_min_A)
    if len(table) < MIN_STRUCTURES:
        raise ValueError(f"{sticks}: the mixture detector needs at least {MIN_STRUCTURES} structures in the {train_split} split, "
                         f"got {len(table)}")
    if cfg.init_from is not None:
        if probe is not None:
            log.info("mixture detector: starting from %s; the probe %s is not used", cfg.init_from, probe)
            probe = None
        model = _start_detector(classifier, checkpoint, instrument, cfg.init_from)
    else:
        start_probe = None if probe is None else read_probe(probe)
        if start_probe is not None and start_probe.meta.get("weights_digest") != init_digest(str(checkpoint)):
            raise ValueError(f"{probe}: the mixture probe was fitted on other weights than {checkpoint}")
        model = MixtureDetector.from_classifier(classifier, start_probe)
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    key = _run_key(checkpoint, sticks, cfg, train_split, probe)
    resume = out.with_name(out.name + ".resume.pt")
    start, seconds = 0, 0.0
    done = 0
    if resume.is_file():
        state = torch.load(resume, weights_only=True)
        if state.get("key") == json.loads(json.dumps(key)):
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            start, seconds = int(state["step"]), float(state["seconds"])
            done = start
            log.info("mixture detector: resuming at step %d of %d", start, cfg.steps)
        else:
            log.info("mixture detector: %s is of other settings; starting afresh", resume)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    t0 = time.perf_counter() - seconds
    running = None
    if cfg.max_minutes and seconds > 60 * cfg.max_minutes:
        start = cfg.steps  # the resumed run had spent its minutes already
    buffer: list = []
    pick = torch.Generator().manual_seed(cfg.seed + start)
    for step in range(start, cfg.steps):
        for group in optimiser.param_groups:
            group["lr"] = _lr(step, cfg)
        x, y = _batch(table, list(renderers.values()), cfg.batch_size, step, cfg.seed, cfg.phase_shares)
        buffer = ([*buffer, (x, y)])[-cfg.replay :]
        for r in range(cfg.reuse):
            xb, yb = (x, y) if r == 0 else buffer[int(torch.randint(len(buffer), (1,), generator=pick))]
            loss = loss_fn(model(xb), yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        done = step + 1
        if done % cfg.save_every == 0 or done == cfg.steps:
            with atomic_path(resume) as tmp:
                torch.save({"key": key, "model": model.state_dict(), "optimiser": optimiser.state_dict(), "step": done,
                            "seconds": time.perf_counter() - t0}, tmp)
            log.info("mixture detector: step %d/%d, loss %.4f, %.0f s", done, cfg.steps, running, time.perf_counter() - t0)
            if cfg.max_minutes and time.perf_counter() - t0 > 60 * cfg.max_minutes:
                log.info("mixture detector: %.0f min of training spent; stopping at step %d of %d", cfg.max_minutes, done, cfg.steps)
                break
    train_seconds = time.perf_counter() - t0
    model.eval()
    detector = LoadedDetector(model, {})
    result = {"format": FORMAT, "method": METHOD, "config": model.config.to_dict(), "instrument": instrument.to_dict(),
              "weights_digest": key["weights_digest"],
              "trained_on": {"split": train_split, "structures": len(table), "steps": done, "batch_size": cfg.batch_size,
                             "patterns": done * cfg.batch_size, "updates": done * cfg.reuse, "seconds": round(train_seconds, 1), "train": asdict(cfg)}}
    eval_table = StickTable.from_parquet(sticks, split=eval_split, d_min_A=instrument.d_min_A)
    if len(eval_table) >= MIN_STRUCTURES:
        # Seed 31 + seed: with seed 0 and 1,500 patterns, the very patterns the probe's held-out figures come
        # from (xrdid.mixture_probe's default seed), so the two compare like for like.
        held, singles = held_out(detector.probability, eval_table, renderers, cfg.eval_patterns, cfg.seed + 31)
        result["held_out"] = {"split": eval_split, "structures": len(eval_table), **held}
    else:
        log.warning("%s: fewer than %d structures in the %s split; warn_above comes from training patterns", sticks,
                    MIN_STRUCTURES, eval_split)
        x, y = _batch(table, list(renderers.values()), max(cfg.batch_size, 64), cfg.steps, cfg.seed + 1)
        singles = detector.probability(x)[y.numpy() == 0]
    result["warn_above"] = float(np.quantile(singles, 0.95))
    save_detector(model, result, out)
    log.info("mixture detector: %s", json.dumps({k: v for k, v in result.items() if k in ("held_out", "warn_above", "trained_on")}))
    return result


def train_from_config(checkpoint, sticks, out, *, train: dict, probe=None, threads: int | None = None) -> dict:
    """:func:`train_mixture_detector` with the workflow's ``mixture_detector.train`` config dict."""
    return train_mixture_detector(checkpoint, sticks, out, cfg=DetectorTrainConfig(**train), probe=probe, threads=threads)


def save_detector(model: MixtureDetector, meta: dict, out: str | Path) -> None:
    """Write the detector's state dict and metadata to ``out`` atomically."""
    with atomic_path(out) as tmp:
        torch.save({"format": FORMAT, "meta": meta, "state_dict": model.state_dict()}, tmp)


def read_detector(path: str | Path) -> LoadedDetector:
    """A detector file; ValueError naming it when it is not one."""
    path = Path(path)
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"unsupported mixture detector format {d.get('format') if isinstance(d, dict) else None!r}")
        meta = d["meta"]
        missing = [k for k in ("weights_digest", "warn_above", "config", "instrument") if k not in meta]
        if missing:
            raise ValueError(f"no {' or '.join(missing)}")
        model = MixtureDetector(CNNConfig.from_dict(meta["config"]))
        model.load_state_dict(d["state_dict"])
    except Exception as exc:  # torch.load raises many kinds (pickle, zip, runtime) for a foreign file
        raise ValueError(f"{path}: not a usable mixture detector ({exc})") from None
    model.eval()
    return LoadedDetector(model, meta, cell_combination_for(path))


def cell_combination_for(detector_path: str | Path) -> CellCombination | None:
    """The ``mixture_cell.json`` beside a detector file when it was fitted for that file's content, else None."""
    where = Path(detector_path).with_name(CELL_FILENAME)
    if not where.is_file():
        return None
    try:
        cell = read_cell_combination(where)
    except ValueError as exc:
        log.warning("mixture detector: %s", exc)
        return None
    if cell.meta["detector_digest"] != file_digest(detector_path):
        log.info("mixture detector: %s was fitted for another detector than %s; not used", where, detector_path)
        return None
    return cell


def detector_for(checkpoint: str | Path, instrument=None) -> LoadedDetector | None:
    """The detector initialised from ``checkpoint``'s weights (and, given ``instrument``, on its grid), in
    the checkpoint directory or beside it, else None."""
    from xrdid.novelty import same_grid

    def on_grid(detector: LoadedDetector, where: Path) -> bool:
        if instrument is None or same_grid(detector.meta["instrument"], instrument.to_dict()):
            return True
        log.info("mixture detector: %s is for another grid than %s; not used", where, checkpoint)
        return False

    return bound_file(checkpoint, FILENAME, read_detector, "mixture detector", on_grid)


def main(argv: list[str] | None = None) -> int:
    """``python -m xrdid.mixture_detector --model DIR --sticks FILE --out FILE``: :func:`train_mixture_detector`."""
    import argparse

    defaults = DetectorTrainConfig()
    ap = argparse.ArgumentParser(prog="python -m xrdid.mixture_detector", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="checkpoint directory (the classifier to start from)")
    ap.add_argument("--sticks", required=True, help="the merged sticks table the checkpoint was trained on (its splits)")
    ap.add_argument("--out", required=True, help="the detector's file (mixture_detector.pt)")
    for name in ("steps", "batch_size", "seed", "eval_patterns", "save_every", "warmup_steps", "reuse", "replay"):
        ap.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("lr", "weight_decay", "max_minutes"):
        ap.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    ap.add_argument("--probe", default=None, help="the checkpoint's mixture probe (JSON) to start the output layer from")
    ap.add_argument("--init-from", default=None,
                    help="a mixture detector file of the same classifier weights to continue training (in place of --probe)")
    ap.add_argument("--phase-shares", type=float, nargs=len(PHASES), default=list(defaults.phase_shares),
                    metavar="SHARE", help=f"shares of the {PHASES}-phase mixtures in each batch (summing to 1)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = DetectorTrainConfig(**{k: getattr(args, k) for k in asdict(defaults)})
    train_mixture_detector(args.model, args.sticks, args.out, cfg=cfg, threads=args.threads, probe=args.probe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
