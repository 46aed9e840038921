"""Prometheus metrics and the /metrics, /healthz, /readyz endpoint.

``/healthz`` is 200 while the worker loop keeps turning (it calls ``heartbeat()`` every
iteration); 503 once it has been silent for ``STALL_SECONDS``.  ``/readyz`` is 200 once the
worker has connected to Kafka and Amberflo accepted the key, and 503 while it shuts down or
while Amberflo has been unreachable for ``unreachable_limit_s`` (the sink reports it through
``unreachable()``/``reached()``): Kubernetes shows the pod unready during an outage, and
``/healthz`` stays 200 because restarting would not help.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

P = "amberflo_connector_"
RECORDS = Counter(P + "records_consumed_total", "Kafka records consumed")
EVENTS = Counter(P + "events_ingested_total", "Meter events accepted by Amberflo (HTTP 200)")
DEAD_LETTERS = Counter(P + "dead_letters_total", "Records written to the DLQ", ["stage"])
DEAD_LETTERS_FOUND = Counter(
    P + "dead_letters_found_total",
    "Records re-read (after a crash or rebalance) whose dead letter already existed: not "
    "written again",
)
DEAD_LETTER_FAILURES = Counter(
    P + "dead_letter_failures_total", "Dead letters the DLQ topic did not acknowledge (retried)"
)
REQUESTS = Counter(P + "ingest_requests_total", "/ingest requests by outcome", ["status"])
REQUEST_SECONDS = Histogram(P + "ingest_request_seconds", "/ingest request duration")
RETRIES = Counter(P + "ingest_retries_total", "Retried /ingest requests")
BACKING_OFF = Gauge(P + "ingest_backing_off", "Requests waiting to be retried (>0: stuck)")
BUFFERED = Gauge(P + "buffered_records", "Records consumed but not yet committable")
BUFFERED_EVENTS = Gauge(P + "buffered_events", "Meter events held, not yet answered by the sink")
BUFFERED_BYTES = Gauge(P + "buffered_bytes", "Estimated memory of the held records and events")
PAUSED = Gauge(P + "paused", "1 while consumption is paused for backpressure")
DECODE_RETRIES = Counter(
    P + "decode_retries_total",
    "Records a decoder could not read for lack of infrastructure (schema registry down): "
    "their partition was rewound and paused, not dead-lettered",
)
HELD = Gauge(P + "partitions_held", "Partitions paused until a decoder can read them again")
COMMITS = Counter(P + "commits_total", "Offset commits", ["result"])
FILTERED = Counter(
    P + "records_filtered_total",
    "Records a mapping filter dropped (committed, never sent)",
    ["topic", "rule"],
)
COMMIT_PARTITION_ERRORS = Counter(
    P + "commit_partition_errors_total",
    "Partitions whose offset the broker refused within a commit (retried)",
    ["error"],
)
LAST_COMMIT = Gauge(
    P + "last_commit_timestamp_seconds",
    "Unix time of the last offset commit the broker accepted (the worker's start until then)",
)
LAST_INGEST = Gauge(
    P + "last_ingest_timestamp_seconds",
    "Unix time of the last /ingest request Amberflo accepted (the worker's start until then)",
)
DELAY = Histogram(
    P + "delivery_delay_seconds",
    "End-to-end delay: Amberflo acknowledged an /ingest request minus the Kafka timestamp of "
    "the oldest record in it (one observation per acknowledged request)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
)
LAG = Gauge(
    P + "consumer_lag",
    "Records of an assigned partition not committed yet: high watermark (last stable offset "
    "under read_committed) minus the committed offset, from librdkafka statistics",
    ["topic", "partition"],
)
OLDEST_AGE = Gauge(
    P + "oldest_unfinished_age_seconds",
    "Age (now minus Kafka timestamp) of the oldest consumed record not yet done, per "
    "assigned partition; 0 when nothing is pending",
    ["topic", "partition"],
)
RETENTION_USED = Gauge(
    P + "retention_used_ratio",
    "oldest_unfinished_age_seconds as a share of the topic's retention.ms (1: the broker may "
    "delete records before they are billed)",
    ["topic", "partition"],
)
RETENTION_GUARD = Gauge(
    P + "retention_guard",
    "Retention guard: 0 ok, 1 warn, 2 critical (CONNECTOR_RETENTION_GUARD__*), the worst "
    "assigned partition",
)
SKIPPED = Counter(
    P + "records_skipped_total",
    "Records of a kind the format does not meter, e.g. Segment group/alias (committed, never sent)",
    ["topic", "reason"],
)
CUSTOMER_UPDATES = Counter(
    P + "customer_updates_total",
    "Customer updates applied in Amberflo, by outcome (upserted, plan_assigned, "
    "plan_unchanged, rejected)",
    ["outcome"],
)
S3_REQUESTS = Counter(P + "s3_requests_total", "S3 object PUTs by outcome", ["status"])
S3_OBJECTS = Counter(P + "s3_objects_written_total", "Objects stored in the S3 bucket")
S3_BYTES = Counter(P + "s3_bytes_written_total", "Bytes (gzip'd) stored in the S3 bucket")
S3_FAILURE_REPORTS = Counter(
    P + "s3_failure_reports_total",
    "Amberflo failure reports about objects written, handled (result: records = re-read "
    "and dead-lettered, letter = no longer in Kafka: one letter with the key and reason)",
    ["result"],
)

STALL_SECONDS = 120.0


class Health:
    def __init__(self) -> None:
        self.ready = False
        self.last_beat = time.monotonic()
        self.unreachable_since: float | None = None
        self.unreachable_limit_s = 60.0

    def heartbeat(self) -> None:
        self.last_beat = time.monotonic()

    def unreachable(self) -> None:
        """An /ingest attempt got no answer (connection error, timeout) or a 5xx."""
        if self.unreachable_since is None:
            self.unreachable_since = time.monotonic()

    def reached(self) -> None:
        """Amberflo answered (2xx, 4xx, 429): it is reachable."""
        self.unreachable_since = None

    @property
    def alive(self) -> bool:
        return time.monotonic() - self.last_beat < STALL_SECONDS

    def not_ready_reason(self) -> str | None:
        if not self.ready:
            return "not ready"
        since = self.unreachable_since
        if since is not None and time.monotonic() - since >= self.unreachable_limit_s:
            return f"not ready: Amberflo unreachable for {time.monotonic() - since:.0f}s"
        return None


HEALTH = Health()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/metrics":
            self._reply(200, generate_latest(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ok = HEALTH.alive
            self._reply(200 if ok else 503, b"ok\n" if ok else b"stalled\n")
        elif path == "/readyz":
            reason = HEALTH.not_ready_reason()
            self._reply(503 if reason else 200, f"{reason or 'ready'}\n".encode())
        else:
            self._reply(404, b"not found\n")

    def _reply(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def serve(port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
