"""connector.amberflo.AmberfloClient against the emulator: every call, how each failure maps
onto the project's errors, and the retries it shares with the sink."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from connector.amberflo import (
    AmberfloApiError,
    AmberfloClient,
    Customer,
    Meter,
    PlanAssignment,
    usage_query,
)
from connector.amberflo.status import parse_retry_after as retry_after_seconds
from connector.errors import FatalError, RetryableError, ThrottledError
from connector.retry import RetryPolicy
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
    given = Customer(
        customer_id=cid, customer_name="Acme", customer_email="a@acme.test", traits={"t": "1"}
    )
    created = client.upsert_customer(given)
    assert created.customer_email == "a@acme.test" and created.traits == {"t": "1"}
    assert created.create_time is not None
    assert client.get_customer(cid) == created
    assert created in client.list_customers()
    replaced = client.upsert_customer(Customer(customer_id=cid, customer_name="Acme 2"))
    assert replaced.customer_name == "Acme 2" and replaced.traits == {}  # replace semantics
    assert replaced.create_time == created.create_time
    deleted = client.delete_customer(cid)
    assert deleted is not None and deleted.customer_id == cid
    assert client.get_customer(cid) is None
    assert client.delete_customer(cid) is None


def test_plans(client: AmberfloClient) -> None:
    cid = unique("client-plan")
    assert client.current_plan(cid) is None and client.plan_history(cid) == []
    first = client.assign_plan(PlanAssignment(customer_id=cid, product_plan_id="basic"))
    assert first.relation_id and first.product_id == "1"
    second = client.assign_plan(
        PlanAssignment(
            customer_id=cid, product_plan_id="gold", product_id="2", start_time_in_seconds=JAN1
        )
    )
    assert client.current_plan(cid) == second
    assert client.plan_history(cid) == [first, second]


def test_ensure_plan_assigns_only_a_change(client: AmberfloClient) -> None:
    cid = unique("client-ensure")
    gold = PlanAssignment(customer_id=cid, product_plan_id="gold")
    assigned, changed = client.ensure_plan(gold)
    assert changed and assigned.product_plan_id == "gold"
    assert client.ensure_plan(gold) == (assigned, False)
    other_product = gold.model_copy(update={"product_id": "2"})
    assert client.ensure_plan(other_product)[1]
    assert [p.product_id for p in client.plan_history(cid)] == ["1", "2"]


def test_ensure_plan_as_of_a_time_is_replay_safe(client: AmberfloClient) -> None:
    """Plan changes at 100 (gold), 200 (silver), 300 (gold); applying any of them again,
    in any order, changes nothing; a new plan or a new change does."""
    cid = unique("client-asof")

    def at(plan: str, start: int) -> tuple[PlanAssignment, bool]:
        given = PlanAssignment(customer_id=cid, product_plan_id=plan, start_time_in_seconds=start)
        return client.ensure_plan(given)

    assert [at(p, t)[1] for p, t in (("gold", 100), ("silver", 200), ("gold", 300))] == [
        True,
        True,
        True,
    ]
    assert [at(p, t)[1] for p, t in (("silver", 200), ("gold", 100), ("gold", 300))] == [
        False,
        False,
        False,
    ]
    assert at("gold", 150) == (client.plan_history(cid)[0], False)  # gold was in effect
    assert at("gold", 310)[1] is False  # the current plan
    assert at("platinum", 400)[1] is True
    assert [(p.product_plan_id, p.start_time_in_seconds) for p in client.plan_history(cid)] == [
        ("gold", 100),
        ("silver", 200),
        ("gold", 300),
        ("platinum", 400),
    ]


def test_meters(client: AmberfloClient) -> None:
    name = unique("client-meter")
    meter = client.create_meter(
        Meter(meter_api_name=name, label="Client meter", dimensions=["region"], description="d")
    )
    assert meter.meter_type == "sum_of_all_usage" and meter.label == "Client meter"
    assert meter.id and meter.create_time
    assert client.list_meters(name) == [meter]
    assert meter in client.list_meters()
    assert client.get_meter(meter.id) == meter
    assert client.get_meter(unique("absent")) is None
    unlabelled = client.create_meter(Meter(meter_api_name=unique("client-meter"), meter_type="MAX"))
    assert unlabelled.label == unlabelled.meter_api_name and unlabelled.meter_type == "max"
    changed = client.update_meter(meter.model_copy(update={"dimensions": ["region", "az"]}))
    assert changed.dimensions == ["region", "az"] and changed.id == meter.id
    assert client.delete_meter(meter.id) == changed
    assert client.get_meter(meter.id) is None


def test_ingest_and_usage(client: AmberfloClient) -> None:
    customer, meter = unique("client-usage"), unique("client-usage-meter")
    events = events_for(customer, meter, [1, 2, 3], step_ms=3_600_000)
    assert client.ingest(events) == 3
    assert client.ingest(events[:1], gzip=False) == 1  # acknowledged, but a duplicate
    report = client.usage(
        usage_query(meter, JAN1, JAN1 + 3 * 3600, interval="HOUR", group_by=["customerId"])
    )
    (series,) = report.client_meters
    assert series.group_value == 6.0 and series.group_info == {"customerId": customer}
    assert [v.value for v in series.values] == [1.0, 2.0, 3.0]
    assert report.seconds_since_epoch_intervals == [JAN1, JAN1 + 3600, JAN1 + 7200]
    assert report.wire()["metadata"]["meterApiName"] == meter
    batch = client.usage_batch(
        [usage_query(meter, JAN1, JAN1 + 86_400, aggregation=a) for a in ("COUNT", "MAX")]
    )
    assert [r.client_meters[0].group_value for r in batch] == [3.0, 3.0]
    everything = client.usage_all(JAN1, JAN1 + 86_400, group_by_customer=True, customer_id=customer)
    assert [r.metadata["meterApiName"] for r in everything] == [meter]
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
    ).wire() == {
        "meterApiName": "m",
        "aggregation": "MAX",
        "timeGroupingInterval": "WEEK",
        "timeRange": {"startTimeInSeconds": 10, "endTimeInSeconds": 20},
        "groupBy": ["region"],
        "filter": {"customerId": ["a"]},
        "take": {"limit": 5, "isAscending": True},
    }
    assert usage_query("m", 10).wire() == {
        "meterApiName": "m",
        "aggregation": "SUM",
        "timeGroupingInterval": "DAY",
        "timeRange": {"startTimeInSeconds": 10},
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
        client.create_meter(Meter(meter_api_name=name))
        client.create_meter(Meter(meter_api_name=name))
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


def fast_policy(timeout_s: float | None = 20, initial_s: float = 0.01) -> RetryPolicy:
    return RetryPolicy(initial_s, initial_s * 4, timeout_s, name="Amberflo API call")


def retrying(emulator: Emulator, policy: RetryPolicy, timeout: float = 30) -> AmberfloClient:
    return AmberfloClient(emulator.base_url, emulator.api_key, retry=policy, timeout=timeout)


def test_a_policy_retries_throttling_and_server_errors(
    amberflo_emulator: Emulator, client: AmberfloClient
) -> None:
    cid = unique("retried")
    client.upsert_customer(Customer(customer_id=cid, customer_name="R"))
    before = client.emulator_stats()["requests"]
    client.inject_fault(429, 1, retry_after=0.2, path="/customers")
    client.inject_fault(503, 1, path="/customers")
    client.inject_fault(500, 1, path="/customers")
    with retrying(amberflo_emulator, fast_policy()) as c:
        customer = c.get_customer(cid)
    assert customer is not None and customer.customer_name == "R"
    after = client.emulator_stats()["requests"]
    assert [after.get(s, 0) - before.get(s, 0) for s in ("429", "503", "500")] == [1, 1, 1]


def test_a_policy_gives_up_after_its_timeout_naming_the_key(
    amberflo_emulator: Emulator, client: AmberfloClient
) -> None:
    client.inject_fault(503, 1000, path="/meters")
    with (
        retrying(amberflo_emulator, fast_policy(timeout_s=0.3)) as c,
        pytest.raises(FatalError, match=r"^Amberflo API call kept failing for .*RETRY_TIMEOUT_S"),
    ):
        c.list_meters()


def test_bad_requests_are_not_retried(amberflo_emulator: Emulator, client: AmberfloClient) -> None:
    before = client.emulator_stats()["requests"].get("409", 0)
    name = unique("conflict")
    with retrying(amberflo_emulator, fast_policy()) as c:
        c.create_meter(Meter(meter_api_name=name))
        with pytest.raises(AmberfloApiError):
            c.create_meter(Meter(meter_api_name=name))
    assert client.emulator_stats()["requests"]["409"] - before == 1


def test_ensure_plan_after_a_lost_answer_assigns_once(
    amberflo_emulator: Emulator, client: AmberfloClient
) -> None:
    """The emulator stores the POST but answers 503: the retry re-reads the current plan and
    finds it, instead of posting a second assignment."""
    cid = unique("lost-answer")
    client.inject_fault(503, path="/payments", method="POST", after=True)
    with retrying(amberflo_emulator, fast_policy()) as c:
        current, changed = c.ensure_plan(PlanAssignment(customer_id=cid, product_plan_id="gold"))
    assert not changed and current.product_plan_id == "gold"  # found by the retry's re-read
    assert len(client.plan_history(cid)) == 1
