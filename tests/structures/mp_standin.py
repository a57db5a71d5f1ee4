"""A stand-in for the Materials Project API on 127.0.0.1, for tests of the real mp-api client.

It answers the two routes mp-api (0.46) uses for ``MPRester(...).materials.summary.search``:

- ``GET /heartbeat`` → ``{"version", "db_version", "access_controlled_batch_ids"}`` (no key needed);
- ``GET /materials/summary/`` with ``_limit`` (default 100, above 1000 → 400), ``_skip``, ``_fields`` or
  ``_all_fields``, and the filters the summary route sends (``nsites_min/_max``, ``elements`` = contains
  all, ``material_ids``, ``deprecated``, ``is_stable``, ``energy_above_hull_min/_max``,
  ``batch_id_not_eq``) → ``{"data": [...], "meta": {"total_doc": N, ...}}``; errors carry ``detail``.
  An unknown filter is a 400, so a drift in what the client sends shows up as a failure.

Every request is logged (path, parameters, API key, what was answered). Faults are injected with
``fail(action, times=..., when=...)``: ``"429"`` (with ``Retry-After`` whole seconds), ``"drop"`` (close
the socket without a response), or any other status code such as ``"500"`` or ``"503"``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from pymatgen.core import Lattice, Structure

HEARTBEAT = {
    "status": "OK",
    "version": "0.87.0",  # emmet version; >= mp-api's MIN_EMMET_VERSION so no compatibility warning
    "db_version": "2025.09.25",
    "access_controlled_batch_ids": [],
}
PAGING_KEYS = {"_limit", "_skip", "_fields", "_all_fields", "_page", "_per_page", "_sort_fields"}
FILTER_KEYS = {
    "nsites_min",
    "nsites_max",
    "elements",
    "material_ids",
    "deprecated",
    "is_stable",
    "energy_above_hull_min",
    "energy_above_hull_max",
    "batch_id_not_eq",
}


@dataclass
class Request:
    path: str
    params: dict[str, str]
    api_key: str | None
    answer: str = ""  # "200", "429", "drop", ...

    @property
    def material_ids(self) -> list[str]:
        value = self.params.get("material_ids")
        return value.split(",") if value else []


@dataclass
class Fault:
    action: str
    times: int | None  # None: every matching request, for ever
    when: Callable[[Request], bool]
    retry_after: int
    hits: int = 0


@dataclass
class StandIn:
    """The server; ``url`` is the endpoint to give MPRester (with its trailing slash)."""

    docs: list[dict]
    log: list[Request] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                standin._handle(self)

            def log_message(self, *args):  # keep pytest output clean
                pass

        self._server = _bind(Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- faults and the log ------------------------------------------------------------------------

    def fail(self, action: str, *, times: int | None = 1, when=None, retry_after: int = 0) -> Fault:
        """Answer the next ``times`` requests matching ``when(request)`` with ``action``."""
        fault = Fault(action, times, when or (lambda request: True), retry_after)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self):
        with self._lock:
            self.faults.clear()

    def requests(self, path: str | None = None, answered: str | None = None) -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.log
                if (path is None or r.path == path) and (answered is None or r.answer == answered)
            ]

    def summary_requests(self, answered: str | None = "200") -> list[Request]:
        return self.requests("/materials/summary/", answered)

    # -- the API -----------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler):
        parts = urlsplit(handler.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        request = Request(parts.path, params, handler.headers.get("x-api-key"))
        with self._lock:
            self.log.append(request)
            live = (f for f in self.faults if f.times is None or f.hits < f.times)
            fault = next((f for f in live if f.when(request)), None)
            if fault is not None:
                fault.hits += 1
        if fault is not None:
            request.answer = fault.action
            if fault.action == "drop":
                handler.close_connection = True  # no status line, no body: the client sees a reset
                return
            headers = {"Retry-After": str(fault.retry_after)} if fault.action == "429" else {}
            detail = "Too many requests" if fault.action == "429" else "Injected failure"
            return _send(handler, int(fault.action), {"detail": detail}, headers)
        if parts.path == "/heartbeat":
            request.answer = "200"
            return _send(handler, 200, HEARTBEAT)
        if parts.path == "/materials/summary/":
            status, body = self._summary(params)
            request.answer = str(status)
            return _send(handler, status, body)
        request.answer = "404"
        return _send(handler, 404, {"detail": "Not Found"})

    def _summary(self, params: dict[str, str]) -> tuple[int, dict]:
        unknown = set(params) - PAGING_KEYS - FILTER_KEYS
        if unknown:
            return 400, {"detail": f"unknown query parameters {sorted(unknown)}"}
        limit = int(params.get("_limit", 100))
        skip = int(params.get("_skip", 0))
        if limit > 1000:
            return 400, {"detail": "_limit may not exceed 1000"}
        matches = [doc for doc in self.docs if _matches(doc, params)]
        page = matches[skip : skip + limit]
        if params.get("_fields") and params.get("_all_fields", "False") != "True":
            wanted = params["_fields"].split(",")
            page = [{k: doc[k] for k in wanted if k in doc} for doc in page]
        meta = {
            "api_version": HEARTBEAT["version"],
            "time_stamp": "2025-10-01T00:00:00",
            "total_doc": len(matches),
            "max_limit": 1000,
            "default_fields": ["material_id", "formula_pretty"],
        }
        return 200, {"data": page, "meta": meta}


def _bind(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A server on a free port whose number holds neither "414" nor "422".

    mp-api splits a failed request into batches when its error message contains either code, and that
    message holds the URL: on port 41441 an injected 500 was retried as two requests. The port must not
    decide how many requests a test sees.
    """
    while True:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        port = str(server.server_address[1])
        if "414" not in port and "422" not in port:
            return server
        server.server_close()


def _matches(doc: dict, params: dict[str, str]) -> bool:
    def boolean(value: str) -> bool:
        return value.lower() == "true"

    if "deprecated" in params and doc["deprecated"] != boolean(params["deprecated"]):
        return False
    if "is_stable" in params and doc["is_stable"] != boolean(params["is_stable"]):
        return False
    if "nsites_min" in params and doc["nsites"] < int(params["nsites_min"]):
        return False
    if "nsites_max" in params and doc["nsites"] > int(params["nsites_max"]):
        return False
    e_hull = doc["energy_above_hull"]
    if "energy_above_hull_min" in params and e_hull < float(params["energy_above_hull_min"]):
        return False
    if "energy_above_hull_max" in params and e_hull > float(params["energy_above_hull_max"]):
        return False
    if "elements" in params and not set(params["elements"].split(",")) <= set(doc["elements"]):
        return False
    if "material_ids" in params and doc["material_id"] not in params["material_ids"].split(","):
        return False
    return not ("batch_id_not_eq" in params and doc.get("batch_id") == params["batch_id_not_eq"])


def _send(handler: BaseHTTPRequestHandler, status: int, body: dict, headers: dict | None = None):
    payload = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(payload)


# -- documents -------------------------------------------------------------------------------------

CRYSTAL_SYSTEMS = {225: "Cubic", 227: "Cubic", 221: "Cubic", 194: "Hexagonal", 14: "Monoclinic", 229: "Cubic"}


def summary_doc(material_id: str, structure: Structure, number: int, symbol: str, **extra) -> dict:
    """A summary document as the API serves it (the fields the download asks for, and the filters')."""
    doc = {
        "material_id": material_id,
        "formula_pretty": structure.composition.reduced_formula,
        "structure": structure.as_dict(),
        "symmetry": {
            "crystal_system": CRYSTAL_SYSTEMS[number],
            "symbol": symbol,
            "number": number,
            "point_group": "",
            "symprec": 0.1,
            "version": "2.5.0",
        },
        "nsites": len(structure),
        "elements": sorted({el.symbol for el in structure.composition.elements}),
        "nelements": len(structure.composition.elements),
        "energy_above_hull": 0.0,
        "is_stable": True,
        "deprecated": False,
        "builder_meta": {"license": "BY-C"},
    }
    doc.update(extra)
    return doc


def default_docs() -> list[dict]:
    """Nine small real structures built in code, in the server's (unsorted) order.

    Seven are usable (cubic, hexagonal, monoclinic); ``mp-1001`` is partially occupied (Fe0.5Ni0.5 bcc)
    and must land in the failures table; ``mp-999`` is deprecated and must never be served to a download.
    """
    # Sites written out by symmetry (pymatgen's from_spacegroup takes ~0.5 s a call; tests must be quick).
    nacl = _rocksalt("Na", "Cl", 5.64)
    diamond = _FCC + [[x + 0.25, y + 0.25, z + 0.25] for x, y, z in _FCC]
    si = Structure(Lattice.cubic(5.43), ["Si"] * 8, diamond)
    cscl = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    mg = Structure(Lattice.hexagonal(3.21, 5.21), ["Mg", "Mg"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
    mono = Structure(  # baddeleyite-like ZrO, P2_1/c: x,y,z; -x,y+1/2,-z+1/2; -x,-y,-z; x,-y+1/2,z+1/2
        Lattice.monoclinic(5.1, 5.2, 5.3, 99.2),
        ["Zr"] * 4 + ["O"] * 4,
        _p21c([0.276, 0.040, 0.208]) + _p21c([0.069, 0.332, 0.345]),
    )
    kcl = _rocksalt("K", "Cl", 6.29)
    fe = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    feni = Structure(Lattice.cubic(2.87), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    return [
        summary_doc("mp-22862", nacl, 225, "Fm-3m"),
        summary_doc("mp-149", si, 227, "Fd-3m"),
        summary_doc("mp-22865", cscl, 221, "Pm-3m"),
        summary_doc("mp-153", mg, 194, "P6_3/mmc"),
        summary_doc("mp-2858", mono, 14, "P2_1/c", energy_above_hull=0.012, is_stable=False),
        summary_doc("mp-23193", kcl, 225, "Fm-3m"),
        summary_doc("mp-13", fe, 229, "Im-3m"),
        summary_doc("mp-1001", feni, 229, "Im-3m", energy_above_hull=0.05, is_stable=False),
        summary_doc("mp-999", nacl, 225, "Fm-3m", deprecated=True),
    ]


_FCC = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]


def _rocksalt(cation: str, anion: str, a: float) -> Structure:
    return Structure(
        Lattice.cubic(a), [cation] * 4 + [anion] * 4, _FCC + [[(x + 0.5) % 1, y, z] for x, y, z in _FCC]
    )


def _p21c(xyz) -> list[list[float]]:
    x, y, z = xyz
    return [
        [x, y, z],
        [-x % 1, (y + 0.5) % 1, (0.5 - z) % 1],
        [-x % 1, -y % 1, -z % 1],
        [x, (0.5 - y) % 1, (z + 0.5) % 1],
    ]
