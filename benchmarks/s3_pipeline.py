"""Figure 3s: the full connector in s3 mode (``CONNECTOR_SINK__MODE=s3``, default object
size: 10,000 offsets) → moto's S3 server → the emulator's S3 intake, measured like figure 3
(first record stored in the emulator to the last), on the same topic in the same run.

The S3 server (a Python process) and the intake (list, GET, gunzip, validate, store) share
the machine's cores with the connector and the broker; the linger is 500 ms instead of 5 s
so the last, partial object of each partition does not dominate the end of a short run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from benchmarks.common import API_KEY
from connector.embedded import EmbeddedEmulator, EmbeddedS3

BUCKET = "amberflo-bench"


def env(endpoint_url: str, prefix: str) -> dict[str, str]:
    """The connector's settings for s3 mode against ``endpoint_url``."""
    return {
        **EmbeddedS3.credentials,
        "CONNECTOR_SINK__MODE": "s3",
        "CONNECTOR_S3__BUCKET": BUCKET,
        "CONNECTOR_S3__ENDPOINT_URL": endpoint_url,
        "CONNECTOR_S3__REGION": "us-east-1",
        "CONNECTOR_S3__PREFIX": prefix,
        "CONNECTOR_S3__LINGER_MS": "500",
        "CONNECTOR_S3__FAILURES_POLL_S": "0",
    }


class Stacks:
    """moto + an emulator whose intake polls its bucket: fresh per repetition (full run),
    or one for every repetition (``--quick``)."""

    def __init__(self, workdir: Path, fresh: bool) -> None:
        self.workdir = workdir
        self.fresh = fresh
        self._shared: tuple[str, str] | None = None
        self._stack = ExitStack()

    def _start(self, stack: ExitStack, name: str) -> tuple[str, str]:
        s3 = stack.enter_context(EmbeddedS3(log_path=self.workdir / f"{name}-moto.log"))
        db = self.workdir / f"{name}.db"
        emu = stack.enter_context(
            EmbeddedEmulator(
                db=db,
                api_key=API_KEY,
                log_path=self.workdir / f"{name}.log",
                s3_endpoint=s3.endpoint_url,
                s3_bucket=BUCKET,
                s3_poll_s=0.2,
            )
        )
        return emu.base_url, s3.endpoint_url

    @contextmanager
    def get(self, rep: int) -> Iterator[tuple[str, str]]:
        """(emulator URL, S3 endpoint)."""
        if self.fresh:
            with ExitStack() as stack:
                yield self._start(stack, f"s3-{rep}")
            return
        if self._shared is None:
            self._shared = self._start(self._stack, "s3")
        yield self._shared

    def close(self) -> None:
        self._stack.close()
