"""Fault injection (/_emulator/faults): status faults, Retry-After, latency, path matching,
queueing and clearing.  Each test targets a path of its own where it can (``/customers/<id>``),
and the ``api`` fixture clears the queue afterwards, so the shared emulator is left clean."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import Emulator
from tests.integration.emulator_support import Api, events_for, session_api, unique
from tests.integration.harness import wait_until


@pytest.fixture
def api(amberflo_emulator: Emulator) -> Iterator[Api]:
    yield from session_api(amberflo_emulator)


def fault(api: Api, **spec: object) -> dict[str, object]:
    r = api.post("/_emulator/faults", json=spec)
    assert r.status_code == 200, r.text
    doc: dict[str, object] = r.json()
    return doc


def test_status_fault_with_retry_after_applies_count_times(api: Api) -> None:
    path = f"/customers/{unique('faulty')}"
    before = api.stats()["requests"]
    queued = fault(api, status=503, count=2, retry_after=2, path=path)
    assert queued["faults"] == [
        {
            "status": 503,
            "count": 2,
            "retry_after": 2.0,
            "latency_ms": 0,
            "path": path,
            "method": None,
            "after": False,
        }
    ]
    for _ in range(2):
        r = api.get(path)
        assert r.status_code == 503
        assert r.headers["Retry-After"] == "2"
        assert r.json()["code"] == "SERVICE_UNAVAILABLE"
    r = api.get(path)
    assert r.status_code == 200 and r.json() == {}
    after = api.stats()["requests"]
    assert after.get("503", 0) - before.get("503", 0) == 2
    assert api.get("/_emulator/faults").json() == {"faults": []}


def test_fault_on_ingest_stores_nothing_then_ingest_works(api: Api) -> None:
    customer = unique("ingest-fault")
    fault(api, status=429, count=1, retry_after=0.5, path="/ingest")
    r = api.ingest(events_for(customer, "calls", [1]), path="/ingest/")
    assert r.status_code == 429 and r.headers["Retry-After"] == "0.5"
    assert api.records(customer) == []
    assert api.ingest(events_for(customer, "calls", [1])).status_code == 200
    assert len(api.records(customer)) == 1


def test_method_match_and_a_lost_answer(api: Api) -> None:
    cid = unique("lost")
    customer = {"customerId": cid, "customerName": "Lost"}
    fault(api, status=500, path="/customers", method="put", after=True)
    assert api.get("/customers", params={"customerId": cid}).json() == {}  # GET: not faulted
    r = api.put("/customers", json=customer)
    assert r.status_code == 500 and "fault injected" in r.json()["message"]
    assert api.get(f"/customers/{cid}").json()["customerName"] == "Lost"  # stored all the same
    fault(api, latency_ms=300, path="/customers", method="PUT", after=True)
    with pytest.raises(requests.Timeout):
        api.s.put(
            api.base_url + "/customers", json={**customer, "customerName": "Late"}, timeout=0.1
        )
    wait_until(
        lambda: api.get(f"/customers/{cid}").json()["customerName"] == "Late", 10, "the change"
    )


def test_prefix_match_and_other_paths_unaffected(api: Api) -> None:
    prefix = f"/customers/{unique('prefix')}"
    fault(api, status=500, count=3, path=prefix)
    assert api.get("/customers").status_code == 200  # not under the prefix
    assert api.get(prefix + "-a").status_code == 500
    assert api.get(prefix + "-b").status_code == 500
    assert api.get(prefix).status_code == 500
    assert api.get(prefix).status_code == 200


def test_faults_queue_in_order(api: Api) -> None:
    path = f"/customers/{unique('queue')}"
    fault(api, status=503, count=1, path=path)
    fault(api, status=429, count=1, path=path)
    fault(api, status=502, count=1, path=path)
    assert [api.get(path).status_code for _ in range(4)] == [503, 429, 502, 200]


def test_latency_fault_stalls_then_processes_normally(api: Api) -> None:
    path = f"/customers/{unique('slow')}"
    fault(api, latency_ms=600, count=1, path=path)
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        slow = pool.submit(requests.get, api.base_url + path, headers=api.s.headers, timeout=10)
        time.sleep(0.1)
        # The stall does not block the server: other requests are answered meanwhile.
        assert api.get("/customers", params={"customerId": "x"}).status_code == 200
        assert not slow.done()
        r = slow.result()
    assert r.status_code == 200 and r.json() == {}
    assert time.monotonic() - started >= 0.55
    started = time.monotonic()
    assert api.get(path).status_code == 200  # used up
    assert time.monotonic() - started < 0.5


def test_latency_with_status_stalls_then_fails(api: Api) -> None:
    path = f"/customers/{unique('slowfail')}"
    fault(api, latency_ms=200, status=504, path=path)
    started = time.monotonic()
    assert api.get(path).status_code == 504
    assert time.monotonic() - started >= 0.15


def test_fault_without_path_hits_any_api_path_but_not_controls_or_healthz(api: Api) -> None:
    fault(api, status=500, count=1)
    assert requests.get(api.base_url + "/healthz", timeout=10).status_code == 200
    assert api.get("/_emulator/stats").status_code == 200
    assert api.get("/_emulator/faults").json()["faults"][0]["count"] == 1
    assert api.get(f"/customers/{unique('any')}").status_code == 500
    assert api.get("/_emulator/faults").json() == {"faults": []}


def test_delete_clears_every_fault(api: Api) -> None:
    path = f"/customers/{unique('clear')}"
    fault(api, status=503, count=100, path=path)
    fault(api, status=500, count=100)
    r = api.delete("/_emulator/faults")
    assert r.status_code == 200 and r.json() == {"faults": []}
    assert api.get(path).status_code == 200


def test_faults_need_the_key(amberflo_emulator: Emulator) -> None:
    r = requests.post(
        amberflo_emulator.base_url + "/_emulator/faults", json={"status": 503}, timeout=10
    )
    assert r.status_code == 401


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"count": 3},
        {"status": 200},
        {"status": 503, "count": 0},
        {"status": 503, "retry_after": -1},
        {"latency_ms": -5},
    ],
)
def test_invalid_fault_specs_are_400(api: Api, spec: dict[str, object]) -> None:
    r = api.post("/_emulator/faults", json=spec)
    assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST"
    assert api.get("/_emulator/faults").json() == {"faults": []}
