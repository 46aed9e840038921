"""Ways a user could make the connector count twice, duplicate or lose a dead letter, or stop:
each scenario end to end with the real connector process, the real broker and the emulator."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import requests
from confluent_kafka.admin import AdminClient, NewTopic

from connector.embedded import free_port
from tests.conftest import Emulator
from tests.integration.failure_harness import QUICK_GROUP, produce_raw, read_topic, wait_for_records
from tests.integration.harness import ConnectorProcess, Emu, committed, connector_env, wait_until
from tests.integration.kafka_gate import CREATE_TOPICS, locked_down

T0 = 1_767_225_600_000


@pytest.fixture
def emu(amberflo_emulator: Emulator) -> Emu:
    return Emu(amberflo_emulator.base_url, amberflo_emulator.api_key)


@pytest.fixture
def start(
    kafka_broker: str, amberflo_emulator: Emulator, tmp_path: Path, emu: Emu
) -> Iterator[Callable[..., ConnectorProcess]]:
    procs: list[ConnectorProcess] = []

    def _start(
        topics: str, group: str, bootstrap: str = kafka_broker, **extra: str
    ) -> ConnectorProcess:
        extra.setdefault("CONNECTOR_KAFKA__CONSUMER", QUICK_GROUP)
        env = connector_env(
            bootstrap, topics, amberflo_emulator.base_url, amberflo_emulator.api_key, group, **extra
        )
        p = ConnectorProcess(env, tmp_path / f"connector-{len(procs)}.log")
        procs.append(p)
        return p

    yield _start
    emu.clear_faults()
    for p in procs:
        p.close()


def meter() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


def event(m: str, i: int, **over: object) -> bytes:
    record = {
        "customerId": f"c{i % 3}",
        "meterApiName": m,
        "meterValue": 1,
        "meterTimeInMillis": T0 + i,
    }
    return orjson.dumps({**record, **over})


def connector_lines(proc: ConnectorProcess) -> list[str]:
    return [line for line in proc.output().splitlines() if line.startswith("amberflo-connector:")]


def test_locked_down_cluster_needs_no_create_for_an_existing_dlq_topic(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    """Behind a gate that denies CreateTopics like an ACL would: a missing DLQ topic stops the
    start with one line naming it and the permission; once it exists, the connector starts
    without asking to create anything and dead-letters into it."""
    topic, m = topic_factory(1), meter()
    produce_raw(kafka_broker, topic, [{"value": event(m, 0)}, {"value": b"not json"}])
    with locked_down(kafka_broker) as gate:
        bootstrap = f"127.0.0.1:{gate.port}"
        first = start(topic, f"g-{m}", bootstrap)
        assert first.wait(60) == 1
        assert connector_lines(first) == [
            f"amberflo-connector: dead-letter topic '{topic}.dlq' does not exist and the "
            "connector is not allowed to create it (Authorization failed.): create it "
            f"beforehand, or grant CREATE on topic '{topic}.dlq' (or on the cluster)"
        ]
        assert "Traceback" not in first.output()
        assert gate.denied == [f"{topic}.dlq"]

        admin = AdminClient({"bootstrap.servers": kafka_broker})
        admin.create_topics([NewTopic(f"{topic}.dlq", 1)])[f"{topic}.dlq"].result(10)
        gate.seen.clear()
        second = start(topic, f"g-{m}", bootstrap)
        dead = wait_for_records(kafka_broker, f"{topic}.dlq", 1)
        wait_until(lambda: emu.count(m) == 1, 30, "the good record stored")
        wait_until(lambda: committed(kafka_broker, f"g-{m}", topic, 1)[0] == 2, 15, "committed")
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0
    assert [d.value() for d in dead] == [b"not json"]
    assert CREATE_TOPICS not in gate.seen
    assert len(read_topic(kafka_broker, f"{topic}.dlq", expect=1)) == 1


def test_readyz_fails_while_amberflo_is_unreachable_and_healthz_stays_up(
    kafka_broker: str,
    topic_factory: Callable[..., str],
    emu: Emu,
    start: Callable[..., ConnectorProcess],
) -> None:
    topic, m = topic_factory(1), meter()
    port = free_port()
    proc = start(
        topic, f"g-{m}", CONNECTOR_METRICS_PORT=str(port), CONNECTOR_SINK__READINESS_TIMEOUT_S="1"
    )
    wait_until(lambda: probe(port, "/readyz") == (200, "ready"), 30, "ready")
    emu.fault(status=502, count=100_000, path="/ingest")
    produce_raw(kafka_broker, topic, [{"value": event(m, 0)}])
    wait_until(lambda: probe(port, "/readyz")[0] == 503, 30, "unready during the outage")
    _status, body = probe(port, "/readyz")
    assert body.startswith("not ready: Amberflo unreachable for ")
    assert probe(port, "/healthz") == (200, "ok")
    emu.clear_faults()
    wait_until(lambda: emu.count(m) == 1, 30, "stored once Amberflo answers")
    assert probe(port, "/readyz") == (200, "ready")
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        resp = requests.get(f"http://127.0.0.1:{port}{path}", timeout=2)
    except requests.RequestException:
        return 0, ""
    return resp.status_code, resp.text.strip()
