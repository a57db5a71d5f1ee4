"""Indexing success as the benchmark and the workflow count it: the right cell, ranked, per crystal system."""

from __future__ import annotations

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

from xrdid.indexing.evaluate import index_rendered, primitive_lattice_of, summarise
from xrdid.instrument import Augment, StickBatch
from xrdid.simulate.sticks import compute_sticks

from .helpers import INST, PROTOTYPES, prototype


def _item(name, structure, system, truth=None):
    st = compute_sticks(structure, INST.d_min_A)
    sticks = StickBatch(torch.tensor(np.asarray(st.d, np.float32))[None], torch.tensor(np.asarray(st.f2m, np.float32))[None])
    return (name, system, sticks, [truth or primitive_lattice_of(structure)])


def test_right_cell_counted_and_a_wrong_truth_is_not():
    """Counting noise and background only; the same pattern scored against a 1 % larger cell fails (0.5 %)."""
    s = prototype(PROTOTYPES["hexagonal"])
    wrong = Structure(Lattice(s.lattice.matrix * 1.01), s.species, s.frac_coords)
    items = [_item("right", s, "hexagonal"), _item("wrong", s, "hexagonal", primitive_lattice_of(wrong))]
    aug = Augment(zero_shift_deg=(0.0, 0.0), sample_displacement_um=(0.0, 0.0), impurity_peaks=(0, 0), crop_probability=0.0,
                  texture_probability=0.0, peak_counts=(5e4, 5e4))
    rows = index_rendered(items, INST, aug, seed=1)
    assert rows[0]["rank"] == 1 and rows[1]["rank"] is None
    summary = summarise(rows)
    assert summary["hexagonal"]["n"] == 2 and summary["hexagonal"]["top3"] == 0.5 and summary["all"]["top1"] == 0.5
