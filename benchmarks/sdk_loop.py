"""Figure 4: what a user would write instead — a consumer loop feeding the official Amberflo
Python SDK's threaded producer (``amberflo-metering-python``), pointed at the emulator.

The loop runs in its own process (as a user's would): ``python -m benchmarks.sdk_loop``.  It
is the SDK's best case: ``send()`` returns False when the SDK's 100,000-record queue is full
(the record would be dropped), so the loop waits and retries instead, and counts those
refusals.  Kafka offsets are auto-committed, uniqueIds are the SDK's random uuid4 (so a replay
would count twice): no delivery contract at all.

The chaos suite (``tests/chaos``, RELIABILITY.md) runs the same loop the way a user would
deploy it: ``n`` 0 (run until killed), a fixed ``--group`` (a restart resumes from the
auto-committed offsets), ``--skip-bad`` (a record that does not parse or map is logged and
skipped, not a crash loop) and ``--drop-when-full`` (a refused ``send()`` drops the event).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
from confluent_kafka import Consumer

from benchmarks.common import API_KEY, FAST_GROUP, Drain, cpu_seconds, wait_drained


def loop(
    bootstrap: str,
    topic: str,
    url: str,
    n: int,
    *,
    group: str | None = None,
    api_key: str = API_KEY,
    skip_bad: bool = False,
    drop_when_full: bool = False,
) -> None:
    """Consume ``n`` records (0: until killed) and send each through the SDK."""
    import metering.session
    from metering.ingest import create_ingest_client, create_ingest_payload

    metering.session.IngestSession.root_url = url
    metering.session.ApiSession.root_url = url
    logging.getLogger("metering").setLevel(logging.CRITICAL)  # "Queue is full!" per refusal
    client = create_ingest_client(api_key=api_key)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or f"bench-sdk-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            **FAST_GROUP,
        }
    )
    consumer.subscribe([topic])
    seen = refused = skipped = 0
    reported = time.monotonic()

    def report() -> None:
        counts = {"consumed": seen, "refused": refused, "skipped": skipped}
        print(orjson.dumps(counts).decode(), flush=True)

    while seen < n or not n:
        if time.monotonic() - reported >= 0.5:  # the parent may stop us at its time cap
            report()
            reported = time.monotonic()
        for m in consumer.consume(2000, 1.0):
            if m.error() is not None:
                continue
            seen += 1
            try:
                d = orjson.loads(m.value())
                payload = create_ingest_payload(
                    meter_api_name=d["meterApiName"],
                    meter_value=d.get("meterValue", 1),
                    meter_time_in_millis=d.get("meterTimeInMillis") or m.timestamp()[1],
                    customer_id=d["customerId"],
                    dimensions=d.get("dimensions"),
                )
            except Exception:
                if not skip_bad:
                    raise
                skipped += 1
                continue
            while not client.send(payload):
                refused += 1
                if drop_when_full:
                    break
                time.sleep(0.001)
    client.flush()
    consumer.close()
    report()


def run(
    bootstrap: str,
    topic: str,
    n: int,
    url: str,
    stored: Callable[[], int],
    workdir: Path,
    cap_s: float,
) -> tuple[Drain, int, bool]:
    """(rate until ``n`` stored or for ``cap_s`` after the first record was stored,
    queue-full refusals, whether all ``n`` were stored)."""
    import subprocess

    baseline = stored()
    out = workdir / f"sdk-{uuid.uuid4().hex[:8]}.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sdk_loop", bootstrap, topic, url, str(n)],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
        cpu_at_first = [0.0]

        def first() -> None:
            cpu_at_first[0] = cpu_seconds(proc.pid)

        drain = wait_drained(stored, n, cap_s, baseline=baseline, partial=True, on_first=first)
        complete = drain.complete
        spent = cpu_seconds(proc.pid) - cpu_at_first[0]
        drain.cpu_us_per_record = spent / max(drain.stored - drain.first, 1) * 1e6
        if complete:
            proc.wait(60)
        else:
            proc.kill()
            proc.wait()
    refused = 0
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            refused = int(orjson.loads(line)["refused"])
    return drain, refused, complete


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("url")
    parser.add_argument("n", type=int, help="records to consume; 0: until killed")
    parser.add_argument("--group", help="consumer group (default: a new one)")
    parser.add_argument("--api-key", default=API_KEY)
    parser.add_argument("--skip-bad", action="store_true", help="skip records that fail")
    parser.add_argument("--drop-when-full", action="store_true", help="drop refused events")
    a = parser.parse_args()
    loop(
        a.bootstrap,
        a.topic,
        a.url,
        a.n,
        group=a.group,
        api_key=a.api_key,
        skip_bad=a.skip_bad,
        drop_when_full=a.drop_when_full,
    )
