r"""Batched rendering of stick patterns onto an instrument's 2θ grid, with augmentation (torch).

For each reflection with spacing d and :math:`|F|^2 m` (``f2m``), and each line λ_k of weight w_k:

* Bragg angle θ = asin(λ_k / 2d); reflections with λ_k/2d ≥ 1 do not exist and are dropped.
  Peak position 2θ + zero shift + sample-displacement shift, where a displacement s (µm) of the sample
  from the goniometer axis (radius R) shifts peaks by :math:`-2s\cosθ/R` rad in Bragg–Brentano
  geometry and by :math:`-s\sin 2θ/R` rad for a capillary displaced along the beam (Debye–Scherrer)
  (Klug & Alexander, *X-ray Diffraction Procedures*, 1974, §5).
* Lorentz–polarisation :math:`LP = P(2θ)/(\sin^2θ\cosθ)` with P from the instrument (see
  :mod:`xrdid.instrument.presets`), so the peak area is ``w_k · f2m · LP · T`` with T the texture factor.
* Profile: pseudo-Voigt with the Thompson–Cox–Hastings mixing (J. Appl. Cryst. 20 (1987) 79) of a
  Gaussian part :math:`Γ_G^2 = c\,(U\tan^2θ + V\tanθ + W) + Γ_{bin}^2` (Caglioti, scaled by c) and a
  Lorentzian part :math:`Γ_L = \frac{180}{π}\left(\frac{Kλ}{L\cosθ} + 4ε\tanθ\right)` (Scherrer size L
  with K = 0.9, Stokes–Wilson microstrain ε), all FWHM in degrees 2θ.
  :math:`Γ_{bin}^2 = 8\ln 2\,Δ^2/12` is the variance of the grid step Δ, since a measured pattern is
  put on the grid by averaging over each bin (:func:`xrdid.readers.grid.to_grid`); and Γ_G is kept at
  least ``min_fwhm_steps`` steps, below which point samples alias (a peak's summed intensity would
  depend on where it falls between grid points by more than 1 %).
* Each peak is evaluated on a window of ±``window_fwhm`` FWHM around its centre (at most
  ±``max_half_window_deg``), its value at the window edge subtracted so the profile ends continuously at
  zero, and rescaled so that its height stays exact (a pure Lorentzian loses up to ~16 % of its area in the
  cut tails at ±4 FWHM, a Gaussian nothing); so the cost is O(peaks × window), not O(peaks × grid).

Augmentation (ranges in :class:`Augment`, drawn per pattern from the caller's seeded generator):
lattice strain, crystallite size, microstrain, Caglioti scale, zero shift, sample displacement,
per-stick intensity jitter, texture, impurity peaks, a smooth random background, counting noise plus
Gaussian read noise, and cropped 2θ ranges (returned as a mask, never filled in).

Texture. March–Dollase (J. Appl. Cryst. 19 (1986) 267) multiplies a reflection by
:math:`P(α) = (r^2\cos^2α + \sin^2α/r)^{-3/2}`, α the angle between its plane normal and the
preferred-orientation axis, *averaged over all symmetry-equivalent normals of the stick*. The sticks
table holds only one representative hkl per stick (and several families can share a d), so the true
factor cannot be computed from it: using the representative alone gives e.g. a cubic {100} stick the
factor of one orientation for all six members. Instead, each stick gets the March–Dollase factor of
a random orientation, cos α ~ U(0, 1) (isotropically distributed normals), with r drawn per pattern.
This has the right marginal distribution and preserves the mean intensity (the factor averages to 1
over the hemisphere), but does not correlate harmonics (h00, 2h00 …) or damp the effect for
high-multiplicity sticks.

Counting noise. The expected counts λ (the strongest point scaled to ``peak_counts``) plus read noise
σ (counts) are drawn as :math:`X = (\sqrt{λ + σ^2 + 3/8} + z/2)^2 - σ^2 - 5/8`, z ~ N(0, 1): the
inverse of Anscombe's variance-stabilising transform, with mean λ, variance λ + σ² + 1/2 and a
Poisson-like right skew, at the cost of one normal draw per point (``torch.poisson`` costs ~75 ns per
point on one CPU core, more than the whole rendering budget). ``poisson_exact=True`` draws Poisson
counts and Gaussian read noise separately.

The output is normalised to a maximum of 1 per pattern; ``mask`` is 1 where the pattern is defined.
A pattern without any reflection on the grid is all zeros (never NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from xrdid.instrument.presets import Instrument

_SCHERRER_K = 0.9
_LN2 = math.log(2.0)
# Area-normalised Gaussian of FWHM Γ in the variable x = 2(2θ − c)/Γ: sqrt(ln2/π)·exp(−ln2·x²) per unit x.
_GAUSS_X = math.sqrt(_LN2 / math.pi)
# Ladder of window half-widths (grid points): peaks are grouped by the smallest rung that holds
# ±window_fwhm of them, so a window is at most ~25 % larger than needed.
_LADDER_RATIO = 1.25
# Elements per evaluation chunk: temporaries stay in the L2 cache.
_CHUNK_ELEMENTS = 1 << 16


@dataclass
class StickBatch:
    """Zero-padded sticks: ``d`` in Å and ``f2m`` (|F|²·multiplicity), both (B, P) float32."""

    d: torch.Tensor
    f2m: torch.Tensor

    def to(self, device) -> StickBatch:
        return StickBatch(self.d.to(device), self.f2m.to(device))


@dataclass(frozen=True)
class Augment:
    """Augmentation switches and ranges (low, high), drawn uniformly per pattern unless noted.

    ``enabled=False`` renders the clean pattern (crystallite size ``clean_crystallite_size_nm``, no
    strain, shifts, texture, background or noise). Defaults aim at the spread of real lab and
    synchrotron data; the sources are given beside each field.
    """

    enabled: bool = True
    # Isotropic lattice strain a → a(1 + ε): thermal expansion over ~±300 K and solid solutions are ~1 %.
    lattice_strain_frac: tuple[float, float] = (-0.01, 0.01)
    # Crystallite size (log-uniform): Scherrer broadening is visible below ~200 nm on a lab
    # instrument and ~1 µm on a synchrotron; nanocrystalline powders reach 10–30 nm.
    crystallite_size_nm: tuple[float, float] = (30.0, 500.0)
    # Stokes–Wilson microstrain ε (Δd/d): annealed powders ~1e-4, ball-milled ~1e-3–3e-3.
    microstrain_frac: tuple[float, float] = (0.0, 0.002)
    # Factor on the instrument's Caglioti U, V, W (slits, alignment, detector differ between sites).
    caglioti_scale: tuple[float, float] = (0.5, 3.0)
    # Goniometer zero error: an aligned instrument is within ~±0.02–0.05°.
    zero_shift_deg: tuple[float, float] = (-0.05, 0.05)
    # Sample height (BB) or capillary centring (DS) error; ±100 µm at R = 240 mm is ±0.05° at low angle.
    sample_displacement_um: tuple[float, float] = (-100.0, 100.0)
    # Per-stick log-normal intensity error σ (structure-model errors: occupancies, ADPs, absorption).
    intensity_jitter_rel: tuple[float, float] = (0.0, 0.15)
    # March–Dollase r (log-uniform; r < 1 plates, r > 1 needles; refined values are typically 0.6–1.4)
    # and the fraction of patterns that get texture at all.
    march_dollase_r: tuple[float, float] = (0.6, 1.5)
    texture_probability: float = 0.5
    # Number of extra impurity sticks (integers, inclusive) and their largest height relative to the
    # strongest stick (a few % of a second phase is typical of "phase-pure" samples).
    impurity_peaks: tuple[int, int] = (0, 3)
    impurity_max_rel: float = 0.05
    # Background height relative to the strongest peak: air scatter, fluorescence, amorphous holder.
    background_rel: tuple[float, float] = (0.01, 0.3)
    # Counts at the strongest point (log-uniform): a quick lab scan ~1e3, a long one or a synchrotron
    # 1e5 and more.
    peak_counts: tuple[float, float] = (300.0, 100000.0)
    # Gaussian read noise relative to the strongest point (integrating detectors; ~0 for photon counting).
    gaussian_noise_rel: tuple[float, float] = (0.0, 0.005)
    # Exact Poisson counts (slow on CPU) instead of the Anscombe-Gaussian approximation.
    poisson_exact: bool = False
    # Probability of cropping each end of the range, and the largest cropped fraction per end.
    crop_probability: float = 0.3
    crop_max_fraction: float = 0.4
    # Fraction of patterns rendered with the instrument's strongest line alone (its other lines, e.g. Cu
    # Kα2, weight 0): a Kα1 monochromator, or synchrotron data mapped onto a Cu grid through Q.
    monochromatic_probability: float = 0.0
    # Fraction of patterns whose intensities are those of a measurement at another wavelength λ'
    # (log-uniform in other_wavelength_A) with polarisation k' (uniform in other_polarisation_k), mapped
    # onto this grid through Q: the same d, so the same positions, but the Lorentz–polarisation factor of
    # θ' = asin(λ'/2d), and no reflection beyond λ'/2d ≥ 1. A synchrotron pattern (MARS, 0.73 Å, k ≈ 0.05)
    # on a Cu model's grid is one.
    other_wavelength_probability: float = 0.0
    other_wavelength_A: tuple[float, float] = (0.4, 1.8)
    other_polarisation_k: tuple[float, float] = (0.05, 1.0)
    # Clean patterns use this crystallite size (nm) for their Lorentzian width.
    clean_crystallite_size_nm: float = 150.0

    @classmethod
    def from_dict(cls, d: dict | None) -> Augment:
        if not d:
            return cls()
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown augmentation key(s): {', '.join(sorted(unknown))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _uniform(lo_hi, shape, gen, device):
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=device)


def _log_uniform(lo_hi, shape, gen, device):
    return torch.exp(_uniform([math.log(v) for v in lo_hi], shape, gen, device))


def _background_basis(inst: Instrument, grid: np.ndarray) -> np.ndarray:
    """(K, N) nonnegative smooth functions; a nonnegative combination is a plausible background.

    Bernstein polynomials of degree 4 (any nonnegative combination is a smooth positive curve), a
    low-angle decay (air scatter, beam tail) on three length scales, and amorphous humps (glass holder or
    capillary, amorphous fraction) centred at Q = 1.1–3.0 Å⁻¹ with FWHM 0.5–1.2 Å⁻¹, in Q so that they sit
    where they would for any wavelength (silica glass: Q ≈ 1.55 Å⁻¹).
    """
    t = (grid - grid[0]) / (grid[-1] - grid[0])
    deg = 4
    rows = [math.comb(deg, i) * t**i * (1 - t) ** (deg - i) for i in range(deg + 1)]
    rows += [np.exp(-t / tau) for tau in (0.01, 0.04, 0.15)]
    q = 4 * np.pi * np.sin(np.radians(grid) / 2) / inst.wavelength_A
    for qc, w in ((1.1, 0.5), (1.55, 0.8), (2.0, 1.0), (3.0, 1.2)):
        rows.append(np.exp(-4 * math.log(2) * ((q - qc) / w) ** 2))
    return np.stack(rows)


class Renderer:
    """Render :class:`StickBatch` es onto ``instrument``'s grid; returns (pattern, mask), both (B, N).

    max_window: optional cap on a peak's window in grid points (both sides together); by default the
    cap is ±``max_half_window_deg``.
    """

    def __init__(
        self,
        instrument: Instrument,
        augment: Augment | None = None,
        device="cpu",
        max_window: int | None = None,
        *,
        window_fwhm: float = 4.0,
        max_half_window_deg: float = 2.0,
        min_fwhm_steps: float = 1.2,
        points_per_fwhm: float = 6.0,
        max_level: int = 32,
    ):
        self.instrument = instrument
        self.augment = augment or Augment(enabled=False)
        self.device = torch.device(device)
        grid = instrument.grid()
        self.grid = torch.as_tensor(grid, dtype=torch.float32, device=self.device)
        self.step = float(grid[1] - grid[0])
        self.t0 = float(grid[0])
        self.window_fwhm = float(window_fwhm)
        cap = math.ceil(max_half_window_deg / self.step)
        if max_window is not None:
            cap = min(cap, max(1, int(max_window) // 2))
        self.max_half = max(3, cap)
        rungs = [3]
        while rungs[-1] < self.max_half:
            rungs.append(min(self.max_half, max(rungs[-1] + 1, math.ceil(rungs[-1] * _LADDER_RATIO))))
        self.rungs = rungs
        # Dyadic sub-grids for broad peaks (see _scatter_profiles), and the padded buffer length F with
        # (F − 1) divisible by the coarsest step; padding holds every window of a peak within ±H.
        self.points_per_fwhm = float(points_per_fwhm)
        self.levels = [2**i for i in range(max(0, int(max_level).bit_length() - 1) + 1)]
        m_max = self.levels[-1]
        self.pad = -(-(2 * self.max_half + 2 * m_max + 4) // m_max) * m_max
        self.buf_len = -(-(grid.size + 2 * self.pad - 1) // m_max) * m_max + 1
        self._rungs_t = torch.tensor(rungs, dtype=torch.float32, device=self.device)
        # Index of the smallest rung ≥ n, for n = 0 … max_half grid points.
        self._rung_of = torch.bucketize(
            torch.arange(self.max_half + 1, dtype=torch.float32, device=self.device), self._rungs_t, out_int32=True
        )
        # Gaussian FWHM² of the grid bin (variance Δ²/12), and the smallest Gaussian FWHM allowed.
        self.bin_fwhm2 = 8 * _LN2 * self.step**2 / 12
        self.min_fwhm = float(min_fwhm_steps) * self.step
        self.bg_basis = torch.as_tensor(_background_basis(instrument, grid), dtype=torch.float32, device=self.device)
        self.bg_basis_t = self.bg_basis.t().contiguous()
        self._bank: torch.Tensor | None = None
        self._ws: dict[str, torch.Tensor] = {}
        self._offset_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        k, m = instrument.polarisation_k, math.cos(math.radians(instrument.monochromator_two_theta_deg)) ** 2
        self._pol = (k * m, 1.0 + k * m)

    # ------------------------------------------------------------------ peaks

    @torch.no_grad()
    def __call__(self, sticks: StickBatch, generator: torch.Generator | None = None):
        aug, dev = self.augment, self.device
        d = sticks.d.to(dev, torch.float32)
        f2m = sticks.f2m.to(dev, torch.float32)
        B = d.shape[0]
        on = aug.enabled
        gen = generator

        def per_pattern(rng, log=False):
            return (_log_uniform if log else _uniform)(rng, (B, 1), gen, dev)

        if on:
            d = d * (1.0 + per_pattern(aug.lattice_strain_frac))
            size_A = 10.0 * per_pattern(aug.crystallite_size_nm, log=True)
            strain = per_pattern(aug.microstrain_frac)
            cag = per_pattern(aug.caglioti_scale)
            zero = per_pattern(aug.zero_shift_deg)
            disp_um = per_pattern(aug.sample_displacement_um)
            jitter = per_pattern(aug.intensity_jitter_rel)
            f2m = f2m * torch.exp(jitter * self._normal(B, f2m.shape[1], gen))
            f2m = f2m * self._texture(B, f2m.shape[1], gen)
            d, f2m = self._add_impurities(d, f2m, gen)
        else:
            size_A = torch.full((B, 1), 10.0 * aug.clean_crystallite_size_nm, device=dev)
            strain = cag = zero = disp_um = None
        if on and aug.other_wavelength_probability > 0:
            f2m = f2m * self._other_wavelength_factor(d, gen)
        # Per pattern: 1 keeps the secondary lines, 0 renders the strongest line alone.
        secondary = None
        if on and aug.monochromatic_probability > 0 and len(self.instrument.wavelengths_A) > 1:
            secondary = (torch.rand((B, 1), generator=gen, device=dev) >= aug.monochromatic_probability).float()

        inst = self.instrument
        U, V, W = inst.caglioti_uvw_deg2
        pol_a, pol_b = self._pol
        deg = 180.0 / math.pi
        exists = (f2m > 0) & (d > 0)
        d_safe = torch.where(exists, d, torch.ones_like(d))
        per_line = []
        primary = int(np.argmax(inst.weights))
        for line, (lam, w) in enumerate(zip(inst.wavelengths_A, inst.weights, strict=True)):
            if secondary is not None and line != primary:
                w = w * secondary
            s = lam / (2.0 * d_safe)
            valid = exists & (s < 1.0)
            theta = torch.asin(s.clamp(max=1.0 - 1e-6))
            sin_t, cos_t = torch.sin(theta), torch.cos(theta)
            tan_t = sin_t / cos_t
            cos2t = 1.0 - 2.0 * sin_t * sin_t
            lp = (1.0 + pol_a * cos2t * cos2t) / (pol_b * sin_t * sin_t * cos_t)
            centre = 2.0 * deg * theta
            g2 = U * tan_t * tan_t + V * tan_t + W
            gam_l = deg * _SCHERRER_K * lam / (size_A * cos_t)
            if on:
                centre = centre + zero + self._displacement_deg(disp_um, sin_t, cos_t)
                g2 = cag * g2
                gam_l = gam_l + (4.0 * deg) * strain * tan_t
            gam_g = torch.clamp_min(g2 + self.bin_fwhm2, self.min_fwhm**2).sqrt()
            area = torch.where(valid, (w * f2m) * lp, torch.zeros_like(f2m))
            per_line.append((centre, area, gam_g, gam_l))
        centre, area, gam_g, gam_l = (torch.cat(t, dim=1) for t in zip(*per_line))
        gam, eta = _tch(gam_g, gam_l)
        y = self._scatter_profiles(centre, area, gam, eta)
        y_max = y.amax(dim=1, keepdim=True).clamp_min(1e-30)
        if not on:
            return y / y_max, torch.ones_like(y)
        # Counts scale (not normalised to max 1 yet): the final normalisation below removes it.
        y = self._background_and_noise(y, y_max, gen)
        mask = self._crop(B, gen)
        y = y.mul_(mask)
        return y.div_(y.amax(dim=1, keepdim=True).clamp_min(1e-30)), mask

    def _lp(self, d: torch.Tensor, lam, k) -> tuple[torch.Tensor, torch.Tensor]:
        """Lorentz–polarisation factor (unnormalised, no monochromator) of sticks d at wavelength lam and
        polarisation k (scalars or (B, 1)), and whether the reflection exists at that wavelength."""
        s = lam / (2.0 * d.clamp_min(1e-6))
        exists = (d > 0) & (s < 1.0)
        sin_t = s.clamp(max=1.0 - 1e-6)
        cos_t = (1.0 - sin_t * sin_t).sqrt()
        cos2t = 1.0 - 2.0 * sin_t * sin_t
        return (1.0 + k * cos2t * cos2t) / ((1.0 + k) * sin_t * sin_t * cos_t), exists

    def _other_wavelength_factor(self, d: torch.Tensor, gen) -> torch.Tensor:
        """Per stick: LP at a random other wavelength over LP at the instrument's, for a random fraction of
        patterns (1 for the others); 0 where the reflection does not exist at the other wavelength."""
        aug, dev, inst = self.augment, self.device, self.instrument
        B = d.shape[0]
        use = torch.rand((B, 1), generator=gen, device=dev) < aug.other_wavelength_probability
        lam = _log_uniform(aug.other_wavelength_A, (B, 1), gen, dev)
        k = _uniform(aug.other_polarisation_k, (B, 1), gen, dev)
        lp_other, exists = self._lp(d, lam, k)
        lp_here, _ = self._lp(d, inst.wavelength_A, inst.polarisation_k)
        factor = torch.where(exists, lp_other / lp_here, torch.zeros_like(d))
        return torch.where(use, factor, torch.ones_like(d))

    def _offsets(self, h: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For a window of ±h points: (2, 2h + 1) rows [1, offset] (float) and the offsets (int64)."""
        got = self._offset_cache.get(h)
        if got is None:
            off = torch.arange(-h, h + 1, device=self.device, dtype=torch.float32)
            got = self._offset_cache[h] = (torch.stack([torch.ones_like(off), off]), off.to(torch.int64))
        return got

    def __getstate__(self):
        # Workspaces are scratch: a renderer sent to a worker process travels without them.
        return {**self.__dict__, "_ws": {}}

    def _workspace(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A float32 scratch tensor kept between calls (uninitialised): a fresh multi-MB allocation costs
        more in page faults on first touch than the arithmetic done in it. Never returned to the caller."""
        buf = self._ws.get(name)
        if buf is None or buf.shape != shape:
            buf = self._ws[name] = torch.empty(shape, device=self.device, dtype=torch.float32)
        return buf

    def _normal(self, B: int, n: int, gen) -> torch.Tensor:
        """(B, n) standard normal draws: rows of a fixed bank of 2²² N(0, 1) values at random offsets, signs.

        ``torch.randn`` costs ~10 ns a value on one CPU core (a whole rendered pattern costs less than
        8,500 of them); copying a random window of a bank costs ~0.3 ns. The bank is a constant of the
        renderer (fixed seed), so the output depends only on the caller's generator; two patterns share
        noise only if their offsets nearly coincide (probability ~n/2²¹ per pair, sign-flipped half the time).
        """
        self._ensure_bank(n)
        z, sign = self._normal_rows(B, n, gen)
        return z.mul_(sign)

    def _ensure_bank(self, n: int) -> None:
        size = max(1 << 22, 4 * n)
        if self._bank is None or self._bank.numel() < size:
            g = torch.Generator(device=self.device).manual_seed(0x5EED)
            self._bank = torch.randn(size, generator=g, device=self.device)

    def _normal_rows(self, B: int, n: int, gen, out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of :meth:`_normal` before their signs, (B, n), and the signs, (B, 1)."""
        bank = self._bank
        off = torch.randint(0, bank.numel() - n + 1, (B,), generator=gen, device=self.device)
        sign = torch.randint(0, 2, (B, 1), generator=gen, device=self.device) * 2.0 - 1.0
        if out is None:
            return bank.unfold(0, n, 1).index_select(0, off), sign
        return torch.index_select(bank.unfold(0, n, 1), 0, off, out=out), sign

    def _displacement_deg(self, disp_um, sin_t, cos_t):
        r_um = self.instrument.goniometer_radius_mm * 1e3
        if self.instrument.geometry == "bragg_brentano":
            return (-2.0 * 180.0 / math.pi / r_um) * disp_um * cos_t
        return (-180.0 / math.pi / r_um) * disp_um * (2.0 * sin_t * cos_t)

    def _lp_primary(self, d):
        """Lorentz–polarisation factor at the primary wavelength (0 where λ/2d ≥ 1 or d ≤ 0)."""
        s = self.instrument.wavelength_A / (2.0 * d.clamp_min(1e-6))
        ok = (d > 0) & (s < 1.0)
        sin_t = s.clamp(max=1.0 - 1e-6)
        cos_t = torch.sqrt(1.0 - sin_t * sin_t)
        cos2t = 1.0 - 2.0 * sin_t * sin_t
        pol_a, pol_b = self._pol
        lp = (1.0 + pol_a * cos2t * cos2t) / (pol_b * sin_t * sin_t * cos_t)
        return torch.where(ok, lp, torch.zeros_like(lp))

    def _texture(self, B, P, gen):
        """March–Dollase factor of a random normal per stick (see the module docstring); 1 if untextured."""
        aug, dev = self.augment, self.device
        r = _log_uniform(aug.march_dollase_r, (B, 1), gen, dev)
        use = torch.rand((B, 1), generator=gen, device=dev) < aug.texture_probability
        r = torch.where(use, r, torch.ones_like(r))
        c2 = torch.rand((B, P), generator=gen, device=dev).square()
        return (r * r * c2 + (1.0 - c2) / r).pow(-1.5)

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
        # Heights relative to the strongest peak *after* Lorentz–polarisation (at the primary λ), so a
        # low-angle impurity is not boosted by 1/sin²θ above the main phase.
        lp = self._lp_primary(d)
        strongest = (f2m * lp).amax(dim=1, keepdim=True) if f2m.shape[1] else torch.zeros((B, 1), device=dev)
        imp = torch.where(slots < n, rel * strongest / self._lp_primary(1.0 / inv_d), torch.zeros_like(rel))
        return torch.cat([d, 1.0 / inv_d], dim=1), torch.cat([f2m, imp], dim=1)

    def _scatter_profiles(self, centre, area, gam, eta):
        """Sum of area-normalised pseudo-Voigts on the grid, (B, N) float32 (intensity per degree).

        A peak of FWHM Γ (g grid points) is evaluated on the coarsest dyadic sub-grid (every m-th point,
        m = 1, 2, 4 … ``max_level``) that still has ``points_per_fwhm`` points across Γ, so a broad
        peak costs as little as a narrow one; the sub-grids are then refined onto the grid by the
        4-point Dubuc–Deslauriers interpolating subdivision (cubic, error O((Γ/m)⁻⁴): < 0.2 % of the
        peak height at 6 points per FWHM).
        """
        B, P = centre.shape
        N = self.grid.numel()
        dev = self.device
        H, pad, F = self.max_half, self.pad, self.buf_len
        pos = (centre - self.t0) / self.step
        keep = (area > 0) & (pos > -H) & (pos < N - 1 + H) & torch.isfinite(pos)
        sel = keep.view(-1).nonzero().squeeze(1)
        if sel.numel() == 0:
            return torch.zeros(B, F, device=dev)[:, pad : pad + N]

        def pick(t):
            return t.reshape(-1).index_select(0, sel)

        g_pts = pick(gam) / self.step  # FWHM in grid points
        e = pick(eta)
        dens = pick(area) * (2.0 / self.step) / g_pts  # 2·area/Γ: density scale per degree
        h_l = dens * e * (1 / math.pi)
        # Gaussian written as h_g2·exp(−ln2(1 + x²)), which reuses 1 + x² of the Lorentzian.
        h_g2 = (2.0 * _GAUSS_X) * dens * (1 - e)
        top = h_l + 0.5 * h_g2  # peak height
        # Level: largest m = 2^k with g/m ≥ points_per_fwhm; then the smallest rung holding the window.
        lvl = torch.floor(torch.log2((g_pts / self.points_per_fwhm).clamp_min(1.0))).clamp(max=len(self.levels) - 1)
        m = torch.exp2(lvl)
        need = torch.clamp(torch.ceil(self.window_fwhm * g_pts / m), max=float(H))
        rung = self._rung_of.index_select(0, need.to(torch.int64))
        key = lvl.to(torch.int32) * len(self.rungs) + rung
        key, order = torch.sort(key, stable=True)
        counts = torch.bincount(key, minlength=len(self.levels) * len(self.rungs)).tolist()
        # Only the levels up to the coarsest one in use get a buffer (and a refinement pass).
        n_lvl = 1 + max(k // len(self.rungs) for k, c in enumerate(counts) if c)
        bufs = [self._workspace(f"level{m}", (B, (F - 1) // m + 1)).zero_() for m in self.levels[:n_lvl]]
        # Everything per peak, once, in group order; the loop below only slices.
        sel = sel.index_select(0, order)
        g_pts, lvl, m, h_l, h_g2, top, rung = (t.index_select(0, order) for t in (g_pts, lvl, m, h_l, h_g2, top, rung))
        pos_m = (pos.view(-1).index_select(0, sel) + pad) / m
        idx0 = torch.round(pos_m)
        b = 2.0 * m / g_pts  # x = 2(2θ − c)/Γ per sub-grid point
        a = (idx0 - pos_m) * b
        half = torch.minimum(self._rungs_t.index_select(0, rung), torch.ceil(H / m))
        xe = half * b - a.abs()  # the nearer window edge in x; the profile is cut there
        # Cut at the window edge, shifted down by the edge value so the profile ends continuously at
        # zero, and rescaled so the peak height stays exact (the cut tails lose ≤ 16 % of a pure
        # Lorentzian's area at ±4 FWHM, nothing of a Gaussian's).
        u_e = 1 + xe * xe
        edge = h_l / u_e + h_g2 * torch.exp(-_LN2 * u_e)
        scale = top / (top - edge).clamp_min(1e-30)
        h_l, h_g2, neg_edge = h_l * scale, h_g2 * scale, -edge * scale
        # In u = √ln2·x the profile is h_g2·exp(−ln2 − u²) + ln2·h_l/(ln2 + u²): one pass fewer per point.
        # u = a + b·offset is one matrix product per chunk, (n, 2) @ (2, window).
        ab = torch.stack([a, b], dim=1).mul_(math.sqrt(_LN2))
        h_l = h_l * -_LN2
        rows = torch.div(sel, P, rounding_mode="floor")
        widths = torch.tensor([bf.shape[1] for bf in bufs], device=dev)
        base = rows * widths.index_select(0, lvl.to(torch.int64)) + idx0.to(torch.int64)
        # Chunks: each group cut into pieces of at most _CHUNK_ELEMENTS points, all sliced in one call per
        # per-peak quantity (per-call dispatch, not arithmetic, dominates small chunks).
        plan, sizes = [], []
        for k, cnt in enumerate(counts):
            if cnt == 0:
                continue
            li, ri = divmod(k, len(self.rungs))
            h = min(self.rungs[ri], -(-H // self.levels[li]))
            n_chunk = max(1, _CHUNK_ELEMENTS // (2 * h + 1))
            for c0 in range(0, cnt, n_chunk):
                plan.append((li, h))
                sizes.append(min(n_chunk, cnt - c0))
        pieces = zip(
            plan, ab.split(sizes), h_g2[:, None].split(sizes), neg_edge[:, None].split(sizes),
            h_l[:, None].split(sizes), base[:, None].split(sizes),
        )
        neg_ln2 = torch.full((), -_LN2, device=dev)
        for (li, h), ab_c, hg_c, ne_c, hl_c, base_c in pieces:
            lin, off_i = self._offsets(h)
            u = torch.mm(ab_c, lin)
            nden = torch.addcmul(neg_ln2, u, u, value=-1.0)  # −ln2·(1 + x²)
            prof = torch.exp(nden).mul_(hg_c).add_(ne_c)
            prof.addcdiv_(hl_c, nden).clamp_min_(0.0)
            bufs[li].view(-1).scatter_add_(0, torch.add(base_c, off_i).view(-1), prof.view(-1))
        # Refine coarse levels onto finer ones, coarsest first.
        for li in range(len(bufs) - 1, 0, -1):
            _refine_add(bufs[li], bufs[li - 1])
        return bufs[0][:, pad : pad + N]

    # ------------------------------------------------------------ background, noise, crop

    def _background_and_noise(self, y, y_max, gen):
        """Counts (any positive scale per pattern) of ``y``/``y_max`` plus background, with counting noise."""
        aug, dev = self.augment, self.device
        B, N = y.shape
        K = self.bg_basis.shape[0]
        # Nonnegative random weights; decays and humps switched on in ~1/3 of patterns each.
        coef = torch.rand((B, K), generator=gen, device=dev)
        coef[:, 5:] *= torch.rand((B, K - 5), generator=gen, device=dev) < 0.3
        # linear() with the basis stored (N, K) runs ~3× faster on CPU than coef @ basis (K = 12).
        bg = torch.nn.functional.linear(coef, self.bg_basis_t)
        level = _uniform(aug.background_rel, (B, 1), gen, dev) / bg.amax(dim=1, keepdim=True).clamp_min(1e-6)
        counts = _log_uniform(aug.peak_counts, (B, 1), gen, dev)
        sigma = _uniform(aug.gaussian_noise_rel, (B, 1), gen, dev) * counts
        s2 = sigma * sigma
        if aug.poisson_exact:
            lam = torch.mul(y, counts / y_max).addcmul_(bg, level * counts)
            x = torch.poisson(lam, generator=gen)
            x = x + sigma * torch.randn(x.shape, generator=gen, device=dev)
        else:
            self._ensure_bank(N)
            z, sign = self._normal_rows(B, N, gen, out=self._workspace("normal", (B, N)))
            # λ + σ² + 3/8, with λ = counts · (y/y_max + level · bg).
            x = torch.addcmul(s2 + 0.375, y, counts / y_max).addcmul_(bg, level * counts)
            # Clamped: float rounding leaves profile tails a hair below 0, which at 1e9 counts is < −3/8.
            x = x.clamp_min_(0.0).sqrt_().addcmul_(z, 0.5 * sign).square_().sub_(s2 + 0.625)
        return x.clamp_min_(0.0)

    def _crop(self, B, gen):
        aug, dev = self.augment, self.device
        N = self.grid.numel()
        r = torch.rand((B, 4), generator=gen, device=dev)
        if aug.crop_probability <= 0:
            return torch.ones((B, N), device=dev)
        low = torch.where(r[:, :1] < aug.crop_probability / 2, (r[:, 2:3] * aug.crop_max_fraction * N).floor(), 0.0)
        high = torch.where(r[:, 1:2] < aug.crop_probability / 2, N - (r[:, 3:4] * aug.crop_max_fraction * N).floor(), float(N))
        # low ≤ i < high ⇔ |i − c| < r with c = (low + high − 1)/2, r = (high − low)/2 (all multiples of ½,
        # exact in float32); lt_ writes 1.0/0.0 in place, so the mask is the only (B, N) allocation.
        pos = torch.arange(N, device=dev, dtype=torch.float32)
        return torch.sub(pos, 0.5 * (low + high - 1.0)).abs_().lt_(0.5 * (high - low))


def _refine_add(coarse: torch.Tensor, fine: torch.Tensor) -> None:
    """fine += coarse interpolated onto a grid twice as dense (4-point Dubuc–Deslauriers subdivision).

    coarse has n points, fine 2n − 1; the odd fine points get (−c₋₁ + 9c₀ + 9c₁ − c₂)/16, the two outermost
    (in the padding) the linear mean.
    """
    fine[:, 0::2] += coarse
    odd = fine[:, 1::2]
    mid = coarse[:, :-1] + coarse[:, 1:]
    odd[:, 0] += 0.5 * mid[:, 0]
    odd[:, -1] += 0.5 * mid[:, -1]
    # (9·mid − outer)/16 = lerp(outer, mid, 9/8)/2: one pass fewer than scaling each.
    odd[:, 1:-1].add_(torch.lerp(coarse[:, :-3] + coarse[:, 3:], mid[:, 1:-1], 9.0 / 8.0), alpha=0.5)


def _tch(gam_g: torch.Tensor, gam_l: torch.Tensor):
    """Thompson–Cox–Hastings pseudo-Voigt: total FWHM and Lorentzian fraction η.

    Written with operations torch tensors and numpy arrays share, so the mixture fit
    (:mod:`xrdid.mixtures.profile`) uses this one implementation on numpy arrays.
    """
    g, l = gam_g, gam_l
    g2, l2 = g * g, l * l
    gam = (g2 * g2 * g + 2.69269 * g2 * g2 * l + 2.42843 * g2 * g * l2 + 4.47163 * g2 * l2 * l + 0.07842 * g * l2 * l2 + l2 * l2 * l) ** 0.2
    q = l / gam
    eta = (1.36603 * q - 0.47719 * q * q + 0.11116 * q * q * q).clip(0, 1)
    return gam, eta
