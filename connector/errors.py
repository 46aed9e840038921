"""Exceptions, typed by what the runtime does with them.

``ConnectorError`` is the single root.  The subclass says the action:

* ``FatalError``     – stop the process: one readable line, non-zero exit, no commit.
* ``ConfigError``    – a FatalError caused by bad settings (exit code 2).
* ``RetryableError`` – transient infrastructure trouble; retry with backoff, never dead-letter.
* ``ThrottledError`` – a RetryableError that carries the server's Retry-After delay.
* ``RecordError``    – one record cannot be processed; it becomes a dead letter and the
  pipeline goes on.  Record errors are normally *values* (``DeadLetter``); the exception
  exists so that pure functions can signal them and be converted at the stage boundary.
  Its subclasses name the stage: ``DecodeError``, ``MappingError``, ``EventRejected``,
  ``CustomerRejected``; the
  class name is what a dead letter's ``error.class`` header says.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Root of every exception the connector raises on purpose."""


class FatalError(ConnectorError):
    """Stop the connector. ``str(exc)`` is the one line shown to the user."""

    exit_code = 1


class ConfigError(FatalError):
    exit_code = 2


class Abandoned(ConnectorError):
    """Retrying stopped because the process is shutting down; nothing of the work is done."""


class RetryableError(ConnectorError):
    """Transient failure: retry with backoff; nothing is committed past it meanwhile."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class ThrottledError(RetryableError):
    """429/503: wait at least ``retry_after`` seconds (when the server said so)."""

    def __init__(
        self, message: str, *, http_status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, http_status=http_status)
        self.retry_after = retry_after


class RecordError(ConnectorError):
    """A single record is bad; route it to the dead-letter topic.

    ``stage`` is one of ``decode``, ``transform``, ``sink``.
    """

    def __init__(
        self, stage: str, message: str, *, field: str | None = None, http_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.stage = stage
        self.field = field
        self.http_status = http_status


class DecodeError(RecordError):
    """The value cannot be decoded (not JSON, not Avro, unknown schema id): stage ``decode``."""

    def __init__(self, message: str) -> None:
        super().__init__("decode", message)


class MappingError(RecordError):
    """The decoded value does not map to meter events: stage ``transform``.

    The message is ``<field>: <rule>`` so a dead letter says what to fix.
    """

    def __init__(self, field: str, rule: str) -> None:
        super().__init__("transform", f"{field}: {rule}", field=field)


class EventRejected(RecordError):
    """Amberflo refused this very event (HTTP 400, or 413 for a single event): stage ``sink``.

    The message carries the server's error detail.
    """

    def __init__(self, message: str, *, http_status: int) -> None:
        super().__init__("sink", message, http_status=http_status)


class CustomerRejected(RecordError):
    """Amberflo refused a record's customer update or plan assignment (HTTP 400): stage
    ``sink``.  The message carries the server's error detail."""

    def __init__(self, message: str, *, http_status: int) -> None:
        super().__init__("sink", message, http_status=http_status)
