"""Turning an ``/ingest`` request body into rows for the records table (pure functions).

Contract (what the emulator promises, including the points the live docs leave open):

* Body: one JSON object, a JSON array of objects, or NDJSON (one object per line), optionally
  ``Content-Encoding: gzip`` (``x-gzip`` and ``deflate`` too; a gzip body is also recognised
  by its magic bytes when the header is missing).
* Limits: at most ``MAX_EVENTS`` (1,000) events and ``MAX_BYTES`` (1 MiB) of decompressed
  body per request, else 413.
* Every event is validated; any invalid event rejects the whole request (400) with one
  ``{"index", "field", "problem"}`` entry per problem, and nothing of the request is stored.
  ``index`` is the event's position in the array (or its line among the non-empty NDJSON
  lines); ``field`` is null when the problem concerns the whole event.
* An event with ``values`` ({meterApiName: number}) expands into one record per entry; its
  ``meterApiName``/``meterValue`` are then ignored.  ``null`` for an optional field
  (``uniqueId``, ``dimensions``, ``values``) means absent; ``{}`` dimensions equal none.
* The success count ("N records were ingested") is the number of records after ``values``
  expansion, *before* deduplication and filtering: every valid record is acknowledged.
* Dedupe key: the whole record — uniqueId, meterApiName, customerId, meterValue (as a float,
  so 1 and 1.0 are the same), meterTimeInMillis and the dimensions (keys sorted).  The
  records table's UNIQUE key is meterTimeInMillis as 8 big-endian bytes followed by the
  16-byte BLAKE2b digest of that record: the time prefix keeps a batch's index writes on a
  few B-tree pages (a purely random key made commits 3x slower) and lets usage queries
  range-scan the same index by time.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from math import isfinite
from typing import Any

import orjson

from connector.emulator.store import RecordRow

MAX_EVENTS = 1000
MAX_BYTES = 1 << 20
# 9999-12-31T23:59:59.999Z: keeps every timestamp representable as a calendar date.
MAX_TIME_MS = 253_402_300_799_999

Rule = tuple[str, frozenset[str], bool]
"""A compiled filtering rule: (dimensionName, dimensionValues, is_include)."""


class IngestRejected(Exception):
    """The request is refused as a whole: ``status`` and a JSON ``body`` for the response."""

    def __init__(self, status: int, code: str, message: str, details: list[Any] | None = None):
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code}
        if details is not None:
            self.body["details"] = details


@dataclass(slots=True)
class Prepared:
    """Rows ready to insert, and how many valid records the rules filtered out."""

    rows: list[RecordRow] = field(default_factory=list)
    filtered: int = 0

    @property
    def acknowledged(self) -> int:
        return len(self.rows) + self.filtered


def decompress(body: bytes, content_encoding: str | None, max_bytes: int = MAX_BYTES) -> bytes:
    """The decoded body; 413 when it exceeds ``max_bytes``, 400/415 when it cannot be decoded."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity") and not body.startswith(b"\x1f\x8b"):
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
        return body
    if encoding in ("", "identity", "gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise IngestRejected(
            415, "UNSUPPORTED_MEDIA_TYPE", f"unsupported Content-Encoding {content_encoding!r}"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise IngestRejected(400, "BAD_REQUEST", f"body is not valid {encoding}: {exc}") from exc
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    if not inflater.eof:
        raise IngestRejected(400, "BAD_REQUEST", f"body is a truncated {encoding or 'gzip'} stream")
    return data


def _too_large(max_bytes: int) -> IngestRejected:
    if max_bytes != MAX_BYTES:
        return IngestRejected(413, "PAYLOAD_TOO_LARGE", f"over {max_bytes} bytes (decompressed)")
    return IngestRejected(
        413,
        "PAYLOAD_TOO_LARGE",
        f"request body over {MAX_BYTES} bytes (decompressed); send at most {MAX_EVENTS} "
        f"events and {MAX_BYTES} bytes per request",
    )


def parse_events(data: bytes, max_events: int | None = MAX_EVENTS) -> list[Any]:
    """The events of a decoded body (JSON object, JSON array or NDJSON); 400/413 otherwise
    (413: more than ``max_events``; None: no limit)."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        lines = [line for line in data.split(b"\n") if line.strip()]
        if len(lines) < 2:
            raise IngestRejected(400, "BAD_REQUEST", f"body is not valid JSON: {exc}") from exc
        events, details = [], []
        for i, line in enumerate(lines):
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError as line_exc:
                details.append({"index": i, "field": None, "problem": f"invalid JSON: {line_exc}"})
        if details:
            raise IngestRejected(
                400, "BAD_REQUEST", "body is neither JSON nor valid NDJSON", details
            ) from exc
        doc = events
    if isinstance(doc, dict):
        doc = [doc]
    elif not isinstance(doc, list):
        raise IngestRejected(
            400, "BAD_REQUEST", "body must be a JSON object, a JSON array of objects or NDJSON"
        )
    if max_events is not None and len(doc) > max_events:
        raise IngestRejected(
            413,
            "PAYLOAD_TOO_LARGE",
            f"{len(doc)} events in one request; at most {max_events} are accepted",
        )
    return doc


def _is_number(v: object) -> bool:
    t = type(v)
    return t is int or (t is float and isfinite(v))  # type: ignore[arg-type]


def problems(index: int, event: object) -> list[dict[str, Any]]:
    """Every validation problem of one event (empty when it is valid)."""
    out: list[dict[str, Any]] = []

    def bad(name: str | None, problem: str) -> None:
        out.append({"index": index, "field": name, "problem": problem})

    if not isinstance(event, dict):
        bad(None, "must be a JSON object")
        return out
    cid = event.get("customerId")
    if type(cid) is not str or not cid:
        bad("customerId", "required; must be a non-empty string")
    t = event.get("meterTimeInMillis")
    if type(t) is not int or not 0 < t <= MAX_TIME_MS:
        bad("meterTimeInMillis", f"required; must be an integer between 1 and {MAX_TIME_MS}")
    uid = event.get("uniqueId")
    if uid is not None and type(uid) is not str:
        bad("uniqueId", "must be a string")
    dims = event.get("dimensions")
    if dims is not None:
        if type(dims) is not dict:
            bad("dimensions", "must be an object of string values")
        else:
            for k, v in dims.items():
                if type(v) is not str:
                    bad(f"dimensions.{k}", "must be a string")
    values = event.get("values")
    if values is None:
        name = event.get("meterApiName")
        if type(name) is not str or not name:
            bad("meterApiName", "required (unless values is given); must be a non-empty string")
        if not _is_number(event.get("meterValue")):
            bad("meterValue", "required (unless values is given); must be a finite number")
    elif type(values) is not dict or not values:
        bad("values", "must be a non-empty object of meterApiName to number")
    else:
        for k, v in values.items():
            if not k:
                bad("values", "meter names must be non-empty strings")
            if not _is_number(v):
                bad(f"values.{k}", "must be a finite number")
    return out


def prepare(events: Sequence[Any], rules: Mapping[str, Sequence[Rule]]) -> Prepared:
    """Validate ``events`` and build their record rows; raises 400 listing every problem.

    The loop is the emulator's hot path: it only checks and records the indexes of bad
    events; ``problems()`` explains them afterwards.
    """
    out = Prepared()
    append = out.rows.append
    dumps = orjson.dumps
    sort_keys = orjson.OPT_SORT_KEYS
    bad: list[int] = []
    for i, ev in enumerate(events):
        try:
            cid = ev["customerId"]
            t = ev["meterTimeInMillis"]
        except (TypeError, KeyError, IndexError):
            bad.append(i)
            continue
        uid = ev.get("uniqueId")
        dims = ev.get("dimensions")
        if (
            type(cid) is not str
            or not cid
            or type(t) is not int
            or t <= 0
            or t > MAX_TIME_MS
            or (uid is not None and type(uid) is not str)
        ):
            bad.append(i)
            continue
        dims_json: str | None = None
        if dims:
            if type(dims) is not dict:
                bad.append(i)
                continue
            for dim_value in dims.values():
                if type(dim_value) is not str:
                    break
            else:
                dims_json = dumps(dims, option=sort_keys).decode()
            if dims_json is None:
                bad.append(i)
                continue
        elif dims is not None and type(dims) is not dict:
            bad.append(i)
            continue
        values = ev.get("values")
        if values is None:
            name = ev.get("meterApiName")
            value = ev.get("meterValue")
            kind = type(value)
            if (
                type(name) is not str
                or not name
                or not (kind is int or (kind is float and isfinite(value)))
            ):
                bad.append(i)
                continue
            if bad:
                continue  # the request fails anyway: only keep looking for bad events
            if rules and name in rules and not _passes(rules[name], dims):
                out.filtered += 1
                continue
            v = float(value) + 0.0  # 1 and 1.0 are the same value, and so are -0.0 and 0.0
            key = (
                t.to_bytes(8, "big")
                + blake2b(dumps((uid, name, cid, v, t, dims_json)), digest_size=16).digest()
            )
            append((key, cid, name, v, t, uid, dims_json))
            continue
        if type(values) is not dict or not values or not all(map(_is_entry, values.items())):
            bad.append(i)
            continue
        if bad:
            continue
        # The same steps as above, once per entry of ``values``.
        for name, value in values.items():
            if rules and name in rules and not _passes(rules[name], dims):
                out.filtered += 1
                continue
            v = float(value) + 0.0  # 1 and 1.0 are the same value, and so are -0.0 and 0.0
            key = (
                t.to_bytes(8, "big")
                + blake2b(dumps((uid, name, cid, v, t, dims_json)), digest_size=16).digest()
            )
            append((key, cid, name, v, t, uid, dims_json))
    if bad:
        details = [d for i in bad for d in problems(i, events[i])]
        raise IngestRejected(
            400,
            "BAD_REQUEST",
            f"{len(bad)} of {len(events)} events are invalid; nothing of this request was ingested",
            details,
        )
    return out


def _is_entry(item: tuple[str, Any]) -> bool:
    return bool(item[0]) and _is_number(item[1])


def _passes(rules: Sequence[Rule], dims: Mapping[str, str] | None) -> bool:
    """True when the record survives every rule: INCLUDE keeps only listed values (a missing
    dimension is not listed); EXCLUDE drops listed values."""
    for name, allowed, include in rules:
        value = dims.get(name) if dims else None
        if (value in allowed) != include:
            return False
    return True


def compile_rules(docs: Sequence[Mapping[str, Any]]) -> dict[str, list[Rule]]:
    """Filtering-rule documents grouped by meterApiName, in the form ``prepare`` uses."""
    out: dict[str, list[Rule]] = {}
    for doc in docs:
        rule: Rule = (
            str(doc["dimensionName"]),
            frozenset(doc.get("dimensionValues") or ()),
            str(doc["action"]).upper() == "INCLUDE",
        )
        out.setdefault(str(doc["meterApiName"]), []).append(rule)
    return out
