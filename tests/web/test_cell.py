"""The web API's ``cell``: the unit cell by powder indexing and its reflections as tick marks for the plot."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from xrdid.web import create_app


@pytest.fixture(scope="module")
def client(tiny_model):
    with TestClient(create_app(tiny_model)) as c:
        yield c


def test_upload_returns_the_cell_and_reflection_ticks(client, xy_text):
    r = client.post("/api/predict", files={"file": ("nacl.xy", xy_text)}, data={"wavelength": "1.5406"})
    assert r.status_code == 200, r.text
    cell = r.json()["cell"]
    assert cell["indexed"] and cell["bravais"] == "cF" and cell["a"] == pytest.approx(5.64, rel=5e-3)
    ticks = cell["reflections"]
    assert [t["hkl"] for t in ticks[:3]] == [[1, 1, 1], [2, 0, 0], [2, 2, 0]]
    # In the pattern's own x units (2θ here), inside its range.
    assert ticks[0]["x"] == pytest.approx(27.37, abs=0.05) and all(10.0 <= t["x"] <= 80.0 for t in ticks)


def test_a_pattern_without_lines_says_it_is_not_indexed(client):
    import numpy as np

    x = np.linspace(10, 80, 2000)
    y = 100 + 50 * np.exp(-0.5 * ((x - 40) / 0.08) ** 2) + np.random.default_rng(1).normal(0, 1, x.size)
    text = "\n".join(f"{a:.4f} {b:.3f}" for a, b in zip(x, y, strict=True))
    r = client.post("/api/predict", files={"file": ("one.xy", text)}, data={"wavelength": "1.5406"})
    assert r.status_code == 200, r.text
    cell = r.json()["cell"]
    assert cell["indexed"] is False and "reflections" not in cell and "at least" in cell["message"]
