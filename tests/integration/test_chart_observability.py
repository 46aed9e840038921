"""The chart's optional PrometheusRule and Grafana dashboard, validated offline.

PrometheusRule is a CRD (no schema in kubernetes-validate and no promtool here), so its shape
is checked field by field; every alert expression and dashboard query must parse with a PromQL
parser (``promql-parser``, Prometheus' grammar) and may only name series that a running
connector serves on /metrics (scraped from a real ``amberflo-connector run`` process).  The
dashboard's ConfigMap is a core resource and goes through kubernetes-validate.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from connector.embedded import free_port
from tests.integration.harness import wait_until
from tests.integration.test_deploy_artifacts import (  # noqa: F401  (helm is a fixture)
    KUBE_VERSION,
    _docs,
    _one,
    _run,
    _template,
    _values_file,
    _venv_tool,
    helm,
)

NAMESPACE = "metering"
FULLNAME = "rel-amberflo-connector"
OBS_VALUES: dict[str, Any] = {
    "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
    "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Billing"}},
}
TUNED_VALUES: dict[str, Any] = {
    "prometheusRule": {
        "enabled": True,
        "selector": 'cluster="eu-1", app="billing"',
        "noIngestMinutes": 5,
        "deadLetterRatio": 0.005,
        "retriesStuckMinutes": 30,
        "additionalRuleLabels": {"team": "billing"},
    }
}
DURATION = re.compile(r"^\d+[smhdwy]$")
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


@pytest.fixture(scope="module")
def served() -> Iterator[set[str]]:
    """Every series name a running connector serves on /metrics.

    ``run`` serves /metrics before it connects anywhere, so the process is pointed at
    addresses where nothing listens and scraped while it waits for them.
    """
    port, nowhere = free_port(), free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "CONNECTOR_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{nowhere}",
        "CONNECTOR_KAFKA__TOPICS": "usage",
        "CONNECTOR_KAFKA__STARTUP_TIMEOUT_S": "60",
        "CONNECTOR_AMBERFLO__API_KEY": "k",
        "CONNECTOR_AMBERFLO__BASE_URL": f"http://127.0.0.1:{nowhere}",
        "CONNECTOR_METRICS_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    text = ""

    def scraped() -> bool:
        nonlocal text
        try:
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except requests.RequestException:
            return False
        return True

    try:
        wait_until(scraped, 30, "the connector's /metrics")
    finally:
        proc.kill()
        proc.wait(10)
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        for suffix in SERIES_SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    yield names


@pytest.fixture(scope="module")
def docs(
    helm: str,  # noqa: F811  (the fixture imported above)
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, list[dict[str, Any]]]:
    d = tmp_path_factory.mktemp("obs-values")
    return {
        "obs": _docs(_template(helm, _values_file(d, OBS_VALUES, "obs.yaml"))),
        "tuned": _docs(_template(helm, _values_file(d, TUNED_VALUES, "tuned.yaml"))),
    }


def _selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def _matchers(selector: promql_parser.VectorSelector) -> dict[str, str]:
    return {m.name: m.value for m in selector.matchers.matchers}


def test_served_metrics_include_the_new_gauges(served: set[str]) -> None:
    assert {
        "amberflo_connector_consumer_lag",
        "amberflo_connector_delivery_delay_seconds_bucket",
        "amberflo_connector_oldest_unfinished_age_seconds",
        "amberflo_connector_last_ingest_timestamp_seconds",
        "amberflo_connector_retention_guard",
        "amberflo_connector_records_consumed_total",
    } <= served


def test_prometheus_rule_shape(docs: dict[str, list[dict[str, Any]]]) -> None:
    rule = _one(docs["obs"], "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == FULLNAME
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert set(rule["spec"]) == {"groups"}
    (group,) = rule["spec"]["groups"]
    assert group["name"] and set(group) == {"name", "rules"}
    alerts = {r["alert"]: r for r in group["rules"]}
    assert len(alerts) == len(group["rules"]), "alert names are unique"
    assert {
        "AmberfloConnectorNoIngest",
        "AmberfloConnectorDeadLetterRate",
        "AmberfloConnectorRetentionCritical",
        "AmberfloConnectorRetriesStuck",
    } <= set(alerts)
    for name, r in alerts.items():
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert re.fullmatch(r"[A-Z][A-Za-z]+", name)
        assert isinstance(r["expr"], str) and r["expr"].strip()
        assert DURATION.match(r["for"]), (name, r["for"])
        assert r["labels"]["severity"] in {"critical", "warning"}
        assert all(isinstance(v, str) for v in r["labels"].values())
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        # Go-template placeholders are left for Prometheus, not eaten by Helm.
        for text in r["annotations"].values():
            for placeholder in re.findall(r"{{(.*?)}}", text):
                assert placeholder.strip().startswith(("$labels.", "$value")), placeholder
    assert "{{ $labels.instance }}" in alerts["AmberfloConnectorNoIngest"]["annotations"]["summary"]
    assert "> 600" in alerts["AmberfloConnectorNoIngest"]["expr"]
    assert "> 0.01" in alerts["AmberfloConnectorDeadLetterRate"]["expr"]
    assert alerts["AmberfloConnectorRetriesStuck"]["for"] == "15m"


def test_alert_expressions_parse_and_name_only_served_series(
    docs: dict[str, list[dict[str, Any]]], served: set[str]
) -> None:
    for case, selector in (
        ("obs", {"namespace": NAMESPACE, "job": FULLNAME}),
        ("tuned", {"cluster": "eu-1", "app": "billing"}),
    ):
        rule = _one(docs[case], "PrometheusRule")
        for r in rule["spec"]["groups"][0]["rules"]:
            selectors = _selectors(r["expr"])  # raises ValueError when it does not parse
            assert selectors, r["alert"]
            for sel in selectors:
                assert sel.name in served, f"{r['alert']}: {sel.name} is not served"
                assert _matchers(sel).items() >= selector.items(), (r["alert"], sel)


def test_alert_thresholds_follow_the_values(docs: dict[str, list[dict[str, Any]]]) -> None:
    rules = {
        r["alert"]: r for r in _one(docs["tuned"], "PrometheusRule")["spec"]["groups"][0]["rules"]
    }
    assert "> 300" in rules["AmberfloConnectorNoIngest"]["expr"]
    assert "> 0.005" in rules["AmberfloConnectorDeadLetterRate"]["expr"]
    assert "0.5%" in rules["AmberfloConnectorDeadLetterRate"]["annotations"]["summary"]
    assert rules["AmberfloConnectorRetriesStuck"]["for"] == "30m"
    assert all(r["labels"]["team"] == "billing" for r in rules.values())
    assert [d["kind"] for d in docs["tuned"]].count("ConfigMap") == 1, "dashboard off"


def _dashboard(docs: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, Any]]:
    (cm,) = [
        d for d in docs["obs"] if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]
    ]
    return cm, json.loads(cm["data"]["amberflo-connector.json"])


def test_dashboard_configmap_passes_kubernetes_schemas(
    docs: dict[str, list[dict[str, Any]]],
) -> None:
    cm, _ = _dashboard(docs)
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Billing"}
    proc = _run(
        [_venv_tool("kubernetes-validate"), "--strict", "-k", KUBE_VERSION, "-"],
        stdin=yaml.safe_dump(cm),
    )
    assert proc.returncode == 0 and "passed" in proc.stdout, proc.stdout + proc.stderr


def test_dashboard_panels_and_queries(
    docs: dict[str, list[dict[str, Any]]], served: set[str]
) -> None:
    _, dash = _dashboard(docs)
    chart_copy = Path(__file__).resolve().parents[2] / "helm/amberflo-connector/dashboards"
    assert dash == json.loads((chart_copy / "amberflo-connector.json").read_text("utf-8"))
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert variables == {"datasource", "namespace", "job"}
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = " | ".join(p["title"].lower() for p in panels)
    for needed in ("throughput", "lag", "delay", "dead letters by stage", "retries", "paused"):
        assert needed in titles, needed
    for p in panels:
        assert {"h", "w", "x", "y"} <= p["gridPos"].keys() and p["gridPos"]["x"] + p["gridPos"][
            "w"
        ] <= 24
        assert p["targets"], p["title"]
        for t in p["targets"]:
            used = set(re.findall(r"\$(\w+)", t["expr"])) - {"__rate_interval"}
            assert used <= variables, (p["title"], used)
            expr = t["expr"].replace("$__rate_interval", "5m")
            expr = re.sub(r"\$(\w+)", "x", expr)
            for sel in _selectors(expr):
                assert sel.name in served, f"{p['title']}: {sel.name} is not served"
                assert {"namespace", "job"} <= _matchers(sel).keys(), p["title"]
