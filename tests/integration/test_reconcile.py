"""`amberflo-connector reconcile` against the real broker, the real emulator and the real
connector: one pipeline run (module fixture) shared by every check.

The run leaves: 360 records over three hours for three customers (one re-produced with its
own uniqueId: a duplicate Amberflo discards), two poison records on the DLQ, and, after the
connector stopped, ten records past the committed offset ("in flight") of which four were
delivered anyway (as a connector that delivered but did not commit yet would have).  A second
topic is read through a `json` mapping (rules, a filter): 60 records in the first hour for two
customers, ten of them filtered out, and one that breaks the rules (on the DLQ).  A third is
Avro through the Schema Registry (Confluent's own serializer; the `avro` mapping): 40 records
in the third hour for two customers, and one that is not Avro (on the DLQ).  The "extra" and
"missing" checks run over the native and the Avro topic alike.
"""

from __future__ import annotations

import http.server
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from connector.embedded import free_port
from connector.local_registry import LocalSchemaRegistry
from tests.conftest import Emulator
from tests.integration.failure_harness import QUICK_GROUP, produce_raw
from tests.integration.harness import ConnectorProcess, Emu, committed, connector_env, wait_until
from tests.integration.test_avro import V1, serialize
from tests.integration.test_avro import mapping as avro_mapping

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
RECORDS = 360  # one every 30 s for three hours
CUSTOMERS = 3
IN_FLIGHT = 10
DELIVERED_IN_FLIGHT = 4
MAPPED = 60  # one a minute in the first hour
FILTERED = MAPPED // 6
AVRO = 40  # one a minute from the third hour on
WINDOW = ["--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T03:00:00Z", "--wait", "0.8"]


@dataclass
class Run:
    topic: str
    group: str
    meter: str
    mapped_meter: str
    avro_meter: str
    env: dict[str, str]
    emu: Emu

    def cell(self, kind: str, check: str) -> tuple[str, str, int]:
        """(meter, customer, hour) of the cell the ``extra`` / ``missing`` check changes."""
        if kind == "native":
            if check == "extra":
                return self.meter, f"{self.meter}-c1", 2
            return self.meter, f"{self.meter}-c2", 1
        return self.avro_meter, f"{self.avro_meter}-c{1 if check == 'extra' else 0}", 2

    def reconcile(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "connector", "reconcile", *WINDOW, *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def report(self, *args: str) -> tuple[int, dict[str, Any]]:
        done = self.reconcile("--json", *args)
        assert done.returncode in (0, 1), done.stderr
        return done.returncode, orjson.loads(done.stdout)


def _record(meter: str, i: int, **extra: Any) -> dict[str, Any]:
    time_ms = T0 + i * 30_000
    value = {
        "customerId": f"{meter}-c{i % CUSTOMERS}",
        "meterApiName": meter,
        "meterValue": (i % 5) + 1,
        "meterTimeInMillis": time_ms,
        **extra,
    }
    return {"key": str(i).encode(), "value": orjson.dumps(value), "timestamp": time_ms + 50}


def _mapped_record(i: int, meter: str) -> dict[str, Any]:
    time_ms = T0 + i * 60_000
    value = {
        "account": {"id": f"{meter}-a{i % 2}"},
        "usage": {"units": (i % 3) + 1},
        "at": time_ms // 1000,
        "region": "test" if i % 6 == 0 else "eu",
    }
    return {"key": str(i).encode(), "value": orjson.dumps(value), "timestamp": time_ms + 50}


def _mapping(topic: str, meter: str) -> dict[str, Any]:
    return {
        "topics": [topic],
        "format": "json",
        "meter": meter,
        "customer_id": {"path": "account.id"},
        "value": {"path": "usage.units"},
        "time": {"path": "at", "unit": "s"},
        "dimensions": {"region": {"path": "region"}},
        "filters": [{"dimension": "region", "values": ["test"], "action": "EXCLUDE"}],
    }


def _avro_records(registry: str, topic: str, meter: str) -> list[dict[str, Any]]:
    rows = [
        {
            "customerId": f"{meter}-c{i % 2}",
            "meterApiName": meter,
            "meterValue": float(i % 4 + 1),
            "meterTimeInMillis": T0 + 2 * HOUR + i * 60_000,
            "dimensions": {},
            "uniqueId": None,
        }
        for i in range(AVRO)
    ]
    values = serialize(registry, topic, V1, rows)
    out = [
        {"key": str(i).encode(), "value": v, "timestamp": rows[i]["meterTimeInMillis"] + 50}
        for i, v in enumerate(values)
    ]
    out.append({"key": b"x", "value": b"not avro", "timestamp": T0 + 2 * HOUR})
    return out


@pytest.fixture(scope="module")
def run(
    kafka_broker: str,
    amberflo_emulator: Emulator,
    schema_registry: LocalSchemaRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Run]:
    meter = f"rec-{uuid.uuid4().hex[:8]}"
    mapped_meter, avro_meter = f"{meter}-mapped", f"{meter}-avro"
    topic, mapped, avro = f"usage-{meter}", f"mapped-{meter}", f"avro-{meter}"
    group = f"g-{meter}"
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    for name in (topic, mapped, avro):
        admin.create_topics([NewTopic(name, num_partitions=2)])[name].result(10)
    emu = Emu(amberflo_emulator.base_url, amberflo_emulator.api_key)
    mappings = [_mapping(mapped, mapped_meter), avro_mapping([avro])]
    env = connector_env(
        kafka_broker,
        f"{topic},{mapped},{avro}",
        amberflo_emulator.base_url,
        amberflo_emulator.api_key,
        group,
        CONNECTOR_KAFKA__CONSUMER=QUICK_GROUP,
        CONNECTOR_MAPPINGS=orjson.dumps(mappings).decode(),
        CONNECTOR_SCHEMA_REGISTRY__URL=schema_registry.url,
    )
    records = [_record(meter, i) for i in range(RECORDS)]
    records[7] = _record(meter, 7, uniqueId="own-id-7")
    poison_time = T0 + HOUR + 1
    records += [
        records[7],  # the same record again: Amberflo keeps one
        {"key": b"p1", "value": b"not json {", "timestamp": poison_time},
        {"key": b"p2", "value": orjson.dumps({"meterApiName": meter}), "timestamp": poison_time},
    ]
    produce_raw(kafka_broker, topic, records)
    broken = {"usage": {"units": 1}, "at": T0 // 1000}  # no account.id
    mapped_records = [_mapped_record(i, mapped_meter) for i in range(MAPPED)]
    mapped_records.append({"key": b"b", "value": orjson.dumps(broken), "timestamp": T0 + 1})
    produce_raw(kafka_broker, mapped, mapped_records)
    avro_records = _avro_records(schema_registry.url, avro, avro_meter)
    produce_raw(kafka_broker, avro, avro_records)
    proc = ConnectorProcess(env, tmp_path_factory.mktemp("reconcile") / "connector.log")
    try:
        wait_until(
            lambda: (
                sum(committed(kafka_broker, group, topic, 2).values()) == len(records)
                and sum(committed(kafka_broker, group, mapped, 2).values()) == len(mapped_records)
                and sum(committed(kafka_broker, group, avro, 2).values()) == len(avro_records)
            ),
            60,
            "every record committed",
        )
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.close()
    late = [
        _record(meter, 120 + i, customerId=f"{meter}-late", uniqueId=f"late-{i}")
        for i in range(IN_FLIGHT)
    ]
    produce_raw(kafka_broker, topic, late)
    delivered = [orjson.loads(r["value"]) for r in late[:DELIVERED_IN_FLIGHT]]
    emu.s.post(f"{emu.base_url}/ingest", json=delivered, timeout=10).raise_for_status()
    yield Run(topic, group, meter, mapped_meter, avro_meter, env, emu)


def _lines(out: str, cause: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.endswith(cause)]


# native: 3 customers × 3 hours + the in-flight one; json-mapped and Avro: 2 customers × 1 hour
CELLS = CUSTOMERS * 3 + 1 + 2 + 2


Pushgateway = tuple[str, list[tuple[str, str, bytes]]]


def test_clean_run_matches_and_in_flight_dead_lettered_and_filtered_are_accounted(
    run: Run, pushgateway: Pushgateway
) -> None:
    code, doc = run.report()
    assert code == 0 and doc["ok"], doc
    summary = doc["summary"]
    assert summary["cells_checked"] == CELLS
    assert summary["cells_matching"] == CELLS - 1
    assert summary["cells_mismatched"] == 0 and summary["records_unaccounted"] == 0
    assert summary["records_dead_lettered"] == {"decode": 2, "transform": 2}
    assert summary["records_filtered"] == FILTERED
    assert summary["records_in_flight"] == IN_FLIGHT
    assert summary["events_checked"] == RECORDS + IN_FLIGHT + MAPPED - FILTERED + AVRO
    assert summary["duplicate_events"] == 1
    (late,) = doc["cells"]
    assert late["customerId"] == f"{run.meter}-late" and late["cause"] == "in flight"
    assert late["bucket"] == "2026-01-01T01:00:00Z" and late["status"] == "explained"
    assert late["committed"] == {"sum": 0, "count": 0}
    assert late["amberflo"]["count"] == DELIVERED_IN_FLIGHT
    assert late["expected"]["count"] == IN_FLIGHT

    url, seen = pushgateway
    text = run.reconcile("--pushgateway", url)
    assert text.returncode == 0, text.stdout + text.stderr
    summary_line = text.stdout.splitlines()[-1]
    assert summary_line.startswith(f"reconcile OK: {CELLS} cells checked, {CELLS - 1} matching")
    (line,) = _lines(text.stdout, "in flight")
    assert line[:3] == [run.meter, f"{run.meter}-late", "2026-01-01T01:00:00Z"]
    ((method, path, body),) = seen  # what a real HTTP server received
    assert method == "POST"
    assert path == f"/metrics/job/amberflo_connector_reconcile/group/{run.group}"
    metrics = _metrics(body)
    assert metrics["amberflo_connector_reconcile_mismatched_cells"] == 0
    assert metrics["amberflo_connector_reconcile_checked_cells"] == CELLS
    assert metrics["amberflo_connector_reconcile_last_success_timestamp"] > 1.7e9


def test_the_mapped_topic_alone_and_one_meter(run: Run) -> None:
    code, doc = run.report("--topic", f"mapped-{run.meter}", "--meter", run.mapped_meter)
    assert code == 0, doc
    summary = doc["summary"]
    assert (summary["cells_checked"], summary["cells_matching"]) == (2, 2)
    assert summary["events_checked"] == MAPPED - FILTERED
    assert summary["records_filtered"] == FILTERED
    assert summary["records_dead_lettered"] == {"transform": 1}
    assert doc["topics"] == [f"mapped-{run.meter}"]


@pytest.mark.parametrize("kind", ["native", "avro"])
def test_usage_ingested_behind_the_connectors_back_is_extra(
    run: Run, kind: str, pushgateway: Pushgateway
) -> None:
    meter, customer, hour = run.cell(kind, "extra")
    extra = {
        "customerId": customer,
        "meterApiName": meter,
        "meterValue": 7,
        "meterTimeInMillis": T0 + hour * HOUR + 5_000,
        "uniqueId": f"extra-{uuid.uuid4().hex}",
    }
    run.emu.s.post(f"{run.emu.base_url}/ingest", json=[extra], timeout=10).raise_for_status()
    url, seen = pushgateway
    try:
        done = run.reconcile("--pushgateway", url)
    finally:
        run.emu.s.delete(
            f"{run.emu.base_url}/_emulator/records",
            params={"uniqueId": extra["uniqueId"]},
            timeout=10,
        ).raise_for_status()
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = _lines(done.stdout, "extra")
    assert line[:3] == [meter, customer, f"2026-01-01T0{hour}:00:00Z"]
    expected, in_amberflo, difference = line[3:6]
    assert float(in_amberflo) - float(expected) == 7 and difference == "+7"
    assert len(_lines(done.stdout, "missing")) == 0
    assert done.stdout.splitlines()[-1].startswith("reconcile MISMATCH:")
    assert "1 mismatched" in done.stdout.splitlines()[-1]
    metrics = _metrics(seen[0][2])  # a failed check pushes no success time
    assert metrics["amberflo_connector_reconcile_mismatched_cells"] == 1
    assert "amberflo_connector_reconcile_last_success_timestamp" not in metrics


def test_usage_the_current_filters_exclude_is_extra_caused_by_filtered(run: Run) -> None:
    """Amberflo holds an event of a record the mapping's filter drops (the filter was added
    after it was ingested): the cell is a mismatch whose cause is ``filtered``.  The event is
    the one the connector would have sent without the filter (``mappings preview`` with the
    filter removed: same decode, rules and derived uniqueId)."""
    mapped = f"mapped-{run.meter}"
    bare = [{**_mapping(mapped, run.mapped_meter), "filters": []}]
    args = ["--topic", mapped, "--limit", "1000", "--json", "--wait", "0.8"]
    preview = subprocess.run(
        [sys.executable, "-m", "connector", "mappings", "preview", *args],
        env={**run.env, "CONNECTOR_MAPPINGS": orjson.dumps(bare).decode()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert preview.returncode == 0, preview.stderr
    would = [
        e
        for line in preview.stdout.splitlines()
        for e in orjson.loads(line).get("events", [])
        if e["dimensions"]["region"] == "test"
    ]
    assert len(would) == FILTERED
    event = would[1]
    customer, value = event["customerId"], event["meterValue"]
    run.emu.s.post(f"{run.emu.base_url}/ingest", json=[event], timeout=10).raise_for_status()
    try:
        code, doc = run.report()
        text = run.reconcile()
    finally:
        run.emu.s.delete(
            f"{run.emu.base_url}/_emulator/records",
            params={"uniqueId": event["uniqueId"]},
            timeout=10,
        ).raise_for_status()
    assert code == 1 and not doc["ok"], doc
    (cell,) = [c for c in doc["cells"] if c["status"] == "mismatch"]
    assert (cell["meterApiName"], cell["customerId"], cell["bucket"]) == (
        run.mapped_meter,
        customer,
        "2026-01-01T00:00:00Z",
    )
    assert cell["cause"] == "filtered" and cell["difference"] == value
    assert cell["amberflo"]["count"] == cell["expected"]["count"] + 1
    in_cell = [e for e in would if e["customerId"] == customer]
    assert cell["filtered"] == {
        "sum": sum(e["meterValue"] for e in in_cell),
        "count": len(in_cell),
    }
    assert doc["summary"]["cells_mismatched"] == 1
    assert doc["summary"]["events_filtered"] == FILTERED
    assert text.returncode == 1, text.stdout + text.stderr
    (line,) = _lines(text.stdout, "filtered")
    assert line[:3] == [run.mapped_meter, customer, "2026-01-01T00:00:00Z"]
    assert line[5] == f"+{value}" and not _lines(text.stdout, "extra")


@pytest.mark.parametrize("kind", ["native", "avro"])
def test_usage_removed_from_amberflo_is_missing(run: Run, kind: str) -> None:
    meter, customer, hour_index = run.cell(kind, "missing")
    hour = {
        "startTimeInMillis": T0 + hour_index * HOUR,
        "endTimeInMillis": T0 + (hour_index + 1) * HOUR,
    }
    stored = run.emu.s.get(
        f"{run.emu.base_url}/_emulator/records",
        params={"customerId": customer, "meterApiName": meter, "limit": 10_000},
        timeout=10,
    ).json()["records"]
    gone = [
        r
        for r in stored
        if hour["startTimeInMillis"] <= r["meterTimeInMillis"] < hour["endTimeInMillis"]
    ]
    assert gone
    deleted = run.emu.s.delete(
        f"{run.emu.base_url}/_emulator/records",
        params={"customerId": customer, "meterApiName": meter, **hour},
        timeout=10,
    ).json()["deleted"]
    assert deleted == len(gone)
    try:
        code, doc = run.report()
    finally:  # the same events again: stored again, as they were
        keys = ("customerId", "meterApiName", "meterValue", "meterTimeInMillis", "uniqueId")
        back = [{"dimensions": r["dimensions"], **{k: r[k] for k in keys}} for r in gone]
        run.emu.s.post(f"{run.emu.base_url}/ingest", json=back, timeout=10).raise_for_status()
    assert code == 1 and not doc["ok"]
    (missing,) = [c for c in doc["cells"] if c["status"] == "mismatch"]
    assert (missing["meterApiName"], missing["customerId"], missing["cause"]) == (
        meter,
        customer,
        "missing",
    )
    assert missing["bucket"] == f"2026-01-01T0{hour_index}:00:00Z"
    assert missing["amberflo"] == {"sum": 0, "count": 0}
    assert missing["difference"] == -sum(r["meterValue"] for r in gone)
    assert doc["summary"]["cells_mismatched"] == 1


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str, bytes]]

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    do_POST = do_PUT = _record

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def pushgateway() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """A real HTTP server on a free port recording every request it receives."""
    seen: list[tuple[str, str, bytes]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def _metrics(body: bytes) -> dict[str, float]:
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_usage_and_config_errors_exit_2_and_unreachable_amberflo_exits_3(run: Run) -> None:
    backwards = run.reconcile("--from", "2026-01-02T00:00:00Z")
    assert backwards.returncode == 2 and "span no whole hour" in backwards.stderr
    wrong_group = run.reconcile(CONNECTOR_KAFKA__GROUP_ID="not-the-connector")
    assert wrong_group.returncode == 2
    assert wrong_group.stderr.strip().splitlines() == [
        f"amberflo-connector: CONNECTOR_KAFKA__GROUP_ID: group 'not-the-connector' has "
        f"committed no offset on {run.topic}, mapped-{run.meter}, avro-{run.meter}; is it the "
        "connector's group?"
    ]
    closed = f"http://127.0.0.1:{free_port()}"
    down = run.reconcile(
        CONNECTOR_AMBERFLO__BASE_URL=closed, CONNECTOR_RECONCILE__RETRY_TIMEOUT_S="0.5"
    )
    assert down.returncode == 3 and "Traceback" not in down.stderr
    line = down.stderr.strip().splitlines()[-1]  # after the retries' warnings
    assert (
        line.startswith("amberflo-connector: Amberflo usage query kept failing") and closed in line
    )
    assert "CONNECTOR_RECONCILE__RETRY_TIMEOUT_S" in line
