"""Session fixtures: one real broker and one real emulator per test session, on free ports;
for the S3 tests, moto's S3 server and a second emulator whose S3 intake polls it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.embedded import EmbeddedBroker, EmbeddedEmulator, EmbeddedS3
from connector.local_registry import LocalSchemaRegistry
from tests.integration.harness import ConnectorProcess, Emu, wait_until
from tests.integration.s3_support import client


@dataclass(frozen=True)
class Emulator:
    base_url: str
    api_key: str
    db: str
    process: EmbeddedEmulator


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a Tansu broker (memory storage) started for the session."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def amberflo_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The emulator on a free port with a fresh SQLite file; yields base URL and API key."""
    d = tmp_path_factory.mktemp("emulator")
    with EmbeddedEmulator(db=d / "emulator.db", api_key="test-key", log_path=d / "log") as emu:
        yield Emulator(emu.base_url, emu.api_key, emu.db, emu)


@pytest.fixture
def emu(amberflo_emulator: Emulator) -> Emu:
    """The session emulator's control API (a module with another emulator overrides it)."""
    return Emu(amberflo_emulator.base_url, amberflo_emulator.api_key)


@pytest.fixture
def connectors(tmp_path: Path) -> Iterator[Callable[..., ConnectorProcess]]:
    """Starts ``amberflo-connector run`` child processes (``launch(env, args)``, logs in
    ``tmp_path``) and closes every one of them when the test ends."""
    procs: list[ConnectorProcess] = []

    def launch(env: dict[str, str], args: list[str] | None = None) -> ConnectorProcess:
        p = ConnectorProcess(env, tmp_path / f"connector-{len(procs)}.log", args)
        procs.append(p)
        return p

    yield launch
    for p in procs:
        p.close()


@pytest.fixture(scope="session")
def schema_registry() -> Iterator[LocalSchemaRegistry]:
    """The local Schema Registry (real HTTP on a free port) for the session.  A test that
    stops it or injects faults must leave it serving (``start()``) with no faults left."""
    with LocalSchemaRegistry() as registry:
        yield registry


@dataclass(frozen=True)
class S3Stack:
    """moto's S3 server, and an emulator ingesting the objects of ``bucket`` there."""

    endpoint_url: str
    bucket: str
    emulator: Emulator


S3_BUCKET = "amberflo-ingest"


@pytest.fixture(scope="session")
def s3_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Stack]:
    """moto_server as a real process, once per session, and an emulator (S3 intake polling
    every 0.2 s) that creates ``S3_BUCKET`` there."""
    d = tmp_path_factory.mktemp("s3")
    with (
        EmbeddedS3(log_path=d / "moto.log") as s3,
        EmbeddedEmulator(
            db=d / "emulator.db",
            api_key="test-key",
            log_path=d / "emulator.log",
            s3_endpoint=s3.endpoint_url,
            s3_bucket=S3_BUCKET,
            s3_poll_s=0.2,
        ) as emu,
    ):
        # The intake creates the bucket in the background: the first test must not race it.
        s3_api = client(s3.endpoint_url)
        wait_until(lambda: _bucket_exists(s3_api, S3_BUCKET), 30, f"bucket {S3_BUCKET}")
        yield S3Stack(s3.endpoint_url, S3_BUCKET, Emulator(emu.base_url, emu.api_key, emu.db, emu))


def _bucket_exists(s3_api: Any, bucket: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3_api.head_bucket(Bucket=bucket)
    except ClientError:
        return False
    return True


@pytest.fixture
def topic_factory(kafka_broker: str) -> Callable[..., str]:
    """Creates a fresh, uniquely named topic (default 4 partitions, optional topic configs such
    as retention.ms) and returns its name."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_broker})

    def make(
        partitions: int = 4, prefix: str = "usage", config: dict[str, str] | None = None
    ) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, config=config or {})]
        )
        futures[name].result(10)
        return name

    return make


@pytest.fixture
def tmp_db(tmp_path: Path) -> Path:
    return tmp_path / "emulator.db"


@pytest.fixture
def sdk(amberflo_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """The official Amberflo SDK pointed at the emulator (restored after the test); returns
    the API key."""
    from metering.session import ApiSession, IngestSession

    monkeypatch.setattr(IngestSession, "root_url", amberflo_emulator.base_url)
    monkeypatch.setattr(ApiSession, "root_url", amberflo_emulator.base_url)
    return amberflo_emulator.api_key
