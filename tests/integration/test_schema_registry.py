"""The local Schema Registry answers Confluent's own client as Confluent's registry does:
real HTTP, ``confluent_kafka.schema_registry.SchemaRegistryClient`` and ``AvroSerializer``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from confluent_kafka.schema_registry import (
    Schema,
    SchemaReference,
    SchemaRegistryClient,
    SchemaRegistryError,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connector.embedded import free_port
from connector.local_registry import CONTENT_TYPE, LocalSchemaRegistry

AVSC = (Path(__file__).resolve().parents[2] / "schemas" / "usage_event.avsc").read_text()
V2 = json.loads(AVSC)
V2["fields"].append({"name": "source", "type": ["null", "string"], "default": None})


def subject() -> str:
    return f"usage-{uuid.uuid4().hex[:8]}-value"


@pytest.fixture
def client(schema_registry: LocalSchemaRegistry) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": schema_registry.url})


def test_register_versions_and_fetch_by_id(client: SchemaRegistryClient) -> None:
    s = subject()
    v1 = client.register_schema(s, Schema(AVSC, "AVRO"))
    v2 = client.register_schema(s, Schema(json.dumps(V2), "AVRO"))
    again = SchemaRegistryClient({"url": client._rest_client.base_urls[0]})  # no cache
    assert again.register_schema(s, Schema(AVSC, "AVRO")) == v1  # same schema, same id
    assert v1 != v2
    assert json.loads(again.get_schema(v1).schema_str) == json.loads(AVSC)
    assert again.get_versions(s) == [1, 2]
    latest = again.get_latest_version(s)
    assert (latest.version, latest.schema_id) == (2, v2)
    assert again.get_version(s, 1).schema_id == v1
    assert s in again.get_subjects()
    assert again.lookup_schema(s, Schema(json.dumps(V2), "AVRO")).version == 2
    # The same schema under another subject keeps its id.
    assert again.register_schema(subject(), Schema(AVSC, "AVRO")) == v1


def test_errors_carry_confluent_codes(
    client: SchemaRegistryClient, schema_registry: LocalSchemaRegistry
) -> None:
    for call, code in (
        (lambda: client.get_schema(999_999), 40403),
        (lambda: client.get_latest_version(subject()), 40401),
        (lambda: client.register_schema(subject(), Schema('{"type": "nope"}', "AVRO")), 42201),
    ):
        with pytest.raises(SchemaRegistryError) as info:
            call()
        assert info.value.error_code == code
    s = subject()
    client.register_schema(s, Schema(AVSC, "AVRO"))
    with pytest.raises(SchemaRegistryError) as info:
        client.get_version(s, 7)
    assert info.value.error_code == 40402
    r = requests.get(f"{schema_registry.url}/schemas/ids/999999", timeout=5)
    assert r.status_code == 404 and r.headers["Content-Type"] == CONTENT_TYPE


def test_confluent_avro_serializer_round_trip_with_references(
    client: SchemaRegistryClient,
) -> None:
    region = {
        "type": "record",
        "name": "Region",
        "namespace": "ex",
        "fields": [{"name": "name", "type": "string"}],
    }
    client.register_schema("ex.Region", Schema(json.dumps(region), "AVRO"))
    outer = {
        "type": "record",
        "name": "Usage",
        "namespace": "ex",
        "fields": [
            {"name": "customerId", "type": "string"},
            {"name": "region", "type": "ex.Region"},
        ],
    }
    s = subject()
    outer_schema = Schema(json.dumps(outer), "AVRO", [SchemaReference("ex.Region", "ex.Region", 1)])
    client.register_schema(s, outer_schema)
    ser = AvroSerializer(
        client, outer_schema, conf={"auto.register.schemas": False, "use.latest.version": True}
    )
    ctx = SerializationContext(s.removesuffix("-value"), MessageField.VALUE)
    value = {"customerId": "c1", "region": {"name": "eu"}}
    data = ser(value, ctx)
    assert data[0] == 0
    assert AvroDeserializer(client)(data, ctx) == value


def test_injected_faults_and_restart_keep_the_schemas(
    client: SchemaRegistryClient, schema_registry: LocalSchemaRegistry
) -> None:
    schema_id = client.register_schema(subject(), Schema(AVSC, "AVRO"))
    fresh = {"url": schema_registry.url, "max.retries": 0}
    schema_registry.fail_next(1, 503)
    with pytest.raises(SchemaRegistryError) as info:
        SchemaRegistryClient(fresh).get_schema(schema_id)
    assert info.value.http_status_code == 503
    schema_registry.stop()
    try:
        with pytest.raises(Exception, match="onnect"):
            SchemaRegistryClient(fresh).get_schema(schema_id)
    finally:
        schema_registry.start()
    # The same schema registered earlier by another test (in another layout) keeps the id and
    # the text it was first stored with, as Confluent's registry does: compare it as JSON.
    kept = SchemaRegistryClient(fresh).get_schema(schema_id).schema_str
    assert json.loads(kept) == json.loads(AVSC)


def test_schema_registry_command_serves_until_stopped() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "schema-registry", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        assert "listening on http://127.0.0.1:" in proc.stdout.readline().decode()
        client = SchemaRegistryClient({"url": f"http://127.0.0.1:{port}"})
        assert client.register_schema("s-value", Schema(AVSC, "AVRO")) == 1
        # A second one on the same port: one line naming the address, exit 1.
        taken = subprocess.run(
            [sys.executable, "-m", "connector", "schema-registry", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert taken.returncode == 1
        assert taken.stderr.strip().splitlines() == [
            f"amberflo-connector: cannot listen on 127.0.0.1:{port}: Address already in use"
        ]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130


def test_start_up_check_names_the_registry_and_the_keys(
    schema_registry: LocalSchemaRegistry,
) -> None:
    from connector.errors import FatalError
    from connector.formats.avro_registry import check_registry
    from connector.settings import Settings

    def settings(url: str) -> Settings:
        return Settings(
            kafka={"topics": ["t"]}, amberflo={"api_key": "k"}, schema_registry={"url": url}
        )

    check_registry(settings(schema_registry.url), 1)  # up: no error
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(FatalError, match=rf"cannot reach the Schema Registry at {down} "
                       r"\(CONNECTOR_SCHEMA_REGISTRY__URL\) for 1s"):  # fmt: skip
        check_registry(settings(down), 1)
    schema_registry.fail_next(1, 401)
    with pytest.raises(FatalError, match=r"refused the credentials \(HTTP 401\).*__USERNAME"):
        check_registry(settings(schema_registry.url), 5)


def test_basic_auth_reaches_the_registry_from_the_connector_settings() -> None:
    from confluent_kafka.schema_registry import Schema as SrSchema

    from connector.errors import FatalError
    from connector.formats import avro
    from connector.records import SourceRecord
    from connector.settings import Settings

    with LocalSchemaRegistry(basic_auth=("sr-user", "s3cret")) as registry:
        admin = SchemaRegistryClient(
            {"url": registry.url, "basic.auth.user.info": "sr-user:s3cret"}
        )
        schema_id = admin.register_schema("u-value", SrSchema(AVSC, "AVRO"))
        value = (
            b"\x00" + schema_id.to_bytes(4, "big") + b"\x04c1\x02m" + b"\x00" * 8 + b"\x00\x00\x00"
        )

        def decode(password: str) -> object:
            settings = Settings(
                kafka={"topics": ["t"]},
                amberflo={"api_key": "k"},
                schema_registry={"url": registry.url, "username": "sr-user", "password": password},
                mappings=[{"topics": ["t"], "format": "avro", "customer_id": {"path": "customerId"},
                           "meter": {"path": "meterApiName"}}],
            )  # fmt: skip
            decoder = avro.decoder(settings.mappings[0], settings)
            return decoder(SourceRecord("t", 0, 0, 1, None, value, ()))

        assert decode("s3cret")["customerId"] == "c1"  # type: ignore[index]
        with pytest.raises(FatalError, match=r"refused the credentials \(HTTP 401"):
            decode("wrong")


def _pki(tmp: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    files: dict[str, Path] = {}

    def issue(name: str, issuer: tuple[x509.Name, Any] | None, **ext: Any) -> tuple[x509.Name, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer[0] if issuer else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
        )
        if "san" in ext:
            builder = builder.add_extension(x509.SubjectAlternativeName(ext["san"]), False)
        cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
        files[f"{name}.pem"] = tmp / f"{name}.pem"
        files[f"{name}.pem"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}.key"] = tmp / f"{name}.key"
        files[f"{name}.key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return subject, key

    ca = issue("ca", None)
    issue("server", ca, san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    issue("client", ca)
    return files


def test_mutual_tls_settings_reach_the_registry(tmp_path: Path) -> None:
    import ssl

    from confluent_kafka.schema_registry import Schema as SrSchema

    from connector.errors import RetryableError
    from connector.formats import avro
    from connector.records import SourceRecord
    from connector.settings import Settings

    pki = _pki(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca.pem"]))
    server.load_cert_chain(pki["server.pem"], pki["server.key"])
    server.verify_mode = ssl.CERT_REQUIRED  # the client must show a certificate of the CA
    tls = {
        "ssl.ca.location": str(pki["ca.pem"]),
        "ssl.certificate.location": str(pki["client.pem"]),
        "ssl.key.location": str(pki["client.key"]),
    }
    with LocalSchemaRegistry(tls=server) as registry:
        admin = SchemaRegistryClient({"url": registry.url, **tls})
        schema_id = admin.register_schema("u-value", SrSchema(AVSC, "AVRO"))
        value = b"\x00" + schema_id.to_bytes(4, "big") + b"\x04c1\x02m" + b"\x00" * 11

        def decode(**registry_settings: Any) -> Any:
            settings = Settings(
                kafka={"topics": ["t"]},
                amberflo={"api_key": "k"},
                schema_registry={"url": registry.url, "timeout_s": 5, **registry_settings},
                mappings=[{"topics": ["t"], "format": "avro", "customer_id": {"path": "customerId"},
                           "meter": {"path": "meterApiName"}}],
            )  # fmt: skip
            decoder = avro.decoder(settings.mappings[0], settings)
            return decoder(SourceRecord("t", 0, 0, 1, None, value, ()))

        full = {
            "ssl_ca_location": pki["ca.pem"],
            "ssl_certificate_location": pki["client.pem"],
            "ssl_key_location": pki["client.key"],
        }
        assert decode(**full)["customerId"] == "c1"
        with pytest.raises(RetryableError, match="unreachable"):  # no client certificate
            decode(ssl_ca_location=pki["ca.pem"])
        with pytest.raises(RetryableError, match="CERTIFICATE_VERIFY_FAILED"):  # CA unknown
            decode(**{**full, "ssl_ca_location": pki["client.pem"]})
