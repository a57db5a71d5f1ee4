"""The ``materials_project`` structure source: a resumable, chunked download through mp-api.

Why not one ``MPRester().materials.summary.search(...)``: the client retries a request at most 3 times
(429/502/504 and dropped connections), then raises and throws away every page already fetched, and its
start-up heartbeat has no retry at all (see notes/materials-project.md). A download of 150k structures
through one call rarely survives. So the download runs in two steps, each retried here with
exponential back-off on rate limits (429), server errors (5xx) and connection failures:

1. **List** the matching ``material_id`` s with a cheap ``fields=["material_id"]`` query. The sorted
   list is saved to ``state_dir/ids.parquet``; chunk ``i`` is ids ``[i*chunk_size, (i+1)*chunk_size)``.
2. **Fetch** each chunk's structures by ``material_ids``, and save the raw answer (the structure as
   pymatgen JSON, MP's space-group number, the formula) to ``state_dir/chunk-{i:05d}.parquet``
   atomically, then add ``i`` to ``state_dir/done.json``. An id MP listed but did not return (deprecated
   in between, say) is kept as a row with a reason, never dropped.

A rerun with the same query skips the listing and every finished chunk, so an interrupted download
resumes where it stopped. A different query (endpoint, filters or chunk size, recorded in
``state_dir/query.json``) starts afresh. Finally every chunk is described, in ``workers`` processes:
the API's structure JSON becomes the table's arrays directly (no pymatgen objects, no CIF round
trip), spglib labels it at ``symprec`` (MP's own number is kept as ``space_group_source``), and the
JSON is kept as the row's ``document``; rows stream into ``out`` and ``failed_out``. Raw answers
rather than described rows are kept so that a change of ``symprec`` needs no new download.

Retries are tenacity's (:func:`retrying`): only errors :func:`is_transient` calls transient (rate
limits, server errors, dropped connections; the mp-api-specific part) are retried, with jittered
exponential back-off, at most ``max_retries`` times and within ``retry_budget_s`` seconds per step.
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing as mp
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
import tenacity

from xrdid.io import write_parquet, write_text
from xrdid.structures.crystal import crystal_from_pymatgen_dict
from xrdid.structures.table import StructureError, StructureTableWriter, describe_crystal, import_what_describing_needs

log = logging.getLogger(__name__)

SOURCE = "materials_project"
DEFAULT_ENDPOINT = "https://api.materialsproject.org/"  # mp-api's own default (core/settings.py)
MAX_PAGE = 1000  # the API answers 400 to _limit above 1000
MAX_BACKOFF_S = 120.0
FIELDS = ["material_id", "formula_pretty", "structure", "symmetry"]
CHUNK_SCHEMA = pa.schema(
    [
        ("material_id", pa.string()),
        ("formula_pretty", pa.string()),
        ("space_group_mp", pa.int16()),
        ("structure", pa.string()),  # pymatgen Structure.as_dict() as JSON; null when not returned
        ("missing_reason", pa.string()),
    ]
)

T = TypeVar("T")


class MaterialsProjectError(RuntimeError):
    """The download could not finish; finished chunks stay in ``state_dir`` for the next run."""


class MaterialsProjectKeyError(ValueError):
    """No usable API key: not given, not in ``MP_API_KEY``, or not the 32 characters MP issues."""


def download_materials_project(
    *,
    out: str | Path,
    failed_out: str | Path,
    state_dir: str | Path,
    api_key: str | None = None,
    endpoint: str | None = None,
    elements: Sequence[str] | None = None,
    num_sites: int | tuple[int, int] | None = None,
    energy_above_hull_max: float | None = None,
    is_stable: bool | None = None,
    chunk_size: int = 1000,
    max_retries: int = 6,
    backoff_s: float = 2.0,
    retry_budget_s: float = 900.0,
    symprec: float = 0.01,
    workers: int = 1,
) -> tuple[int, int]:
    """Download Materials Project structures into the structures table; resumable.

    Filters: ``elements`` (materials containing all of them), ``num_sites`` (sites per cell, a number or
    an inclusive ``(min, max)``), ``energy_above_hull_max`` (eV/atom), ``is_stable``; deprecated
    materials are always excluded. ``chunk_size`` is the number of materials per chunk (and per page,
    up to the API's 1000). Each network step is tried up to ``1 + max_retries`` times within
    ``retry_budget_s`` seconds, waiting ``backoff_s * 2**attempt`` seconds plus up to ``backoff_s`` of
    jitter (capped at 120 s) in between. ``symprec`` (Å) is spglib's tolerance for ``space_group``;
    ``workers`` processes turn the downloaded chunks into table rows. The key comes from ``api_key``, else ``MP_API_KEY``; the endpoint from ``endpoint``,
    else ``MP_API_ENDPOINT``/``MPRESTER_ENDPOINT`` (read now, not at import), else MP's default.

    Returns ``(n_structures, n_failed)``. Raises MaterialsProjectKeyError before any request when no
    usable key is found, and MaterialsProjectError when a step still fails after its retries.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if max_retries < 0 or backoff_s < 0 or retry_budget_s < 0:
        raise ValueError(
            f"max_retries, backoff_s and retry_budget_s must not be negative, got {max_retries}, {backoff_s}, {retry_budget_s}"
        )
    key = _api_key(api_key)
    endpoint = _endpoint(endpoint)
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    query = _query(elements, num_sites, energy_above_hull_max, is_stable)
    page = min(chunk_size, MAX_PAGE)
    _reset_state_if_query_changed(state, {"endpoint": endpoint, "filters": query, "chunk_size": chunk_size})
    log.info("Materials Project download from %s, filters %s, state in %s", endpoint, query, state)

    retry = _Retrier(max_retries=max_retries, backoff_s=backoff_s, budget_s=retry_budget_s)
    client: list[Any] = []  # the summary rester, made on first need and reused

    def summary():
        if not client:
            connect = functools.partial(_connect, key, endpoint)
            client.append(retry.call("connect to the Materials Project", connect, connect=True))
        return client[0]

    try:
        ids_path = state / "ids.parquet"
        if ids_path.exists():
            ids = pq.read_table(ids_path).column("material_id").to_pylist()
            log.info("resuming: %d material ids listed by an earlier run (%s)", len(ids), ids_path)
        else:
            rester = summary()
            ids = retry.call("list material ids", functools.partial(_list_ids, rester, query, page))
            write_parquet(pa.table({"material_id": pa.array(ids, pa.string())}), ids_path)
            log.info("%d material ids match %s", len(ids), query)

        chunks = [ids[i : i + chunk_size] for i in range(0, len(ids), chunk_size)]
        done = _read_done(state, len(chunks))
        if done:
            log.info("resuming: %d of %d chunks already downloaded", len(done), len(chunks))
        for index, chunk in enumerate(chunks):
            if index in done:
                continue
            rester = summary()
            what = f"fetch chunk {index + 1}/{len(chunks)} ({len(chunk)} materials)"
            table = retry.call(what, functools.partial(_fetch_chunk, rester, chunk, page))
            write_parquet(table, _chunk_path(state, index))
            done.add(index)
            write_text(json.dumps({"n_chunks": len(chunks), "done": sorted(done)}), state / "done.json")
            log.info("chunk %d/%d: %d materials saved", index + 1, len(chunks), table.num_rows)
    finally:
        if client:
            client[0].session.close()

    return _merge(state, len(chunks), out=out, failed_out=failed_out, symprec=symprec, workers=workers)


# -- configuration ---------------------------------------------------------------------------------


def _api_key(api_key: str | None) -> str:
    key = api_key or os.environ.get("MP_API_KEY")
    if not key:
        raise MaterialsProjectKeyError(
            "no Materials Project API key: pass api_key= or set the MP_API_KEY environment variable "
            "(get a key at https://next-gen.materialsproject.org/api)"
        )
    key = key.strip()
    if len(key) != 32:
        raise MaterialsProjectKeyError(
            f"the Materials Project API key must be 32 characters, this one has {len(key)} "
            "(check MP_API_KEY or the api_key argument)"
        )
    return key


def _endpoint(endpoint: str | None) -> str:
    # mp-api reads these variables once, at import; read them here so a setting made later counts.
    endpoint = (
        endpoint or os.environ.get("MP_API_ENDPOINT") or os.environ.get("MPRESTER_ENDPOINT") or DEFAULT_ENDPOINT
    )
    return endpoint if endpoint.endswith("/") else endpoint + "/"


def _query(elements, num_sites, energy_above_hull_max, is_stable) -> dict:
    """The summary.search keyword arguments for the filters (JSON-able: it is recorded in state)."""
    query: dict[str, Any] = {"deprecated": False}  # also keeps search() on REST, off the S3 bulk path
    if elements:
        query["elements"] = sorted(elements)
    if num_sites is not None:
        query["num_sites"] = [num_sites, num_sites] if isinstance(num_sites, int) else list(num_sites)
    if energy_above_hull_max is not None:
        query["energy_above_hull"] = [0.0, float(energy_above_hull_max)]
    if is_stable is not None:
        query["is_stable"] = bool(is_stable)
    return query


def _search_kwargs(query: dict) -> dict:
    return {k: tuple(v) if k in ("num_sites", "energy_above_hull") else v for k, v in query.items()}


# -- state -----------------------------------------------------------------------------------------


def _chunk_path(state: Path, index: int) -> Path:
    return state / f"chunk-{index:05d}.parquet"


def _reset_state_if_query_changed(state: Path, query: dict) -> None:
    path = state / "query.json"
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = None
        if previous == query:
            return
        log.warning("state in %s was for another query (%s); starting afresh", state, previous)
        for stale in [state / "ids.parquet", state / "done.json", *state.glob("chunk-*.parquet")]:
            stale.unlink(missing_ok=True)
    write_text(json.dumps(query, sort_keys=True), path)


def _read_done(state: Path, n_chunks: int) -> set[int]:
    path = state / "done.json"
    if not path.exists():
        return set()
    record = json.loads(path.read_text())
    if record.get("n_chunks") != n_chunks:  # pragma: no cover — ids.parquet and done.json disagree
        log.warning("done.json is for %s chunks, not %d; refetching all", record.get("n_chunks"), n_chunks)
        return set()
    # A chunk counts as done only if its file is there too (done.json is written after it).
    return {i for i in record["done"] if _chunk_path(state, i).exists()}


# -- network steps ---------------------------------------------------------------------------------


def _connect(key: str, endpoint: str):
    """The summary rester. MPRester's constructor GETs /heartbeat without any retry; _Retrier adds it."""
    from mp_api.client import MPRester

    rester = MPRester(api_key=key, endpoint=endpoint, use_document_model=False, mute_progress_bars=True)
    try:
        return rester.materials.summary
    except BaseException:
        rester.session.close()
        raise


def _list_ids(summary, query: dict, page: int) -> list[str]:
    docs = summary.search(fields=["material_id"], chunk_size=page, **_search_kwargs(query))
    return sorted({str(_get(doc, "material_id")) for doc in docs}, key=_id_sort_key)


def _fetch_chunk(summary, ids: list[str], page: int) -> pa.Table:
    docs = summary.search(material_ids=ids, fields=FIELDS, deprecated=False, chunk_size=page)
    by_id = {str(_get(doc, "material_id")): doc for doc in docs}
    rows = []
    for material_id in ids:
        doc = by_id.get(material_id)
        if doc is None:
            reason = "listed by the query but not returned when fetched"
            rows.append({"material_id": material_id, "missing_reason": reason})
            continue
        structure = _get(doc, "structure")
        if structure is not None and not isinstance(structure, dict):
            structure = structure.as_dict()  # a pymatgen Structure (use_document_model=True)
        symmetry = _get(doc, "symmetry") or {}
        number = _get(symmetry, "number")
        rows.append(
            {
                "material_id": material_id,
                "formula_pretty": _get(doc, "formula_pretty"),
                "space_group_mp": None if number is None else int(number),
                "structure": None if structure is None else json.dumps(structure),
                "missing_reason": None if structure is not None else "no structure in the answer",
            }
        )
    return pa.Table.from_pylist(rows, schema=CHUNK_SCHEMA)


def _get(obj, name: str):
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _id_sort_key(material_id: str):
    match = re.fullmatch(r"([a-z]+)-(\d+)", material_id)
    return (match.group(1), int(match.group(2)), "") if match else ("~", 0, material_id)


# -- retries ---------------------------------------------------------------------------------------

_STATUS = re.compile(r"(?:status code|too many) (\d{3})")
_CONNECTION_WORDS = ("max retries exceeded", "connection", "timed out", "remote end closed", "reset by peer")


def is_transient(exc: BaseException, *, connect: bool = False) -> bool:
    """Whether ``exc`` is worth retrying: a rate limit, a server error, or a network failure.

    mp-api wraps most failures in MPRestError with the status in the message ("... error status code
    503 ...", "too many 429 error responses"); a 4xx other than 429 (bad query, bad key) is final.
    While connecting, the heartbeat's failures surface raw: a 429 or 5xx body without ``version`` is a
    KeyError, a non-JSON body a ValueError.
    """
    import requests

    network = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
    if isinstance(exc, (*network, requests.exceptions.RetryError)):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError, json.JSONDecodeError)):  # JSON: a truncated body
        return True
    if connect and isinstance(exc, (KeyError, ValueError)):
        return True
    message = str(exc).lower()
    if type(exc).__name__ == "MPRestError":
        match = _STATUS.search(message)
        if match:
            status = int(match.group(1))
            return status in (408, 429) or status >= 500
        return any(word in message for word in _CONNECTION_WORDS)
    return False


def retrying(
    *,
    max_retries: int,
    backoff_s: float,
    budget_s: float,
    connect: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    what: str = "request",
) -> tenacity.Retrying:
    """tenacity's retry loop for one network step: transient errors only (:func:`is_transient`), jittered
    exponential back-off (``backoff_s * 2**n`` plus up to ``backoff_s``, at most MAX_BACKOFF_S), at most
    ``max_retries`` retries and ``budget_s`` seconds in all; the last error is re-raised."""

    def log_retry(state: tenacity.RetryCallState) -> None:
        log.warning(
            "%s: %s; retry %d/%d in %.3g s",
            what, _oneline(state.outcome.exception()), state.attempt_number, max_retries, state.next_action.sleep,
        )

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(functools.partial(is_transient, connect=connect)),
        stop=tenacity.stop_after_attempt(max_retries + 1) | tenacity.stop_after_delay(budget_s),
        wait=tenacity.wait_exponential(multiplier=backoff_s, max=MAX_BACKOFF_S) + tenacity.wait_random(0, backoff_s),
        sleep=sleep,
        before_sleep=log_retry,
        reraise=True,
    )


class _Retrier:
    """Runs a network step under :func:`retrying`; a final failure becomes MaterialsProjectError."""

    def __init__(self, *, max_retries: int, backoff_s: float, budget_s: float, sleep: Callable[[float], None] = time.sleep):
        self.max_retries, self.backoff_s, self.budget_s, self.sleep = max_retries, backoff_s, budget_s, sleep

    def call(self, what: str, fn: Callable[[], T], *, connect: bool = False) -> T:
        loop = retrying(
            max_retries=self.max_retries, backoff_s=self.backoff_s, budget_s=self.budget_s, connect=connect,
            sleep=self.sleep, what=what,
        )
        try:
            return loop(fn)
        except Exception as exc:
            if not is_transient(exc, connect=connect):
                raise MaterialsProjectError(f"{what} failed: {_oneline(exc)}") from exc
            attempts = loop.statistics.get("attempt_number", 1)
            raise MaterialsProjectError(
                f"{what} failed after {attempts} attempts: {_oneline(exc)}; "
                "finished chunks are kept, run again to resume"
            ) from exc


def _oneline(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# -- merge -----------------------------------------------------------------------------------------


def _merge(state: Path, n_chunks: int, *, out, failed_out, symprec: float, workers: int = 1) -> tuple[int, int]:
    """Describe every saved chunk (in ``workers`` processes) and stream the rows into ``out``; failures
    go to ``failed_out``."""
    describe = functools.partial(_describe_chunk, state=state, symprec=symprec)
    # What describing may import in this process while the table is open, imported before.
    import pyarrow.dataset  # noqa: F401  (pq.read_table of a chunk)

    import_what_describing_needs()
    with StructureTableWriter(out, failed_out) as writer:
        if workers > 1 and n_chunks > 1:
            with mp.get_context("fork").Pool(min(workers, n_chunks)) as pool:
                for rows, failures in pool.imap(describe, range(n_chunks)):
                    writer.add(rows, failures)
        else:
            for index in range(n_chunks):
                writer.add(*describe(index))
    return writer.counts


def _describe_chunk(index: int, *, state: Path, symprec: float) -> tuple[list[dict], list[dict]]:
    """Rows and failures of one downloaded chunk: the API's JSON straight to arrays, then described."""
    rows, failures = [], []
    for raw in pq.read_table(_chunk_path(state, index)).to_pylist():
        material_id = raw["material_id"]
        try:
            if raw["structure"] is None:
                raise StructureError(raw["missing_reason"] or "no structure")
            crystal = crystal_from_pymatgen_dict(json.loads(raw["structure"]))
            rows.append(
                describe_crystal(
                    crystal,
                    id=material_id,
                    source=SOURCE,
                    symprec=symprec,
                    space_group_source=raw["space_group_mp"],
                    document=raw["structure"],
                )
            )
        except StructureError as exc:
            failures.append({"id": material_id, "source": SOURCE, "reason": str(exc)})
        except Exception as exc:  # a malformed document: recorded, never fatal
            failures.append({"id": material_id, "source": SOURCE, "reason": _oneline(exc)})
    return rows, failures
