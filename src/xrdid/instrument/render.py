r"""Batched rendering of stick patterns onto an instrument's 2θ grid, with augmentation (torch).

For each reflection with spacing d and :math:`|F|^2 m` (``f2m``), and each line λ_k of weight w_k:

* Bragg angle θ = asin(λ_k / 2d); position 2θ + zero shift + sample displacement s·cos θ.
* Lorentz–polarisation :math:`LP = \frac{1 + k\cos^2 2θ}{1 + k} \cdot \frac{1}{\sin^2θ\cosθ}`
  (k = 1 unpolarised tube, k ≈ 0 synchrotron), so the peak area is ``w_k · f2m · LP``.
* Profile: pseudo-Voigt with the Thompson–Cox–Hastings mixing of a Gaussian part
  :math:`Γ_G^2 = c (U\tan^2θ + V\tanθ + W)` (Caglioti) and a Lorentzian part
  :math:`Γ_L = \frac{180}{π}\left(\frac{Kλ}{L\cosθ} + 4ε\tanθ\right)` (Scherrer size L, microstrain ε),
  all FWHM in degrees 2θ. Each peak is evaluated on a window of grid points around its centre and
  scattered into the pattern, so the cost is O(peaks × window), not O(peaks × grid).

Augmentation (each range drawn per pattern from a seeded generator): lattice strain (d scaled by
1 + ε), crystallite size, microstrain, Caglioti scale, zero shift, sample displacement, per-peak
intensity jitter (a texture proxy), March–Dollase preferred orientation where hkl are known is left
to a later version, impurity peaks, a smooth random background, Poisson counting noise plus Gaussian
read noise, and cropped 2θ ranges (returned as a mask, never filled in).

The output is normalised to a maximum of 1 per pattern; ``mask`` is 1 where the pattern is defined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from xrdid.instrument.presets import Instrument

_SCHERRER_K = 0.9
_GAUSS_NORM = 2.0 * math.sqrt(math.log(2) / math.pi)


@dataclass
class StickBatch:
    """Zero-padded sticks: ``d`` in Å and ``f2m`` (|F|²·multiplicity), both (B, P) float32."""

    d: torch.Tensor
    f2m: torch.Tensor

    def to(self, device) -> "StickBatch":
        return StickBatch(self.d.to(device), self.f2m.to(device))


@dataclass(frozen=True)
class Augment:
    """Ranges (low, high) drawn uniformly per pattern; ``enabled=False`` renders the clean pattern."""

    enabled: bool = True
    lattice_strain: tuple[float, float] = (-0.01, 0.01)
    crystallite_size_nm: tuple[float, float] = (30.0, 300.0)
    microstrain: tuple[float, float] = (0.0, 0.002)
    caglioti_scale: tuple[float, float] = (0.5, 3.0)
    zero_shift_deg: tuple[float, float] = (-0.05, 0.05)
    displacement_deg: tuple[float, float] = (-0.05, 0.05)
    intensity_jitter: tuple[float, float] = (0.0, 0.3)
    impurity_peaks: tuple[int, int] = (0, 3)
    impurity_max_rel: float = 0.05
    background_rel: tuple[float, float] = (0.0, 0.3)
    counts_max: tuple[float, float] = (300.0, 100000.0)
    gaussian_noise_rel: tuple[float, float] = (0.0, 0.01)
    crop_probability: float = 0.3
    crop_max_fraction: float = 0.4
    # Clean patterns use this crystallite size (nm) for their Lorentzian width.
    clean_crystallite_size_nm: float = 150.0

    @classmethod
    def from_dict(cls, d: dict | None) -> "Augment":
        if not d:
            return cls()
        fields = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown augmentation key(s): {', '.join(sorted(unknown))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _uniform(lo_hi, shape, gen, device):
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=device)


class Renderer:
    """Render :class:`StickBatch` es onto ``instrument``'s grid; returns (pattern, mask), both (B, N)."""

    def __init__(self, instrument: Instrument, augment: Augment | None = None, device="cpu", max_window: int = 161):
        self.instrument = instrument
        self.augment = augment or Augment(enabled=False)
        self.device = torch.device(device)
        self.grid = torch.as_tensor(instrument.grid(), dtype=torch.float32, device=self.device)
        self.step = float(self.grid[1] - self.grid[0])
        self.t0 = float(self.grid[0])
        self.max_window = max_window

    @torch.no_grad()
    def __call__(self, sticks: StickBatch, generator: torch.Generator | None = None):
        aug, inst, dev = self.augment, self.instrument, self.device
        d = sticks.d.to(dev, torch.float32)
        f2m = sticks.f2m.to(dev, torch.float32)
        B = d.shape[0]
        on = aug.enabled
        gen = generator

        def per_pattern(rng):
            return _uniform(rng, (B, 1), gen, dev)

        if on:
            d = d * (1.0 + per_pattern(aug.lattice_strain))
            size_A = 10.0 * per_pattern(aug.crystallite_size_nm)
            strain = per_pattern(aug.microstrain)
            cag = per_pattern(aug.caglioti_scale)
            zero = per_pattern(aug.zero_shift_deg)
            disp = per_pattern(aug.displacement_deg)
            jitter_sigma = per_pattern(aug.intensity_jitter)
            f2m = f2m * torch.exp(jitter_sigma * torch.randn(f2m.shape, generator=gen, device=dev))
            d, f2m = self._add_impurities(d, f2m, gen)
        else:
            size_A = torch.full((B, 1), 10.0 * aug.clean_crystallite_size_nm, device=dev)
            strain = torch.zeros((B, 1), device=dev)
            cag = torch.ones((B, 1), device=dev)
            zero = disp = torch.zeros((B, 1), device=dev)

        centres, areas, fwhm, eta = [], [], [], []
        U, V, W = inst.caglioti_uvw_deg2
        k = inst.polarisation_k
        for lam, w in zip(inst.wavelengths_A, inst.weights):
            s = lam / (2.0 * d.clamp_min(1e-6))
            valid = (f2m > 0) & (s < 0.9999)
            theta = torch.asin(s.clamp(max=0.9999))
            tan_t, cos_t, sin_t = torch.tan(theta), torch.cos(theta), torch.sin(theta)
            cos2t = torch.cos(2 * theta)
            lp = (1 + k * cos2t**2) / (1 + k) / (sin_t**2 * cos_t)
            centre = torch.rad2deg(2 * theta) + zero + disp * cos_t
            g2 = cag * (U * tan_t**2 + V * tan_t + W)
            gam_g = g2.clamp_min(1e-6).sqrt()
            gam_l = torch.rad2deg(_SCHERRER_K * lam / (size_A * cos_t) + 4 * strain * tan_t)
            gam, e = _tch(gam_g, gam_l)
            centres.append(centre)
            areas.append(torch.where(valid, w * f2m * lp, torch.zeros_like(f2m)))
            fwhm.append(gam)
            eta.append(e)
        centre, area, gam, eta = (torch.cat(t, dim=1) for t in (centres, areas, fwhm, eta))
        y = self._scatter_profiles(centre, area, gam, eta)
        y = y / y.amax(dim=1, keepdim=True).clamp_min(1e-12)
        mask = torch.ones_like(y)
        if on:
            y = self._background_and_noise(y, gen)
            mask = self._crop(mask, gen)
            y = y * mask
            y = y / y.amax(dim=1, keepdim=True).clamp_min(1e-12)
        return y, mask

    def _add_impurities(self, d, f2m, gen):
        aug, dev = self.augment, self.device
        lo, hi = aug.impurity_peaks
        if hi <= 0:
            return d, f2m
        B = d.shape[0]
        n = torch.randint(int(lo), int(hi) + 1, (B, 1), generator=gen, device=dev)
        slots = torch.arange(int(hi), device=dev).expand(B, -1)
        # Impurity d-spacings uniform in 1/d over the range the grid can show.
        s_max = 1.0 / self.instrument.d_min_A
        inv_d = torch.rand((B, int(hi)), generator=gen, device=dev) * s_max * 0.98 + 0.02 * s_max
        rel = torch.rand((B, int(hi)), generator=gen, device=dev) * aug.impurity_max_rel
        strongest = f2m.amax(dim=1, keepdim=True)
        imp = torch.where(slots < n, rel * strongest, torch.zeros_like(rel))
        return torch.cat([d, 1.0 / inv_d], dim=1), torch.cat([f2m, imp], dim=1)

    def _scatter_profiles(self, centre, area, gam, eta, n_buckets: int = 4):
        B, P = centre.shape
        N = self.grid.numel()
        step = self.step
        guard = self.max_window // 2 + 1
        idx0 = torch.round((centre - self.t0) / step)
        # Only real peaks whose window can reach the grid are evaluated (padding and far peaks cost nothing).
        keep = (area > 0) & (idx0 > -guard) & (idx0 < N + guard)
        rows = torch.arange(B, device=self.device).unsqueeze(1).expand(B, P)[keep]
        centre, area, gam, eta, idx0 = centre[keep], area[keep], gam[keep], eta[keep], idx0[keep]
        buf = torch.zeros((B, N + 2 * guard), device=self.device, dtype=torch.float32)
        flat = buf.view(-1)
        # Narrow and broad peaks get windows of their own size: sort by width, evaluate in buckets.
        order = torch.argsort(gam)
        for part in torch.tensor_split(order, n_buckets):
            if part.numel() == 0:
                continue
            g = gam[part]
            # ±4 FWHM holds >99.9 % of a Gaussian and ~92 % of a Lorentzian's area; far tails are dropped.
            half = int(min(self.max_window // 2, max(4, math.ceil(4.0 * float(g.max()) / step))))
            offsets = torch.arange(-half, half + 1, device=self.device, dtype=torch.float32)
            i0 = idx0[part]
            x = ((i0.unsqueeze(-1) + offsets) * step + self.t0 - centre[part].unsqueeze(-1)) / g.unsqueeze(-1)
            x2 = 4.0 * x * x
            e = eta[part].unsqueeze(-1)
            prof = e * (2.0 / math.pi) / (1 + x2) + (1 - e) * _GAUSS_NORM * torch.exp(-math.log(2) * x2)
            prof = prof * (area[part] / g).unsqueeze(-1)
            index = (i0.long().unsqueeze(-1) + offsets.long() + guard).clamp(0, N + 2 * guard - 1)
            index = index + (rows[part] * (N + 2 * guard)).unsqueeze(-1)
            flat.scatter_add_(0, index.reshape(-1), prof.reshape(-1))
        return buf[:, guard : guard + N] * step

    def _background_and_noise(self, y, gen):
        aug, dev = self.augment, self.device
        B, N = y.shape
        t = torch.linspace(0, 1, N, device=dev)
        # Smooth random background: a few low-frequency cosines plus a low-angle decay, kept positive.
        n_terms = 4
        freqs = torch.arange(1, n_terms + 1, device=dev, dtype=torch.float32)
        amp = torch.randn((B, n_terms), generator=gen, device=dev) / freqs
        phase = torch.rand((B, n_terms), generator=gen, device=dev) * 2 * math.pi
        bg = (amp.unsqueeze(-1) * torch.cos(math.pi * freqs[None, :, None] * t + phase.unsqueeze(-1))).sum(1)
        bg = bg - bg.amin(dim=1, keepdim=True)
        decay = torch.rand((B, 1), generator=gen, device=dev) * torch.exp(
            -t / (0.02 + 0.2 * torch.rand((B, 1), generator=gen, device=dev))
        )
        bg = bg / bg.amax(dim=1, keepdim=True).clamp_min(1e-6) + decay
        level = _uniform(aug.background_rel, (B, 1), gen, dev)
        y = y + level * bg / bg.amax(dim=1, keepdim=True).clamp_min(1e-6)
        # Counting statistics: scale so the strongest point has `counts` counts, draw Poisson.
        counts = torch.exp(_uniform([math.log(v) for v in aug.counts_max], (B, 1), gen, dev))
        y = torch.poisson(y * counts, generator=gen) / counts
        sigma = _uniform(aug.gaussian_noise_rel, (B, 1), gen, dev)
        return (y + sigma * torch.randn(y.shape, generator=gen, device=dev)).clamp_min(0)

    def _crop(self, mask, gen):
        aug, dev = self.augment, self.device
        B, N = mask.shape
        if aug.crop_probability <= 0:
            return mask
        pos = torch.arange(N, device=dev).expand(B, -1)
        do_low = torch.rand((B, 1), generator=gen, device=dev) < aug.crop_probability / 2
        do_high = torch.rand((B, 1), generator=gen, device=dev) < aug.crop_probability / 2
        low = (torch.rand((B, 1), generator=gen, device=dev) * aug.crop_max_fraction * N).long()
        high = N - (torch.rand((B, 1), generator=gen, device=dev) * aug.crop_max_fraction * N).long()
        keep = ((pos >= low) | ~do_low) & ((pos < high) | ~do_high)
        return mask * keep


def _tch(gam_g: torch.Tensor, gam_l: torch.Tensor):
    """Thompson–Cox–Hastings pseudo-Voigt: total FWHM and Lorentzian fraction η."""
    g, l = gam_g, gam_l
    gam = (g**5 + 2.69269 * g**4 * l + 2.42843 * g**3 * l**2 + 4.47163 * g**2 * l**3 + 0.07842 * g * l**4 + l**5) ** 0.2
    q = l / gam
    eta = (1.36603 * q - 0.47719 * q**2 + 0.11116 * q**3).clamp(0, 1)
    return gam, eta
