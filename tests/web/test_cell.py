"""The web API's ``cell``: the unit cell by powder indexing and its reflections as tick marks for the plot."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources

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
    assert cell["confidence"] == "confident"


def _random_lines_xy(seed: int) -> str:
    """Six Gaussian lines at random angles (the line list of seed 1006 of benchmarks/indexing.py --random-short)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    k = int(rng.integers(5, 8))
    pos, height = np.sort(rng.uniform(12, 85, k)), rng.uniform(5, 100, k)
    x = np.linspace(10, 88, 4000)
    y = 40 + 0.3 * (90 - x) + np.random.default_rng(0).normal(0, 2.0, x.size)
    for p, h in zip(pos, height, strict=True):
        y = y + 10 * h * np.exp(-0.5 * ((x - p) / 0.06) ** 2)
    return "\n".join(f"{a:.4f} {b:.2f}" for a, b in zip(x, y, strict=True))


def test_a_chance_fit_of_few_lines_is_called_tentative(client):
    """Six random lines: a hexagonal cell indexes them, as a cell of that size can by chance — the cell is given,
    marked tentative, with the reason in words."""
    r = client.post("/api/predict", files={"file": ("random.xy", _random_lines_xy(1006))}, data={"wavelength": "1.5406"})
    assert r.status_code == 200, r.text
    cell = r.json()["cell"]
    assert cell["indexed"] and cell["confidence"] == "tentative", cell
    assert cell["confidence_reason"].startswith("only 6 lines") and "chance fit" in cell["confidence_reason"]
    assert all(c["confidence"] == "tentative" for c in cell["candidates"])


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_page_cell_line_says_tentative():
    """The page's cell line (cellText in app.js, run under node): a tentative cell starts with the reason, a
    confident one says nothing of it."""
    js = (resources.files("xrdid.web") / "static" / "app.js").read_text()
    start = js.index("function cellText(c)")
    body = js[start : js.index("\n}\n", start) + 3]
    base = {"indexed": True, "bravais": "hP", "a": 4, "b": 4, "c": 6, "alpha": 90, "beta": 90, "gamma": 120, "volume": 83,
            "F_N": {"N": 6}, "M20": 47.3, "unindexed": 0, "zero_shift_deg": None}
    cells = [dict(base, indexed=6, confidence="tentative", confidence_reason="only 6 lines; it may be a chance fit"),
             dict(base, indexed=6, confidence="confident", confidence_reason="6 of 6 lines indexed")]
    script = body + f"for (const c of {json.dumps(cells)}) console.log(cellText(c));"
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("tentative: only 6 lines; it may be a chance fit — hP  a 4.0000")
    assert out[1].startswith("hP  a 4.0000") and "tentative" not in out[1]


def test_a_pattern_without_lines_says_it_is_not_indexed(client):
    import numpy as np

    x = np.linspace(10, 80, 2000)
    y = 100 + 50 * np.exp(-0.5 * ((x - 40) / 0.08) ** 2) + np.random.default_rng(1).normal(0, 1, x.size)
    text = "\n".join(f"{a:.4f} {b:.3f}" for a, b in zip(x, y, strict=True))
    r = client.post("/api/predict", files={"file": ("one.xy", text)}, data={"wavelength": "1.5406"})
    assert r.status_code == 200, r.text
    cell = r.json()["cell"]
    assert cell["indexed"] is False and "reflections" not in cell and "at least" in cell["message"]
