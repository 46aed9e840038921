"""SQLite persistence for the emulator.

One connection, shared by every request thread behind a lock, so all writes are serialised.
The file runs in WAL mode with ``synchronous=NORMAL``: a commit survives the emulator
process being killed (``kill -9`` included) but may be lost if the whole machine loses power,
which is the right trade-off for a local test double.  A background thread checkpoints the
WAL so that no request pays for it.  ``:memory:`` keeps nothing.

Meter records are deduplicated by a UNIQUE index on ``hash`` and ``INSERT OR IGNORE``.  The
hash starts with the record's time (see ``connector.emulator.ingest``), so the same index
serves time-range scans for usage queries; there is no other index to slow ingest down.
Customers, meters, plans and rules are stored as JSON documents keyed by their identifiers
(``connector.emulator.documents``).
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Sequence
from itertools import chain
from typing import Any

from connector.emulator.documents import Documents

# (hash, customer_id, meter_api_name, meter_value, time_ms, unique_id, dimensions_json);
# ingested_at_ms is stamped by insert_records() at commit time.
RecordRow = tuple[bytes, str, str, float, int, str | None, str | None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    customer_id TEXT NOT NULL,
    meter_api_name TEXT NOT NULL,
    meter_value REAL NOT NULL,
    time_ms INTEGER NOT NULL,
    unique_id TEXT,
    dimensions TEXT,
    ingested_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS records_hash ON records(hash);
CREATE TABLE IF NOT EXISTS customers (
    seq INTEGER PRIMARY KEY,
    customer_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS customer_pricing (
    seq INTEGER PRIMARY KEY,
    customer_id TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS customer_pricing_customer ON customer_pricing(customer_id, seq);
CREATE TABLE IF NOT EXISTS meters (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    meter_api_name TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS s3_objects (
    key TEXT PRIMARY KEY,
    etag TEXT NOT NULL,
    status TEXT NOT NULL,
    records INTEGER NOT NULL,
    processed_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS filtering_rules (
    seq INTEGER PRIMARY KEY,
    rule_id TEXT NOT NULL UNIQUE,
    meter_api_name TEXT NOT NULL,
    body TEXT NOT NULL
);
"""

_INSERT_RECORDS = (
    "INSERT OR IGNORE INTO records (hash, customer_id, meter_api_name, meter_value, time_ms,"
    " unique_id, dimensions, ingested_at_ms) VALUES "
)
# Rows per multi-row INSERT: 1,000 x 7 parameters stays under SQLite's 32,766 limit.  One
# statement with many rows costs about a third less than executemany() over the same rows.
_CHUNK = 1000
# WAL frames (pages) beyond which the checkpointer briefly holds the write lock (~16 MB).
_WAL_REWIND_FRAMES = 4096


@functools.cache
def _insert_sql(rows: int) -> str:
    """INSERT of ``rows`` rows; parameter ?1 is the ingestion time shared by all of them."""
    values = (
        f"(?{b + 2},?{b + 3},?{b + 4},?{b + 5},?{b + 6},?{b + 7},?{b + 8},?1)"
        for b in range(0, 7 * rows, 7)
    )
    return _INSERT_RECORDS + ",".join(values)


def _time_key(time_ms: int) -> bytes:
    """The ``hash`` prefix of records at ``time_ms`` (hash = 8-byte big-endian time + digest)."""
    return min(time_ms, 2**64 - 1).to_bytes(8, "big")


class Store(Documents):
    """Thread-safe access to the emulator's SQLite database at ``path``: the meter records and
    the S3 intake's objects here, the JSON documents inherited from ``Documents``.

    Every public method is atomic: it runs under the store's lock and commits before it
    returns, so whatever a method reports as written is on disk (WAL) when it returns.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            # Requests never run a checkpoint themselves (a large one stalls a commit for
            # 100+ ms); a background thread copies the WAL into the database instead.
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="emulator-checkpoint", daemon=True
            )
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT COUNT(*) FROM records").fetchone()
        self._records_stored = int(row[0])
        if self._checkpointer is not None:
            self._checkpointer.start()

    def _checkpoint_loop(self, interval: float = 0.5) -> None:
        """PASSIVE checkpoints twice a second on a connection of its own: they neither wait
        for nor block the writer.  Under sustained ingest they never quite catch up (frames
        keep arriving), so once the WAL holds over ``_WAL_REWIND_FRAMES`` frames one pass runs
        under the write lock: it only copies the frames since the previous pass, completes,
        and the next write then rewinds the WAL instead of growing it."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(interval):
                try:
                    _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames > _WAL_REWIND_FRAMES:
                        with self._lock:
                            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    continue  # busy or transient: the next round retries
        finally:
            db.close()

    def close(self) -> None:
        """Stop the checkpointer, fold the WAL into the database file and close."""
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._lock:
            if self._checkpointer is not None:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            self._db.close()

    # -- meter records -------------------------------------------------------------------

    @property
    def records_stored(self) -> int:
        """Rows in the records table (kept as a counter; exact, including earlier runs)."""
        return self._records_stored

    def insert_records(self, rows: Sequence[RecordRow]) -> int:
        """Insert ``rows`` in one transaction, skipping duplicates; returns how many were new.

        Every row gets the same ``ingested_at_ms``: the clock once the write lock is held,
        just before the rows are written and committed.
        """
        with self._lock:
            return self._insert(rows)

    def try_insert_records(self, rows: Sequence[RecordRow]) -> int | None:
        """``insert_records`` if the store is free right now, else None (nothing written).

        For the event loop: it must not wait behind a long query or a checkpoint."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._insert(rows)
        finally:
            self._lock.release()

    def _insert(self, rows: Sequence[RecordRow], s3_object: tuple[Any, ...] | None = None) -> int:
        if not rows and s3_object is None:
            return 0
        before = self._db.total_changes
        self._db.execute("BEGIN IMMEDIATE")
        try:
            now = time.time_ns() // 1_000_000
            for start in range(0, len(rows), _CHUNK):
                part = rows[start : start + _CHUNK]
                params = [now, *chain.from_iterable(part)]
                self._db.execute(_insert_sql(len(part)), params)
            inserted = self._db.total_changes - before
            if s3_object is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO s3_objects (key, etag, status, records,"
                    " processed_at_ms) VALUES (?, ?, ?, ?, ?)",
                    (*s3_object, now),
                )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._records_stored += inserted
        return inserted

    # -- objects of the S3 intake ---------------------------------------------------------

    def s3_objects(self) -> dict[str, str]:
        """Every S3 object the intake has processed (ingested or rejected): key → ETag."""
        with self._lock:
            return dict(self._db.execute("SELECT key, etag FROM s3_objects").fetchall())

    def ingest_s3_object(self, key: str, etag: str, rows: Sequence[RecordRow]) -> int:
        """Insert an object's rows and remember the object as ingested, in one transaction
        (so a restart neither loses nor repeats it); returns how many rows were new."""
        with self._lock:
            return self._insert(rows, (key, etag, "ingested", len(rows)))

    def reject_s3_object(self, key: str, etag: str) -> None:
        """Remember the object as rejected (its failure report is written)."""
        with self._lock:
            self._insert((), (key, etag, "rejected", 0))

    def usage_rows(
        self, meter_api_name: str | None, start_ms: int, end_ms: int
    ) -> list[tuple[str, str, int, float, str | None]]:
        """(meter, customer, time_ms, value, dimensions_json) for start_ms <= time < end_ms.

        ``meter_api_name=None`` returns every meter's records.
        """
        sql = (
            "SELECT meter_api_name, customer_id, time_ms, meter_value, dimensions FROM records"
            " WHERE hash >= ? AND hash < ?"
        )
        args: list[Any] = [_time_key(max(start_ms, 0)), _time_key(max(end_ms, 0))]
        if meter_api_name is not None:
            sql += " AND meter_api_name = ?"
            args.append(meter_api_name)
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def records_page(
        self,
        after_id: int,
        limit: int,
        customer_id: str | None = None,
        meter_api_name: str | None = None,
    ) -> list[tuple[int, str, str, float, int, str | None, str | None, int]]:
        """Stored records with id > after_id in id order (optionally for one customer/meter)."""
        sql = (
            "SELECT id, customer_id, meter_api_name, meter_value, time_ms, unique_id,"
            " dimensions, ingested_at_ms FROM records WHERE id > ?"
        )
        args: list[Any] = [after_id]
        if customer_id is not None:
            sql += " AND customer_id = ?"
            args.append(customer_id)
        if meter_api_name is not None:
            sql += " AND meter_api_name = ?"
            args.append(meter_api_name)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def delete_records(
        self,
        *,
        customer_id: str | None = None,
        meter_api_name: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        unique_id: str | None = None,
    ) -> int:
        """Delete the stored records matching every given filter (none given: all of them);
        returns how many were deleted.  The time range is ``[start_ms, end_ms)`` on
        meterTimeInMillis.  A deleted record's dedupe key goes with it, so the same event
        ingested again is stored again."""
        where: list[str] = []
        args: list[Any] = []
        if start_ms is not None:
            where.append("hash >= ?")
            args.append(_time_key(max(start_ms, 0)))
        if end_ms is not None:
            where.append("hash < ?")
            args.append(_time_key(max(end_ms, 0)))
        for column, value in (
            ("customer_id", customer_id),
            ("meter_api_name", meter_api_name),
            ("unique_id", unique_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "DELETE FROM records" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            deleted = int(self._db.execute(sql, args).rowcount)
            self._records_stored -= deleted
        return deleted

    def totals(
        self, customer_id: str | None = None, meter_api_name: str | None = None
    ) -> list[tuple[str, str, float, int]]:
        """(meter, customer, sum, count) over every stored record, ordered by meter, customer."""
        sql = "SELECT meter_api_name, customer_id, SUM(meter_value), COUNT(*) FROM records"
        where: list[str] = []
        args: list[Any] = []
        if customer_id is not None:
            where.append("customer_id = ?")
            args.append(customer_id)
        if meter_api_name is not None:
            where.append("meter_api_name = ?")
            args.append(meter_api_name)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " GROUP BY meter_api_name, customer_id ORDER BY meter_api_name, customer_id"
        with self._lock:
            return self._db.execute(sql, args).fetchall()
