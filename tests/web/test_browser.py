"""The page in a real headless Chromium (selenium + the system chromedriver), served by uvicorn.

Skipped, with the reason, when selenium, chromium or chromedriver is missing (``.ci/install-chromium.sh``
installs the browser and driver; selenium is in the ``test`` extra). Set ``XRDID_SCREENSHOT=FILE.png``
to keep a screenshot of the page with a result (docs/img/web.png is made this way) and
``XRDID_WEB_MODEL=CKPT`` to serve another checkpoint than the tiny untrained one.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import threading
import time

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="chromium and chromedriver are not installed (run .ci/install-chromium.sh)",
)


@contextlib.contextmanager
def serving(app):
    """``app`` served by uvicorn on 127.0.0.1 at a free port (a socket bound here, so no race), in a thread:
    its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not srv.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("uvicorn did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def server(tiny_model):
    from xrdid.web import create_app

    with serving(create_app(os.environ.get("XRDID_WEB_MODEL") or tiny_model)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}", "--window-size=1280,1000",
        "--force-device-scale-factor=1",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def console_errors(driver) -> list[str]:
    """Script errors in the console (a 4xx answer, logged as a failed resource, is expected)."""
    return [
        e["message"] for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
    ]


def upload(driver, path):
    driver.find_element(By.ID, "file-input").send_keys(str(path))


def test_upload_asks_for_wavelength_then_shows_results(server, browser, tmp_path, make_xy):
    wait = WebDriverWait(browser, 30)
    browser.get(server + "/")
    wait.until(lambda d: d.find_element(By.ID, "model-status").text.startswith("model:"))
    assert browser.find_element(By.ID, "results").get_attribute("hidden") is not None

    # A 2θ file with no wavelength: the page says so inline and marks the wavelength field.
    path = tmp_path / "NaCl.xy"
    path.write_text(make_xy())
    upload(browser, path)
    error = wait.until(EC.visibility_of_element_located((By.ID, "error")))
    assert "wavelength" in error.text and "NaCl.xy" in error.text
    assert "needs" in browser.find_element(By.ID, "wl-field").get_attribute("class")

    # A preset fills the wavelength and resends the same file.
    browser.find_element(By.CSS_SELECTOR, '.preset[data-wavelength="1.5406"]').click()
    wait.until(EC.visibility_of_element_located((By.ID, "results")))
    assert not browser.find_element(By.ID, "busy").is_displayed()
    assert browser.find_element(By.ID, "wavelength").get_attribute("value") == "1.5406"
    assert not browser.find_element(By.ID, "error").is_displayed()

    rows = browser.find_elements(By.CSS_SELECTOR, "#r-topk li")
    assert len(rows) == 5
    assert all(r.find_element(By.CSS_SELECTOR, ".name").text and "%" in r.find_element(By.CSS_SELECTOR, ".pct").text for r in rows)
    assert browser.find_element(By.ID, "r-sg").text and browser.find_element(By.ID, "r-sg-no").text.startswith("No. ")
    assert browser.find_element(By.ID, "r-cs").text.split()[0] in {
        "triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic"
    }
    assert browser.find_element(By.ID, "r-novelty").text
    assert browser.find_element(By.ID, "r-file").text == "NaCl.xy"

    # The plot: an SVG with a drawn trace, axis labels and the model's range shaded.
    trace = browser.find_element(By.CSS_SELECTOR, "#plot svg path.trace")
    assert len(trace.get_attribute("d")) > 100
    assert trace.size["width"] > 300
    labels = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#plot svg text.label")]
    assert any(t.startswith("2θ (°)") for t in labels) and "Intensity (a.u.)" in labels
    assert browser.find_elements(By.CSS_SELECTOR, "#plot svg rect.range")
    # The indexed cell (NaCl's, cF a ≈ 5.64 Å) and its reflections as tick marks.
    assert " ".join(browser.find_element(By.ID, "r-cell").text.split()).startswith("cF a 5.6")
    ticks = browser.find_elements(By.CSS_SELECTOR, "#plot svg g.reflections line")
    assert len(ticks) >= 7

    shot = os.environ.get("XRDID_SCREENSHOT")
    if shot:  # the whole page, not only the viewport
        size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        png = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
        with open(shot, "wb") as f:
            f.write(base64.b64decode(png["data"]))
    assert console_errors(browser) == []


def test_unreadable_file_shows_error_inline(server, browser, tmp_path):
    wait = WebDriverWait(browser, 30)
    browser.get(server + "/")
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a pattern\n")
    upload(browser, path)
    error = wait.until(EC.visibility_of_element_located((By.ID, "error")))
    assert "notes.txt" in error.text
    assert browser.find_element(By.ID, "results").get_attribute("hidden") is not None


def test_the_page_warns_when_the_pattern_is_unlike_known_ones_or_a_mixture(tiny_vae, browser, tmp_path, make_xy, monkeypatch,
                                                                            with_mixture_probe):
    import xrdid.novelty
    from xrdid.web import create_app

    monkeypatch.setattr(xrdid.novelty, "UNUSUAL", 0.0)  # every pattern counts as unusual here
    model = with_mixture_probe(tiny_vae, tmp_path)  # and as a likely mixture
    with serving(create_app(model)) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: d.find_element(By.ID, "model-status").text.startswith("model:"))
        path = tmp_path / "scan.xy"
        path.write_text(make_xy())
        browser.find_element(By.ID, "wavelength").send_keys("1.5406")
        upload(browser, path)
        banner = wait.until(EC.visibility_of_element_located((By.ID, "r-novelty-warning")))
        assert "known structures" in banner.text
        assert "VAE" in browser.find_element(By.ID, "r-novelty").text
        mixture = browser.find_element(By.ID, "r-mixture-warning")
        assert mixture.is_displayed() and "mixture of phases" in mixture.text
        assert "likely a mixture" in browser.find_element(By.ID, "r-mixture").text


def test_the_phase_search_takes_the_sample_elements(tiny_model, browser, tmp_path, make_xy, nacl):
    from pymatgen.core import Lattice, Structure

    from xrdid.web import create_app

    library = tmp_path / "my-phases"
    library.mkdir()
    nacl.to(filename=str(library / "NaCl.cif"))
    Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]).to(filename=str(library / "Si.cif"))
    path = tmp_path / "scan.xy"
    path.write_text(make_xy())
    with serving(create_app(tiny_model, library=library)) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(EC.visibility_of_element_located((By.ID, "phase-controls")))
        assert "my-phases" in browser.find_element(By.ID, "phase-hint").text
        browser.find_element(By.ID, "wavelength").send_keys("1.5406")
        browser.find_element(By.ID, "elements").send_keys("Si")
        upload(browser, path)
        wait.until(EC.visibility_of_element_located((By.ID, "r-phases")))
        assert "NaCl" not in browser.find_element(By.ID, "r-phase-list").text  # only Si was searched
        # A symbol that is no element: the server's message, inline.
        browser.find_element(By.ID, "elements").clear()
        browser.find_element(By.ID, "elements").send_keys("Na Xx\n")
        error = wait.until(EC.visibility_of_element_located((By.ID, "error")))
        assert "'Xx' is not an element" in error.text
        browser.find_element(By.ID, "elements").clear()
        browser.find_element(By.ID, "elements").send_keys("Na Cl\n")
        wait.until(lambda d: "NaCl" in d.find_element(By.ID, "r-phase-list").text)
        assert not browser.find_element(By.ID, "error").is_displayed()
    assert console_errors(browser) == []


def test_a_withdrawn_stand_in_is_named_on_the_page(tiny_model, browser, tmp_path, make_xy, nacl, monkeypatch):
    """A phase the fit withdraws as a stand-in (a superstructure hint names it) is not listed as found: the page
    says its lines belong to a phase the library lacks, and the verdict says so too."""
    from xrdid.mixtures import fit as F
    from xrdid.web import create_app

    library = tmp_path / "lib"
    library.mkdir()
    nacl.to(filename=str(library / "NaCl.cif"))
    monkeypatch.setattr(F, "superstructure_hints", lambda phases, unexplained, **kw: [
        {"id": p.id, "formula": p.formula, "text": f"peaks on {p.formula}'s doubled cell"} for p in phases])
    path = tmp_path / "scan.xy"
    path.write_text(make_xy())
    with serving(create_app(tiny_model, library=library)) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        browser.find_element(By.ID, "wavelength").send_keys("1.5406")
        upload(browser, path)
        wait.until(EC.visibility_of_element_located((By.ID, "r-phases")))
        listed = browser.find_element(By.ID, "r-phase-list").text
        assert "not NaCl (No. 225): its lines belong to a phase the library lacks" in listed
        assert "by weight" not in listed
        verdict = browser.find_element(By.ID, "r-phase-verdict").text
        assert "NaCl (225) withdrawn" in verdict and "Hint: peaks on NaCl's doubled cell" in verdict
    assert console_errors(browser) == []
