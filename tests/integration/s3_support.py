"""Helpers for the S3 tests: a client of the session's moto server, reading reports, and a
fault-injecting proxy in front of the server."""

from __future__ import annotations

import hashlib
import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from connector.aws import REPORTS_PREFIX, s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def client(endpoint_url: str) -> S3Client:
    return s3_client(endpoint_url=endpoint_url, region="us-east-1", fallback_credentials=True)


def keys(s3: S3Client, bucket: str, prefix: str = "") -> list[str]:
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.extend(o["Key"] for o in page.get("Contents", []))
    return out


def reports(s3: S3Client, bucket: str, about: str) -> dict[str, str]:
    """Failure reports (key → text) whose key contains ``about``."""
    return {
        k: s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode()
        for k in keys(s3, bucket, REPORTS_PREFIX)
        if about in k
    }


class FaultProxy:
    """An HTTP proxy in front of the S3 server, on its own port and thread (real sockets):
    it forwards every request, records the object PUTs that succeeded, and injects faults.

    * ``fail_puts(seconds, status, code)``: object PUTs are answered with an S3 error for
      that long (503 ``SlowDown`` by default); nothing reaches the server meanwhile.
    * ``deny = True``: every request is answered 403 ``AccessDenied``.
    * ``put_delay_s``: each object PUT waits this long before it is forwarded.
    * ``refuse_tagging = True``: object tagging PUTs are answered 503 ``SlowDown``, never
      forwarded (counted in ``tagging_refused``).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream).netloc
        self.puts: list[tuple[str, str]] = []  # (key, sha256 of the body) of stored objects
        self.refused = 0
        self.deny = False
        self.put_delay_s = 0.0
        self.refuse_tagging = False
        self.tagging_refused = 0
        self._fail_until = 0.0
        self._fail = (503, "SlowDown")
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # answers Expect: 100-continue

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def fail_puts(self, seconds: float, status: int = 503, code: str = "SlowDown") -> None:
        self._fail = (status, code)
        self._fail_until = time.monotonic() + seconds

    @property
    def failing(self) -> bool:
        return time.monotonic() < self._fail_until

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        body = self._read_body(h)
        is_put = h.command == "PUT" and "?" not in h.path and h.path.count("/") >= 2
        if self.deny:
            return self._error(h, 403, "AccessDenied")
        if self.refuse_tagging and h.command == "PUT" and "tagging" in urlsplit(h.path).query:
            with self._lock:
                self.tagging_refused += 1
            return self._error(h, 503, "SlowDown")
        if is_put and self.failing:
            with self._lock:
                self.refused += 1
            return self._error(h, *self._fail)
        if is_put and self.put_delay_s:
            time.sleep(self.put_delay_s)
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            conn.request(h.command, h.path, body=body, headers=dict(h.headers.items()))
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if is_put and resp.status == 200:
            key = unquote(h.path.split("/", 2)[2])
            with self._lock:
                self.puts.append((key, hashlib.sha256(body).hexdigest()))
        h.send_response(resp.status)
        for name, value in resp.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                h.send_header(name, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    @staticmethod
    def _read_body(h: BaseHTTPRequestHandler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(h.rfile.readline().split(b";")[0], 16)
                chunk = h.rfile.read(size + 2)[:size]
                if not size:
                    return b"".join(chunks)
                chunks.append(chunk)
        return h.rfile.read(int(h.headers.get("Content-Length") or 0))

    @staticmethod
    def _error(h: BaseHTTPRequestHandler, status: int, code: str) -> None:
        xml = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>injected by the test proxy</Message><RequestId>proxy</RequestId></Error>"
        ).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/xml")
        h.send_header("Content-Length", str(len(xml)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(xml)
