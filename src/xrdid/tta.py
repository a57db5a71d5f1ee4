r"""Test-time augmentation: the classifier's answer averaged over a few deterministic variants of a pattern.

A measured pattern differs from the one its crystal would give on the model's ideal instrument by what the
training augmentation (:class:`xrdid.instrument.Augment`) draws at random: a goniometer zero error (±0.05°
2θ), an isotropic lattice strain or wavelength error (d → d(1 + ε), |ε| ≤ 1 %), wider or narrower peaks
(Caglioti factor 0.5–3, crystallite size 30–500 nm). Each variant moves the *prepared* pattern (on the
model's grid, :func:`xrdid.predict.prepare`) by a small amount of one of these, well inside the trained
ranges, so the model is asked the same question a few times with the nuisances the answer must not
depend on, and the answers are averaged.

A variant (:class:`Variant`) with zero shift s (degrees 2θ), strain ε and Gaussian blur σ (grid points)
maps the intensity at 2θ to 2θ' = 2 asin(sin(θ) / (1 + ε)) + s (the same at any wavelength): the
resampled pattern is y'(2θ_i) = y(2θ_src), 2θ_src the inverse image of 2θ_i, linearly interpolated; the
coverage mask is moved the same way (a grid point is covered when both neighbours of its source are);
then y' is blurred, masked and scaled to a maximum of 1 as :func:`xrdid.predict.normalise` does.

Averaging (:func:`combine_logits`): ``"probability"`` averages the temperature-calibrated probabilities
of the variants, p = (1/V) Σ_v softmax(z_v / T), and returns T·log p, so that
:meth:`xrdid.predict.ModelBundle.probabilities` (which divides by T and adds the prior) gives back the
mean; ``"logit"`` averages the logits z_v (a geometric mean of the probabilities). The label prior and the
consistent answer act after the average, once.

``VARIANTS`` is ordered; ``tta = n`` uses the first n (``VARIANTS[0]`` is the pattern itself, so ``tta = 1``
is the plain prediction). Their choice and the figures on unseen real structures are in
reports/pretrained/README.md ("Test-time augmentation").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

AVERAGES: tuple[str, ...] = ("probability", "logit")


@dataclass(frozen=True)
class Variant:
    """One deterministic change of a prepared pattern (module docstring)."""

    shift_deg: float = 0.0  # added to every 2θ (a goniometer zero error)
    strain: float = 0.0  # d → d(1 + strain): peaks move to lower angle for strain > 0
    blur_points: float = 0.0  # Gaussian σ of a convolution, in grid points
    crop_low: float = 0.0  # fraction of the covered grid points masked at the low-angle end
    crop_high: float = 0.0  # and at the high-angle end

    @property
    def identity(self) -> bool:
        return not (self.shift_deg or self.strain or self.blur_points or self.crop_low or self.crop_high)


# Chosen on the validation split's real structures (reports/pretrained/README.md): isotropic strains of
# ±1 % (the edge of training's lattice_strain_frac) and the top 10 % and 20 % of the covered range left out
# (training crops either end of 60 % of its patterns by up to half). Zero shifts of ±0.01–0.05° and
# Gaussian broadening (σ 0.5–1.5 points) were tried there too and moved nothing or less.
VARIANTS: tuple[Variant, ...] = (
    Variant(),
    Variant(strain=0.01),
    Variant(strain=-0.01),
    Variant(crop_high=0.1),
    Variant(crop_high=0.2),
)
MAX_TTA = len(VARIANTS)


def variants(n: int) -> tuple[Variant, ...]:
    """The first ``n`` of :data:`VARIANTS` (1 ≤ n ≤ :data:`MAX_TTA`)."""
    if not 1 <= int(n) <= MAX_TTA:
        raise ValueError(f"tta must be between 1 and {MAX_TTA}, got {n}")
    return VARIANTS[: int(n)]


def source_angles(grid_deg: np.ndarray, variant: Variant) -> np.ndarray:
    """2θ (degrees) whose intensity lands on each grid point under ``variant``: the inverse of the
    map 2θ → 2 asin(sin(θ) / (1 + ε)) + s. NaN where no angle maps there (beyond back-scattering)."""
    t = np.radians(np.asarray(grid_deg, dtype=np.float64) - variant.shift_deg) / 2.0
    s = np.sin(np.clip(t, 0.0, np.pi / 2)) * (1.0 + variant.strain)
    with np.errstate(invalid="ignore"):
        return np.where(s <= 1.0, 2.0 * np.degrees(np.arcsin(np.minimum(s, 1.0))), np.nan)


def apply_variant(y: np.ndarray, mask: np.ndarray, grid_deg: np.ndarray, variant: Variant) -> tuple[np.ndarray, np.ndarray]:
    """(B, N) prepared intensities and masks moved by ``variant`` (module docstring); float32 both."""
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    mask = np.atleast_2d(np.asarray(mask, dtype=np.float64))
    if variant.identity:
        return y.astype(np.float32), mask.astype(np.float32)
    grid = np.asarray(grid_deg, dtype=np.float64)
    if variant.shift_deg or variant.strain:
        src = source_angles(grid, variant)
        inside = np.isfinite(src) & (src >= grid[0]) & (src <= grid[-1])
        pos = np.interp(np.where(inside, src, grid[0]), grid, np.arange(grid.size, dtype=np.float64))
        lo = np.clip(np.floor(pos).astype(int), 0, grid.size - 2)
        frac = pos - lo
        y = (1.0 - frac) * y[:, lo] + frac * y[:, lo + 1]
        mask = (mask[:, lo] > 0) & (mask[:, lo + 1] > 0) & inside
    else:
        mask = mask > 0
    if variant.crop_low or variant.crop_high:
        mask = mask & _crop(mask, variant.crop_low, variant.crop_high)
    if variant.blur_points:
        from scipy.ndimage import gaussian_filter1d

        y = gaussian_filter1d(y, variant.blur_points, axis=-1, mode="constant")
    y = np.where(mask, np.clip(y, 0.0, None), 0.0)
    top = y.max(axis=1, keepdims=True)
    y = np.divide(y, top, out=np.zeros_like(y), where=top > 0)
    return y.astype(np.float32), mask.astype(np.float32)


def _crop(mask: np.ndarray, low: float, high: float) -> np.ndarray:
    """(B, N) bool: False on the first ``low`` and last ``high`` fractions of each row's covered span."""
    n = mask.shape[1]
    covered = mask.any(1)
    first = np.where(covered, mask.argmax(1), 0)
    last = np.where(covered, n - 1 - mask[:, ::-1].argmax(1), n - 1)
    span = last - first + 1
    lo = first + np.floor(low * span).astype(int)
    hi = last - np.floor(high * span).astype(int)
    i = np.arange(n)
    return (i >= lo[:, None]) & (i <= hi[:, None])


def augmented_inputs(y: np.ndarray, mask: np.ndarray, grid_deg: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(V·B, N) intensities and masks of the first ``n`` variants, variant-major (rows v·B … v·B + B − 1)."""
    moved = [apply_variant(y, mask, grid_deg, v) for v in variants(n)]
    return np.concatenate([a for a, _ in moved]), np.concatenate([b for _, b in moved])


def combine_logits(logits: torch.Tensor, n: int, temperature: float | torch.Tensor, average: str = "probability") -> torch.Tensor:
    """(B, C) logits standing for the average of ``n`` variant-major blocks of ``logits`` (V·B, C)
    (module docstring): T·log of the mean calibrated probability, or the mean logit."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {', '.join(AVERAGES)}, got {average!r}")
    z = logits.reshape(int(n), -1, logits.shape[-1])
    if average == "logit":
        return z.mean(0)
    t = torch.as_tensor(temperature, dtype=z.dtype)
    return t * (torch.logsumexp(torch.log_softmax(z / t, -1), 0) - np.log(int(n)))
