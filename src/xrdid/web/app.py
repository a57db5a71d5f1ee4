"""The web page: drop a powder pattern, see its space group, crystal system and novelty.

    app = create_app(model_path=None)     # None: the pretrained model shipped with xrdid
    uvicorn.run(app, host="127.0.0.1", port=8000)

Routes:

- ``GET /`` the page (``static/index.html``, vanilla JS, no network beyond this server);
- ``GET /api/health`` the model that is loaded, or 503 with the reason it could not be;
- ``POST /api/predict`` multipart: ``file`` (the pattern), optional ``wavelength`` (Å, for 2θ files that
  state none) and ``top_k``. Answers the CLI contract's fields (``space_group``, ``top_k``,
  ``crystal_system``, ``novelty``, ``coverage``, ``cell``: the unit cell by powder indexing, with its
  ``reflections`` as tick marks in the pattern's x units) plus ``file`` (the uploaded name) and ``pattern``
  {x, y, axis, wavelength_A, model_range}: the pattern as read, for the plot, and the model's range
  in the pattern's own x units.

Errors are JSON ``{"detail": message, "code": code}``; the message names the uploaded file and says what
was wrong. ``code`` lets the page react: ``wavelength_required`` (a 2θ file with no wavelength: the page
asks for one and resends), ``too_large`` (413), ``empty``, ``bad_request`` (400), ``unreadable`` (the
readers reject it) and ``unclassifiable`` (the model cannot judge it: NaN, no signal, too little
coverage), both 422, and ``no_model`` (503).

Uploads are capped (``max_upload_mb``) before the body is parsed: by Content-Length, and by counting
the streamed bytes for a chunked upload. The bytes are written to a temporary directory under the
uploaded name (the readers dispatch on the extension), and the directory is always removed.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict

log = logging.getLogger(__name__)

MAX_UPLOAD_MB = 50.0
MAX_TOP_K = 230
STATIC_DIR = Path(str(resources.files("xrdid.web") / "static"))


class ApiError(HTTPException):
    """An HTTP error whose JSON body also carries a machine-readable ``code``."""

    def __init__(self, status_code: int, detail: str, code: str):
        super().__init__(status_code=status_code, detail=detail)
        self.code = code


# --- response models (the CLI contract, typed) -----------------------------------------------------


class Ranked(BaseModel):
    number: int
    symbol: str
    probability: float


class CrystalSystem(BaseModel):
    name: str
    probability: float


class Novelty(BaseModel):
    model_config = ConfigDict(extra="allow")
    method: str
    score: float


class PatternOut(BaseModel):
    x: list[float]
    y: list[float]
    axis: str
    wavelength_A: float | None
    model_range: list[float] | None


class Prediction(BaseModel):
    model_config = ConfigDict(extra="allow")  # e.g. phases, once that API exists
    file: str
    space_group: Ranked
    top_k: list[Ranked]
    crystal_system: CrystalSystem
    novelty: Novelty
    coverage: float | None = None
    pattern: PatternOut


# --- the work behind POST /api/predict --------------------------------------------------------------


def _safe_name(filename: str | None) -> str:
    """The uploaded file's base name, restricted to harmless characters; its extension is kept."""
    base = re.split(r"[\\/]", filename or "")[-1].strip()
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", base).lstrip(".")
    return safe[-120:] or "pattern.xy"


def _parse_wavelength(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        lam = float(value.strip().replace(",", "."))
    except ValueError:
        raise ApiError(400, f"wavelength {value.strip()!r} is not a number (give it in Å, e.g. 1.5406)", "bad_request") from None
    if not math.isfinite(lam) or lam <= 0:
        raise ApiError(400, f"wavelength {value.strip()!r} must be a positive number of Å", "bad_request")
    return lam


def _parse_top_k(value: str | None) -> int:
    if value is None or not value.strip():
        return 5
    try:
        k = int(value)
    except ValueError:
        raise ApiError(400, f"top_k {value!r} is not a whole number", "bad_request") from None
    if not 1 <= k <= MAX_TOP_K:
        raise ApiError(400, f"top_k must be between 1 and {MAX_TOP_K}, not {k}", "bad_request")
    return k


_YES, _NO = {"1", "true", "on", "yes"}, {"", "0", "false", "off", "no"}


def _parse_phase_options(elements: str | None, textured: str | None, library) -> dict:
    """The phase search's options from the form, as :func:`xrdid.mixtures.identify_in_pattern` takes them:
    ``elements`` (the sample's element symbols, e.g. those of the weighed precursors: only library phases
    made of them are searched) and ``textured`` (keep phases however strong their fitted preferred
    orientation; otherwise a phase that fits only through extreme texture is taken for a stand-in)."""
    given = (elements or "").strip()
    tex = (textured or "").strip().lower()
    if tex not in _YES | _NO:
        raise ApiError(400, f"textured {textured.strip()!r} must be true or false", "bad_request")
    if library is None and (given or tex in _YES):
        raise ApiError(400, "elements and textured apply to the phase search, and this server has no phase library "
                       "(start it with xrdid serve --library DIR)", "bad_request")
    options = {}
    if given:
        from xrdid.mixtures.library import parse_elements

        try:
            options["elements"] = sorted(parse_elements(given))
        except ValueError as exc:
            raise ApiError(400, f"elements: {exc} (give symbols such as Ba Ti O)", "bad_request") from None
    if tex in _YES:
        options["max_march_dollase"] = math.inf
    return options


def _model_range(bundle, pattern) -> list[float] | None:
    """The model's Q range in the pattern's x units (2θ needs its λ), for shading the plot."""
    import numpy as np

    q_lo, q_hi = bundle.q_range
    if pattern.axis == "q":
        return [q_lo, q_hi]
    if pattern.axis == "d":
        return [2 * np.pi / q_hi, 2 * np.pi / q_lo]
    lam = pattern.wavelength_A
    if lam is None:
        return None
    s = np.clip(np.array([q_lo, q_hi]) * lam / (4 * np.pi), 0.0, 1.0)
    return [float(v) for v in np.degrees(2 * np.arcsin(s))]


def classify_upload(
    bundle, path: Path, name: str, *, wavelength_A: float | None, top_k: int, library: str | Path | None = None,
    phase_options: dict | None = None,
) -> dict:
    """Read the pattern at ``path`` (uploaded as ``name``) and classify it: the /api/predict body.
    ``phase_options`` go to the phase search (see :func:`_parse_phase_options`).

    Raises ApiError with the file's name (not the temporary path) in the message.
    """
    from xrdid.predict import PredictionError, predict_patterns
    from xrdid.readers import PatternError, read_pattern

    def named(exc: Exception) -> str:
        return str(exc).replace(str(path), name)

    try:
        pattern = read_pattern(path, wavelength_A=wavelength_A)
    except PatternError as exc:
        raise ApiError(422, named(exc), "unreadable") from None
    if pattern.axis == "two_theta" and pattern.wavelength_A is None:
        raise ApiError(
            422,
            f"{name}: the x axis is 2θ and the file states no wavelength; enter the wavelength (Å) it was "
            "measured with (no default is assumed)",
            "wavelength_required",
        )
    pattern.path = name
    try:
        (result,) = predict_patterns(bundle, [pattern], wavelength_A=wavelength_A, top_k=top_k)
    except PredictionError as exc:
        raise ApiError(422, named(exc), "unclassifiable") from None
    except PatternError as exc:  # a reader check the prediction re-runs
        raise ApiError(422, named(exc), "unreadable") from None
    if library is not None:
        from xrdid.mixtures import LibraryError, NoPhaseOfElements, identify_in_pattern

        try:
            fit, _ = identify_in_pattern(pattern, library, wavelength_A=wavelength_A, **(phase_options or {}))
        except NoPhaseOfElements as exc:
            raise ApiError(422, f"{exc}: give all the sample's elements, or none to search the whole library",
                           "no_phases") from None
        except LibraryError as exc:
            raise ApiError(500, f"the server's phase library is unusable: {exc}", "library") from None
        except PatternError as exc:
            raise ApiError(422, named(exc), "unreadable") from None
        from xrdid.mixtures.plot import fit_figure_data_url

        result["phases"] = {**fit.to_dict(), "figure": fit_figure_data_url(fit, title=name)}
    return {
        "file": name,
        **result,
        "pattern": {
            "x": pattern.x.tolist(),
            "y": pattern.y.tolist(),
            "axis": pattern.axis,
            "wavelength_A": pattern.wavelength_A,
            "model_range": _model_range(bundle, pattern),
        },
    }


# --- upload size limit (before the multipart body is parsed) -----------------------------------------


class UploadLimit:
    """ASGI middleware: 413 for a body over ``max_bytes`` on ``paths``, by Content-Length or while streaming."""

    def __init__(self, app, max_bytes: int, paths: tuple[str, ...] = ("/api/predict",)):
        self.app, self.max_bytes, self.paths = app, max_bytes, paths

    def _message(self) -> str:
        return f"the upload is over the {self.max_bytes / 1024**2:g} MB limit; a 1D powder pattern is far smaller (wrong file?)"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = JSONResponse({"detail": self._message(), "code": "too_large"}, status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Raised inside the body parser: FastAPI passes HTTPExceptions through as they are.
                    raise ApiError(413, self._message(), "too_large")
            return message

        await self.app(scope, counted, send)


# --- the app ----------------------------------------------------------------------------------------


def create_app(
    model_path: str | Path | None = None, *, max_upload_mb: float = MAX_UPLOAD_MB, library: str | Path | None = None
) -> FastAPI:
    """The FastAPI app; the model (``model_path``, default the pretrained one) is loaded at startup.

    With ``library`` (a CIF folder or structures parquet), every prediction also carries ``phases``: the
    whole-pattern phase identification of :mod:`xrdid.mixtures` against it.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from xrdid.predict import load_model

        app.state.bundle, app.state.model_error = None, None
        try:
            app.state.bundle = load_model(model_path)
            log.info("model loaded from %s", app.state.bundle.path)
        except (ValueError, OSError) as exc:  # the page still serves, and says why it cannot predict
            app.state.model_error = str(exc)
            log.error("cannot load the model: %s", exc)
        yield
        app.state.bundle = None

    app = FastAPI(title="xrdid", summary="Space group and crystal system from a powder XRD pattern", lifespan=lifespan)
    app.add_middleware(UploadLimit, max_bytes=int(max_upload_mb * 1024**2))

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse({"detail": exc.detail, "code": exc.code}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(parts), "code": "bad_request"}, status_code=400)

    def bundle_or_503(request: Request):
        bundle = request.app.state.bundle
        if bundle is None:
            raise ApiError(503, f"no model is loaded: {request.app.state.model_error}", "no_model")
        return bundle

    @app.get("/api/health")
    def health(request: Request) -> dict[str, Any]:
        bundle = request.app.state.bundle
        if bundle is None:
            return JSONResponse({"status": "error", "detail": request.app.state.model_error}, status_code=503)
        inst = bundle.instrument
        return {
            "status": "ok",
            "model": bundle.path,
            "wavelength_A": inst.wavelength_A,
            "two_theta_deg": [float(bundle.grid[0]), float(bundle.grid[-1])],
            "q_range": list(bundle.q_range),
            "n_points": int(inst.n_points),
            "max_upload_mb": max_upload_mb,
            "phase_library": Path(library).name if library is not None else None,
        }

    @app.post("/api/predict", response_model=Prediction)
    def predict(
        request: Request,
        file: UploadFile | None = File(None, description="the pattern file (.xy, .xye, .csv, .xrdml, …)"),
        wavelength: str | None = Form(None, description="wavelength in Å, for 2θ files that state none"),
        top_k: str | None = Form(None, description="space groups listed (default 5)"),
        elements: str | None = Form(None, description="phase search: the sample's elements (e.g. 'Ba Ti O'); only library phases made of them"),
        textured: str | None = Form(None, description="phase search: true for a textured sample (keep phases of any fitted preferred orientation)"),
    ):
        bundle = bundle_or_503(request)
        if file is None or not file.filename:
            raise ApiError(400, "no file uploaded: send the pattern as the multipart field 'file'", "bad_request")
        name = _safe_name(file.filename)
        lam, k = _parse_wavelength(wavelength), _parse_top_k(top_k)
        phase_options = _parse_phase_options(elements, textured, library)
        with tempfile.TemporaryDirectory(prefix="xrdid-upload-") as tmp:
            path = Path(tmp) / name
            with open(path, "wb") as out:
                shutil.copyfileobj(file.file, out)
            if path.stat().st_size == 0:
                raise ApiError(400, f"{name}: the file is empty", "empty")
            return classify_upload(bundle, path, name, wavelength_A=lam, top_k=k, library=library, phase_options=phase_options)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
