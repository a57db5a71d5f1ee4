"""Shared helpers: real structures (pymatgen's AFLOW prototypes) rendered on a laboratory Cu Kα1/Kα2 scan."""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import torch

from xrdid.instrument import Augment, Renderer, StickBatch, get_instrument
from xrdid.readers import Pattern

INST = get_instrument({"preset": "cu", "n_points": 8501})
# One real structure per crystal system (AFLOW labels): scheelite-like tI, wurtzite-like hP, rhombohedral
# graphite hR, orthorhombic oP8 (Pnma), baddeleyite ZrO2 mP12 (P2₁/c), triclinic aP4, sphalerite cF8.
PROTOTYPES = {
    "cubic": "AB_cF8_216_c_a",
    "tetragonal": "AB2C4_tI14_139_a_e_ce",
    "hexagonal": "AB_hP4_194_c_a",
    "trigonal": "A_hR2_166_c",
    "orthorhombic": "AB_oP8_62_c_c",
    "monoclinic": "A2B_mP12_14_2e_e",
    "triclinic": "A_aP4_2_aci",
}


@cache
def prototype(label: str):
    from xrdid.evaluate.real import aflow_prototypes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return next(s for name, s in aflow_prototypes() if name == label)


def true_lattice(structure):
    from xrdid.indexing.evaluate import primitive_lattice_of

    return primitive_lattice_of(structure)


def render(structure, augment: Augment | None = None, seed: int = 0, extra_sticks=(), inst=INST) -> Pattern:
    """The structure's Cu Kα1/Kα2 pattern (5–90°, 0.01° steps) as a measured-looking Pattern (counts scale)."""
    from xrdid.simulate.sticks import compute_sticks

    st = compute_sticks(structure, INST.d_min_A)
    d = list(np.asarray(st.d, np.float32)) + [e[0] for e in extra_sticks]
    f = list(np.asarray(st.f2m, np.float32)) + [e[1] * float(np.max(st.f2m)) for e in extra_sticks]
    sticks = StickBatch(torch.tensor(np.asarray(d, np.float32))[None], torch.tensor(np.asarray(f, np.float32))[None])
    y, mask = Renderer(inst, augment)(sticks, torch.Generator().manual_seed(seed))
    m = mask[0].numpy() > 0
    return Pattern(inst.grid()[m], 1e4 * y[0].numpy()[m].astype(np.float64) + 50.0, "two_theta", wavelength_A=inst.wavelength_A)
