"""``amberflo-connector demo``: the whole product on this machine, end to end.

Starts the embedded broker and the emulator in a temporary directory (and the local Schema
Registry for ``--format avro``), produces a sample workload in the chosen format with the
mapping that reads it (``connector.samples``, plus a few malformed records), runs the real
connector process until every record is
accounted for (stored in the emulator or dead-lettered: records are counted, not end offsets),
then prints usage per meter and customer from the emulator's ``/usage`` API and checks that the
totals in Amberflo equal the totals produced.  With ``--sink s3`` the connector delivers
through a local S3 server (moto) whose bucket the emulator's S3 intake ingests.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from connector.amberflo.client import AmberfloClient
from connector.amberflo.models import usage_query
from connector.embedded import (
    FAST_GROUP,
    EmbeddedBroker,
    EmbeddedEmulator,
    EmbeddedS3,
    connector_env,
)
from connector.errors import FatalError
from connector.samples import METERS, Totals, encode, malformed, mappings, publish, totals, usage

TOPIC = "usage-events"
BUCKET = "amberflo-ingest"
API_KEY = "local-dev-key"


class _DlqCounter(threading.Thread):
    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.count = 0
        self._stop_event = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "demo-dlq-counter",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                **FAST_GROUP,
            }
        )
        self._consumer.subscribe([f"{TOPIC}.dlq"])

    def run(self) -> None:
        while not self._stop_event.is_set():
            for m in self._consumer.consume(500, 0.2):
                if m.error() is None:
                    self.count += 1
        self._consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


@contextmanager
def _registry(fmt: str) -> Iterator[str | None]:
    """The local Schema Registry's URL for ``avro`` (None for the other formats)."""
    if fmt != "avro":
        yield None
        return
    from connector.local_registry import LocalSchemaRegistry

    with LocalSchemaRegistry() as registry:
        yield registry.url


def run_demo(
    events: int,
    customers: int,
    keep_running: bool,
    console: Console,
    fmt: str = "native",
    sink: str = "api",
) -> int:
    """``sink`` "s3": the connector writes objects to a local S3 server (moto) whose bucket
    the emulator's S3 intake ingests, instead of calling /ingest."""
    workdir = Path(tempfile.mkdtemp(prefix="amberflo-demo-"))
    console.print(f"[bold]Amberflo connector demo[/] ({fmt}) — working in {workdir}")
    with ExitStack() as stack:
        broker = stack.enter_context(EmbeddedBroker(log_path=workdir / "broker.log"))
        s3 = stack.enter_context(EmbeddedS3(log_path=workdir / "s3.log")) if sink == "s3" else None
        emulator = stack.enter_context(
            EmbeddedEmulator(
                db=workdir / "emulator.db",
                api_key=API_KEY,
                log_path=workdir / "emulator.log",
                s3_endpoint=s3.endpoint_url if s3 else None,
                s3_bucket=BUCKET if s3 else None,
            )
        )
        registry = stack.enter_context(_registry(fmt))
        console.print(f"  Kafka broker     {broker.bootstrap}  (Tansu, in memory)")
        console.print(f"  Amberflo API     {emulator.base_url}  (emulator, key {API_KEY!r})")
        if s3 is not None:
            console.print(
                f"  Amberflo bucket  s3://{BUCKET} at {s3.endpoint_url}  (moto; the emulator "
                "ingests its objects)"
            )
        if registry:
            console.print(f"  Schema Registry  {registry}  (local, in memory)")
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        # The DLQ topic too, so the dead-letter counter below sees it from the start.
        futures = admin.create_topics(
            [NewTopic(TOPIC, num_partitions=6), NewTopic(f"{TOPIC}.dlq", num_partitions=1)]
        )
        for future in futures.values():
            future.result(15)
        del admin, futures  # closed now, not after the broker is gone (no shutdown noise)
        facts = usage(events, customers)
        expected = totals(facts)
        stream = encode(fmt, facts, TOPIC, registry)
        bad = malformed(fmt, TOPIC, registry)
        for i, record in enumerate(bad):  # scatter the malformed records
            stream.insert((i + 1) * len(facts) // (len(bad) + 1), record)
        with _progress(console) as progress:
            publish(broker.bootstrap, TOPIC, stream, progress)
        console.print(
            f"  produced {events:,} usage records ({fmt}) and {len(bad)} malformed ones "
            f"to topic {TOPIC!r}"
        )
        dlq = _DlqCounter(broker.bootstrap)
        dlq.start()
        extra = {"CONNECTOR_MAPPINGS": json.dumps(mappings(fmt, TOPIC))}
        if registry:
            extra["CONNECTOR_SCHEMA_REGISTRY__URL"] = registry
        if s3 is not None:
            extra.update(
                {
                    **EmbeddedS3.credentials,
                    "CONNECTOR_SINK__MODE": "s3",
                    "CONNECTOR_S3__BUCKET": BUCKET,
                    "CONNECTOR_S3__ENDPOINT_URL": s3.endpoint_url,
                    "CONNECTOR_S3__REGION": "us-east-1",
                    "CONNECTOR_S3__LINGER_MS": "1000",
                    "CONNECTOR_S3__FAILURES_POLL_S": "5",
                }
            )
        env = connector_env(broker.bootstrap, TOPIC, emulator.base_url, API_KEY)
        env.update(extra)
        log_path = workdir / "connector.log"
        with open(log_path, "ab") as log:
            connector = subprocess.Popen(
                [sys.executable, "-m", "connector", "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = AmberfloClient(emulator.base_url, API_KEY)
        started = time.monotonic()
        try:
            with _progress(console) as progress:
                task = progress.add_task("connector", total=len(stream))
                while True:
                    stored = int(client.emulator_stats()["records_stored"])
                    progress.update(task, completed=stored + dlq.count)
                    if stored + dlq.count >= len(stream):
                        break
                    if connector.poll() is not None:
                        raise FatalError(
                            f"the connector exited with code {connector.returncode}; see {log_path}"
                        )
                    time.sleep(0.2)
            elapsed = time.monotonic() - started
            console.print(
                f"  delivered in {elapsed:.1f}s ({events / elapsed:,.0f} records/s, "
                "including the consumer group join)"
            )
            if s3 is not None:
                console.print(f"  {_objects(s3.endpoint_url)} objects written to s3://{BUCKET}")
            actual = _usage(client, customers)
            _print_table(console, actual)
            dead = dlq.count
            dlq.stop()
            ok = _check(console, expected, actual, dead, len(bad))
            if keep_running:
                console.print(
                    f"\nLeft running: Kafka {broker.bootstrap}, Amberflo emulator "
                    f"{emulator.base_url} (X-API-KEY: {API_KEY}), connector pid "
                    f"{connector.pid}"
                    + (f", S3 {s3.endpoint_url} (bucket {BUCKET})" if s3 else "")
                    + ". Ctrl-C to stop."
                )
                try:
                    while connector.poll() is None:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
            return 0 if ok else 1
        finally:
            if connector.poll() is None:
                connector.send_signal(signal.SIGTERM)
                try:
                    connector.wait(30)
                except subprocess.TimeoutExpired:
                    connector.kill()


def _objects(endpoint_url: str) -> int:
    from connector.aws import s3_client

    s3 = s3_client(endpoint_url=endpoint_url, region="us-east-1", fallback_credentials=True)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="ingest/")
    return sum(len(page.get("Contents", [])) for page in pages)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("  {task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _usage(client: AmberfloClient, customers: int) -> Totals:
    now = int(time.time())
    out: Totals = {}
    for meter in METERS:
        query = usage_query(
            meter, now - 2 * 86_400, now + 60, group_by=["customerId"], take=max(customers, 1)
        )
        for row in client.usage(query).client_meters:
            out[(meter, row.group_info["customerId"])] = row.group_value
    return out


def _print_table(console: Console, usage: Totals) -> None:
    table = Table(title="Usage in Amberflo (emulator /usage, SUM by customer)")
    table.add_column("customer")
    for meter in METERS:
        table.add_column(meter, justify="right")
    for customer in sorted({c for _, c in usage}):
        table.add_row(customer, *(f"{usage.get((m, customer), 0):,.2f}" for m in METERS))
    table.add_row(
        "[bold]total",
        *(f"[bold]{sum(v for (m, _), v in usage.items() if m == meter):,.2f}" for meter in METERS),
    )
    console.print(table)


def _check(console: Console, expected: Totals, actual: Totals, dead: int, bad: int) -> bool:
    console.print(f"  dead-lettered: {dead} (expected {bad}: the malformed records)")
    wrong = sorted(
        k
        for k in expected.keys() | actual.keys()
        if abs(expected.get(k, 0) - actual.get(k, 0)) > 1e-6
    )
    ok = not wrong and dead == bad
    if ok:
        console.print(
            f"[bold green]CHECK OK[/]: all {len(expected)} meter×customer totals in Amberflo "
            "equal the totals produced"
        )
    else:
        console.print(
            f"[bold red]CHECK FAILED[/]: {len(wrong)} totals differ "
            f"(first: {wrong[:3]}), dead letters {dead}"
        )
    return ok
