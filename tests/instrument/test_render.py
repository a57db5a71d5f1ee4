"""Physics and robustness of the renderer: Bragg positions, Kα2, LP areas, Caglioti widths, shifts,
crops, determinism, normalisation, edge cases. Tiny structures in code, CPU, seeded."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from xrdid.instrument import PRESETS, Augment, Instrument, Renderer, StickBatch, get_instrument
from xrdid.instrument.presets import CU_KA1_A, CU_KA2_A, HC_KEV_A

NACL_A = 5.6402  # Å, rock salt
SI_A = 5.4309  # Å, diamond cubic


def cubic_d(a, hkls):
    return [a / math.sqrt(h * h + k * k + l * l) for h, k, l in hkls]


NACL_HKL = [(1, 1, 1), (2, 0, 0), (2, 2, 0), (3, 1, 1), (2, 2, 2), (4, 0, 0)]
SI_HKL = [(1, 1, 1), (2, 2, 0), (3, 1, 1), (4, 0, 0)]


def sticks(d, f=None):
    d = torch.tensor([d], dtype=torch.float32)
    f = torch.ones_like(d) if f is None else torch.tensor([f], dtype=torch.float32)
    return StickBatch(d, f)


def single_line(preset: str, **kw) -> Instrument:
    inst = get_instrument(preset)
    return dataclasses.replace(inst, wavelengths_A=inst.wavelengths_A[:1], weights=(1.0,), **kw)


def local_maxima(y: np.ndarray, grid: np.ndarray, rel: float = 0.02) -> np.ndarray:
    i = np.where((y[1:-1] > y[:-2]) & (y[1:-1] >= y[2:]) & (y[1:-1] > rel))[0] + 1
    # Parabolic refinement of each maximum.
    num = y[i - 1] - y[i + 1]
    den = y[i - 1] - 2 * y[i] + y[i + 1]
    return grid[i] + 0.5 * num / den * (grid[1] - grid[0])


def bragg(lam, d):
    return np.degrees(2 * np.arcsin(lam / (2 * np.asarray(d))))


@pytest.mark.parametrize(
    "inst,a,hkls",
    [
        (single_line("cu", n_points=8500), NACL_A, NACL_HKL),
        (single_line("cu", n_points=8500), SI_A, SI_HKL),
        (dataclasses.replace(PRESETS["mars"], n_points=8500), NACL_A, NACL_HKL),
        (dataclasses.replace(PRESETS["mars"], n_points=8500), SI_A, SI_HKL),
    ],
)
def test_peak_positions_follow_bragg(inst, a, hkls):
    d = cubic_d(a, hkls)
    y, mask = Renderer(inst)(sticks(d))
    found = local_maxima(y[0].numpy(), inst.grid())
    expected = bragg(inst.wavelengths_A[0], d)
    expected = expected[expected < inst.two_theta_max_deg]
    assert len(found) == len(expected)
    np.testing.assert_allclose(np.sort(found), np.sort(expected), atol=0.004)
    assert torch.all(mask == 1)


def test_mars_wavelength():
    assert PRESETS["mars"].wavelengths_A[0] == pytest.approx(HC_KEV_A / 16.99) == pytest.approx(0.72975, abs=1e-4)


def test_kalpha2_position_and_half_intensity():
    inst = dataclasses.replace(PRESETS["cu"], n_points=8500)
    d = cubic_d(SI_A, [(4, 0, 0)])  # 2θ ≈ 69°: Kα1 and Kα2 resolved
    y, _ = Renderer(inst)(sticks(d))
    grid = inst.grid()
    y = y[0].numpy()
    t1, t2 = bragg(CU_KA1_A, d)[0], bragg(CU_KA2_A, d)[0]
    i1, i2 = np.argmin(abs(grid - t1)), np.argmin(abs(grid - t2))
    found = local_maxima(y, grid, rel=0.1)
    assert len(found) == 2
    np.testing.assert_allclose(found, [t1, t2], atol=0.004)
    # Separated by ~4 FWHM: heights in the weight ratio within the small overlap.
    assert y[i2] / y[i1] == pytest.approx(0.5, abs=0.03)


def lp(two_theta_deg, k=1.0, mono_deg=0.0):
    t = np.radians(two_theta_deg)
    m = np.cos(np.radians(mono_deg)) ** 2
    return (1 + k * m * np.cos(t) ** 2) / ((1 + k * m) * np.sin(t / 2) ** 2 * np.cos(t / 2))


@pytest.mark.parametrize("preset", ["cu", "cu_mono", "mars"])
def test_peak_area_proportional_to_f2m_lp(preset):
    # Gaussian-dominated peaks (large crystallites): the window holds the whole area.
    inst = single_line(preset, n_points=8500)
    aug = Augment(enabled=False, clean_crystallite_size_nm=5000.0)
    d = np.array([4.0, 2.5, 1.6, 1.15]) * (inst.wavelengths_A[0] / CU_KA1_A)
    f = [1.0, 2.0, 0.7, 3.0]
    y, _ = Renderer(inst, aug)(sticks(d.tolist(), f))
    grid = inst.grid()
    y = y[0].numpy()
    tt = bragg(inst.wavelengths_A[0], d)
    areas = np.array([y[abs(grid - t) < 0.5].sum() for t in tt])
    expected = np.array(f) * lp(tt, inst.polarisation_k, inst.monochromator_two_theta_deg)
    np.testing.assert_allclose(areas / areas[0], expected / expected[0], rtol=0.01)


def fwhm_of(y, grid):
    i = int(np.argmax(y))
    half = y[i] / 2
    lo = i
    while y[lo] > half:
        lo -= 1
    hi = i
    while y[hi] > half:
        hi += 1
    # Linear interpolation of the half-maximum crossings.
    x_lo = grid[lo] + (half - y[lo]) / (y[lo + 1] - y[lo]) * (grid[1] - grid[0])
    x_hi = grid[hi - 1] + (y[hi - 1] - half) / (y[hi - 1] - y[hi]) * (grid[1] - grid[0])
    return x_hi - x_lo


@pytest.mark.parametrize("two_theta", [20.0, 45.0, 80.0])
def test_clean_fwhm_matches_caglioti(two_theta):
    inst = single_line("cu", n_points=8500, caglioti_uvw_deg2=(0.02, -0.01, 0.01))
    aug = Augment(enabled=False, clean_crystallite_size_nm=1e6)  # no Lorentzian size term
    r = Renderer(inst, aug)
    d = CU_KA1_A / (2 * math.sin(math.radians(two_theta / 2)))
    y, _ = r(sticks([d]))
    theta = math.radians(two_theta / 2)
    U, V, W = inst.caglioti_uvw_deg2
    cag = math.sqrt(U * math.tan(theta) ** 2 + V * math.tan(theta) + W)
    expected = math.sqrt(cag**2 + r.bin_fwhm2)  # plus the grid bin, 0.2 % here
    assert fwhm_of(y[0].numpy(), inst.grid()) == pytest.approx(expected, rel=0.01)


def test_broad_peaks_on_sub_grids_match_fine_evaluation():
    inst = single_line("cu", n_points=8500)
    aug = Augment(enabled=False, clean_crystallite_size_nm=20.0)  # FWHM ~0.4–0.6°: sub-grids used
    s = sticks(cubic_d(NACL_A, NACL_HKL))
    y, _ = Renderer(inst, aug)(s)
    y_fine, _ = Renderer(inst, aug, max_level=1)(s)
    assert float((y - y_fine).abs().max()) < 3e-3


def test_zero_shift_moves_peaks_by_the_shift():
    inst = single_line("cu", n_points=8500)
    d = cubic_d(SI_A, SI_HKL)
    quiet = {
        "lattice_strain_frac": (0, 0), "crystallite_size_nm": (150, 150), "microstrain_frac": (0, 0), "caglioti_scale": (1, 1),
        "sample_displacement_um": (0, 0), "intensity_jitter_rel": (0, 0), "texture_probability": 0.0, "impurity_peaks": (0, 0),
        "background_rel": (0, 0), "peak_counts": (1e9, 1e9), "gaussian_noise_rel": (0, 0), "crop_probability": 0.0,
    }
    y, _ = Renderer(inst, Augment(zero_shift_deg=(0.2, 0.2), **quiet))(sticks(d), torch.Generator().manual_seed(0))
    found = local_maxima(y[0].numpy(), inst.grid(), rel=0.05)
    np.testing.assert_allclose(np.sort(found), np.sort(bragg(CU_KA1_A, d)) + 0.2, atol=0.005)


def test_displacement_shift_follows_geometry():
    inst = single_line("cu", n_points=8500)
    r = Renderer(inst)
    th = torch.tensor([[math.radians(10.0), math.radians(40.0)]])
    s = r._displacement_deg(torch.tensor([[100.0]]), torch.sin(th), torch.cos(th))
    expected = -np.degrees(2 * 100e-3 / inst.goniometer_radius_mm * np.cos(th.numpy()))
    np.testing.assert_allclose(s.numpy(), expected, rtol=1e-5)


def test_crop_masks_are_zero_and_pattern_zero_there():
    inst = dataclasses.replace(PRESETS["cu"], n_points=2048)
    aug = Augment(crop_probability=1.0, crop_max_fraction=0.4)
    d = torch.tensor([cubic_d(NACL_A, NACL_HKL)] * 32)
    y, mask = Renderer(inst, aug)(StickBatch(d, torch.ones_like(d)), torch.Generator().manual_seed(1))
    assert (mask == 0).any(dim=1).float().mean() > 0.5
    assert torch.all(y[mask == 0] == 0)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    # Covered points form one contiguous range per pattern.
    for row in mask:
        idx = torch.nonzero(row).squeeze(1)
        assert idx.numel() > 0 and idx[-1] - idx[0] + 1 == idx.numel()


def test_deterministic_with_seeded_generator_and_normalised():
    inst = dataclasses.replace(PRESETS["mars"], n_points=2048)
    rng = np.random.default_rng(0)
    d = torch.tensor(rng.uniform(0.6, 6.0, (16, 40)), dtype=torch.float32)
    f = torch.tensor(rng.uniform(0, 1, (16, 40)), dtype=torch.float32)
    s = StickBatch(d, f)
    y1, m1 = Renderer(inst, Augment())(s, torch.Generator().manual_seed(3))
    y2, m2 = Renderer(inst, Augment())(s, torch.Generator().manual_seed(3))
    y3, _ = Renderer(inst, Augment())(s, torch.Generator().manual_seed(4))
    assert torch.equal(y1, y2) and torch.equal(m1, m2)
    assert not torch.equal(y1, y3)
    assert y1.dtype == torch.float32 and y1.shape == (16, 2048)
    np.testing.assert_allclose(y1.amax(dim=1).numpy(), 1.0, rtol=1e-6)
    assert torch.all(y1 >= 0)


@pytest.mark.parametrize("augment", [Augment(enabled=False), Augment()])
def test_edge_cases_give_no_nan(augment):
    inst = dataclasses.replace(PRESETS["cu"], n_points=1024)
    lam = inst.wavelengths_A[0]
    d = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.0],  # empty row
            [lam / 2 * 0.999, lam / 2 * 0.5, 0.0, 0.0],  # d below λ/2 (no reflection) and barely above
            [100.0, 50.0, 1.0e4, 0.0],  # far below 2θ_min
            [0.3, 0.2, 3.0, 0.0],  # beyond 2θ_max, one real peak
        ]
    )
    f = torch.tensor([[0.0, 0, 0, 0], [1.0, 1, 0, 0], [1.0, 1, 1, 0], [1.0, 1, 1, 0]])
    y, mask = Renderer(inst, augment)(StickBatch(d, f), torch.Generator().manual_seed(0))
    assert torch.isfinite(y).all() and torch.isfinite(mask).all()
    if not augment.enabled:
        assert torch.all(y[0] == 0) and torch.all(y[2] == 0)
        assert float(y[3].max()) == pytest.approx(1.0)
    # No sticks at all.
    y0, _m0 = Renderer(inst, augment)(StickBatch(torch.zeros(2, 0), torch.zeros(2, 0)), torch.Generator().manual_seed(0))
    assert y0.shape == (2, 1024) and torch.isfinite(y0).all()


def test_texture_factor_mean_one_and_augmented_batch_renders():
    inst = dataclasses.replace(PRESETS["cu"], n_points=1024)
    r = Renderer(inst, Augment(texture_probability=1.0, march_dollase_r=(0.6, 0.6)))
    t = r._texture(4, 20000, torch.Generator().manual_seed(0))
    assert float(t.mean()) == pytest.approx(1.0, abs=0.02)
    assert float(t.max()) <= 0.6**-3 + 1e-3 and float(t.min()) >= 0.6**1.5 - 1e-3


def test_instrument_round_trip_presets_and_custom():
    for inst in PRESETS.values():
        assert Instrument.from_dict(inst.to_dict()) == inst
        assert inst.d_min_A == pytest.approx(min(inst.wavelengths_A) / (2 * math.sin(math.radians(45))))
    custom = get_instrument({"preset": "cu", "wavelength_A": 1.0, "n_points": 512, "geometry": "debye_scherrer"})
    assert custom.wavelengths_A == (1.0,) and custom.weights == (1.0,) and custom.grid().shape == (512,)
    with pytest.raises(ValueError):
        get_instrument({"preset": "cu", "wavelengths_A": [1.0, 1.1], "weights": [1.0]})
    with pytest.raises(ValueError):
        get_instrument("nope")
    assert Augment.from_dict({"zero_shift_deg": [-0.1, 0.1]}).zero_shift_deg == (-0.1, 0.1)
    with pytest.raises(ValueError):
        Augment.from_dict({"bogus": 1})


def random_sticks(inst: Instrument, n: int, batch: int, seed: int) -> StickBatch:
    """n sticks per pattern with a crystal's density of reflections (∝ s² in s = 1/d) over the grid's range
    and log-normal |F|²m, so that peaks overlap as they do at high angle."""
    rng = np.random.default_rng(seed)
    lam = min(inst.wavelengths_A)
    s_lo, s_hi = (2 * math.sin(math.radians(t / 2)) / lam for t in (inst.two_theta_min_deg, inst.two_theta_max_deg))
    s = (s_lo**3 + rng.uniform(0, 1, (batch, n)) * (s_hi**3 - s_lo**3)) ** (1 / 3)
    f = rng.lognormal(0.0, 1.5, (batch, n))
    return StickBatch(torch.tensor(1 / s, dtype=torch.float32), torch.tensor(f, dtype=torch.float32))


def tch_published(gam_g, gam_l):
    """Thompson, Cox & Hastings, J. Appl. Cryst. 20 (1987) 79, eqs. (3)-(4), coefficients as printed:
    the pseudo-Voigt FWHM Γ and Lorentzian fraction η of a Voigt of Gaussian FWHM Γ_G and Lorentzian
    FWHM Γ_L. Written out here, apart from the renderer's own code, so that a changed coefficient fails."""
    g, l = gam_g, gam_l
    gam = (g**5 + 2.69269 * g**4 * l + 2.42843 * g**3 * l**2 + 4.47163 * g**2 * l**3 + 0.07842 * g * l**4 + l**5) ** 0.2
    q = l / gam
    return gam, 1.36603 * q - 0.47719 * q**2 + 0.11116 * q**3


def pseudo_voigt(x, centre, gam, eta):
    """Area-normalised pseudo-Voigt of FWHM ``gam`` (per unit x)."""
    u = 2 * (x - centre) / gam
    lorentz = 2 / (math.pi * gam) / (1 + u * u)
    gauss = 2 * math.sqrt(math.log(2) / math.pi) / gam * np.exp(-math.log(2) * u * u)
    return eta * lorentz + (1 - eta) * gauss


# (2θ, Caglioti W in deg², crystallite size in nm, microstrain): from the Gaussian limit (η ≈ 0.02)
# through mixes (η ≈ 0.25, 0.45, 0.85; one Lorentzian from microstrain alone, one from both) to the
# Lorentzian limit (η ≈ 0.99).
PROFILE_MIXES = [
    (30.0, 0.010, 5000.0, 0.0),
    (40.0, 0.010, 420.0, 0.0),
    (40.0, 0.010, 170.0, 0.0),
    (70.0, 0.010, 5000.0, 0.0003),
    (85.0, 0.006, 150.0, 0.0006),
    (45.0, 0.001, 25.0, 0.0),
]


def one_peak(two_theta, w_deg2, size_nm, strain):
    """One Cu Kα1 reflection at ``two_theta`` through the augmented (training) path, every random draw
    pinned (no shifts, texture, background or crop; 1e12 counts, so noise ~1e-6): (grid, y, Γ_G, Γ_L)."""
    inst = single_line("cu", n_points=8501, caglioti_uvw_deg2=(0.0, 0.0, w_deg2))
    aug = Augment(
        lattice_strain_frac=(0.0, 0.0), crystallite_size_nm=(size_nm, size_nm), microstrain_frac=(strain, strain),
        caglioti_scale=(1.0, 1.0), zero_shift_deg=(0.0, 0.0), sample_displacement_um=(0.0, 0.0),
        intensity_jitter_rel=(0.0, 0.0), texture_probability=0.0, impurity_peaks=(0, 0),
        background_rel=(0.0, 0.0), peak_counts=(1e12, 1e12), gaussian_noise_rel=(0.0, 0.0), crop_probability=0.0,
    )
    # Windows of ±100 FWHM (the cut tails change the shape by < 3e-5) and every point evaluated exactly.
    r = Renderer(inst, aug, window_fwhm=100.0, max_half_window_deg=30.0, max_level=1)
    lam = inst.wavelengths_A[0]
    d = lam / (2 * math.sin(math.radians(two_theta / 2)))
    y, _ = r(sticks([d]), torch.Generator().manual_seed(0))
    theta = math.radians(two_theta / 2)
    step = inst.grid()[1] - inst.grid()[0]
    gam_g = math.sqrt(w_deg2 + 8 * math.log(2) * step**2 / 12)  # Caglioti W plus the grid bin's variance
    gam_l = math.degrees(0.9 * lam / (10 * size_nm * math.cos(theta)) + 4 * strain * math.tan(theta))
    return inst.grid(), y[0].double().numpy(), gam_g, gam_l


def misfit(y, ref, core=None):
    """Largest difference, relative to the peak, after the best scale (the pattern is normalised to 1).
    With ``core`` (a mask), only there and after the best scale, offset and shift: the renderer cuts
    each peak at its window's edge and subtracts the edge value, a constant under the peak, and places
    it in float32 (2θ within ~1e-5°)."""
    if core is None:
        scale = float(y @ ref / (ref @ ref))
        return float(np.abs(y - scale * ref).max() / y.max())
    a = np.stack([ref[core], np.ones(int(core.sum())), np.gradient(ref)[core]], axis=1)
    coef, *_ = np.linalg.lstsq(a, y[core], rcond=None)
    return float(np.abs(y[core] - a @ coef).max() / y.max())


@pytest.mark.parametrize("two_theta, w_deg2, size_nm, strain", PROFILE_MIXES)
def test_profile_is_the_published_tch_pseudo_voigt(two_theta, w_deg2, size_nm, strain):
    grid, y, gam_g, gam_l = one_peak(two_theta, w_deg2, size_nm, strain)
    gam, eta = tch_published(gam_g, gam_l)
    assert 0.0 < eta < 1.0
    ref = pseudo_voigt(grid, two_theta, gam, eta)
    # Measured ≤ 7e-5 (the cut tails), and within ±3 FWHM, edge value and float32 shift removed, ≤ 3e-6.
    assert misfit(y, ref) < 1.5e-4
    assert misfit(y, ref, core=np.abs(grid - two_theta) <= 3 * gam) < 1e-5


@pytest.mark.parametrize("two_theta, w_deg2, size_nm, strain", PROFILE_MIXES)
def test_profile_is_close_to_the_exact_voigt(two_theta, w_deg2, size_nm, strain):
    """Against scipy's Voigt: the pseudo-Voigt is an approximation (its FWHM within 0.5 % of the Voigt's,
    its shape within ~1.3 % of the peak height, TCH 1987), so this is a looser, fully independent bound."""
    from scipy.special import voigt_profile

    grid, y, gam_g, gam_l = one_peak(two_theta, w_deg2, size_nm, strain)
    sigma = gam_g / (2 * math.sqrt(2 * math.log(2)))
    assert misfit(y, voigt_profile(grid - two_theta, sigma, gam_l / 2)) < 0.015
    fine = np.linspace(two_theta - 1.0, two_theta + 1.0, 200_001)
    v = voigt_profile(fine - two_theta, sigma, gam_l / 2)
    voigt_fwhm = np.ptp(fine[v >= v.max() / 2])
    assert fwhm_of(y, grid) == pytest.approx(voigt_fwhm, rel=0.006)


def dense_reference(r: Renderer, s: StickBatch, size_nm: float) -> torch.Tensor:
    """Every peak on every grid point (float64, no window, no sub-grid), from the module docstring's physics;
    normalised to a maximum of 1 per pattern."""
    inst = r.instrument
    grid = torch.as_tensor(inst.grid(), dtype=torch.float64)
    d, f = s.d.double(), s.f2m.double()
    U, V, W = inst.caglioti_uvw_deg2
    k = inst.polarisation_k * math.cos(math.radians(inst.monochromator_two_theta_deg)) ** 2
    y = torch.zeros(d.shape[0], grid.numel(), dtype=torch.float64)
    for lam, w in zip(inst.wavelengths_A, inst.weights):
        th = torch.asin(lam / (2 * d))
        lp = (1 + k * torch.cos(2 * th) ** 2) / ((1 + k) * torch.sin(th) ** 2 * torch.cos(th))
        t = torch.tan(th)
        gam_g = (U * t * t + V * t + W + r.bin_fwhm2).clamp_min(r.min_fwhm**2).sqrt()
        gam_l = torch.rad2deg(0.9 * lam / (10 * size_nm * torch.cos(th)))
        gam, eta = tch_published(gam_g, gam_l)
        x = 2 * (grid - torch.rad2deg(2 * th)[..., None]) / gam[..., None]
        e = eta[..., None]
        pv = e / (math.pi * (1 + x * x)) + (1 - e) * math.sqrt(math.log(2) / math.pi) * torch.exp(-math.log(2) * x * x)
        y += ((w * f * lp * 2 / gam)[..., None] * pv).sum(1)
    return (y / y.amax(1, keepdim=True)).float()


@pytest.mark.parametrize("preset", ["cu", "mars"])
def test_fast_render_matches_dense_reference(preset):
    # 300 overlapping sticks per pattern; with windows of ±40 FWHM the only approximations left are the
    # sub-grids with their cubic refinement and the window scatter: within 1e-3 of the maximum (measured
    # 2.4e-4 for cu, 1.7e-4 for mars; ≤ 3e-4 over other seeds and 8,500 points).
    inst = dataclasses.replace(PRESETS[preset], n_points=4096)
    s = random_sticks(inst, 300, 2, seed=0)
    aug = Augment(enabled=False, clean_crystallite_size_nm=150.0)
    wide = Renderer(inst, aug, window_fwhm=40.0, max_half_window_deg=45.0)
    y, _ = wide(s)
    assert float((y - dense_reference(wide, s, 150.0)).abs().max()) < 1e-3
    # The default ±4 FWHM windows cut Lorentzian tails (edge value 1/65 of a pure Lorentzian's height):
    # 1.2e-2 (cu) and 6.4e-3 (mars) of the maximum here, ≤ 1.5e-2 over other seeds and 8,500 points.
    r = Renderer(inst, aug)
    y, _ = r(s)
    assert float((y - dense_reference(r, s, 150.0)).abs().max()) < 2.5e-2


def test_renderer_reuses_its_scratch_buffers_safely():
    import pickle

    inst = dataclasses.replace(PRESETS["mars"], n_points=2048)
    big, small = random_sticks(inst, 60, 8, seed=1), random_sticks(inst, 40, 3, seed=2)
    r = Renderer(inst, Augment())
    first, _ = r(big, torch.Generator().manual_seed(5))
    keep = first.clone()
    r(small, torch.Generator().manual_seed(6))  # other shapes: buffers reallocated
    again, _ = r(big, torch.Generator().manual_seed(5))
    fresh, _ = Renderer(inst, Augment())(big, torch.Generator().manual_seed(5))
    assert torch.equal(again, fresh) and torch.equal(first, keep)  # outputs never alias the scratch buffers
    assert pickle.loads(pickle.dumps(r))._ws == {}
