"""The HTTP side of the Amberflo API client: one ``requests`` session with the API key, one
attempt per request, answers decoded and typed, failures classified.

Errors (each call raises, or returns the decoded 2xx answer):

* ``FatalError``       – 401/403: the API key was refused (the message names the URL).
* ``ThrottledError``   – 429/503, with the server's ``Retry-After`` in seconds when given.
* ``RetryableError``   – other 5xx, 408, connection failures and timeouts.
* ``AmberfloApiError`` – any other 4xx (a bad request: fix the call, do not retry); it is a
  ``FatalError`` carrying ``status``, ``code`` and ``details`` from the JSON error body.

An answer of another shape than the model expects is a ``FatalError`` naming the field.
Retrying is the operations' choice (``_retried``, see ``connector.amberflo.client``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar

import orjson
import requests
from pydantic import BaseModel, ValidationError

from connector import __version__
from connector.amberflo.models import JSON
from connector.amberflo.status import classify
from connector.errors import FatalError, RetryableError
from connector.retry import RetryPolicy
from connector.settings import Settings

M = TypeVar("M", bound=BaseModel)
P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_BASE_URL = "https://app.amberflo.io"


class Transport:
    """Amberflo API at ``base_url`` with ``api_key``; ``ingest_url`` defaults to base_url.

    Usable as a context manager (closes its HTTP session).  Thread-safe for reads only as far
    as ``requests.Session`` is; give each thread its own client.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str = "",
        *,
        ingest_url: str | None = None,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not api_key:
            raise FatalError("an Amberflo API key is required")
        self.base_url = base_url.rstrip("/")
        self.ingest_url = (ingest_url or base_url).rstrip("/")
        self.timeout = timeout
        self.retry = retry
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "X-API-KEY": api_key,
                "Accept": "application/json",
                "User-Agent": f"amberflo-kafka-connector/{__version__}",
            }
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, retry_timeout_s: float | None = None) -> Self:
        """A client for ``settings.amberflo`` with the sink's retry policy; ``retry_timeout_s``
        (when given) bounds the retrying instead of ``CONNECTOR_SINK__RETRY_TIMEOUT_S``."""
        policy = RetryPolicy.from_settings(
            settings.sink, timeout_s=retry_timeout_s, name="Amberflo API call"
        )
        return cls(
            settings.amberflo.base_url,
            settings.amberflo.api_key.get_secret_value(),
            ingest_url=settings.amberflo.ingest_url,
            timeout=settings.sink.request_timeout_s,
            retry=policy,
        )

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        base: str | None = None,
    ) -> requests.Response:
        """Send one request (one attempt); returns the 2xx response or raises."""
        url = (base or self.base_url) + path
        hdrs = dict(headers or {})
        if json is not None:
            data = orjson.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        try:
            response = self.session.request(
                method, url, data=data, params=params, headers=hdrs, timeout=self.timeout
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RetryableError(f"{method} {url} failed: {exc}") from exc
        if 200 <= response.status_code < 300:
            return response
        raise _error_for(method, url, response)

    def _retried(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.retry.call(fn, *args, **kwargs) if self.retry else fn(*args, **kwargs)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """One attempt; the decoded JSON body."""
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise RetryableError(
                f"{method} {response.url}: HTTP {response.status_code} without a JSON body"
            ) from exc

    def _obj(self, method: str, path: str, **kwargs: Any) -> JSON:
        doc = self._json(method, path, **kwargs)
        if not isinstance(doc, dict):
            raise RetryableError(f"{method} {path}: expected a JSON object, got {doc!r:.200}")
        return doc

    def _list(self, method: str, path: str, **kwargs: Any) -> list[JSON]:
        doc = self._json(method, path, **kwargs)
        if not isinstance(doc, list):
            raise RetryableError(f"{method} {path}: expected a JSON array, got {doc!r:.200}")
        return doc

    def _one(self, model: type[M], method: str, path: str, **kwargs: Any) -> M | None:
        """One attempt; the answer as ``model``, or None for Amberflo's ``{}`` (absent)."""
        doc = self._obj(method, path, **kwargs)
        return _typed(model, doc, method, path) if doc else None

    def _many(self, model: type[M], method: str, path: str, **kwargs: Any) -> list[M]:
        return [_typed(model, d, method, path) for d in self._list(method, path, **kwargs)]


def _typed(model: type[M], doc: Any, method: str, path: str) -> M:
    """``doc`` as ``model``; an answer of another shape is a FatalError naming the field."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise FatalError(
            f"unexpected answer to {method} {path}: {where}: {first['msg']} ({doc!r:.200})"
        ) from exc


def _error_for(method: str, url: str, response: requests.Response) -> Exception:
    message, code, details = _error_body(response)
    error = classify(
        response.status_code,
        response.headers,
        message,
        f"{method} {url}",
        code=code,
        details=details,
    )
    return error or RetryableError(f"{method} {url}: unexpected HTTP {response.status_code}")


def _error_body(response: requests.Response) -> tuple[str, str | None, Any]:
    """(message, code, details) of an error answer; the text itself when it is not JSON."""
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        message = str(doc.get("message") or doc.get("detail") or doc)
        code = doc.get("code")
        return message, str(code) if code is not None else None, doc.get("details")
    text = " ".join(response.text.split())[:300]
    return text or response.reason or "no body", None, None
