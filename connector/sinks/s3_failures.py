"""Amberflo's failure reports about the objects the S3 sink wrote, turned into dead letters.

A successful PUT only means the object is stored; Amberflo ingests it afterwards and, when
it rejects the object's records, writes ``failed-requests/<date>/<object key>.reason.txt``
into the bucket.  ``FailureWatcher`` (a thread of each ``run`` worker in s3 mode) lists that
prefix every ``CONNECTOR_S3__FAILURES_POLL_S`` seconds and, for each report about an object
of this deployment's prefix whose partition this worker owns:

* reads the object's records again from Kafka by the offsets in its key (a reader of its
  own, ``assign()``, no group) and dead-letters each record that had events in the object
  (the mapping is deterministic: records that were dead-lettered or filtered before are
  skipped), stage ``sink``, class ``S3ObjectRejected``, the report's reason in the message;
* for offsets no longer in Kafka (below the log start: retention), writes one letter without
  a record: key = the object key, the offsets and the reason in the message;
* counts it (``amberflo_connector_s3_failure_reports_total{result}``) and logs it;
* then tags the report ``amberflo-connector=dead-lettered`` (S3 object tagging: no new
  object, nothing Amberflo would ingest).

Once per report, across restarts: a tagged report is skipped, and so is one handled by this
process.  The tag is written only after every dead letter was acknowledged, so a crash in
between dead-letters that report once more on restart (at least once: a replay of both copies
is still counted once, the events keep their uniqueIds).  Without permission to tag
(``s3:PutObjectTagging``), reports are remembered only until the process restarts (a warning
says so).  Partition ownership keeps two workers from handling the same report; during a
rebalance both may, the same at-least-once way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

from confluent_kafka import TopicPartition

from connector import metrics
from connector.aws import REPORTS_PREFIX, reported_object, s3_client
from connector.errors import ConnectorError, RecordError
from connector.formats import Mappers
from connector.records import DeadLetter, Headers, SourceRecord
from connector.settings import Settings
from connector.sinks.s3 import ObjectRange, parse_object_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from connector.dlq.publish import DeadLetterPublisher

log = logging.getLogger("connector.sink")

TAG = ("amberflo-connector", "dead-lettered")
REASON_CHARS = 2000
ERROR_CLASS = "S3ObjectRejected"


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
    ) -> None:
        cfg = settings.s3
        assert cfg.bucket
        self.settings = settings
        self.bucket, self.prefix = cfg.bucket, cfg.prefix
        self.interval = cfg.failures_poll_s
        self._owned = owned
        self._stop = stop
        self._s3: S3Client = s3_client(region=cfg.region, endpoint_url=cfg.endpoint_url)
        self._mappers = Mappers(settings)
        self._done: set[str] = set()  # reports handled, or not ours to handle
        self._can_tag = True
        self._dlq: DeadLetterPublisher | None = None
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
        """Handle every new report this worker owns; returns how many it handled."""
        handled = 0
        owned = set(self._owned())
        for report in list_reports(self._s3, self.bucket, self.prefix):
            if report.key in self._done:
                continue
            if report.range is None:
                self._done.add(report.key)  # another prefix's (or a foreign) object
                continue
            if (report.range.topic, report.range.partition) not in owned or self._stop.is_set():
                continue  # its partition's owner handles it
            if is_tagged(self._s3, self.bucket, report.key):
                self._done.add(report.key)
                continue
            self._handle(report, report.range)
            handled += 1
        return handled

    def _handle(self, report: Report, r: ObjectRange) -> None:
        reason = read_reason(self._s3, self.bucket, report.key)
        where = f"s3://{self.bucket}/{report.object_key}"
        message = f"Amberflo rejected object {where}: {reason}"
        letters, start = self._letters(r, message)
        if start > r.first:
            gone = SourceRecord(r.topic, r.partition, r.first, 0, report.object_key.encode(), None)
            text = (
                f"{message} (offsets {r.first}-{start - 1} are no longer in Kafka: this letter "
                "carries the object key, not the records)"
            )
            letters.append(DeadLetter(gone, "sink", ERROR_CLASS, text))
        self._publish(letters)
        metrics.S3_FAILURE_REPORTS.labels(result="records" if start <= r.last else "letter").inc()
        log.warning(
            "Amberflo rejected %s (%s): dead-lettered %d letter(s) for %s[%d] offsets %d-%d",
            where,
            reason,
            len(letters),
            r.topic,
            r.partition,
            r.first,
            r.last,
        )
        self._done.add(report.key)
        self._tag(report.key)

    def _letters(self, r: ObjectRange, message: str) -> tuple[list[DeadLetter], int]:
        """Dead letters of the object's records still in Kafka, and the first offset there."""
        from connector.dlq.inspect import open_reader, scan

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

    def _publish(self, letters: list[DeadLetter]) -> None:
        from connector.dlq.publish import DeadLetterPublisher

        if self._dlq is None:
            self._dlq = DeadLetterPublisher(self.settings)
        for letter in letters:
            self._dlq.publish(letter, lambda _offset: None)
        if not self._dlq.flush(60):
            raise ConnectorError("the dead-letter topic did not acknowledge them within 60s")

    def _tag(self, report: str) -> None:
        from botocore.exceptions import ClientError

        if not self._can_tag:
            return
        try:
            self._s3.put_object_tagging(
                Bucket=self.bucket,
                Key=report,
                Tagging={"TagSet": [{"Key": TAG[0], "Value": TAG[1]}]},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("AccessDenied", "403"):
                log.warning("could not tag %s (%s): handled again after a restart", report, exc)
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
