r"""Prediction API shared by ``xrdid predict`` and the web page.

    bundle = load_model()                      # the pretrained model shipped in xrdid/pretrained/
    results = predict_patterns(bundle, [read_pattern("a.xy")], wavelength_A=1.5406, top_k=5)

A measured pattern of any wavelength is put onto the model's 2θ grid through Q with
:func:`xrdid.readers.to_grid` (grid points the measurement does not cover are masked, never invented),
then normalised as the training renderer normalises its output (:func:`normalise`), and the model's
two heads give calibrated probabilities (softmax of logits / T, the temperatures fitted on validation
data at the end of training).

Input normalisation. Training patterns are peaks + a smooth nonnegative background (up to ~30 % of
the strongest peak) + counting noise, masked, and scaled to a maximum of 1. A measured pattern gets:
its constant offset removed (the 0.5th percentile of the covered points, which brings a flat detector
or air-scatter offset into the trained range and makes background-subtracted data, which may dip
below zero, nonnegative), negative values clipped to 0, masked points set to 0, and scaled to a
maximum of 1. A smooth background is otherwise left in place, as in training.

Results follow the CLI contract (DESIGN.md): ``space_group`` {number, symbol, probability}, ``top_k``
[{number, symbol, probability}…], ``crystal_system`` {name, probability}, and ``novelty``; and
``mixture`` {probability, method, warning when high}, how likely the pattern holds more than one phase,
when the checkpoint has a mixture detector (:mod:`xrdid.mixture_detector`, a network fine-tuned for that
question) or a mixture probe (:mod:`xrdid.mixture_probe`, on the classifier's features); the detector is
used when there are both.

Novelty. ``novelty`` comes from the VAE (:mod:`xrdid.novelty`, method ``vae``): how unlike the patterns
of known structures the input is, calibrated so that 0.99 means less typical than 99 % of them, with a
``warning`` in words when it is high. It depends on the pattern only, not on the classifier. The VAE is the
one beside the checkpoint (``vae.json`` + ``vae.pt``) or else the one shipped with the package, when its
grid is the model's; without one, ``{"method": "max_softmax", "score": 1 − max p}`` (p the calibrated
space-group probabilities; Hendrycks & Gimpel, ICLR 2017), a weaker signal — a confident model can be
confidently wrong on a pattern unlike its training data.

Label prior. Real samples are not balanced over space groups (P2₁/c is the most common group, Ia-3d
rare), and a model trained on another mix answers for that mix. When the checkpoint's ``model.json``
holds ``prior_log_ratio`` (230 values of α·(log p_real(g) − log p_train(g))), it is added to the
calibrated space-group log-probabilities (Bayes' rule for a change of label prior, Saerens et al.,
Neural Comput. 14 (2002) 21), and ``crystal_system_prior_log_ratio`` (7 values) likewise to the crystal
system's. Training stores them (:func:`xrdid.train.loop.tune_prior`): p_real is Materials Project's
space-group frequencies and the strength α is chosen on the validation split's real structures weighted
like Materials Project (:mod:`xrdid.priors`), so a shipped model answers as if samples come from the
real world by default. ``prior=False`` (``xrdid predict --prior none``) gives the model's own answer.

Consistent answers (on by default; ``load_model(consistent=False)``, ``xrdid predict --no-consistent``) and
a triclinic offset (off; ``load_model(triclinic_offset=δ)``, ``xrdid predict --triclinic-offset δ``). The two heads answer the
crystal system separately: the crystal-system head, and the summed probabilities of each system's space
groups, which disagree on 15–24 % of unseen real patterns. With ``consistent`` the space-group
probabilities keep the space-group head's shares within each crystal system and take the crystal-system
head's answer as their system marginal,
:math:`p(g) = p_{CS}(c(g))\,p_{SG}(g)/\sum_{g' \in c(g)} p_{SG}(g')`, so both answers agree (the
crystal-system head is the better judge of the system on unseen real structures: it finds triclinic
crystals that the summed space groups send to monoclinic). ``triclinic_offset`` adds δ to triclinic's
log-probability in the crystal-system head: a decision bias that trades monoclinic recall for triclinic
recall (unseen real triclinic crystals are mostly answered monoclinic). Both act on the answer with a
prior (``prior=True``), not on the model's own heads (``prior=False``). Their figures on unseen real
structures are in reports/pretrained/README.md: ``consistent`` has no fitted parameter, raised space-group
top-1 on 7 of 8 held-out rows (and never moves the crystal-system answer), and spares the user a space
group of another crystal system than the one answered, so it is the default; the offset costs
crystal-system accuracy on every held-out row, so it is off.

Test-time augmentation (off; ``load_model(tta=n)``, ``xrdid predict --tta n``): both heads' calibrated
probabilities are averaged over the first n variants of the prepared pattern (:mod:`xrdid.tta`: ±1 % strain,
the high end of the range cropped), before the prior and the consistent answer; the novelty and mixture
scores read the pattern itself. On unseen real structures ``--tta 5`` raised space-group top-1 on all four
test rows (by 0.2–0.5 points) but raised crystal-system accuracy on only one (reports/pretrained/README.md),
so it is off.

Cell and re-ranking (:mod:`xrdid.indexing.combine`): with ``cell=True`` (the default of
:func:`predict_patterns`) the pattern is indexed — peak search, cells of all 14 Bravais lattices, the
search ordered by the crystal-system probabilities — and the result gains ``cell`` (a, b, c, α, β, γ,
volume, M20, indexed and unindexed lines, zero shift, ``confidence`` — "tentative" when the fit could be a
chance one, :func:`xrdid.indexing.search.confidence` — or ``indexed: false`` with the reason; and ``one_cell``,
whether one cell indexes the strong lines, :func:`xrdid.indexing.combine.one_cell_features`). When the
detector has a combination with that result beside it (``mixture_cell.json``,
:class:`xrdid.mixture_detector.CellCombination`), ``mixture`` is the combined probability (method
``mixture detector and one-cell indexing``, the detector's own as ``detector_probability``); when the
combination uses them, the lines the best cell leaves over are searched for a second cell
(``cell.second_cell``, :func:`xrdid.indexing.combine.second_cell_features`: 0.07 CPU s median, at most ~0.5 s
more, beyond the indexing already run); with ``cell=False`` the detector alone is used. With
``rerank=True`` (off by default) every space group's log-probability is combined with how well its allowed
reflections index the cell's lines; ``space_group``, ``top_k`` and ``crystal_system`` then follow the
combined score, each entry keeping the classifier's ``probability``, and the result gains ``rerank`` (the
weights).

Bad input raises :class:`PredictionError` with a message naming the file: a malformed pattern (x and
y of different shapes, NaN or infinite values), a pattern without signal (all zeros or constant),
and a pattern that covers too little of the model's Q range (less than ``MIN_COVERAGE`` of the grid
points) — never a confident answer from an input the model cannot judge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xrdid.instrument import Instrument
from xrdid.labels import CRYSTAL_SYSTEMS, PRIORS, space_group_symbol
from xrdid.models import XRDClassifier, load_checkpoint
from xrdid.readers import Pattern, PatternError, to_grid
from xrdid.readers.pattern import finalise
from xrdid.train.loop import model_input
from xrdid.weights import pretrained_path

log = logging.getLogger(__name__)

# Fewest grid points (fraction of the model's grid) a measurement must cover to be classified. Training
# crops at most crop_max_fraction of each end, so coverage down to ~0.2 is within what the model saw.
MIN_COVERAGE = 0.2
# Percentile of the covered intensities taken as the constant offset.
OFFSET_PERCENTILE = 0.5


class PredictionError(ValueError):
    """A pattern cannot be classified; the message names the file and the reason."""


@dataclass
class ModelBundle:
    """A loaded model with what prediction needs: its instrument (grid, wavelength) and metadata."""

    model: XRDClassifier
    instrument: Instrument
    meta: dict
    path: str
    # The VAE that scores novelty (xrdid.novelty.NoveltyModel), or None for max-softmax.
    novelty_model: object | None = None
    # The probe that tells mixtures from single phases (xrdid.mixture_probe.MixtureProbe), or None.
    mixture_probe: object | None = None
    # The network trained for that alone (xrdid.mixture_detector.LoadedDetector), used in place of the probe.
    mixture_detector: object | None = None
    # Space-group probabilities take the crystal-system head's answer as their system marginal, and δ
    # added to triclinic's crystal-system log-probability (module docstring).
    consistent: bool = True
    triclinic_offset: float = 0.0
    # Test-time augmentation: the heads' answers averaged over the first ``tta`` variants of the pattern
    # (xrdid.tta; 1 is the pattern alone), by mean probability or mean logit (``tta_average``).
    tta: int = 1
    tta_average: str = "probability"
    grid: np.ndarray = field(init=False)
    prior_log_ratio: torch.Tensor | None = field(init=False)
    crystal_system_prior_log_ratio: torch.Tensor | None = field(init=False)

    def __post_init__(self):
        from xrdid.tta import AVERAGES, variants

        variants(self.tta)  # raises for an impossible number
        if self.tta_average not in AVERAGES:
            raise ValueError(f"tta_average must be one of {', '.join(AVERAGES)}, got {self.tta_average!r}")
        self.grid = self.instrument.grid()
        ratio = self.meta.get("prior_log_ratio")
        self.prior_log_ratio = torch.tensor(ratio, dtype=torch.float32) if ratio is not None else None
        ratio = self.meta.get("crystal_system_prior_log_ratio")
        self.crystal_system_prior_log_ratio = torch.tensor(ratio, dtype=torch.float32) if ratio is not None else None

    def logits(self, y: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Space-group and crystal-system logits of (B, N) prepared inputs, averaged over the test-time
        variants when ``tta`` > 1 (:func:`xrdid.tta.combine_logits`), with the model input ``x`` and the
        features of the patterns themselves (what the novelty and mixture scores read)."""
        x = model_input(y, mask)
        if self.tta == 1:
            sg, cs, features = self.model.forward_features(x)
            return sg, cs, x, features
        from xrdid.tta import augmented_inputs, combine_logits

        a, m = augmented_inputs(y.numpy(), mask.numpy(), self.grid, self.tta)
        sg, cs, features = self.model.forward_features(model_input(torch.as_tensor(a), torch.as_tensor(m)))
        t = self.model.temperature
        return (combine_logits(sg, self.tta, t[0], self.tta_average), combine_logits(cs, self.tta, t[1], self.tta_average), x,
                features[: y.shape[0]])

    def probabilities(self, sg_logits: torch.Tensor, cs_logits: torch.Tensor, prior: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated space-group and crystal-system probabilities: logits over the fitted temperatures,
        plus, with ``prior``, the checkpoint's prior log-ratios when it has them, the triclinic offset and
        the consistent space groups when set (module docstring); without, the model's own heads."""
        t = self.model.temperature
        sg, cs = sg_logits / t[0], cs_logits / t[1]
        if not prior:
            return sg.softmax(-1), cs.softmax(-1)
        if self.prior_log_ratio is not None:
            sg = sg + self.prior_log_ratio
        if self.crystal_system_prior_log_ratio is not None:
            cs = cs + self.crystal_system_prior_log_ratio
        if self.triclinic_offset:
            cs = cs + torch.tensor([self.triclinic_offset] + [0.0] * (cs.shape[-1] - 1), dtype=cs.dtype)
        if self.consistent:
            return consistent_space_groups(sg.softmax(-1), cs.softmax(-1)), cs.softmax(-1)
        return sg.softmax(-1), cs.softmax(-1)

    @property
    def q_range(self) -> tuple[float, float]:
        """The model's Q range in Å⁻¹."""
        lam = self.instrument.wavelength_A
        q = 4 * np.pi * np.sin(np.radians(self.grid[[0, -1]]) / 2) / lam
        return float(q[0]), float(q[1])


def consistent_space_groups(sg_p: torch.Tensor, cs_p: torch.Tensor) -> torch.Tensor:
    """(B, 230) space-group probabilities whose crystal-system sums are ``cs_p`` (B, 7), keeping ``sg_p``'s
    shares within each system: p(g) = p_CS(c(g)) · p_SG(g) / Σ_{g' in c(g)} p_SG(g')."""
    from xrdid.labels import space_group_to_system_map

    systems = torch.as_tensor(space_group_to_system_map(), dtype=torch.long)
    sums = torch.zeros(sg_p.shape[0], cs_p.shape[1], dtype=sg_p.dtype).index_add_(1, systems, sg_p)
    out = sg_p / sums.clamp_min(1e-30)[:, systems] * cs_p[:, systems]
    return out / out.sum(-1, keepdim=True)


def load_model(
    path: str | Path | None = None, *, prior: str = "checkpoint", vae: str | Path | None = "auto", consistent: bool = True,
    triclinic_offset: float = 0.0, tta: int = 1, tta_average: str = "probability",
) -> ModelBundle:
    """Load a checkpoint directory (``None``: the pretrained model shipped with the package).

    ``prior``: "checkpoint" keeps the label prior stored in the checkpoint (if any), "none" drops it,
    "materials_project" replaces it by real materials' space-group and crystal-system frequencies
    (:func:`xrdid.structures.wyckoff.real_space_group_counts`) against the checkpoint's training counts.
    ``vae``: "auto" scores novelty with the VAE beside the checkpoint or the shipped one (module docstring),
    a directory names one, None uses max-softmax. ``consistent``: the space groups' crystal-system marginal
    is the crystal-system head's; ``triclinic_offset``: δ added to triclinic's crystal-system
    log-probability (module docstring); ``tta``, ``tta_average``: test-time augmentation (module docstring).
    Raises ValueError with a clear message when the directory is not a usable checkpoint.
    """
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}")
    where = Path(path) if path is not None else pretrained_path()
    if path is None and not (where / "weights.pt").is_file():
        raise ValueError(f"no pretrained model is installed at {where}; pass a checkpoint with --model")
    model, instrument, meta = load_checkpoint(where)
    model.eval()
    meta = dict(meta)
    if prior != "checkpoint":
        meta.pop("prior_log_ratio", None)
        meta.pop("crystal_system_prior_log_ratio", None)
    if prior == "materials_project":
        meta.update(real_prior(meta, where))
    from xrdid.mixture_detector import detector_for
    from xrdid.mixture_probe import probe_for
    from xrdid.novelty import novelty_model_for

    return ModelBundle(model=model, instrument=instrument, meta=meta, path=str(where),
                       novelty_model=novelty_model_for(instrument, where, vae), mixture_probe=probe_for(where),
                       mixture_detector=detector_for(where, instrument), consistent=consistent,
                       triclinic_offset=float(triclinic_offset), tta=int(tta), tta_average=tta_average)


def real_prior(meta: dict, where: str | Path = "checkpoint") -> dict:
    """``prior_log_ratio`` and ``crystal_system_prior_log_ratio`` of Materials Project statistics at full
    strength against the label counts of the checkpoint's training draws (``train_space_group_counts``)."""
    from xrdid.priors import materials_project_ratios

    train = meta.get("train_space_group_counts")
    if train is None:
        raise ValueError(f"{where}: the checkpoint does not record its training labels, so no prior can be applied")
    sg, cs = materials_project_ratios(train)
    return {"prior_log_ratio": sg.tolist(), "crystal_system_prior_log_ratio": cs.tolist()}


def _name(pattern: Pattern) -> str:
    return pattern.path or "<pattern>"


def normalise(y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Offset-removed, nonnegative, masked and max-normalised intensities (see the module docstring)."""
    y = np.where(mask, y, 0.0).astype(np.float64)
    covered = y[mask]
    offset = np.percentile(covered, OFFSET_PERCENTILE) if covered.size else 0.0
    y = np.where(mask, np.clip(y - offset, 0.0, None), 0.0)
    top = y.max()
    return (y / top if top > 0 else y).astype(np.float32)


def prepare(bundle: ModelBundle, pattern: Pattern, *, wavelength_A: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The model input of one pattern: normalised intensities and coverage mask (float32, on the grid).

    Raises PredictionError for malformed patterns, patterns without signal and too little coverage.
    """
    where = _name(pattern)
    try:
        # Re-validate: a Pattern built in code (the web page, a test) skipped the readers' checks.
        checked = finalise(pattern.x, pattern.y, axis=pattern.axis, path=where, wavelength_A=pattern.wavelength_A)
        y_grid, mask = to_grid(checked, bundle.grid, bundle.instrument.wavelength_A, wavelength_A=wavelength_A)
    except PatternError as exc:
        raise PredictionError(str(exc)) from None
    yc = np.asarray(checked.y)
    if np.ptp(yc) <= 1e-12 * max(np.abs(yc).max(), 1e-300):
        what = "all zeros" if not np.any(yc) else "constant"
        raise PredictionError(f"{where}: the intensities are {what}; there is no diffraction signal to classify")
    coverage = float(mask.mean())
    if coverage < MIN_COVERAGE:
        q = checked.q(wavelength_A)
        lo, hi = bundle.q_range
        raise PredictionError(
            f"{where}: the measurement (Q {q.min():.2f}–{q.max():.2f} Å⁻¹) covers {100 * coverage:.0f} % of the "
            f"model's range (Q {lo:.2f}–{hi:.2f} Å⁻¹); at least {100 * MIN_COVERAGE:.0f} % is needed"
        )
    y = normalise(y_grid, mask)
    if not np.any(y[mask] > 0) or np.ptp(y[mask]) <= 0:
        raise PredictionError(f"{where}: no signal left on the model's range after offset removal")
    return y, mask.astype(np.float32)


@torch.no_grad()
def predict_arrays(
    bundle: ModelBundle, y: np.ndarray, mask: np.ndarray, *, top_k: int = 5, prior: bool = True, rerank: bool = False,
    cell: bool = False, patterns: list[Pattern] | None = None, wavelength_A: float | None = None,
) -> list[dict]:
    """Predict from prepared inputs, (B, N) or (N,) arrays on the model's grid (see :func:`prepare`).

    ``cell``/``rerank``: index each pattern and re-rank by the extinction check (module docstring), on
    ``patterns`` (the measurements as read) when given, else on the model-grid arrays themselves.
    """
    y_t = torch.as_tensor(np.atleast_2d(y), dtype=torch.float32)
    m_t = torch.as_tensor(np.atleast_2d(mask), dtype=torch.float32)
    n = bundle.instrument.n_points
    if y_t.shape != m_t.shape or y_t.shape[-1] != n:
        raise PredictionError(f"inputs of shape {tuple(y_t.shape)} and {tuple(m_t.shape)}: expected (B, {n}) each")
    sg_logits, cs_logits, x, features = bundle.logits(y_t, m_t)
    sg_p, cs_p = bundle.probabilities(sg_logits, cs_logits, prior=prior)
    mixture = None
    if bundle.mixture_detector is not None:
        from xrdid.mixture_detector import METHOD as DETECTOR
        from xrdid.mixture_probe import describe_mixture

        warn_above = bundle.mixture_detector.meta["warn_above"]
        mixture = [describe_mixture(p, warn_above, DETECTOR) for p in bundle.mixture_detector.probability(x)]
    elif bundle.mixture_probe is not None:
        from xrdid.mixture_probe import describe_mixture

        warn_above = bundle.mixture_probe.meta["warn_above"]
        mixture = [describe_mixture(p, warn_above) for p in bundle.mixture_probe.probability(features.double().numpy())]
    from xrdid.novelty import novelty_objects

    novelty = novelty_objects(bundle.novelty_model, x, sg_p)
    k = max(1, min(int(top_k), sg_p.shape[1]))
    top_p, top_i = sg_p.topk(k, dim=1)
    out = []
    for row in range(sg_p.shape[0]):
        ranked = [
            {"number": int(i) + 1, "symbol": space_group_symbol(int(i) + 1), "probability": float(p)}
            for p, i in zip(top_p[row].tolist(), top_i[row].tolist(), strict=True)
        ]
        c = int(cs_p[row].argmax())
        out.append({
            "space_group": dict(ranked[0]),
            "top_k": ranked,
            "crystal_system": {"name": CRYSTAL_SYSTEMS[c], "probability": float(cs_p[row, c])},
            "novelty": novelty[row],
            **({"mixture": mixture[row]} if mixture is not None else {}),
        })
    if cell or rerank:
        from xrdid.indexing.combine import grid_pattern, second_opinion

        combination = getattr(bundle.mixture_detector, "cell", None) if mixture is not None else None
        second = combination is not None and combination.second_cell
        y_np, m_np = np.atleast_2d(y), np.atleast_2d(mask)
        for row, r in enumerate(out):
            pattern = patterns[row] if patterns else grid_pattern(bundle.grid, y_np[row], m_np[row], bundle.instrument.wavelength_A)
            second_opinion(r, sg_p[row].numpy(), cs_p[row].numpy(), pattern=pattern, wavelength_A=wavelength_A, top_k=k, rerank=rerank,
                           second_cell=second)
        if combination is not None:
            from xrdid.mixture_detector import CELL_METHOD
            from xrdid.mixture_probe import describe_mixture

            for row, r in enumerate(out):
                p_detector = r["mixture"]["probability"]
                systems = {f"p_{name}": float(cs_p[row, i]) for i, name in enumerate(CRYSTAL_SYSTEMS)}
                p = combination.probability(p_detector, {**r["cell"]["one_cell"], **r["cell"].get("second_cell", {}), **systems})
                r["mixture"] = {**describe_mixture(p, combination.meta["warn_above"], CELL_METHOD), "detector_probability": p_detector}
    return out


def predict_patterns(
    bundle: ModelBundle, patterns: list[Pattern], *, wavelength_A: float | None = None, top_k: int = 5, prior: bool = True,
    rerank: bool = False, cell: bool = True,
) -> list[dict]:
    """Classify measured patterns; one result dict per pattern (the CLI contract's fields, and ``cell``).

    ``wavelength_A`` is used for 2θ patterns whose file states none. Raises PredictionError for the first
    pattern that cannot be classified; call once per pattern to keep going past bad ones.
    """
    if not patterns:
        return []
    prepared = [prepare(bundle, p, wavelength_A=wavelength_A) for p in patterns]
    y = np.stack([a for a, _ in prepared])
    mask = np.stack([b for _, b in prepared])
    results = predict_arrays(bundle, y, mask, top_k=top_k, prior=prior, rerank=rerank, cell=cell, patterns=patterns,
                             wavelength_A=wavelength_A)
    for r, (_, m) in zip(results, prepared, strict=True):
        r["coverage"] = float(m.mean())
    return results


def prior_log_ratio(target_counts, train_counts) -> list[float]:
    """log p_target(c) − log p_train(c) per class from label counts (:func:`xrdid.priors.log_ratio`): 230
    space groups, or 7 crystal systems. Store the result as ``prior_log_ratio`` (or
    ``crystal_system_prior_log_ratio``) in a checkpoint's model.json to apply it (module docstring)."""
    from xrdid.priors import log_ratio

    return log_ratio(target_counts, train_counts).tolist()
