"""Instrument descriptions: wavelength(s), 2θ grid, resolution and geometry.

Units: wavelengths in Å, angles in degrees (2θ), Caglioti U, V, W in deg², so that the Gaussian
instrumental FWHM is ``sqrt(U tan²θ + V tanθ + W)`` degrees 2θ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

# Planck constant × c in keV·Å: λ[Å] = 12.398 / E[keV].
HC_KEV_A = 12.398419843320026


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
    # Polarisation factor (1 + k cos²2θ) / (1 + k): k = 1 for an unpolarised tube, k ≈ 0 for a
    # synchrotron beam polarised perpendicular to the scattering plane.
    polarisation_k: float = 1.0
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def wavelength_A(self) -> float:
        """The primary (strongest) wavelength."""
        return self.wavelengths_A[int(np.argmax(self.weights))]

    def grid(self) -> np.ndarray:
        """The model's 2θ grid in degrees (float64)."""
        return np.linspace(self.two_theta_min_deg, self.two_theta_max_deg, self.n_points)

    @property
    def d_min_A(self) -> float:
        """Smallest d-spacing reached on the grid by the shortest wavelength."""
        return min(self.wavelengths_A) / (2.0 * np.sin(np.radians(self.two_theta_max_deg) / 2.0))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("extra")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Instrument":
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
    # SOLEIL MARS beamline: 16.99 keV monochromatic, Debye–Scherrer geometry, 2θ 5–90°, high resolution.
    "mars": Instrument(
        name="mars",
        wavelengths_A=(HC_KEV_A / 16.99,),
        two_theta_min_deg=5.0,
        two_theta_max_deg=90.0,
        caglioti_uvw_deg2=(0.0008, -0.0004, 0.0009),
        polarisation_k=0.05,
    ),
    # Laboratory Bragg–Brentano diffractometer with a Cu tube: Kα1/Kα2 doublet (ratio 0.5).
    "cu": Instrument(
        name="cu",
        wavelengths_A=(1.540562, 1.544390),
        weights=(1.0, 0.5),
        two_theta_min_deg=5.0,
        two_theta_max_deg=90.0,
        caglioti_uvw_deg2=(0.004, -0.002, 0.002),
        polarisation_k=1.0,
    ),
}


def get_instrument(spec: str | dict | Instrument) -> Instrument:
    """A preset by name, or explicit parameters (a dict, optionally with ``preset`` to start from)."""
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
    if base is not None:
        merged = get_instrument(base).to_dict()
        merged.update(spec)
        spec = merged
    spec.setdefault("name", "custom")
    return Instrument.from_dict(spec)
