"""The web API through FastAPI's TestClient: a good upload, every kind of bad upload, health and the page."""

from __future__ import annotations

import base64
import tempfile

import numpy as np
import pytest
from fastapi.testclient import TestClient

from xrdid.web import create_app

CU_KA1_A = 1.5406


@pytest.fixture(scope="module")
def client(tiny_model):
    with TestClient(create_app(tiny_model)) as c:
        yield c


def post(client, content, name="pattern.xy", **data):
    return client.post("/api/predict", files={"file": (name, content)}, data={k: str(v) for k, v in data.items()})


def assert_error(r, status: int, code: str, *words: str):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    for w in words:
        assert w in body["detail"], body["detail"]


def test_health(client, tiny_model):
    r = client.get("/api/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok" and h["model"] == str(tiny_model)
    assert h["n_points"] == 512 and h["two_theta_deg"] == pytest.approx([5.0, 90.0])
    assert h["wavelength_A"] == pytest.approx(CU_KA1_A, abs=1e-3)


def test_page_and_static_files(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert 'id="file-input"' in r.text and "/static/app.js" in r.text
    for f in ("app.js", "style.css"):
        assert client.get(f"/static/{f}").status_code == 200


def test_good_upload(client, xy_text):
    r = post(client, xy_text, name="NaCl scan.xy", wavelength=CU_KA1_A, top_k=4)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["file"] == "NaCl_scan.xy"
    assert set(body["space_group"]) == {"number", "symbol", "probability"}
    assert len(body["top_k"]) == 4 and body["top_k"][0] == body["space_group"]
    probs = [t["probability"] for t in body["top_k"]]
    assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
    assert all(1 <= t["number"] <= 230 and t["symbol"] for t in body["top_k"])
    assert body["crystal_system"]["name"] in {
        "triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic"
    }
    assert 0 <= body["novelty"]["score"] <= 1 and body["novelty"]["method"]
    assert "mixture" not in body  # a checkpoint without a mixture probe
    assert 0.5 < body["coverage"] <= 1  # 10–80° of the model's 5–90°
    pat = body["pattern"]
    assert pat["axis"] == "two_theta" and len(pat["x"]) == len(pat["y"]) == 2000
    assert pat["x"][0] == pytest.approx(10.0) and pat["x"][-1] == pytest.approx(80.0)
    assert pat["wavelength_A"] == pytest.approx(CU_KA1_A)
    # The model's Q range in this pattern's 2θ at the same λ is its own 5–90°.
    assert pat["model_range"] == pytest.approx([5.0, 90.0], abs=0.01)


def test_default_top_k_is_five_and_wavelength_from_file(client, make_xy):
    text = make_xy(header="# wavelength: 1.5406 A\n# 2theta intensity\n")
    r = post(client, text)
    assert r.status_code == 200, r.text
    assert len(r.json()["top_k"]) == 5


def test_q_pattern_needs_no_wavelength(client):
    import numpy as np

    q = np.linspace(0.5, 5.5, 800)
    y = 10 + 500 * np.exp(-0.5 * ((q - 2.23) / 0.02) ** 2) + 300 * np.exp(-0.5 * ((q - 3.15) / 0.02) ** 2)
    text = "# Q (1/A)  I\n" + "\n".join(f"{a:.5f} {b:.3f}" for a, b in zip(q, y))
    r = post(client, text, name="scan.chi")
    assert r.status_code == 200, r.text
    assert r.json()["pattern"]["axis"] == "q"


def test_two_theta_without_wavelength_asks_for_it(client, xy_text):
    assert_error(post(client, xy_text, name="scan.xy"), 422, "wavelength_required", "scan.xy", "2θ", "wavelength")
    # …and the same file with the wavelength resent goes through.
    assert post(client, xy_text, name="scan.xy", wavelength="1,5406").status_code == 200


def test_empty_file(client):
    assert_error(post(client, b"", name="empty.xy"), 400, "empty", "empty.xy", "empty")


def test_no_file(client):
    r = client.post("/api/predict", data={"wavelength": "1.5406"})
    assert_error(r, 400, "bad_request", "no file")


def test_garbage_text(client):
    assert_error(post(client, "hello\nthis is not a pattern\n", name="notes.txt"), 422, "unreadable", "notes.txt")


def test_binary_garbage(client):
    blob = bytes(range(256)) * 64
    assert_error(post(client, blob, name="image.png"), 422, "unreadable", "image.png", "binary")


def test_nan_intensities(client, xy_text):
    lines = xy_text.splitlines()
    lines[100] = lines[100].split()[0] + " nan"
    assert_error(post(client, "\n".join(lines), wavelength=CU_KA1_A), 422, "unreadable", "NaN")


def test_too_little_coverage(client, make_xy):
    # 86–90° covers ~5 % of the model's 5–90° grid.
    text = make_xy(86.0, 90.0, 400)
    assert_error(post(client, text, name="narrow.xy", wavelength=CU_KA1_A), 422, "unclassifiable", "narrow.xy", "covers")


def test_flat_pattern(client):
    text = "\n".join(f"{10 + 0.05 * i:.2f} 0" for i in range(500))
    assert_error(post(client, text, name="flat.xy", wavelength=CU_KA1_A), 422, "unclassifiable", "zeros")


@pytest.mark.parametrize("value, status, code, words", [
    ("abc", 400, "bad_request", ("not a number",)),
    ("-1", 400, "bad_request", ("positive",)),
    ("154.06", 422, "unreadable", ("plausible range",)),  # pm, not Å
])
def test_bad_wavelength(client, xy_text, value, status, code, words):
    assert_error(post(client, xy_text, wavelength=value), status, code, *words)


@pytest.mark.parametrize("value", ["0", "231", "five"])
def test_bad_top_k(client, xy_text, value):
    assert_error(post(client, xy_text, wavelength=CU_KA1_A, top_k=value), 400, "bad_request", "top_k")


def test_too_large_by_content_length(tiny_model, xy_text):
    with TestClient(create_app(tiny_model, max_upload_mb=0.01)) as c:
        r = post(c, xy_text * 2, wavelength=CU_KA1_A)  # ~70 kB > 10 kB
        assert_error(r, 413, "too_large", "limit")
        assert c.get("/api/health").status_code == 200


def test_too_large_streamed_without_content_length(tiny_model, xy_text):
    boundary = "xrdidtest"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.xy"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()

    def chunks():  # a generator body is sent chunked, with no Content-Length
        yield head
        for _ in range(20):
            yield xy_text.encode()
        yield f"\r\n--{boundary}--\r\n".encode()

    with TestClient(create_app(tiny_model, max_upload_mb=0.05)) as c:
        r = c.post("/api/predict", content=chunks(), headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert "content-length" not in {k.lower() for k in r.request.headers}
        assert_error(r, 413, "too_large", "limit")


def test_uploads_are_removed(client, xy_text, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert post(client, xy_text, wavelength=CU_KA1_A).status_code == 200
    assert post(client, "garbage", name="x.xy").status_code == 422
    assert list(tmp_path.iterdir()) == []


def test_upload_name_is_sanitised(client, xy_text):
    r = post(client, xy_text, name="../../etc/odd name;.xy", wavelength=CU_KA1_A)
    assert r.status_code == 200 and r.json()["file"] == "odd_name_.xy"


def test_no_model(tmp_path, xy_text):
    with TestClient(create_app(tmp_path / "missing")) as c:
        r = c.get("/api/health")
        assert r.status_code == 503 and "not an xrdid checkpoint" in r.json()["detail"]
        assert_error(post(c, xy_text, wavelength=CU_KA1_A), 503, "no_model", "not an xrdid checkpoint")
        assert c.get("/").status_code == 200


@pytest.fixture
def nacl_si_library(tmp_path, nacl):
    """A CIF folder with NaCl and Si."""
    from pymatgen.core import Lattice, Structure

    library = tmp_path / "library"
    library.mkdir()
    nacl.to(filename=str(library / "NaCl.cif"))
    Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]).to(filename=str(library / "Si.cif"))
    return library


def test_with_a_library_the_prediction_lists_phases(tiny_model, xy_text, nacl_si_library):
    with TestClient(create_app(tiny_model, library=nacl_si_library)) as c:
        assert c.get("/api/health").json()["phase_library"] == "library"
        r = post(c, xy_text, wavelength=CU_KA1_A)
    assert r.status_code == 200, r.text
    phases = r.json()["phases"]
    assert [p["formula"] for p in phases["phases"]] == ["NaCl"]
    assert 0 < phases["rwp"] < 1
    assert phases["verdict"] and isinstance(phases["unexplained_peaks"], list)
    png = base64.b64decode(phases["figure"].removeprefix("data:image/png;base64,"))
    assert png.startswith(b"\x89PNG")


def test_without_a_library_there_are_no_phases(client, xy_text):
    assert "phases" not in post(client, xy_text, wavelength=CU_KA1_A).json()
    assert client.get("/api/health").json()["phase_library"] is None
    # The phase search's options say why they cannot apply.
    for options in ({"elements": "Na Cl"}, {"textured": "true"}):
        assert_error(post(client, xy_text, wavelength=CU_KA1_A, **options), 400, "bad_request", "no phase library")


def test_the_sample_elements_and_texture_reach_the_phase_search(tiny_model, xy_text, nacl_si_library, monkeypatch):
    import math

    from xrdid import mixtures

    seen = []
    real = mixtures.identify_in_pattern

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(mixtures, "identify_in_pattern", spy)
    with TestClient(create_app(tiny_model, library=nacl_si_library)) as c:
        # Only Si is made of Si: the NaCl pattern's phase is not a candidate, so it is not found.
        r = post(c, xy_text, wavelength=CU_KA1_A, elements="Si")
        assert r.status_code == 200, r.text
        assert "NaCl" not in [p["formula"] for p in r.json()["phases"]["phases"]]
        r = post(c, xy_text, wavelength=CU_KA1_A, elements="Na, Cl", textured="true")
        assert r.status_code == 200, r.text
        assert [p["formula"] for p in r.json()["phases"]["phases"]] == ["NaCl"]
        assert seen[-1]["elements"] == ["Cl", "Na"] and seen[-1]["max_march_dollase"] == math.inf
        post(c, xy_text, wavelength=CU_KA1_A, textured="false")
        assert "elements" not in seen[-1] and "max_march_dollase" not in seen[-1]
        # Bad options are the user's to fix (4xx, saying what), not the server's.
        assert_error(post(c, xy_text, wavelength=CU_KA1_A, elements="Na Xx"), 400, "bad_request", "'Xx' is not an element")
        assert_error(post(c, xy_text, wavelength=CU_KA1_A, textured="maybe"), 400, "bad_request", "textured")
        assert_error(post(c, xy_text, wavelength=CU_KA1_A, elements="Fe O"), 422, "no_phases", "Fe, O")


def test_novelty_from_the_vae_carries_a_warning_in_words(tiny_vae, xy_text, monkeypatch):
    import xrdid.novelty

    with TestClient(create_app(tiny_vae)) as vae_client:
        monkeypatch.setattr(xrdid.novelty, "UNUSUAL", 0.0)  # every pattern counts as unusual here
        r = post(vae_client, xy_text, wavelength=CU_KA1_A)
    assert r.status_code == 200, r.text
    n = r.json()["novelty"]
    assert n["method"] == "vae" and 0 <= n["score"] <= 1 and n["level"] in ("unusual", "unlike_known")
    assert "known structures" in n["warning"]


def test_the_mixture_probability_and_its_warning_reach_the_api(tiny_model, xy_text, tmp_path, with_mixture_probe):
    for bias, warned in ((2.0, True), (-2.0, False)):
        model = with_mixture_probe(tiny_model, tmp_path / str(bias), bias=bias)
        with TestClient(create_app(model)) as probe_client:
            r = post(probe_client, xy_text, wavelength=CU_KA1_A)
        assert r.status_code == 200, r.text
        m = r.json()["mixture"]
        assert m["probability"] == pytest.approx(1 / (1 + np.exp(-bias))) and m["method"]
        assert ("warning" in m) == warned and (not warned or "mixture of phases" in m["warning"])
