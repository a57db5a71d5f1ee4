"""download_materials_project through the real mp-api client, against a stand-in API on 127.0.0.1."""

from __future__ import annotations

import socket

import pyarrow.parquet as pq
import pytest

from xrdid.structures.materials_project import (
    MaterialsProjectError,
    MaterialsProjectKeyError,
    download_materials_project,
)

from .mp_standin import StandIn, default_docs

KEY = "0123456789abcdef0123456789abcdef"  # mp-api insists on 32 characters
USABLE = {"mp-13", "mp-149", "mp-153", "mp-2858", "mp-22862", "mp-22865", "mp-23193"}
# Sorted ids, chunk_size=3: [mp-13, mp-149, mp-153] [mp-1001, mp-2858, mp-22862] [mp-22865, mp-23193]
CHUNK1 = {"mp-13", "mp-149", "mp-153"}
CHUNK2 = {"mp-1001", "mp-2858", "mp-22862"}
CHUNK3 = {"mp-22865", "mp-23193"}


@pytest.fixture(autouse=True)
def only_localhost(monkeypatch):
    """Any connection beyond 127.0.0.1 fails the test instead of reaching the network."""
    connect = socket.socket.connect

    def guarded(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"test tried to reach {address}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.delenv("MP_API_ENDPOINT", raising=False)
    monkeypatch.delenv("MPRESTER_ENDPOINT", raising=False)


@pytest.fixture
def server():
    with StandIn(default_docs()) as standin:
        yield standin


def download(tmp_path, server, **kwargs):
    kwargs = {"api_key": KEY, "endpoint": server.url, "chunk_size": 3, "backoff_s": 0.001, **kwargs}
    out, failed = tmp_path / "mp.parquet", tmp_path / "mp.failed.parquet"
    counts = download_materials_project(out=out, failed_out=failed, state_dir=tmp_path / "state", **kwargs)
    rows = {r["id"]: r for r in pq.read_table(out).to_pylist()}
    failures = {r["id"]: r for r in pq.read_table(failed).to_pylist()}
    assert counts == (len(rows), len(failures))
    return rows, failures


def test_paginated_download_writes_both_tables(tmp_path, server):
    rows, failures = download(tmp_path, server)

    assert set(rows) == USABLE  # the deprecated mp-999 is never asked for
    assert set(failures) == {"mp-1001"}
    assert "partial occupancy" in failures["mp-1001"]["reason"]
    expected = {"mp-22862": 225, "mp-149": 227, "mp-22865": 221, "mp-153": 194, "mp-2858": 14, "mp-13": 229}
    for material_id, number in expected.items():
        assert rows[material_id]["space_group"] == number  # spglib
        assert rows[material_id]["space_group_source"] == number  # MP's own label, kept beside it
    assert rows["mp-153"]["crystal_system"] == "hexagonal"
    assert rows["mp-2858"]["crystal_system"] == "monoclinic"
    assert all(r["source"] == "materials_project" for r in rows.values())

    summary = server.summary_requests()
    assert all(r.api_key == KEY for r in summary)
    listing = [r for r in summary if "material_ids" not in r.params]
    assert [r.params.get("_skip") for r in listing] == [None, "3", "6"]  # three pages of ids
    assert all(r.params["_fields"] == "material_id" and r.params["deprecated"] == "False" for r in listing)
    fetched = [set(r.material_ids) for r in summary if "material_ids" in r.params]
    assert fetched == [CHUNK1, CHUNK2, CHUNK3]


def test_filters_are_sent_as_the_api_names_them(tmp_path, server):
    rows, failures = download(
        tmp_path, server, elements=["Cl"], num_sites=(2, 8), energy_above_hull_max=0.01, is_stable=True
    )

    assert set(rows) == {"mp-22862", "mp-22865", "mp-23193"} and failures == {}
    listing = server.summary_requests()[0].params
    assert listing["elements"] == "Cl"
    assert (listing["nsites_min"], listing["nsites_max"]) == ("2", "8")
    assert (listing["energy_above_hull_min"], listing["energy_above_hull_max"]) == ("0.0", "0.01")
    assert listing["is_stable"] == "True"


def test_survives_rate_limits_server_errors_and_dropped_connections(tmp_path, server):
    def heartbeat(request):
        return request.path == "/heartbeat"

    def fetching(ids):
        return lambda request: bool(ids & set(request.material_ids))

    server.fail("drop", when=heartbeat)  # the heartbeat has no retry in mp-api: ours must cover it
    server.fail("429", when=heartbeat)  # mp-api reads this as KeyError: 'version'
    server.fail("429", retry_after=1, when=lambda r: r.params.get("_skip") == "3")  # mp-api waits 1 s itself
    server.fail("drop", times=4, when=fetching(CHUNK1))  # beyond mp-api's 3 retries
    server.fail("429", times=4, when=fetching(CHUNK2))  # beyond mp-api's 3 retries: MPRestError, then ours
    server.fail("503", times=2, when=fetching(CHUNK3))  # not retried by mp-api at all

    rows, failures = download(tmp_path, server)

    assert set(rows) == USABLE and set(failures) == {"mp-1001"}
    assert all(fault.hits == fault.times for fault in server.faults)  # every fault was served
    answers = [r.answer for r in server.requests()]
    assert answers.count("drop") == 5 and answers.count("429") == 6 and answers.count("503") == 2


def test_interrupted_download_resumes_without_refetching(tmp_path, server):
    server.fail("500", times=None, when=lambda r: bool(CHUNK2 & set(r.material_ids)))

    with pytest.raises(MaterialsProjectError, match=r"chunk 2/3 .* after 3 attempts"):
        download(tmp_path, server, max_retries=2)
    assert not (tmp_path / "mp.parquet").exists()
    assert len(server.requests(answered="500")) == 3
    assert (tmp_path / "state" / "chunk-00000.parquet").exists()

    server.clear_faults()
    # Meanwhile MP deprecated a listed material: it must show up as a failure, not vanish.
    next(doc for doc in server.docs if doc["material_id"] == "mp-2858")["deprecated"] = True
    before = len(server.log)
    rows, failures = download(tmp_path, server, max_retries=2)

    assert set(rows) == USABLE - {"mp-2858"} and set(failures) == {"mp-1001", "mp-2858"}
    assert "not returned" in failures["mp-2858"]["reason"]
    second_run = [r for r in server.log[before:] if r.path == "/materials/summary/"]
    assert all("material_ids" in r.params for r in second_run)  # ids were not listed again
    assert [set(r.material_ids) for r in second_run] == [CHUNK2, CHUNK3]  # chunk 1 not refetched


def test_a_changed_query_starts_afresh(tmp_path, server):
    download(tmp_path, server)
    before = len(server.log)
    rows, _ = download(tmp_path, server, elements=["Cl"])  # same state_dir, another query

    assert set(rows) == {"mp-22862", "mp-22865", "mp-23193"}
    second_run = [r for r in server.log[before:] if r.path == "/materials/summary/"]
    assert second_run[0].params["elements"] == "Cl" and "material_ids" not in second_run[0].params


def test_a_final_error_is_not_retried(tmp_path, server):
    server.fail("403", times=None, when=lambda r: r.path == "/materials/summary/")
    with pytest.raises(MaterialsProjectError, match="403"):
        download(tmp_path, server, max_retries=5)
    assert len(server.summary_requests(answered="403")) == 1


def test_key_and_endpoint_from_the_environment(tmp_path, server, monkeypatch):
    monkeypatch.setenv("MP_API_KEY", KEY)
    monkeypatch.setenv("MP_API_ENDPOINT", server.url)  # read at call time, not at mp_api import
    rows, _ = download(tmp_path, server, api_key=None, endpoint=None)
    assert set(rows) == USABLE
    assert all(r.api_key == KEY for r in server.summary_requests())


def test_missing_or_malformed_key_is_a_clear_error(tmp_path, server, monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(MaterialsProjectKeyError, match="MP_API_KEY"):
        download(tmp_path, server, api_key=None)
    with pytest.raises(MaterialsProjectKeyError, match="32 characters"):
        download(tmp_path, server, api_key="too-short")
    assert server.log == []  # refused before any request


def test_documents_become_arrays_without_pymatgen_structures(tmp_path, server, monkeypatch):
    """The API's JSON goes straight to the table's arrays: no Structure.from_dict, no CIF round trip."""
    import json

    from pymatgen.core import Structure
    from pymatgen.io import cif

    def refuse(*args, **kwargs):
        raise AssertionError("a pymatgen Structure or CIF was made from an API document")

    monkeypatch.setattr(Structure, "from_dict", classmethod(refuse))
    monkeypatch.setattr(cif.CifParser, "__init__", refuse)
    monkeypatch.setattr(cif.CifWriter, "__init__", refuse)
    rows, _ = download(tmp_path, server, workers=2)
    monkeypatch.undo()

    docs = {d["material_id"]: d for d in server.docs}
    for material_id, row in rows.items():
        reference = Structure.from_dict(docs[material_id]["structure"])
        # provenance kept: the document as the API sent it (JSON: tuples come back as lists)
        assert json.loads(row["document"]) == json.loads(json.dumps(docs[material_id]["structure"]))
        assert row["species"] == [site.specie.symbol for site in reference]
        assert [x for xyz in row["frac_coords"] for x in xyz] == pytest.approx(reference.frac_coords.reshape(-1).tolist(), abs=1e-12)
        assert row["lattice"] == pytest.approx(reference.lattice.matrix.reshape(-1).tolist())
        assert row["occupancies"] == [1.0] * len(reference)
        assert row["formula"] == reference.composition.reduced_formula
        assert row["cif"].startswith(f"data_{material_id}")  # a P1 CIF for export


# -- the retry loop (tenacity), on its own -----------------------------------------------------------


def failing(*errors):
    """A callable that raises ``errors`` in turn, then returns "ok"; ``calls`` counts the calls."""
    calls = []

    def fn():
        calls.append(len(calls))
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "ok"

    return fn, calls


def transient_errors():
    import requests
    from mp_api.client.core import MPRestError

    return [
        MPRestError("REST query returned with error status code 503 on URL ..."),
        MPRestError("REST query returned with error status code 429 ... too many 429 error responses"),
        MPRestError("HTTPSConnectionPool: Max retries exceeded with url: /materials/summary/"),
        requests.ConnectionError("Connection reset by peer"),
        requests.Timeout("read timed out"),
    ]


def permanent_errors():
    from mp_api.client.core import MPRestError

    return [
        MPRestError("REST query returned with error status code 400 on URL ... invalid field"),
        MPRestError("REST query returned with error status code 403 on URL ... invalid API key"),
        ValueError("a bug in our own code"),
        KeyError("version"),  # transient only while connecting (a 429 heartbeat); see below
    ]


@pytest.mark.parametrize("error", transient_errors(), ids=lambda e: type(e).__name__ + str(e)[:40])
def test_transient_errors_are_retried_with_jittered_exponential_waits(error):
    from xrdid.structures.materials_project import retrying

    fn, calls = failing(error, error, error)
    waits: list[float] = []
    assert retrying(max_retries=5, backoff_s=1.0, budget_s=1e6, sleep=waits.append)(fn) == "ok"
    assert len(calls) == 4 and len(waits) == 3
    for n, wait in enumerate(waits):  # backoff_s * 2**n, plus up to backoff_s of jitter
        assert 2**n <= wait <= 2**n + 1
    assert any(wait != 2**n for n, wait in enumerate(waits))  # jittered


@pytest.mark.parametrize("error", permanent_errors(), ids=lambda e: type(e).__name__ + str(e)[:40])
def test_permanent_errors_are_not_retried(error):
    from xrdid.structures.materials_project import retrying

    fn, calls = failing(error)
    waits: list[float] = []
    with pytest.raises(type(error)):
        retrying(max_retries=5, backoff_s=1.0, budget_s=1e6, sleep=waits.append)(fn)
    assert len(calls) == 1 and waits == []


def test_heartbeat_failures_are_transient_while_connecting():
    from xrdid.structures.materials_project import retrying

    fn, calls = failing(KeyError("version"), ValueError("Expecting value: line 1 column 1"))
    assert retrying(max_retries=3, backoff_s=0.0, budget_s=1e6, connect=True, sleep=lambda s: None)(fn) == "ok"
    assert len(calls) == 3


def test_retries_stop_at_the_limit_and_the_budget():
    from mp_api.client.core import MPRestError

    from xrdid.structures.materials_project import MaterialsProjectError, _Retrier

    error = MPRestError("REST query returned with error status code 502")
    fn, calls = failing(*[error] * 10)
    with pytest.raises(MaterialsProjectError, match="fetch chunk 1/1 failed after 3 attempts.*502"):
        _Retrier(max_retries=2, backoff_s=0.0, budget_s=1e6, sleep=lambda s: None).call("fetch chunk 1/1", fn)
    assert len(calls) == 3
    fn, calls = failing(*[error] * 10)
    with pytest.raises(MaterialsProjectError, match="after 1 attempts"):
        _Retrier(max_retries=5, backoff_s=0.0, budget_s=0.0, sleep=lambda s: None).call("list", fn)  # no time left
    assert len(calls) == 1



def test_no_module_is_imported_while_the_tables_are_open(tmp_path, server, native_imports_while_writing):
    """The downloaded chunks are described in this process (one worker) while the table is open: what that
    needs is imported before (the download itself is done here, with the stand-in)."""
    download(tmp_path, server)
    code = """
        import sys
        from pathlib import Path
        from xrdid.structures.materials_project import _merge

        _merge(Path(sys.argv[1]), 3, out=sys.argv[2], failed_out=sys.argv[3], symprec=0.01, workers=1)
    """
    seen = native_imports_while_writing(code, tmp_path / "state", tmp_path / "again.parquet", tmp_path / "again.failed.parquet")
    assert seen == {"again.parquet": [], "again.failed.parquet": []}
    assert pq.read_table(tmp_path / "again.parquet").equals(pq.read_table(tmp_path / "mp.parquet"))
