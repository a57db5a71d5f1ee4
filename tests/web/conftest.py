"""Fixtures for the web tests: a tiny untrained checkpoint and a measured-looking pattern written in code."""

from __future__ import annotations

import numpy as np
import pytest

CU_KA1_A = 1.5406


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A small, untrained checkpoint on the Cu preset's 5–90° grid (512 points): fast to load and run."""
    import torch

    from xrdid.instrument import get_instrument
    from xrdid.models import CNNConfig, XRDClassifier, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny"
    model = XRDClassifier(CNNConfig(n_points=512, stem_channels=8, stage_channels=(8, 16), hidden=32))
    save_checkpoint(model, get_instrument({"preset": "cu", "n_points": 512}), path)
    return path


def nacl_like_xy(two_theta_min: float = 10.0, two_theta_max: float = 80.0, n: int = 2000, *, header: str = "") -> str:
    """Two-column 2θ/intensity text: Gaussian peaks at NaCl's Cu Kα1 positions on a sloping background."""
    x = np.linspace(two_theta_min, two_theta_max, n)
    y = 40.0 + 0.3 * (90.0 - x)
    for pos, height in ((27.37, 130), (31.70, 1000), (45.45, 600), (53.87, 20), (56.48, 170), (66.23, 60), (75.30, 130)):
        y = y + height * np.exp(-0.5 * ((x - pos) / 0.06) ** 2)
    y = y + np.random.default_rng(0).normal(0, 2.0, n)
    lines = [f"{a:.4f} {b:.2f}" for a, b in zip(x, y)]
    return header + "\n".join(lines) + "\n"


@pytest.fixture
def make_xy():
    """``nacl_like_xy`` as a fixture, for tests that need other ranges or headers."""
    return nacl_like_xy


@pytest.fixture
def xy_text() -> str:
    return nacl_like_xy()


def _with_mixture_probe(checkpoint, where, *, bias: float = 2.0, warn_above: float = 0.5):
    """A copy of ``checkpoint`` in ``where`` with a mixture probe beside it that answers σ(``bias``) for every
    pattern (zero weights), so the page's mixture line and warning can be checked without fitting one."""
    import json
    import shutil

    from xrdid.mixture_probe import FILENAME, MixtureProbe
    from xrdid.weights import init_digest

    model = where / "model"
    shutil.copytree(checkpoint, model)
    n = 32 + 2 * 16  # the tiny CNNs' hidden layer and pooled last-stage channels
    probe = MixtureProbe(np.zeros(n), np.ones(n), np.zeros(n), bias, {"weights_digest": init_digest(str(model)), "warn_above": warn_above})
    (model / FILENAME).write_text(json.dumps(probe.to_dict()))
    return model


@pytest.fixture
def with_mixture_probe():
    """``_with_mixture_probe`` as a fixture."""
    return _with_mixture_probe
