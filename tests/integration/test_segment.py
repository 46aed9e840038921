"""Segment calls and customer topics end to end: the real connector process, broker and
emulator.  Usage is read back through ``/usage``, customers and plans through the emulator's
API and the official Amberflo SDK; replays, ordering per customer and a ``kill -9`` are
checked against exact totals and exact customer state."""

from __future__ import annotations

import copy
import signal
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from connector.amberflo import AmberfloClient, usage_query
from connector.embedded import free_port
from tests.conftest import Emulator
from tests.integration.failure_harness import (
    QUICK_GROUP,
    header,
    metric,
    produce_raw,
    wait_for_records,
)
from tests.integration.harness import ConnectorProcess, committed, connector_env, wait_until
from tests.segment_calls import (
    ALIAS,
    GROUP,
    IDENTIFY,
    IDENTIFY_TRAITS,
    MALFORMED,
    PAGE,
    PAGE_DIMENSIONS,
    SCREEN,
    T_MS,
    TRACK,
    identify,
    track,
)

DAY_S = T_MS // 1000 // 86_400 * 86_400  # the fixtures' day (UTC)


@pytest.fixture
def client(amberflo_emulator: Emulator) -> Iterator[AmberfloClient]:
    with AmberfloClient(amberflo_emulator.base_url, amberflo_emulator.api_key) as c:
        yield c
        c.clear_faults()


@pytest.fixture
def run(
    kafka_broker: str, amberflo_emulator: Emulator, tmp_path: Path
) -> Iterator[Callable[..., ConnectorProcess]]:
    """Starts ``amberflo-connector run`` on ``topics`` with ``mappings``; stops them all after."""
    procs: list[ConnectorProcess] = []

    def start(topics: list[str], group: str, mappings: list[Any], **extra: str) -> ConnectorProcess:
        env = connector_env(
            kafka_broker,
            ",".join(topics),
            amberflo_emulator.base_url,
            amberflo_emulator.api_key,
            group,
            CONNECTOR_KAFKA__CONSUMER=QUICK_GROUP,
            CONNECTOR_MAPPINGS=orjson.dumps(mappings).decode(),
            **extra,
        )
        proc = ConnectorProcess(env, tmp_path / f"connector-{len(procs)}.log")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.close()


def renamed(call: dict[str, Any], user: str, suffix: str) -> dict[str, Any]:
    """A fixture call of this test's own: its user and messageId made unique."""
    out = copy.deepcopy(call)
    if "userId" in out:
        out["userId"] = user
    out["messageId"] = f"{out['messageId']}-{suffix}"
    return out


def all_committed(bootstrap: str, group: str, topic: str, counts: dict[int, int]) -> bool:
    return committed(bootstrap, group, topic, len(counts)) == counts


def stop(proc: ConnectorProcess) -> None:
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.output()[-3000:]


def test_every_call_type_end_to_end_read_back_through_usage_and_the_sdk_then_a_replay(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    amberflo_emulator: Emulator,
    client: AmberfloClient,
    sdk: str,
    run: Callable[..., ConnectorProcess],
) -> None:
    from metering.customer import CustomerApiClient
    from metering.customer_product_plan import CustomerProductPlanApiClient

    sfx = uuid.uuid4().hex[:8]
    user, other = f"seg-user-{sfx}", f"seg-other-{sfx}"
    api_calls, orders = f"ApiCalls-{sfx}", f"orders-{sfx}"
    calls = [
        renamed(TRACK, user, sfx),
        renamed(PAGE, user, sfx),
        renamed(SCREEN, user, sfx),
        renamed(IDENTIFY, user, sfx),
        renamed(GROUP, user, sfx),
        renamed(ALIAS, user, sfx),
        renamed(MALFORMED, user, sfx),
        track(f"t2-{sfx}", user, "API Call", {"value": 3, "region": "eu-west-1"}),
        track(f"t3-{sfx}", other, "Order Completed", {"revenue": 12.5, "currency": "EUR"}),
        identify(f"i2-{sfx}", other, {"name": "Other Co", "plan": "basic"}),
        identify(f"i3-{sfx}", None, {"name": "anonymous"}, anonymousId="anon"),
    ]
    calls[0]["event"] = api_calls
    topic = topic_factory(2)
    produce_raw(
        kafka_broker,
        topic,
        [{"value": orjson.dumps(c), "partition": i % 2} for i, c in enumerate(calls)],
    )
    per_partition = {0: (len(calls) + 1) // 2, 1: len(calls) // 2}
    mappings = [
        {
            "topics": [topic],
            "format": "segment",
            "segment": {
                "events": {
                    "API Call": api_calls,
                    "Order Completed": {orders: None, f"revenue-{sfx}": "revenue"},
                }
            },
        }
    ]
    definitions = [{"meterApiName": api_calls, "label": "API calls", "dimensions": ["region"]}]
    port = free_port()
    group = f"g-seg-{sfx}"
    proc = run(
        [topic],
        group,
        mappings,
        CONNECTOR_METERS__DEFINITIONS=orjson.dumps(definitions).decode(),
        CONNECTOR_METERS__SYNC_ON_START="true",
        CONNECTOR_METRICS_PORT=str(port),
    )
    wait_until(
        lambda: all_committed(kafka_broker, group, topic, per_partition),
        60,
        f"every call committed ({proc.output()[-2000:]})",
    )

    # meters sync on start created the configured meter
    (meter,) = client.list_meters(api_calls)
    assert (meter.label, meter.dimensions) == ("API calls", ["region"])

    # usage through /usage: track (value 2 and a renamed call of 3), page, screen, two meters
    def total(name: str, customer: str) -> float:
        report = client.usage(
            usage_query(
                name,
                DAY_S,
                DAY_S + 86_400,
                group_by=["customerId"],
                filters={"customerId": [customer]},
            )
        )
        return sum(m.group_value for m in report.client_meters)

    assert total(api_calls, user) == 5.0
    assert total("page", user) == 1.0 and total("screen", user) == 1.0
    assert total(orders, other) == 1.0 and total(f"revenue-{sfx}", other) == 12.5
    page = client.emulator_records(customer_id=user, meter_api_name="page")["records"]
    assert [r["dimensions"] for r in page] == [PAGE_DIMENSIONS]
    assert [r["uniqueId"] for r in page] == [f"msg-page-{sfx}"]

    # customers and plans through the emulator's API and through the official SDK
    customer = client.get_customer(user)
    assert customer is not None
    assert (customer.customer_name, customer.customer_email, customer.traits) == (
        "John Doe",
        "john.doe@email.com",
        IDENTIFY_TRAITS,
    )
    got = CustomerApiClient(sdk).get(user)
    assert (got["customerName"], got["customerEmail"], got["traits"]) == (
        "John Doe",
        "john.doe@email.com",
        IDENTIFY_TRAITS,
    )
    plans = CustomerProductPlanApiClient(sdk)
    assert plans.get(user)["productPlanId"] == "premium"
    assert [p["productPlanId"] for p in plans.list(user)] == ["premium"]
    assert [p["productPlanId"] for p in plans.list(other)] == ["basic"]
    assert CustomerApiClient(sdk).get("anon") == {}  # identify without userId: skipped

    # group, alias and the anonymous identify skipped and counted; the malformed call dead-lettered
    for reason, n in (("group", 1), ("alias", 1), ("identify without userId", 1)):
        labels = f'reason="segment {reason}",topic="{topic}"'
        assert metric(port, "amberflo_connector_records_skipped_total", labels) == n
    [dead] = wait_for_records(kafka_broker, f"{topic}.dlq", 1)
    assert header(dead, "amberflo.error.stage") == "transform"
    assert header(dead, "amberflo.error.message") == "userId: missing, and so is anonymousId"
    stop(proc)

    # replaying the whole topic (a new group) changes nothing
    stored = client.emulator_stats()["records_stored"]
    replay_group = f"{group}-replay"
    replay = run([topic], replay_group, mappings)
    wait_until(
        lambda: all_committed(kafka_broker, replay_group, topic, per_partition),
        60,
        f"the replay committed ({replay.output()[-2000:]})",
    )
    stop(replay)
    assert client.emulator_stats()["records_stored"] == stored
    assert total(api_calls, user) == 5.0
    again = client.get_customer(user)
    assert again is not None and again.model_dump(exclude={"update_time"}) == customer.model_dump(
        exclude={"update_time"}
    )
    assert [p["productPlanId"] for p in plans.list(user)] == ["premium"]
    assert [p["productPlanId"] for p in plans.list(other)] == ["basic"]
    names = [c.customer_id for c in client.list_customers()]
    assert names.count(user) == 1 and names.count(other) == 1


def expected_plans(updates: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The plan history a customer's updates leave: each change of plan, at its time."""
    out: list[tuple[str, int]] = []
    for plan, at in updates:
        if not out or out[-1][0] != plan:
            out.append((plan, at))
    return out


def test_customer_updates_apply_in_order_per_customer_under_concurrency(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    client: AmberfloClient,
    run: Callable[..., ConnectorProcess],
) -> None:
    """Each customer is renamed five times (and changes plan); the first PUTs answer slowly, so
    with updates of one customer run side by side a later one would be overtaken.  A second
    topic of the team's own customer records (``kind: customer``) goes the same way."""
    sfx = uuid.uuid4().hex[:8]
    users = [f"ord-{sfx}-{i}" for i in range(6)]
    plans = ["gold", "gold", "silver", "silver", "gold"]
    calls, want_plans = [], {}
    for v in range(5):
        for u in users:
            at = f"2024-01-01T10:00:{10 * v:02d}Z"
            traits = {"name": f"{u} v{v}", "plan": plans[v], "version": v}
            calls.append(identify(f"{u}-{v}", u, traits, timestamp=at))
    for u in users:
        want_plans[u] = expected_plans([(p, T_MS // 1000 + 10 * v) for v, p in enumerate(plans)])
    crm = [{"account": f"crm-{sfx}-{i % 2}", "title": f"v{i}", "tier": "t1"} for i in range(6)]
    seg_topic, crm_topic = topic_factory(2), topic_factory(1)
    produce_raw(
        kafka_broker,
        seg_topic,
        [
            {"value": orjson.dumps(c), "partition": zlib.crc32(c["userId"].encode()) % 2}
            for c in calls
        ],
    )
    produce_raw(kafka_broker, crm_topic, [{"value": orjson.dumps(r)} for r in crm])
    mappings = [
        {"topics": [seg_topic], "format": "segment"},
        {
            "topics": [crm_topic],
            "format": "json",
            "kind": "customer",
            "customer_id": {"path": "account"},
            "name": {"path": "title"},
            "plan": {"path": "tier"},
        },
    ]
    client.inject_fault(latency_ms=400, count=8, path="/customers", method="PUT")
    group = f"g-ord-{sfx}"
    counts = Counter(zlib.crc32(u.encode()) % 2 for u in users)
    per_partition = {p: 5 * counts[p] for p in (0, 1)}
    proc = run([seg_topic, crm_topic], group, mappings, CONNECTOR_SINK__MAX_IN_FLIGHT="4")
    wait_until(
        lambda: (
            all_committed(kafka_broker, group, seg_topic, per_partition)
            and all_committed(kafka_broker, group, crm_topic, {0: 6})
        ),
        60,
        f"every update committed ({proc.output()[-2000:]})",
    )
    stop(proc)
    for u in users:
        got = client.get_customer(u)
        assert got is not None and got.customer_name == f"{u} v4", u
        assert got.traits == {"plan": "gold", "version": "4"}
        history = [(p.product_plan_id, p.start_time_in_seconds) for p in client.plan_history(u)]
        assert history == want_plans[u], u
    for i in (0, 1):
        got = client.get_customer(f"crm-{sfx}-{i}")
        assert got is not None and got.customer_name == f"v{4 + i}"
        assert [p.product_plan_id for p in client.plan_history(f"crm-{sfx}-{i}")] == ["t1"]


def test_kill_9_during_a_mixed_segment_stream_exact_totals_and_customer_state(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    client: AmberfloClient,
    run: Callable[..., ConnectorProcess],
) -> None:
    """4,000 tracks and 100 identifies (names and plans changing) for 20 customers; the
    connector is SIGKILLed with usage stored and customer updates applied but not committed
    (commits every 4 s), then restarted: every total, every customer and every plan history
    is exact (nothing twice, nothing lost)."""
    sfx = uuid.uuid4().hex[:8]
    meter = f"calls-{sfx}"
    users = [f"k9-{sfx}-{i}" for i in range(20)]
    plans = ["gold", "silver", "silver", "gold", "platinum"]
    calls: list[dict[str, Any]] = []
    want_usage: Counter[str] = Counter()
    for n in range(4000):
        u = users[n % 20]
        if n % 800 < 20:  # five identifies per customer, one every 800 records
            v = n // 800
            at = f"2024-01-01T10:{v:02d}:00Z"
            traits = {"name": f"{u} v{v}", "email": f"v{v}@{u}.test", "plan": plans[v]}
            calls.append(identify(f"i-{n}", u, traits, timestamp=at))
        value = n % 7 + 1
        calls.append(track(f"t-{n}", u, meter, {"value": value, "az": f"az{n % 3}"}))
        want_usage[u] += value
    identifies = [c for c in calls if c["type"] == "identify"]
    assert len(identifies) == 100
    topic = topic_factory(4)
    partition_of = {u: zlib.crc32(u.encode()) % 4 for u in users}
    produce_raw(
        kafka_broker,
        topic,
        [{"value": orjson.dumps(c), "partition": partition_of[c["userId"]]} for c in calls],
    )
    per_partition = Counter(partition_of[c["userId"]] for c in calls)
    mappings = [{"topics": [topic], "format": "segment"}]
    group = f"g-k9-{sfx}"
    slow = {
        "CONNECTOR_KAFKA__COMMIT_INTERVAL_MS": "4000",
        "CONNECTOR_SINK__BATCH_SIZE": "50",
        "CONNECTOR_SINK__MAX_IN_FLIGHT": "1",
    }
    client.inject_fault(latency_ms=30, count=60, path="/ingest")
    client.inject_fault(latency_ms=30, count=40, path="/customers", method="PUT")
    first = run([topic], group, mappings, **slow)
    wait_until(
        lambda: (
            client.emulator_totals(meter_api_name=meter)
            and sum(r["count"] for r in client.emulator_totals(meter_api_name=meter)) >= 1000
            and sum(1 for u in users if client.get_customer(u) is not None) >= 5
        ),
        60,
        f"some usage and customers stored ({first.output()[-2000:]})",
    )
    first.kill()
    client.clear_faults()
    stored_at_kill = sum(r["count"] for r in client.emulator_totals(meter_api_name=meter))
    assert stored_at_kill < 4000
    second = run([topic], group, mappings)
    wait_until(
        lambda: all_committed(kafka_broker, group, topic, dict(per_partition)),
        90,
        f"every record committed after the restart ({second.output()[-2000:]})",
    )
    stop(second)
    totals = client.emulator_totals(meter_api_name=meter)
    assert sum(r["count"] for r in totals) == 4000  # each track once
    assert {r["customerId"]: r["sum"] for r in totals} == dict(want_usage)
    want_plans = expected_plans([(p, T_MS // 1000 + 60 * v) for v, p in enumerate(plans)])
    for u in users:
        got = client.get_customer(u)
        assert got is not None, u
        assert (got.customer_name, got.customer_email, got.traits) == (
            f"{u} v4",
            f"v4@{u}.test",
            {"plan": "platinum"},
        )
        history = [(p.product_plan_id, p.start_time_in_seconds) for p in client.plan_history(u)]
        assert history == want_plans, u


def test_a_refused_customer_update_is_dead_lettered_with_amberflos_reason(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    client: AmberfloClient,
    run: Callable[..., ConnectorProcess],
) -> None:
    """The first update meets a 503 (retried), then a 400 (dead-lettered with the reason, the
    pipeline goes on); the next customer's update is applied and everything is committed."""
    sfx = uuid.uuid4().hex[:8]
    refused, fine = f"refused-{sfx}", f"fine-{sfx}"
    topic = topic_factory(1)
    calls = [
        identify(f"a-{sfx}", refused, {"name": "A"}),
        identify(f"b-{sfx}", fine, {"plan": "p"}),
    ]
    produce_raw(kafka_broker, topic, [{"value": orjson.dumps(c)} for c in calls])
    client.inject_fault(503, path="/customers", method="PUT")
    client.inject_fault(400, path="/customers", method="PUT")
    group = f"g-400-{sfx}"
    proc = run(
        [topic],
        group,
        [{"topics": [topic], "format": "segment"}],
        CONNECTOR_SINK__MAX_IN_FLIGHT="1",
    )
    wait_until(
        lambda: all_committed(kafka_broker, group, topic, {0: 2}),
        60,
        f"both records committed ({proc.output()[-2000:]})",
    )
    [dead] = wait_for_records(kafka_broker, f"{topic}.dlq", 1)
    assert header(dead, "amberflo.error.stage") == "sink"
    assert header(dead, "amberflo.error.class") == "CustomerRejected"
    assert header(dead, "amberflo.error.http_status") == "400"
    assert "HTTP 400 from PUT" in (header(dead, "amberflo.error.message") or "")
    assert "Bad Request" in (header(dead, "amberflo.error.message") or "")
    assert header(dead, "amberflo.source.offset") == "0"
    stop(proc)
    assert client.get_customer(refused) is None
    got = client.get_customer(fine)
    assert got is not None and [p.product_plan_id for p in client.plan_history(fine)] == ["p"]
    assert "customer update attempt 1 failed: HTTP 503" in proc.output()
