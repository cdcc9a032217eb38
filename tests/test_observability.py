"""What a platform team installs, checked by the real tools: `promtool check rules` on the rule file
`champion manifests` writes, `promtool test rules` with a firing and a quiet case for every alert, and every
dashboard panel's PromQL parsed by a real Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest
import yaml

from serving.observability import AlertThresholds, alert_rules, render_grafana_dashboard

BUNDLE = 'bundle="4e0156be1234",prompt="qa-concise@1"'


def dashboard_queries(dashboard: dict) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    folder = tmp_path_factory.mktemp("k8s")
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "manifests", "--namespace", "team-a", "--output", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return folder


def test_the_rule_file_passes_promtool_check(prometheus_binaries, manifests):
    check = subprocess.run(
        ["promtool", "check", "rules", str(manifests / "champion-rules.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 4 rules found" in check.stdout
    operator = yaml.safe_load((manifests / "prometheusrule.yaml").read_text())
    assert operator["kind"] == "PrometheusRule" and operator["spec"]["groups"] == alert_rules()


# One firing and one quiet case per alert, in promtool's unit-test format (series values per minute).
CASES = {
    "ChampionHighErrorRate": (
        [  # 10 of 100 requests a minute fail: 10% > 5%
            {"series": f'champion_requests_total{{{BUNDLE},code="2xx"}}', "values": "0+90x30"},
            {"series": f'champion_requests_total{{{BUNDLE},code="5xx"}}', "values": "0+10x30"},
        ],
        [  # 1 of 100: 1%
            {"series": f'champion_requests_total{{{BUNDLE},code="2xx"}}', "values": "0+99x30"},
            {"series": f'champion_requests_total{{{BUNDLE},code="5xx"}}', "values": "0+1x30"},
        ],
        {"severity": "critical", "bundle": "4e0156be1234"},
        {"summary": "bundle 4e0156be1234 answers 10% of requests with 5xx"},
    ),
    "ChampionHighLatencyP95": (
        [  # every request between 10 and 30 s: p95 interpolates to 29 s > 10 s
            {"series": f'champion_request_latency_seconds_bucket{{{BUNDLE},le="10"}}', "values": "0x30"},
            {"series": f'champion_request_latency_seconds_bucket{{{BUNDLE},le="30"}}', "values": "0+60x30"},
            {"series": f'champion_request_latency_seconds_bucket{{{BUNDLE},le="+Inf"}}', "values": "0+60x30"},
        ],
        [  # every request under a second
            {"series": f'champion_request_latency_seconds_bucket{{{BUNDLE},le="1"}}', "values": "0+60x30"},
            {"series": f'champion_request_latency_seconds_bucket{{{BUNDLE},le="30"}}', "values": "0+60x30"},
            {"series": f'champion_request_latency_seconds_bucket{{{BUNDLE},le="+Inf"}}', "values": "0+60x30"},
        ],
        {"severity": "warning", "bundle": "4e0156be1234"},
        {"summary": "bundle 4e0156be1234 p95 latency is 29s"},
    ),
    "ChampionScheduledEvaluationRegressed": (
        [{"series": 'champion_scheduled_evaluation_healthy{model="champion-qa"}', "values": "1x10 0x20"}],
        [{"series": 'champion_scheduled_evaluation_healthy{model="champion-qa"}', "values": "1x30"}],
        {"severity": "critical", "model": "champion-qa"},
        {"summary": "the live champion of champion-qa failed its scheduled evaluation"},
    ),
    "ChampionGateStale": (
        # promtool's clock starts at 0: a gate that last ran 8 days before it is stale, one at 0 is not.
        [{"series": 'champion_gate_last_run_timestamp_seconds{model="champion-qa"}', "values": "-691200x30"}],
        [{"series": 'champion_gate_last_run_timestamp_seconds{model="champion-qa"}', "values": "0x30"}],
        {"severity": "warning", "model": "champion-qa"},
        {"summary": "no promotion gate has run for champion-qa in 7 days"},
    ),
}


def rule_annotations(alert: str, labels: dict) -> dict:
    """The rule's annotations with its label templates filled in (what Prometheus sends)."""
    rule = next(r for group in alert_rules() for r in group["rules"] if r["alert"] == alert)
    filled = {}
    for key, text in rule["annotations"].items():
        for name, value in labels.items():
            text = text.replace(f"{{{{ $labels.{name} }}}}", value)
        filled[key] = text
    return filled


@pytest.mark.parametrize("alert", sorted(CASES))
def test_every_alert_fires_on_its_case_and_stays_quiet_otherwise(prometheus_binaries, tmp_path, alert):
    firing, quiet, labels, annotations = CASES[alert]
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": alert_rules()}))
    expected = rule_annotations(alert, labels) | annotations  # the summary carries $value, formatted
    unit = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": firing,
                "alert_rule_test": [
                    {
                        "eval_time": "25m",
                        "alertname": alert,
                        "exp_alerts": [{"exp_labels": labels, "exp_annotations": expected}],
                    }
                ],
            },
            {
                "interval": "1m",
                "input_series": quiet,
                "alert_rule_test": [{"eval_time": "25m", "alertname": alert, "exp_alerts": []}],
            },
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(unit))
    result = subprocess.run(["promtool", "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_thresholds_are_checked():
    from champion.errors import ConfigError

    with pytest.raises(ConfigError, match="out of range"):
        AlertThresholds(error_rate=1.5)


# The parts of Grafana's dashboard JSON model a dashboard needs to load and draw (Grafana's own schema is not
# published as a standalone file): identity, panels with a position, a type and Prometheus targets.
DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["title", "uid", "schemaVersion", "panels", "time"],
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type", "title", "gridPos", "targets", "datasource"],
                "properties": {
                    "id": {"type": "integer"},
                    "type": {"enum": ["timeseries", "stat", "gauge", "table"]},
                    "gridPos": {
                        "type": "object",
                        "required": ["h", "w", "x", "y"],
                        "properties": {
                            "w": {"type": "integer", "maximum": 24},
                            "x": {"type": "integer", "maximum": 23},
                        },
                    },
                    "targets": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "object", "required": ["refId", "expr"]},
                    },
                },
            },
        },
    },
}


def test_the_dashboard_loads_and_every_panel_query_parses_in_prometheus(prometheus_binaries, manifests):
    from tests.prometheus.server import Prometheus

    dashboard = json.loads((manifests / "grafana-dashboard.json").read_text())
    jsonschema.validate(dashboard, DASHBOARD_SCHEMA)
    assert dashboard == render_grafana_dashboard()
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    queries = dashboard_queries(dashboard)
    assert any("champion_gate_passed" in q for q in queries) and any("scheduled_evaluation" in q for q in queries)
    with Prometheus([]) as prometheus:
        for query in queries:
            prometheus.query(query)  # a parse error is the API's "bad_data", which fails here
        with pytest.raises(AssertionError, match="bad_data"):
            prometheus.query("sum by (bundle (champion_requests_total)")  # the check can fail
