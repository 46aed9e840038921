"""What an HTTP answer from Amberflo means: the one classification the sink and the client share.

=====================  ==================================================================
2xx                    success (``None``)
401, 403               ``FatalError``: the API key was refused (the message names the URL)
429, 503               ``ThrottledError`` with the server's ``Retry-After`` (bounded, below)
other 5xx, 408         ``RetryableError``
any other 4xx          ``AmberfloApiError`` (a ``FatalError``): the request itself is wrong;
                       the sink first bisects 400/413 to find the events Amberflo refuses
=====================  ==================================================================

A ``Retry-After`` is a server's answer, not an order: a value that is not a finite,
non-negative number of seconds or an HTTP-date (``inf``, ``-5``, ``soon``) counts as absent,
and whoever waits caps it at its own ceiling (the sink: ``CONNECTOR_SINK__RETRY_MAX_S``).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from typing import Any

from connector.errors import FatalError, RetryableError, ThrottledError

KEY_HINT = "check CONNECTOR_AMBERFLO__API_KEY"


class AmberfloApiError(FatalError):
    """A 4xx answer other than 401/403/408/429: the request itself is wrong."""

    def __init__(
        self, message: str, *, status: int, code: str | None = None, details: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None when
    absent or not a finite, non-negative delay (an HTTP-date in the past is 0)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_of(headers: Mapping[str, str] | None) -> float | None:
    """The Retry-After delay of a response (header names are case-insensitive)."""
    given = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    return parse_retry_after(given)


def classify(
    status: int,
    headers: Mapping[str, str] | None,
    detail: str,
    where: str,
    *,
    code: str | None = None,
    details: Any = None,
) -> Exception | None:
    """The exception a response means (None: success); ``where`` names the request."""
    if 200 <= status < 300:
        return None
    if status in (401, 403):
        return FatalError(f"Amberflo rejected the API key (HTTP {status} from {where}); {KEY_HINT}")
    if status in (429, 503):
        return ThrottledError(
            f"HTTP {status} from {where}", http_status=status, retry_after=retry_after_of(headers)
        )
    if status >= 500 or status == 408:
        return RetryableError(f"HTTP {status} from {where}: {detail}", http_status=status)
    return AmberfloApiError(
        f"HTTP {status} from {where}: {detail}", status=status, code=code, details=details
    )
