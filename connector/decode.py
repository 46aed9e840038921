"""Bytes → Python value.  A value that cannot be decoded is a ``DecodeError`` (stage ``decode``).

Only JSON for now (the native format); Avro plugs in here behind the same ``Decoder`` shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from connector.errors import DecodeError

Decoder = Callable[[bytes | None], Any]


def decode_json(value: bytes | None) -> Any:
    """Parse a JSON record value. Raises ``DecodeError`` on tombstones or bad JSON."""
    if value is None:
        raise DecodeError("record has no value (tombstone)")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from exc
