"""Amberflo's failure reports about the objects the S3 sink wrote, turned into dead letters.

A successful PUT only means the object is stored; Amberflo ingests it afterwards and, when
it rejects the object's records, writes ``failed-requests/<date>/<object key>.reason.txt``
into the bucket.  ``FailureWatcher`` (a thread of each ``run`` worker in s3 mode) lists that
prefix every ``CONNECTOR_S3__FAILURES_POLL_S`` seconds and, for each report about an object
of this deployment's prefix whose partition this worker owns and that is not tagged handled:

* reads the object's records again from Kafka by the offsets in its key (a reader of its
  own, ``assign()``, no group) and makes a dead letter of each record that had events in the
  object (the mapping is deterministic: records that were dead-lettered or filtered before
  are skipped), stage ``sink``, class ``S3ObjectRejected``, the report's reason in the
  message; for offsets no longer in Kafka (below the log start: retention), one letter
  without a record: key = the object key, the offsets and the reason in the message;
* hands them to the worker's main thread (``pipeline.letters.ReportLetters``), which writes
  those not in the DLQ yet, exactly as its own: through the dead-letter ledger, to DLQ
  partition ``P mod N``, with ``amberflo.origin``, and waits for their acknowledgement;
* counts the report (``amberflo_connector_s3_failure_reports_total{result}``) and logs it;
* then tags the report ``amberflo-connector=dead-lettered`` (S3 object tagging: no new
  object, nothing Amberflo would ingest).

Exactly one letter per record, across crashes and rebalances.  Only the partition's owner
writes its letters (the ledger's knowledge of a DLQ partition, and the marks, belong to the
owner: two writers would not see each other's letters in flight), so a report about a
partition another worker owns is left to it.  The records' offsets were committed long ago,
so the ledger's mark (which follows the committed offset) would be past an earlier attempt's
letters; instead the ledger keeps a report's letters and its mark below them until the
report is *closed*: after each round over every report, the watcher tells the main thread
which reports of its partitions are still untagged (``OpenReports``), and letters of the
others stop holding the mark.  A crash after the letters and before the tag therefore leaves
them where the next owner reads (from the mark), and that owner finds them instead of writing
them again; the range read stays bounded by the reports in progress.

Limits: a report whose tag cannot be written (no ``s3:PutObjectTagging``: a warning says so)
is remembered only by the process, is closed once handled, and is handled again, with new
letters, after a restart.  A letter still unacknowledged when its partition was revoked
(after the revoke wait, ``CONNECTOR_SHUTDOWN_TIMEOUT_S``) or lost can be acknowledged after
the new owner read the DLQ: that record then has two letters (``dlq inspect`` and ``dlq
replay`` count it once).  A report about a partition no worker owns (a topic no longer
subscribed) waits.

Offsets retention deleted since an earlier attempt at the report: their letter is written
unless a letter of that report exists at or past the last of them (the report's letters are
produced in offset order, the "no longer in Kafka" one first, to one DLQ partition by an
idempotent producer, so what an interrupted attempt left is a prefix); that letter's source
offset is the last of the object's offsets gone (never past the object, even when the log
start is far beyond it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

from confluent_kafka import TopicPartition

from connector import metrics
from connector.aws import REPORTS_PREFIX, reported_object, s3_client
from connector.dlq.ledger import REPORTED_CLASS
from connector.errors import RecordError
from connector.formats import Mappers
from connector.pipeline.letters import OpenReports, ReportLetters
from connector.records import DeadLetter, Headers, SourceRecord
from connector.settings import Settings
from connector.sinks.s3 import ObjectRange, parse_object_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("connector.sink")

TAG = ("amberflo-connector", "dead-lettered")
REASON_CHARS = 2000
ERROR_CLASS = REPORTED_CLASS
WAIT_S = 60.0
"""Longest wait for the worker to acknowledge a report's letters; then the report stays open
(untagged) and is handled again in the next round."""


@dataclass(frozen=True)
class Report:
    key: str
    object_key: str
    modified: datetime
    range: ObjectRange | None  # None: not an object of this prefix


def list_reports(s3: S3Client, bucket: str, prefix: str) -> Iterator[Report]:
    """Every failure report in the bucket (``range`` set for objects under ``prefix``)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=REPORTS_PREFIX)
    for page in pages:
        for obj in page.get("Contents", []):
            about = reported_object(obj["Key"])
            if about is not None:
                r = parse_object_key(prefix, about)
                yield Report(obj["Key"], about, obj["LastModified"], r)


def read_reason(s3: S3Client, bucket: str, report: str) -> str:
    body = s3.get_object(Bucket=bucket, Key=report)["Body"].read(REASON_CHARS * 4)
    text = " | ".join(line.strip() for line in body.decode("utf-8", "replace").splitlines())
    return text[:REASON_CHARS] or "(empty report)"


def is_tagged(s3: S3Client, bucket: str, report: str) -> bool:
    tags = s3.get_object_tagging(Bucket=bucket, Key=report).get("TagSet", [])
    return any((t["Key"], t["Value"]) == TAG for t in tags)


class FailureWatcher:
    def __init__(
        self,
        settings: Settings,
        owned: Callable[[], Collection[tuple[str, int]]],
        stop: threading.Event,
        submit: Callable[[ReportLetters | OpenReports], None],
    ) -> None:
        """``owned``: the partitions the worker owns now; ``submit``: hands work to the
        worker's main thread (``Worker.reports``)."""
        cfg = settings.s3
        assert cfg.bucket
        self.settings = settings
        self.bucket, self.prefix = cfg.bucket, cfg.prefix
        self.interval = cfg.failures_poll_s
        self._owned = owned
        self._stop = stop
        self._submit = submit
        self._s3: S3Client = s3_client(region=cfg.region, endpoint_url=cfg.endpoint_url)
        self._mappers = Mappers(settings)
        self._done: set[str] = set()  # reports tagged (or not to be tagged), or not ours
        self._can_tag = True
        self._thread = threading.Thread(target=self._loop, name="s3-failures", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll_once()
            except Exception as exc:  # S3 or Kafka trouble: the reports wait for the next round
                log.warning("failure reports of s3://%s: %s; trying again", self.bucket, exc)

    def poll_once(self) -> int:
        """Handle every open report this worker owns; returns how many it handled.  After a
        complete round, tells the worker which reports of its partitions are still open."""
        handled = 0
        since = time.monotonic()
        owned = set(self._owned())
        still_open: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for report in list_reports(self._s3, self.bucket, self.prefix):
            if report.key in self._done:
                continue
            r = report.range
            if r is None:
                self._done.add(report.key)  # another prefix's (or a foreign) object
                continue
            where = (r.topic, r.partition)
            if where not in owned:
                continue  # its partition's owner handles it
            if self._stop.is_set():
                return handled
            if is_tagged(self._s3, self.bucket, report.key):
                self._done.add(report.key)
                continue
            if self._handle(report, r):
                handled += 1
            if report.key not in self._done:
                still_open.setdefault(where, []).append((r.first, r.last))
        self._submit(OpenReports(frozenset(owned), still_open, since))
        return handled

    def _handle(self, report: Report, r: ObjectRange) -> bool:
        """Dead-letter a report's records (those without a letter yet) and tag it; False when
        the worker did not finish its letters (the report stays open)."""
        reason = read_reason(self._s3, self.bucket, report.key)
        where = f"s3://{self.bucket}/{report.object_key}"
        message = f"Amberflo rejected object {where}: {reason}"
        letters, start = self._letters(r, message)
        gone = None
        if start > r.first:
            # The last of the object's offsets gone, never past the object: the log start may
            # be far beyond it, and an offset past it is another record's (its letter would
            # then count as that record's, and ReportLetters would not find this letter).
            last_gone = min(start - 1, r.last)
            record = SourceRecord(  # see ReportLetters
                r.topic, r.partition, last_gone, 0, report.object_key.encode(), None
            )
            text = (
                f"{message} (offsets {r.first}-{last_gone} are no longer in Kafka: this letter "
                "carries the object key, not the records)"
            )
            gone = DeadLetter(record, "sink", ERROR_CLASS, text)
        job = ReportLetters(r.topic, r.partition, letters, gone, r.last)
        self._submit(job)
        deadline = time.monotonic() + WAIT_S
        while not job.finished.wait(0.2):
            if self._stop.is_set():
                return False
            if time.monotonic() > deadline:
                log.warning("%s: its dead letters were not acknowledged in %.0fs", where, WAIT_S)
                return False
        if not job.complete:
            return False  # revoked meanwhile: its new owner handles it
        log.warning(
            "Amberflo rejected %s (%s): %d dead letter(s) for %s[%d] offsets %d-%d (%d were "
            "in the dead-letter topic already)",
            where,
            reason,
            job.written,
            r.topic,
            r.partition,
            r.first,
            r.last,
            job.found,
        )
        self._tag(report.key)
        if report.key in self._done:  # closed: counted once, not at every retry of the tag
            metrics.S3_FAILURE_REPORTS.labels(
                result="records" if start <= r.last else "letter"
            ).inc()
        return True

    def _letters(self, r: ObjectRange, message: str) -> tuple[list[DeadLetter], int]:
        """Dead letters of the object's records still in Kafka, and the first offset there."""
        from connector.kafka import open_reader, scan

        reader = open_reader(self.settings, f"amberflo-connector-s3-failures-{r.topic}")
        try:
            tp = TopicPartition(r.topic, r.partition)
            low, _high = reader.get_watermark_offsets(tp, timeout=10)
            start = max(r.first, low)
            out: list[DeadLetter] = []
            if start > r.last:
                return out, start
            reader.assign([TopicPartition(r.topic, r.partition, start)])
            mapper = self._mappers.for_topic(r.topic)
            for msg in scan(reader, 2.0, self._stop.is_set):
                offset = int(msg.offset() or 0)
                if offset > r.last:
                    break
                headers = msg.headers()
                record = SourceRecord(
                    r.topic,
                    r.partition,
                    offset,
                    msg.timestamp()[1],
                    msg.key(),
                    msg.value(),
                    cast(Headers, tuple(headers)) if headers else (),
                )
                try:
                    events = mapper(record)
                except RecordError:
                    continue  # dead-lettered when it was read: not in the object
                if type(events) is list and events:
                    out.append(DeadLetter(record, "sink", ERROR_CLASS, message))
                if offset >= r.last:
                    break
            return out, start
        finally:
            reader.close()

    def _tag(self, report: str) -> None:
        """Mark the report handled (then it is closed); without permission to tag, it is
        closed for this process only."""
        from botocore.exceptions import ClientError

        if not self._can_tag:
            self._done.add(report)
            return
        try:
            self._s3.put_object_tagging(
                Bucket=self.bucket,
                Key=report,
                Tagging={"TagSet": [{"Key": TAG[0], "Value": TAG[1]}]},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("AccessDenied", "403"):
                log.warning("could not tag %s (%s): trying again in the next round", report, exc)
                return
            self._can_tag = False
            log.warning(
                "cannot tag failure reports in s3://%s (%s): a restarted connector will "
                "dead-letter the reports this one handled again (grant s3:PutObjectTagging on "
                "%s*)",
                self.bucket,
                exc,
                REPORTS_PREFIX,
            )
        self._done.add(report)
