"""Epoch milliseconds as ISO-8601 UTC text and back: the one formatting and parsing that
dead-letter headers, the dlq tools, reconcile and the previews share."""

from __future__ import annotations

from datetime import UTC, datetime


def ms_to_iso(ms: int, timespec: str = "milliseconds", *, zulu: bool = False) -> str:
    """``2026-01-01T10:00:00.000+00:00`` (``timespec`` as ``datetime.isoformat``); with
    ``zulu`` the zone is written ``Z``."""
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec=timespec)
    return text.replace("+00:00", "Z") if zulu else text


def parse_time(text: str) -> int:
    """Epoch milliseconds of ``text``: an integer (epoch ms) or ISO-8601 (naive means UTC)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)
