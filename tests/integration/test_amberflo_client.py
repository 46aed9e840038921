"""connector.amberflo.AmberfloClient against the emulator: every call, and how each failure
maps onto the project's errors."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from connector.amberflo import AmberfloApiError, AmberfloClient, usage_query
from connector.errors import FatalError, RetryableError, ThrottledError
from connector.sinks.api import parse_retry_after as retry_after_seconds
from tests.conftest import Emulator
from tests.integration.emulator_support import T0, events_for, unique

JAN1 = T0 // 1000


@pytest.fixture
def client(amberflo_emulator: Emulator) -> Iterator[AmberfloClient]:
    with AmberfloClient(amberflo_emulator.base_url, amberflo_emulator.api_key) as c:
        yield c
        c.clear_faults()


def test_customers(client: AmberfloClient) -> None:
    cid = unique("client-customer")
    assert client.get_customer(cid) is None
    created = client.create_customer(cid, "Acme", customerEmail="a@acme.test", traits={"t": "1"})
    assert created["customerEmail"] == "a@acme.test"
    assert client.get_customer(cid) == created
    assert created in client.list_customers()
    replaced = client.upsert_customer(cid, "Acme 2")
    assert replaced["customerName"] == "Acme 2" and "traits" not in replaced
    fresh = unique("client-upsert")
    assert client.upsert_customer(fresh, "New")["customerId"] == fresh
    assert client.delete_customer(cid)["customerId"] == cid
    assert client.get_customer(cid) is None


def test_plans(client: AmberfloClient) -> None:
    cid = unique("client-plan")
    assert client.get_plan(cid) is None and client.list_plans(cid) == []
    first = client.assign_plan(cid, "basic")
    second = client.assign_plan(cid, "gold", product_id="2", start_time_in_seconds=JAN1)
    assert client.get_plan(cid) == second
    assert client.list_plans(cid) == [first, second]


def test_meters(client: AmberfloClient) -> None:
    name = unique("client-meter")
    meter = client.create_meter(name, "Client meter", dimensions=["region"], description="d")
    assert meter["meterType"] == "sum_of_all_usage" and meter["label"] == "Client meter"
    assert client.list_meters(name) == [meter]
    assert meter in client.list_meters()
    assert client.get_meter(meter["id"]) == meter
    assert client.get_meter(unique("absent")) is None


def test_ingest_and_usage(client: AmberfloClient) -> None:
    customer, meter = unique("client-usage"), unique("client-usage-meter")
    events = events_for(customer, meter, [1, 2, 3], step_ms=3_600_000)
    assert client.ingest(events) == 3
    assert client.ingest(events[:1], gzip=False) == 1  # acknowledged, but a duplicate
    report = client.query_usage(
        usage_query(meter, JAN1, JAN1 + 3 * 3600, interval="HOUR", group_by=["customerId"])
    )
    (series,) = report["clientMeters"]
    assert series["groupValue"] == 6.0
    assert [v["value"] for v in series["values"]] == [1.0, 2.0, 3.0]
    batch = client.query_usage_batch(
        [usage_query(meter, JAN1, JAN1 + 86_400, aggregation=a) for a in ("COUNT", "MAX")]
    )
    assert [r["clientMeters"][0]["groupValue"] for r in batch] == [3.0, 3.0]
    everything = client.usage_all(JAN1, JAN1 + 86_400, group_by_customer=True, customer_id=customer)
    assert [r["metadata"]["meterApiName"] for r in everything] == [meter]
    totals = client.emulator_totals(customer_id=customer)
    assert totals == [{"meterApiName": meter, "customerId": customer, "sum": 6.0, "count": 3}]
    page = client.emulator_records(customer_id=customer, limit=2)
    assert len(page["records"]) == 2 and page["next_after_id"] == page["records"][-1]["id"]
    assert set(client.emulator_stats()) >= {"requests", "records_stored", "duplicates"}
    assert (
        client.emulator_delete_records(customer_id=customer, start_time_in_millis=JAN1 * 1000 + 1)
        == 2
    )
    assert client.emulator_totals(customer_id=customer)[0]["count"] == 1


def test_query_builder() -> None:
    assert usage_query(
        "m",
        10,
        20,
        aggregation="MAX",
        interval="WEEK",
        group_by=["region"],
        filters={"customerId": ("a",)},
        take=5,
        ascending=True,
    ) == {
        "meterApiName": "m",
        "aggregation": "MAX",
        "timeGroupingInterval": "WEEK",
        "timeRange": {"startTimeInSeconds": 10, "endTimeInSeconds": 20},
        "groupBy": ["region"],
        "filter": {"customerId": ["a"]},
        "take": {"limit": 5, "isAscending": True},
    }


def test_bad_key_is_fatal_and_names_the_url(amberflo_emulator: Emulator) -> None:
    with (
        AmberfloClient(amberflo_emulator.base_url, "wrong-key") as bad,
        pytest.raises(FatalError) as err,
    ):
        bad.list_customers()
    assert not isinstance(err.value, AmberfloApiError)
    message = str(err.value)
    assert "401" in message and f"{amberflo_emulator.base_url}/customers" in message
    assert "API key" in message


def test_bad_request_is_an_api_error_with_details(client: AmberfloClient) -> None:
    with pytest.raises(AmberfloApiError) as err:
        client.ingest([{"customerId": "", "meterApiName": "m", "meterValue": 1}])
    assert err.value.status == 400 and err.value.code == "BAD_REQUEST"
    assert {d["field"] for d in err.value.details} == {"customerId", "meterTimeInMillis"}
    assert isinstance(err.value, FatalError)
    with pytest.raises(AmberfloApiError) as conflict:
        name = unique("twice")
        client.create_meter(name)
        client.create_meter(name)
    assert conflict.value.status == 409


@pytest.mark.parametrize(
    ("status", "retry_after", "error", "expected_wait"),
    [
        (429, 3, ThrottledError, 3.0),
        (503, None, ThrottledError, None),
        (500, None, RetryableError, None),
        (502, 1, RetryableError, None),
    ],
)
def test_throttling_and_server_errors_are_retryable(
    client: AmberfloClient,
    status: int,
    retry_after: int | None,
    error: type[RetryableError],
    expected_wait: float | None,
) -> None:
    spec = {"path": "/ingest", "retry_after": retry_after} if retry_after else {"path": "/ingest"}
    client.inject_fault(status, **spec)  # type: ignore[arg-type]
    with pytest.raises(error) as err:
        client.ingest(events_for(unique("throttled"), "calls", [1]))
    assert type(err.value) is error
    assert err.value.http_status == status
    if isinstance(err.value, ThrottledError):
        assert err.value.retry_after == expected_wait
    assert client.ingest(events_for(unique("after"), "calls", [1])) == 1


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        AmberfloClient(f"http://127.0.0.1:{port}", "k", timeout=2) as c,
        pytest.raises(RetryableError) as err,
    ):
        c.list_meters()
    assert f"127.0.0.1:{port}" in str(err.value)


def test_timeout_is_retryable(amberflo_emulator: Emulator, client: AmberfloClient) -> None:
    client.inject_fault(latency_ms=1500, path="/meters")
    with (
        AmberfloClient(amberflo_emulator.base_url, amberflo_emulator.api_key, timeout=0.3) as c,
        pytest.raises(RetryableError),
    ):
        c.list_meters()


def test_api_key_is_required() -> None:
    with pytest.raises(FatalError):
        AmberfloClient("http://127.0.0.1:1", "")


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(" 0.5 ") == 0.5
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
