"""The emulator's FastAPI application and ``serve()``.

Every error is JSON ``{"message", "code"}`` (plus ``details`` for validation problems):
400 BAD_REQUEST, 401 UNAUTHORIZED, 404 NOT_FOUND, 405 METHOD_NOT_ALLOWED, 409 CONFLICT,
413 PAYLOAD_TOO_LARGE, 415 UNSUPPORTED_MEDIA_TYPE.  ``/openapi.json`` documents every route
(it needs the API key like everything but ``/healthz``); there are no /docs pages.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from connector import __version__
from connector.emulator import api_accounts, api_control, api_ingest, api_usage
from connector.emulator.middleware import EmulatorMiddleware
from connector.emulator.state import ApiError, EmulatorState
from connector.emulator.store import Store

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["message", "code"],
    "properties": {
        "message": {"type": "string"},
        "code": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"}},
    },
}


def _error(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"message": message, "code": code}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status)


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = [
        {
            "field": ".".join(str(p) for p in err.get("loc", ())),
            "problem": str(err.get("msg", "invalid")),
        }
        for err in exc.errors()
    ]
    return _error(400, "BAD_REQUEST", f"invalid request ({len(details)} problem(s))", details)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    code = phrase.upper().replace(" ", "_").replace("-", "_")
    return _error(exc.status_code, code, str(exc.detail), None)


async def _on_unstorable(request: Request, exc: Exception) -> Response:
    """Values JSON can carry but the store cannot: lone surrogates, integers over 64 bits."""
    return _error(400, "BAD_REQUEST", f"a value in the request cannot be stored: {exc}")


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus the API-key scheme, the shared error shape, and 400 (not
    FastAPI's 422) as the documented validation failure."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["ErrorResponse"] = ERROR_SCHEMA
    schemas["MeterEvent"] = api_ingest.METER_EVENT_SCHEMA
    components["securitySchemes"] = {
        "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-KEY"}
    }
    doc["security"] = [{"ApiKeyAuth": []}]
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    error = {"content": {"application/json": {"schema": ref}}}
    for path, ops in doc.get("paths", {}).items():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            if path == "/healthz":
                op["security"] = []
                continue
            responses.setdefault("400", {"description": "Bad request", **error})
            responses.setdefault("401", {"description": "Missing or invalid API key", **error})
            for status in ("404", "409", "413"):
                if status in responses and "content" not in responses[status]:
                    responses[status].update(error)
    app.openapi_schema = doc
    return doc


def _operation_id(route: APIRoute) -> str:
    """camelCase of the handler's name: ``create_meter_definition`` → ``createMeterDefinition``
    (the seed OpenAPI's operationIds, so its Arazzo workflows resolve against this document)."""
    head, *rest = route.name.split("_")
    return head + "".join(word.capitalize() for word in rest)


@dataclass(frozen=True)
class S3Source:
    """The bucket the S3 intake watches (``emulator --s3-endpoint URL --s3-bucket B``)."""

    endpoint_url: str
    bucket: str
    poll_s: float = 1.0
    region: str | None = None


def create_app(db: str, api_keys: list[str], s3: S3Source | None = None) -> FastAPI:
    """The emulator serving the SQLite database ``db``, accepting any of ``api_keys``, and
    ingesting the objects of an S3 bucket when ``s3`` is given (``s3_intake``)."""
    if not api_keys:
        raise ValueError("the emulator needs at least one API key")
    st = EmulatorState(Store(db))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = None
        stop = asyncio.Event()
        if s3 is not None:
            from connector.emulator.s3_intake import S3Intake

            intake = S3Intake(st, s3.endpoint_url, s3.bucket, s3.poll_s, s3.region)
            task = asyncio.create_task(intake.run(stop))
        yield
        stop.set()
        if task is not None:
            await task
        st.store.close()

    app = FastAPI(
        title="Amberflo API emulator",
        version=__version__,
        description="A local stand-in for the Amberflo metering API (app.amberflo.io).",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.emulator = st
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(UnicodeError, _on_unstorable)
    app.add_exception_handler(orjson.JSONEncodeError, _on_unstorable)
    app.add_exception_handler(OverflowError, _on_unstorable)

    @app.get("/healthz", tags=["Health"])
    async def healthz() -> dict[str, str]:
        """Liveness; the only route that needs no API key."""
        return {"status": "ok"}

    app.include_router(api_ingest.router)
    app.include_router(api_usage.router)
    app.include_router(api_accounts.router)
    app.include_router(api_control.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(EmulatorMiddleware, api_keys=api_keys, faults=st.faults, stats=st.stats)
    return app


def serve(host: str, port: int, db: str, api_keys: list[str], s3: S3Source | None = None) -> None:
    """Run the emulator until SIGINT/SIGTERM (uvicorn; uvloop and httptools when present)."""
    app = create_app(db, api_keys, s3)
    # Each /ingest request allocates ~10k short-lived objects; the default generation-0
    # threshold (700) would run the cyclic GC a dozen times per request for nothing.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    print(f"Amberflo emulator listening on http://{host}:{port} (db: {db})", flush=True)
    if s3 is not None:
        print(
            f"S3 intake: ingesting the objects of bucket {s3.bucket!r} at {s3.endpoint_url} "
            f"(polled every {s3.poll_s:g}s; failure reports under failed-requests/)",
            flush=True,
        )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        loop="auto",
        http="auto",
    )
