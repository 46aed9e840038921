"""The emulator's S3 intake: Amberflo's "AWS S3" ingestion option, against any S3 endpoint.

``emulator --s3-endpoint URL --s3-bucket B`` polls the bucket every ``poll_s`` seconds and
ingests each object it has not processed yet, exactly as ``POST /ingest`` would: a JSON
array, one JSON object or NDJSON, gunzipped when the key ends in ``.gz``, the same
validation, filtering rules and whole-record dedupe (``connector.emulator.ingest``).  The
per-request limits of ``/ingest`` (1,000 events, 1 MiB) do not apply to objects; an object
may hold up to ``MAX_OBJECT_BYTES`` decompressed.

* An object with any invalid event is rejected whole (nothing of it is stored, as for a 400
  from ``/ingest``) and the intake writes ``failed-requests/<MM-DD-YYYY>/<key>.reason.txt``
  (today's UTC date) holding the reason: one line, then one line per problem.
* Which objects were processed (key and ETag) is kept in the SQLite store, in the same
  transaction as the object's records, so a restarted emulator neither loses nor repeats
  one.  An object overwritten with different bytes (a new ETag) is ingested again, as a new
  PUT is on the live service; an identical overwrite changes nothing either way (dedupe).
* Keys under ``failed-requests/`` and keys ending in ``/`` are never ingested.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from connector.aws import REPORTS_PREFIX, report_key, s3_client
from connector.emulator.ingest import IngestRejected, Prepared
from connector.emulator.state import EmulatorState

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("connector.emulator.s3")

MAX_OBJECT_BYTES = 256 * 1024 * 1024
"""Largest object (decompressed) the intake ingests; a larger one is rejected."""


class S3Intake:
    """Polls one bucket; ``run`` is a task on the emulator's event loop (the S3 calls and the
    inserts run in a worker thread, the counters are updated on the loop)."""

    def __init__(
        self,
        st: EmulatorState,
        endpoint_url: str,
        bucket: str,
        poll_s: float = 1.0,
        region: str | None = None,
    ) -> None:
        self.st = st
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self.poll_s = poll_s
        self._s3: S3Client = s3_client(
            region=region or "us-east-1", endpoint_url=endpoint_url, fallback_credentials=True
        )
        self._known = st.store.s3_objects()
        self._failing = False

    @property
    def url(self) -> str:
        return f"{self.endpoint_url.rstrip('/')}/{self.bucket}"

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; an unreachable endpoint is logged and retried."""
        ready = False
        while not stop.is_set():
            try:
                if not ready:
                    await asyncio.to_thread(self.ensure_bucket)
                    ready = True
                done = await asyncio.to_thread(self.poll_once, stop)
            except Exception as exc:  # botocore/network: keep polling, say it once
                if not self._failing:
                    log.warning("S3 intake: cannot read %s: %s; retrying", self.url, exc)
                self._failing = True
            else:
                if self._failing:
                    log.warning("S3 intake: %s is reachable again", self.url)
                self._failing = False
                for prepared, inserted in done:
                    self.st.count_object(prepared, inserted)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_s)

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (Amberflo provisions it on the live
        service)."""
        from botocore.exceptions import ClientError

        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            self._s3.create_bucket(Bucket=self.bucket)
            log.info("S3 intake: created bucket %s", self.url)

    def poll_once(self, stop: asyncio.Event | None = None) -> list[tuple[Prepared, int | None]]:
        """Process every new object once; returns (prepared, rows inserted) per object
        (inserted None: rejected)."""
        out: list[tuple[Prepared, int | None]] = []
        for key, etag, size in self._new_objects():
            if stop is not None and stop.is_set():
                break
            out.append(self._process(key, etag, size))
            self._known[key] = etag
        return out

    def _new_objects(self) -> Iterator[tuple[str, str, int]]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        for page in pages:
            for obj in page.get("Contents", []):
                key, etag = obj["Key"], obj["ETag"]
                if key.startswith(REPORTS_PREFIX) or key.endswith("/"):
                    continue
                if self._known.get(key) != etag:
                    yield key, etag, obj["Size"]

    def _process(self, key: str, etag: str, size: int) -> tuple[Prepared, int | None]:
        try:
            if size > MAX_OBJECT_BYTES:
                raise IngestRejected(
                    413, "PAYLOAD_TOO_LARGE", f"object over {MAX_OBJECT_BYTES} bytes"
                )
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            prepared = self.st.prepare_object(body, gzipped=key.endswith(".gz"))
        except IngestRejected as exc:
            self._reject(key, etag, exc)
            return Prepared(), None
        inserted = self.st.store.ingest_s3_object(key, etag, prepared.rows)
        log.info("S3 intake: %s: %d records (%d new)", key, prepared.acknowledged, inserted)
        return prepared, inserted

    def _reject(self, key: str, etag: str, exc: IngestRejected) -> None:
        report = report_key(key)
        self._s3.put_object(
            Bucket=self.bucket,
            Key=report,
            Body=reason_text(exc).encode(),
            ContentType="text/plain; charset=utf-8",
        )
        self.st.store.reject_s3_object(key, etag)
        log.info("S3 intake: %s rejected (%s): wrote %s", key, exc, report)


def reason_text(exc: IngestRejected) -> str:
    """A failure report's text: the reason on the first line, then one line per problem."""
    lines = [f"{exc.body['code']}: {exc}"]
    details: list[Any] = exc.body.get("details") or []
    for d in details:
        where = f"event {d.get('index')}"
        if d.get("field"):
            where += f" field {d['field']}"
        lines.append(f"{where}: {d.get('problem')}")
    return "\n".join(lines) + "\n"
