"""The Schema Registry as format ``avro`` reaches it: the client's configuration from the
settings, credentials masked in messages, and the check at start."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from connector.errors import ConfigError, FatalError

if TYPE_CHECKING:
    from connector.settings import SchemaRegistrySettings, Settings

_URL_KEY = "CONNECTOR_SCHEMA_REGISTRY__URL"


def shown(url: str) -> str:
    """``url`` for a message: credentials written into it (``https://user:pass@…``) masked."""
    return re.sub(r"//[^/@]*@", "//***@", url)


def registry_config(cfg: SchemaRegistrySettings) -> dict[str, Any]:
    """``SchemaRegistryClient`` configuration from the settings.  No retries inside the
    client: a failure goes back to the worker, which backs off without blocking the loop."""
    if cfg.url is None:
        raise ConfigError(f"{_URL_KEY}: is required for format avro")
    conf: dict[str, Any] = {"url": cfg.url, "timeout": cfg.timeout_s, "max.retries": 0}
    if cfg.username is not None and cfg.password is not None:
        conf["basic.auth.user.info"] = f"{cfg.username}:{cfg.password.get_secret_value()}"
    for key, path in (
        ("ssl.ca.location", cfg.ssl_ca_location),
        ("ssl.certificate.location", cfg.ssl_certificate_location),
        ("ssl.key.location", cfg.ssl_key_location),
    ):
        if path is not None:
            conf[key] = str(path)
    return conf


def check_registry(settings: Settings, timeout_s: float) -> None:
    """At start: the registry answers and takes the credentials, or one line and a stop.

    Retries refused connections, timeouts and 5xx until ``timeout_s``."""
    from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError

    conf = registry_config(settings.schema_registry)
    client = SchemaRegistryClient(conf)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.get_schema_types()
            return
        except SchemaRegistryError as exc:
            if exc.http_status_code in (401, 403):
                raise FatalError(
                    f"the Schema Registry at {shown(conf['url'])} refused the credentials "
                    f"(HTTP {exc.http_status_code}); check CONNECTOR_SCHEMA_REGISTRY__USERNAME "
                    "/ __PASSWORD"
                ) from exc
            problem = f"HTTP {exc.http_status_code}: {exc.error_message}"
        except Exception as exc:  # transport
            problem = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise FatalError(
                f"cannot reach the Schema Registry at {shown(conf['url'])} ({_URL_KEY}) for "
                f"{timeout_s:.0f}s: {problem}"
            )
        time.sleep(1.0)
