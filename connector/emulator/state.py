"""Everything one emulator instance holds: the store, the counters, the fault queue, the rules.

Routes reach it with ``state(request)``.  Methods that touch SQLite are synchronous and run
in worker threads (except ``/ingest``, which tries the store from the event loop first: see
``api_ingest``); the counters and the fault queue are only touched on the event loop.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from connector.emulator.ingest import (
    Prepared,
    Rule,
    compile_rules,
    decompress,
    parse_events,
    prepare,
)
from connector.emulator.middleware import Faults, Stats
from connector.emulator.store import Store


class ApiError(Exception):
    """Answered as ``status`` with ``{"message", "code"}`` (and ``details`` when given)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": str(self), "code": self.code}
        if self.details is not None:
            out["details"] = self.details
        return out


def not_found(what: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{what} not found")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class EmulatorState:
    store: Store
    stats: Stats = field(default_factory=Stats)
    faults: Faults = field(default_factory=Faults)
    _rules: dict[str, list[Rule]] = field(default_factory=dict)
    _rules_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.reload_rules()

    def reload_rules(self) -> None:
        """Recompile the filtering rules after a change (ingest sees a consistent snapshot)."""
        with self._rules_lock:
            self._rules = compile_rules(self.store.list_rules())

    def prepare_ingest(self, body: bytes, content_encoding: str | None) -> Prepared:
        """Decode, validate and filter one /ingest body (CPU only; raises IngestRejected)."""
        return prepare(parse_events(decompress(body, content_encoding)), self._rules)

    def prepare_object(self, body: bytes, gzipped: bool) -> Prepared:
        """The same for an S3 object (no per-request limits; see ``s3_intake``)."""
        from connector.emulator.s3_intake import MAX_OBJECT_BYTES

        data = decompress(body, "gzip" if gzipped else "identity", MAX_OBJECT_BYTES)
        return prepare(parse_events(data, max_events=None), self._rules)

    def count_ingest(self, prepared: Prepared, inserted: int) -> None:
        """Add an accepted request to the counters (call on the event loop)."""
        s = self.stats
        s.ingest_requests += 1
        s.events_accepted += prepared.acknowledged
        s.duplicates += len(prepared.rows) - inserted
        s.filtered += prepared.filtered

    def count_object(self, prepared: Prepared, inserted: int | None) -> None:
        """Add a processed S3 object to the counters (inserted None: rejected; on the loop)."""
        s = self.stats
        if inserted is None:
            s.s3_objects_rejected += 1
            return
        s.s3_objects_ingested += 1
        s.events_accepted += prepared.acknowledged
        s.duplicates += len(prepared.rows) - inserted
        s.filtered += prepared.filtered

    def stats_json(self) -> dict[str, Any]:
        s = self.stats
        return {
            "requests": dict(s.requests),
            "events_accepted": s.events_accepted,
            "duplicates": s.duplicates,
            "filtered": s.filtered,
            "records_stored": self.store.records_stored,
            "ingest_requests": s.ingest_requests,
            "s3_objects_ingested": s.s3_objects_ingested,
            "s3_objects_rejected": s.s3_objects_rejected,
        }


def state(request: Request) -> EmulatorState:
    st: EmulatorState = request.app.state.emulator
    return st
