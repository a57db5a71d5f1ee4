r"""Instrument descriptions: wavelength(s), 2θ grid, resolution and geometry.

Units: wavelengths in Å, angles in degrees (2θ), Caglioti U, V, W in deg², so that the Gaussian
instrumental FWHM is :math:`Γ_G = \sqrt{U\tan^2θ + V\tanθ + W}` degrees 2θ (Caglioti, Paoletti & Ricci,
Nucl. Instrum. 3 (1958) 223).

Lorentz–polarisation. For a powder (Bragg–Brentano or Debye–Scherrer, the ring integrated across its
whole height) the Lorentz factor is :math:`1/(\sin^2θ\cosθ)`. The polarisation factor is

.. math:: P(2θ) = \frac{1 + k\cos^2 2θ_M \cos^2 2θ}{1 + k\cos^2 2θ_M}

with ``polarisation_k`` k and ``monochromator_two_theta_deg`` 2θ_M (0 without a monochromator):

* lab tube, unpolarised: k = 1; with a graphite(002) diffracted-beam monochromator for Cu Kα,
  2θ_M = 26.57°; Ge(111) Johansson incident-beam monochromator, 2θ_M = 27.30°
  (International Tables for Crystallography Vol. C, §6.2.2);
* synchrotron: a fraction p of the beam polarised perpendicular to the scattering plane (σ) gives
  :math:`P ∝ p + (1-p)\cos^2 2θ`, i.e. k = (1 − p)/p and 2θ_M = 0. A bending magnet seen on axis is
  ~90–95 % linearly polarised in the orbit (horizontal) plane, and a diffractometer scanning 2θ in the
  vertical plane sees it as σ: k ≈ 0.05–0.1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

# Planck constant × c in keV·Å: λ[Å] = 12.398 / E[keV].
HC_KEV_A = 12.398419843320026

# Cu Kα1, Kα2 (Hölzer et al., Phys. Rev. A 56 (1997) 4554); the Kα2/Kα1 intensity ratio is ~0.5.
CU_KA1_A = 1.5405929
CU_KA2_A = 1.5444140

GEOMETRIES = ("bragg_brentano", "debye_scherrer")


@dataclass(frozen=True)
class Instrument:
    name: str
    wavelengths_A: tuple[float, ...]
    # Relative weights of the lines in wavelengths_A (Kα1, Kα2 …).
    weights: tuple[float, ...] = (1.0,)
    two_theta_min_deg: float = 5.0
    two_theta_max_deg: float = 90.0
    n_points: int = 4096
    caglioti_uvw_deg2: tuple[float, float, float] = (0.004, -0.002, 0.002)
    # Polarisation parameter k of (1 + k cos²2θ_M cos²2θ) / (1 + k cos²2θ_M): 1 for a tube, ≈0.05 for a
    # σ-polarised synchrotron beam (see the module docstring).
    polarisation_k: float = 1.0
    # Monochromator Bragg angle 2θ_M in degrees (0: none).
    monochromator_two_theta_deg: float = 0.0
    # "bragg_brentano" (flat plate, reflection) or "debye_scherrer" (capillary, transmission): decides how a
    # sample displacement shifts peaks.
    geometry: str = "bragg_brentano"
    # Sample-to-detector (goniometer) radius in mm, for the displacement shift.
    goniometer_radius_mm: float = 240.0
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if len(self.wavelengths_A) == 0 or len(self.wavelengths_A) != len(self.weights):
            raise ValueError(f"instrument {self.name!r}: need one weight per wavelength, got {self.wavelengths_A} and {self.weights}")
        if min(self.wavelengths_A) <= 0 or min(self.weights) < 0:
            raise ValueError(f"instrument {self.name!r}: wavelengths must be > 0 and weights ≥ 0")
        if not 0 <= self.two_theta_min_deg < self.two_theta_max_deg < 180:
            raise ValueError(f"instrument {self.name!r}: need 0 ≤ two_theta_min_deg < two_theta_max_deg < 180")
        if self.n_points < 2:
            raise ValueError(f"instrument {self.name!r}: n_points must be ≥ 2")
        if self.geometry not in GEOMETRIES:
            raise ValueError(f"instrument {self.name!r}: geometry must be one of {', '.join(GEOMETRIES)}")

    @property
    def wavelength_A(self) -> float:
        """The primary (strongest) wavelength."""
        return self.wavelengths_A[int(np.argmax(self.weights))]

    def grid(self) -> np.ndarray:
        """The model's 2θ grid in degrees (float64)."""
        return np.linspace(self.two_theta_min_deg, self.two_theta_max_deg, self.n_points)

    @property
    def step_deg(self) -> float:
        return (self.two_theta_max_deg - self.two_theta_min_deg) / (self.n_points - 1)

    @property
    def d_min_A(self) -> float:
        """Smallest d-spacing reached on the grid by the shortest wavelength."""
        return min(self.wavelengths_A) / (2.0 * np.sin(np.radians(self.two_theta_max_deg) / 2.0))

    def fwhm_deg(self, two_theta_deg) -> np.ndarray:
        """Instrumental (Caglioti) Gaussian FWHM in degrees at ``two_theta_deg``."""
        U, V, W = self.caglioti_uvw_deg2
        t = np.tan(np.radians(np.asarray(two_theta_deg, dtype=float)) / 2.0)
        return np.sqrt(np.maximum(U * t * t + V * t + W, 0.0))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("extra")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Instrument:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown instrument parameter(s): {', '.join(sorted(unknown))}")
        d = dict(d)
        for key in ("wavelengths_A", "weights", "caglioti_uvw_deg2"):
            if key in d:
                d[key] = tuple(float(v) for v in np.atleast_1d(d[key]))
        return cls(**d)


PRESETS: dict[str, Instrument] = {
    # SOLEIL MARS (Multi-Analyses on Radioactive Samples, bending-magnet source, Si(111) double-crystal
    # monochromator), transmission powder diffraction on capillaries (Debye–Scherrer) at 16.99 keV,
    # λ = 12.3984/16.99 = 0.72975 Å, 2θ 5–90°.
    # Resolution (estimates, to be replaced by a LaB6 / NIST SRM 660 Caglioti fit from the beamline):
    #   U: Si(111) bandwidth Δλ/λ ≈ 1.4e-4 broadens by 2 tanθ Δλ/λ rad = 0.016° tanθ → U ≈ 0.016² + the
    #      beam divergence, ≈ 0.0008 deg²;
    #   W: a 0.3–0.5 mm capillary and a pixel detector (~0.1–0.2 mm pixels) at ~0.5–0.7 m subtend ~0.03°,
    #      so W ≈ 0.03² = 0.0009 deg²; V small and negative as usual.
    # FWHM ≈ 0.03° at low angle, 0.036° at 90°: an area-detector station, not an analyser-crystal one
    # (see "mars_hr"). Polarisation: σ geometry, ~95 % polarised → k ≈ 0.05.
    "mars": Instrument(
        name="mars",
        wavelengths_A=(HC_KEV_A / 16.99,),
        two_theta_min_deg=5.0,
        two_theta_max_deg=90.0,
        caglioti_uvw_deg2=(0.0008, -0.0004, 0.0009),
        polarisation_k=0.05,
        geometry="debye_scherrer",
        goniometer_radius_mm=500.0,
    ),
    # MARS high-resolution station (analyser crystal in front of the detector): the analyser removes the
    # sample-size and pixel terms, leaving the monochromator bandwidth and the beam divergence, FWHM
    # ≈ 0.01° (cf. ESRF BM16/ID22, Fitch, J. Res. NIST 109 (2004) 133). On a 4,096-point 5–90° grid
    # (0.021° steps) such peaks are widened to the grid's own resolution (Renderer.min_fwhm_steps).
    "mars_hr": Instrument(
        name="mars_hr",
        wavelengths_A=(HC_KEV_A / 16.99,),
        two_theta_min_deg=5.0,
        two_theta_max_deg=90.0,
        caglioti_uvw_deg2=(0.0003, -0.0001, 0.0001),
        polarisation_k=0.05,
        geometry="debye_scherrer",
        goniometer_radius_mm=760.0,
    ),
    # Laboratory Bragg–Brentano diffractometer, Cu tube with Ni filter (no monochromator), Kα1/Kα2 doublet
    # with intensity ratio 0.5. U, V, W give Γ_G ≈ 0.042° at 2θ = 30° and 0.063° at 90°, the range of
    # modern θ–θ instruments with a strip detector measuring LaB6 (NIST SRM 660 series certificates
    # report ≈ 0.04–0.07° in this range). Goniometer radius 240 mm (typical: 217.5–320 mm).
    "cu": Instrument(
        name="cu",
        wavelengths_A=(CU_KA1_A, CU_KA2_A),
        weights=(1.0, 0.5),
        two_theta_min_deg=5.0,
        two_theta_max_deg=90.0,
        caglioti_uvw_deg2=(0.004, -0.002, 0.002),
        polarisation_k=1.0,
        geometry="bragg_brentano",
        goniometer_radius_mm=240.0,
    ),
}
# The same with a graphite(002) diffracted-beam monochromator (2θ_M = 26.57° for Cu Kα).
PRESETS["cu_mono"] = dataclasses.replace(PRESETS["cu"], name="cu_mono", monochromator_two_theta_deg=26.57)


def get_instrument(spec: str | dict | Instrument) -> Instrument:
    """A preset by name, or explicit parameters (a dict, optionally with ``preset`` to start from).

    ``wavelength_A`` (one line) is accepted as a shorthand for ``wavelengths_A``/``weights``; a dict
    overriding the preset's wavelengths without weights gets equal weights.
    """
    if isinstance(spec, Instrument):
        return spec
    if isinstance(spec, str):
        try:
            return PRESETS[spec]
        except KeyError:
            raise ValueError(f"unknown instrument {spec!r}; presets: {', '.join(PRESETS)}") from None
    spec = dict(spec)
    base = spec.pop("preset", None)
    if "wavelength_A" in spec:
        spec["wavelengths_A"] = (float(spec.pop("wavelength_A")),)
        spec.setdefault("weights", (1.0,))
    elif "wavelengths_A" in spec and "weights" not in spec:
        spec["weights"] = (1.0,) * len(np.atleast_1d(spec["wavelengths_A"]))
    if base is not None:
        merged = get_instrument(base).to_dict()
        merged.update(spec)
        spec = merged
    spec.setdefault("name", "custom")
    return Instrument.from_dict(spec)
