"""Shared fixtures: tiny structures built in code and a small sticks table made from them; a check that an
output is never open while a native module is imported."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure


@pytest.fixture(scope="session")
def nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="session")
def small_structures() -> list[tuple[str, Structure]]:
    """A handful of real, ordered structures of different crystal systems."""
    return [
        ("NaCl", Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])),
        ("CsCl", Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])),
        ("Si", Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]])),
        ("ZnO", Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.25, 5.21), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]])),
        ("TiO2", Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]])),
        ("Al2O3", Structure.from_spacegroup("R-3c", Lattice.hexagonal(4.76, 12.99), ["Al", "O"], [[0, 0, 0.352], [0.306, 0, 0.25]])),
    ]


@pytest.fixture(scope="session")
def sticks_table(tmp_path_factory, small_structures):
    """A merged sticks table (all splits populated) built from small_structures via the real pipeline."""
    from xrdid.simulate.chunks import merge_sticks, simulate_chunk
    from xrdid.structures.table import describe_structure, write_structure_tables

    root = tmp_path_factory.mktemp("sticks")
    rows = [describe_structure(s, id=name, source="test") for name, s in small_structures]
    # Repeat under distinct formulas-as-ids so every split gets rows.
    write_structure_tables(rows, [], root / "structures.parquet", root / "failed.parquet")
    simulate_chunk([root / "structures.parquet"], chunk=0, n_chunks=1, out=root / "chunk-0.parquet", d_min_A=0.5)
    out = root / "sticks.parquet"
    merge_sticks([root / "chunk-0.parquet"], out=out, fractions=(0.34, 0.33, 0.33), seed=3)
    return out


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
    """``random_checkpoint(n_points)``: a tiny random-weight CNN checkpoint on a Cu Kα grid of n_points (shapes and
    plumbing, not accuracy), made once per size and session."""
    import torch

    from xrdid.instrument import get_instrument
    from xrdid.models import CNNConfig, XRDClassifier, save_checkpoint

    made = {}

    def make(n_points: int = 512):
        if n_points not in made:
            torch.manual_seed(0)
            model = XRDClassifier(CNNConfig(n_points=n_points, stem_channels=8, stage_channels=(8, 16), hidden=32, dropout=0.0, architecture="plain"))
            path = tmp_path_factory.mktemp("ck") / "model"
            save_checkpoint(model.eval(), get_instrument({"preset": "cu", "n_points": n_points}), path)
            made[n_points] = path
        return made[n_points]

    return make


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_vae(tmp_path_factory, sticks_table):
    """A VAE trained for two tiny epochs on sticks_table (Cu Kα, 512 points), calibrated, beside a tiny CNN
    on the same grid: directory with model.json, weights.pt, vae.json and vae.pt."""
    import torch

    from xrdid.instrument import Augment, get_instrument
    from xrdid.models import CNNConfig, XRDClassifier, save_checkpoint
    from xrdid.models.vae import VAEConfig
    from xrdid.train.vae import VAETrainConfig, train_vae

    out = tmp_path_factory.mktemp("vae")
    instrument = get_instrument({"preset": "cu", "n_points": 512})
    torch.manual_seed(0)
    save_checkpoint(XRDClassifier(CNNConfig(n_points=512, stem_channels=8, stage_channels=(8, 16), hidden=32, dropout=0.0,
                                            architecture="plain")).eval(), instrument, out / "model")
    train_vae(
        sticks=sticks_table, checkpoint=out / "model", history=out / "history.csv", instrument=instrument,
        augment=Augment(), progress=False,
        model_config=VAEConfig(n_points=512, stem_channels=8, stage_channels=(8, 16), hidden=32, latent=4, classifier_hidden=16,
                               dropout=0.0),
        config=VAETrainConfig(epochs=2, steps_per_epoch=3, batch_size=8, calibration_draws=8),
    )
    return out / "model"


# Run by native_imports_while_writing before the code under test: every xrdid.io.atomic_path block records the
# extension modules first imported while its temporary file is open (the modules under test bind atomic_path
# when they are imported, i.e. after this).
_WATCH_OUTPUTS = """
import contextlib, importlib.machinery, json, os, sys
import xrdid.io

_opened, _seen = xrdid.io.atomic_path, {}

def _native(name):
    path = getattr(sys.modules.get(name), "__file__", None) or ""
    return path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))

@contextlib.contextmanager
def _watched(path):
    with _opened(path) as tmp:
        before = set(sys.modules)
        yield tmp
        _seen[os.path.basename(path)] = sorted(m for m in set(sys.modules) - before if _native(m))

xrdid.io.atomic_path = _watched
"""


@pytest.fixture(scope="session")
def native_imports_while_writing():
    """``native_imports_while_writing(code, *args)``: run ``code`` (``sys.argv[1:]`` = ``args``) in a fresh
    interpreter; returns, for each output it wrote through :func:`xrdid.io.atomic_path` (by file name), the
    native modules first imported while that output's temporary file was open.

    It should be none: Ctrl-C (a cancelled job's SIGINT) during the import of a native module can abort the
    process outright (gemmi's import raises through C++, which ends in SIGABRT), so the step dies without
    unwinding instead of failing cleanly. A step imports what it needs before it opens its output.
    """
    import json
    import subprocess
    import sys
    import textwrap

    def run(code: str, *args) -> dict[str, list[str]]:
        script = _WATCH_OUTPUTS + textwrap.dedent(code) + "\nprint(json.dumps(_seen))\n"
        done = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    return run
