"""Epoch milliseconds as ISO-8601 UTC text: the one formatting that dead-letter headers, the
dlq tools, reconcile and the previews share."""

from __future__ import annotations

from datetime import UTC, datetime


def ms_to_iso(ms: int, timespec: str = "milliseconds", *, zulu: bool = False) -> str:
    """``2026-01-01T10:00:00.000+00:00`` (``timespec`` as ``datetime.isoformat``); with
    ``zulu`` the zone is written ``Z``."""
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec=timespec)
    return text.replace("+00:00", "Z") if zulu else text
