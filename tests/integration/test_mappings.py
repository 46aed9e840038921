"""Mapped formats end to end: CloudEvents in both modes and a filtered json topic through the
real connector process, broker and emulator; ``mappings preview`` and ``mappings test``
through the real CLI."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from connector.embedded import free_port
from tests.conftest import Emulator
from tests.integration.failure_harness import (
    QUICK_GROUP,
    header,
    metric,
    produce_raw,
    wait_for_records,
)
from tests.integration.harness import ConnectorProcess, Emu, committed, connector_env, wait_until

T0 = 1_767_225_600_000
STRUCTURED = b"application/cloudevents+json; charset=utf-8"


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def ce_data(i: int) -> dict[str, Any]:
    return {"tenant": f"c{i % 3}", "requests": i + 1, "region": "eu"}


def structured(i: int, **over: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{i}",
        "source": "/gateway",
        "type": "com.acme.api",
        "time": iso(T0 + i * 1000),
        "datacontenttype": "application/json",
        "data": ce_data(i),
        **over,
    }


def json_record(i: int) -> dict[str, Any]:
    return {
        "tenant": {"id": f"c{i % 3}"},
        "usage": {"requests": 2},
        "region": "test" if i % 3 == 0 else "eu",
        "ts": T0 + i * 1000,
    }


def test_cloudevents_both_modes_and_a_filtered_json_topic(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    amberflo_emulator: Emulator,
    tmp_path: Path,
) -> None:
    """Structured and binary CloudEvents map to the same events; a re-published event (same
    source + id, new offset) counts once; an invalid one is dead-lettered at stage decode;
    rules read context attributes ($ce.type, an extension, source) in both modes; filtered
    json records are committed and counted, never sent."""
    emu = Emu(amberflo_emulator.base_url, amberflo_emulator.api_key)
    ce_meter, json_meter = f"ce-{uuid.uuid4().hex[:8]}", f"js-{uuid.uuid4().hex[:8]}"
    t_structured, t_binary, t_json = topic_factory(1), topic_factory(1), topic_factory(1)
    t_attrs, attr_meter = topic_factory(1), f"attr-{uuid.uuid4().hex[:8]}"

    # structured: half with the content-type header, half without (read the same way)
    records = [
        {
            "value": orjson.dumps(structured(i)),
            "headers": [("content-type", STRUCTURED)] if i % 2 else None,
        }
        for i in range(12)
    ]
    records.append({"value": records[0]["value"]})  # re-published: same source and id
    records.append({"value": orjson.dumps({k: v for k, v in structured(99).items() if k != "id"})})
    b64 = structured(
        12, data=None, data_base64=base64.b64encode(orjson.dumps(ce_data(12))).decode()
    )
    records.append({"value": orjson.dumps({k: v for k, v in b64.items() if v is not None})})
    produce_raw(kafka_broker, t_structured, [{k: v for k, v in r.items() if v} for r in records])
    binary = [
        {
            "value": orjson.dumps(ce_data(i)),
            "headers": [
                ("ce_specversion", b"1.0"),
                ("ce_id", f"evt-{i}".encode()),
                ("ce_source", b"/billing"),
                ("ce_type", b"com.acme.api"),
                ("ce_time", iso(T0 + i * 1000).encode()),
                ("content-type", b"application/json"),
            ],
        }
        for i in range(20, 30)
    ]
    produce_raw(kafka_broker, t_binary, binary)
    produce_raw(kafka_broker, t_json, [{"value": orjson.dumps(json_record(i))} for i in range(30)])
    # attributes: the meter is the event type, the customer an extension, the source a
    # dimension; even offsets structured, odd ones binary; evt-a0 is sent in both modes
    attr_records: list[dict[str, Any]] = []
    for i in range(8):
        a = {"id": f"evt-a{i % 7}", "source": f"/svc{i % 7 % 2}", "tenantid": f"t{i % 7 % 3}"}
        data = {"requests": i % 7 + 1}
        if i % 2 == 0:
            event = {**structured(0, data=data), **a, "type": attr_meter}
            attr_records.append({"value": orjson.dumps(event)})
        else:
            headers = [(f"ce_{k}", v.encode()) for k, v in {**a, "type": attr_meter}.items()]
            headers += [("ce_specversion", b"1.0"), ("ce_time", iso(T0).encode())]
            headers.append(("content-type", b"application/json"))
            attr_records.append({"value": orjson.dumps(data), "headers": headers})
    produce_raw(kafka_broker, t_attrs, attr_records)

    mappings = [
        {
            "topics": [t_structured, t_binary],
            "format": "cloudevents",
            "customer_id": {"path": "tenant"},
            "meter": ce_meter,
            "value": {"path": "requests"},
            "dimensions": {"region": {"path": "region"}},
        },
        {
            "topics": [t_attrs],
            "format": "cloudevents",
            "customer_id": {"path": "$ce.tenantid"},
            "meter": {"path": "$ce.type"},
            "value": {"path": "requests"},
            "dimensions": {"source": {"path": "$ce.source"}},
        },
        {
            "topics": [t_json],
            "format": "json",
            "customer_id": {"path": "tenant.id"},
            "meter": json_meter,
            "value": {"path": "usage.requests"},
            "time": {"path": "ts", "unit": "ms"},
            "dimensions": {"region": {"path": "region"}},
            "filters": [{"dimension": "region", "values": ["test"], "action": "EXCLUDE"}],
        },
    ]
    port = free_port()
    group = f"g-{ce_meter}"
    env = connector_env(
        kafka_broker,
        f"{t_structured},{t_binary},{t_json},{t_attrs}",
        amberflo_emulator.base_url,
        amberflo_emulator.api_key,
        group,
        CONNECTOR_KAFKA__CONSUMER=QUICK_GROUP,
        CONNECTOR_MAPPINGS=orjson.dumps(mappings).decode(),
        CONNECTOR_METRICS_PORT=str(port),
    )
    proc = ConnectorProcess(env, tmp_path / "connector.log")
    try:
        want_ce: Counter[tuple[str, str]] = Counter()
        for i in [*range(13), *range(20, 30)]:
            want_ce[(ce_meter, f"c{i % 3}")] += i + 1
        kept = [json_record(i) for i in range(30) if i % 3]
        want_json: Counter[tuple[str, str]] = Counter()
        for r in kept:
            want_json[(json_meter, r["tenant"]["id"])] += 2

        def done() -> bool:
            return (
                committed(kafka_broker, group, t_structured, 1)[0] == len(records)
                and committed(kafka_broker, group, t_binary, 1)[0] == len(binary)
                and committed(kafka_broker, group, t_json, 1)[0] == 30
                and committed(kafka_broker, group, t_attrs, 1)[0] == len(attr_records)
            )

        wait_until(done, 60, f"every record committed ({proc.output()[-2000:]})")
        wait_until(lambda: emu.count(ce_meter) == 23, 10, "23 CloudEvents stored")
        assert emu.totals(ce_meter) == dict(want_ce)
        assert emu.count(json_meter) == len(kept) == 20
        assert emu.totals(json_meter) == dict(want_json)
        # 7 distinct events (evt-a0 re-sent), each by its attributes
        wait_until(lambda: emu.count(attr_meter) == 7, 10, "7 events by attributes stored")
        assert emu.totals(attr_meter) == {
            (attr_meter, "t0"): 1 + 4 + 7,
            (attr_meter, "t1"): 2 + 5,
            (attr_meter, "t2"): 3 + 6,
        }
        stored = emu.s.get(
            f"{emu.base_url}/_emulator/records", params={"meterApiName": attr_meter}, timeout=10
        ).json()["records"]
        assert sorted((r["customerId"], r["dimensions"]["source"]) for r in stored) == sorted(
            (f"t{i % 3}", f"/svc{i % 2}") for i in range(7)
        )
        labels = f'rule="region EXCLUDE",topic="{t_json}"'
        assert metric(port, "amberflo_connector_records_filtered_total", labels) == 10.0

        [dead] = wait_for_records(kafka_broker, f"{t_structured}.dlq", 1)
        assert header(dead, "amberflo.error.stage") == "decode"
        assert header(dead, "amberflo.source.offset") == "13"
        assert "attribute 'id' is missing" in (header(dead, "amberflo.error.message") or "")
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.close()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_preview_and_test_commands(
    kafka_broker: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    """``preview`` prints each record's events, filter or error without committing;
    ``test`` passes and fails cases with the exit code a CI needs, without an API key."""
    topic = topic_factory(2)
    values = [
        {"tenant": {"id": "acme"}, "usage": {"requests": 3}, "region": "eu"},
        {"tenant": {"id": "acme"}, "usage": {"requests": 1}, "region": "test"},
        {"usage": {"requests": 1}, "region": "eu"},
    ]
    produce_raw(kafka_broker, topic, [{"value": orjson.dumps(v), "partition": 0} for v in values])
    cfg = tmp_path / "connector.yaml"
    mapping = {
        "topics": [topic],
        "format": "json",
        "customer_id": {"path": "tenant.id"},
        "meter": "api_calls",
        "value": {"path": "usage.requests"},
        "dimensions": {"region": {"path": "region"}},
        "filters": [{"dimension": "region", "values": ["test"], "action": "EXCLUDE"}],
    }
    cfg.write_text(
        yaml.safe_dump(
            {
                "kafka": {"bootstrap_servers": kafka_broker, "topics": [topic]},
                "mappings": [mapping],
            }
        )
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("CONNECTOR_")}

    out = cli("mappings", "preview", "--config", str(cfg), "--json", "--wait", "0.5", env=env)
    assert out.returncode == 0, out.stderr
    rows = [orjson.loads(line) for line in out.stdout.splitlines()]
    assert [r["offset"] for r in rows] == [0, 1, 2]
    assert [(e["customerId"], e["meterValue"], e["dimensions"]) for e in rows[0]["events"]] == [
        ("acme", 3, {"region": "eu"})
    ]
    assert rows[1]["filtered"] == "region EXCLUDE"
    assert rows[2]["error"]["stage"] == "transform"
    assert rows[2]["error"]["message"].startswith("customer_id {path: tenant.id}: found nothing")
    assert "3 record(s): 1 event(s), 1 filtered, 1 would be dead-lettered" in out.stderr

    table = cli(
        "mappings", "preview", "--config", str(cfg), "--limit", "1", "--wait", "0.5", env=env
    )
    assert table.returncode == 0, table.stderr
    assert "acme" in table.stdout and "1 record(s): 1 event(s)" in table.stdout

    cases = [
        {
            "name": "an API call",
            "record": {"value": values[0], "offset": 0},
            "expect": {"events": [{"customerId": "acme", "meterValue": 3}]},
        },
        {"name": "test traffic", "record": {"value": values[1]}, "expect": {"filtered": True}},
        {
            "name": "no tenant",
            "record": {"value": values[2]},
            "expect": {"error": {"stage": "transform", "message": "customer_id"}},
        },
        {
            "name": "bad json",
            "record": {"value_text": "{"},
            "expect": {"error": {"stage": "decode"}},
        },
    ]
    good = tmp_path / "cases.yaml"
    good.write_text(yaml.safe_dump(cases))
    ok = cli("mappings", "test", "--config", str(cfg), str(good), env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "4 passed, 0 failed" in ok.stdout

    cases[0]["expect"] = {"events": [{"customerId": "acme", "meterValue": 4}]}
    bad = tmp_path / "bad-cases.yaml"
    bad.write_text(yaml.safe_dump(cases))
    failed = cli("mappings", "test", "--config", str(cfg), str(bad), env=env)
    assert failed.returncode == 1
    assert "FAIL an API call" in failed.stdout and "meterValue is 3, not 4" in failed.stdout
    assert "3 passed, 1 failed" in failed.stdout

    broken = tmp_path / "broken.yaml"
    broken.write_text("- record: {value: 1}\n  expect: {}\n")
    refused = cli("mappings", "test", "--config", str(cfg), str(broken), env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().endswith(
        "expect: give exactly one of events, customer, error or filtered"
    )
