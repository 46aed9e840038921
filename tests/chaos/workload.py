"""The chaos suite's workload: known records, known totals, known poison.

Record ``i`` (Kafka key ``str(i)``) is a native usage event for one of three meters and
``customers`` customers with value ``1 + i % 5``, so every meter × customer total is known in
advance.  With ``poison_every=k`` every k-th record is poison instead, of one of four kinds in
turn; its usage is not in ``expected()``.  Three kinds become valid under ``fix_mapping`` (what
an operator deploys after reading the dead letters), which is what ``dlq replay`` then lands:
``fixed_extra()``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Producer

T0 = 1_767_225_600_000
TOO_LATE = 10**15  # year 33658: the connector maps it, Amberflo (the emulator) answers 400
POISON_KINDS = ("bad-json", "missing-customer", "wrong-type", "sink-400")
FIXABLE = frozenset({"missing-customer", "wrong-type", "sink-400"})


def fix_mapping(topic: str) -> list[dict[str, Any]]:
    """The fix: read the customer from `account` when `customerId` is missing, take a numeric
    string as a number, and the meter time from the Kafka timestamp (not the record's)."""
    return [
        {
            "topics": [topic],
            "format": "json",
            "meter": {"path": "meterApiName"},
            "customer_id": {"expr": "customerId || account"},
            "value": {"expr": "to_number(meterValue)"},
        }
    ]


@dataclass(frozen=True)
class Workload:
    n: int
    poison_every: int = 0
    customers: int = 40
    meters: tuple[str, ...] = ("chaos-calls", "chaos-bytes", "chaos-seats")

    def kind(self, i: int) -> str | None:
        if self.poison_every and i % self.poison_every == self.poison_every - 1:
            return POISON_KINDS[(i // self.poison_every) % len(POISON_KINDS)]
        return None

    def _fields(self, i: int) -> tuple[str, str, int]:
        return self.meters[i % len(self.meters)], f"cust-{i % self.customers:03d}", 1 + i % 5

    def record(self, i: int) -> bytes:
        meter, customer, value = self._fields(i)
        doc: dict[str, Any] = {
            "customerId": customer,
            "meterApiName": meter,
            "meterValue": value,
            "meterTimeInMillis": T0 + i,
        }
        kind = self.kind(i)
        if kind == "bad-json":
            return orjson.dumps(doc)[:-7]
        if kind == "missing-customer":
            doc["account"] = doc.pop("customerId")
        elif kind == "wrong-type":
            doc["meterValue"] = str(value)
        elif kind == "sink-400":
            doc["meterTimeInMillis"] = TOO_LATE
        return orjson.dumps(doc)

    def expected(self) -> dict[tuple[str, str], float]:
        """meter × customer totals of the valid records."""
        return self._totals(lambda kind: kind is None)

    def fixed_extra(self) -> dict[tuple[str, str], float]:
        """What replaying the dead letters under ``fix_mapping`` adds."""
        return self._totals(lambda kind: kind in FIXABLE)

    def _totals(self, keep: Any) -> dict[tuple[str, str], float]:
        out: Counter[tuple[str, str]] = Counter()
        for i in range(self.n):
            if keep(self.kind(i)):
                meter, customer, value = self._fields(i)
                out[(meter, customer)] += value
        return dict(out)

    @property
    def valid(self) -> int:
        return self.valid_below(self.n)

    def valid_below(self, end: int) -> int:
        return sum(1 for i in range(end) if self.kind(i) is None)

    def poison_keys(self) -> dict[bytes, str]:
        return {str(i).encode(): k for i in range(self.n) if (k := self.kind(i)) is not None}


class Feeder(threading.Thread):
    """Produces the workload (or its ``records``) in the background at ``rate`` records/s
    (None: as fast as it can), all with the Kafka timestamp ``timestamp_ms`` when given (else
    the time of sending).  ``produce()`` produces in the calling thread instead."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        workload: Workload,
        rate: float | None = None,
        timestamp_ms: int | None = None,
        records: range | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.workload = bootstrap, topic, workload
        self.rate, self.timestamp_ms = rate, timestamp_ms
        self.records = records if records is not None else range(workload.n)
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._produce()
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def produce(self) -> None:
        """Produce in the calling thread; raises what went wrong."""
        self._produce()

    def _produce(self) -> None:
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "linger.ms": 5, "enable.idempotence": True}
        )
        failed: list[Any] = []
        started = time.monotonic()
        for sent, i in enumerate(self.records, 1):
            kwargs: dict[str, Any] = {"key": str(i).encode(), "value": self.workload.record(i)}
            if self.timestamp_ms is not None:
                kwargs["timestamp"] = self.timestamp_ms
            while True:
                try:
                    producer.produce(
                        self.topic, on_delivery=lambda e, _m: e and failed.append(e), **kwargs
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
            self.sent = sent
            if sent % 1000 == 0:
                producer.poll(0)
                if self.rate:
                    ahead = self.sent / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        assert producer.flush(60) == 0 and not failed, failed

    def finish(self, timeout: float = 120) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the feeder did not finish"
        if self.error is not None:
            raise self.error
