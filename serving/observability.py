"""What a platform team installs to watch champion: Prometheus alert rules and a Grafana dashboard.

Both are written by ``champion manifests`` and read the series champion exports:

- serving (serving/metrics.py, scraped from the prompt transformer's ``/metrics``):
  ``champion_requests_total{bundle,prompt,code}``, ``champion_request_latency_seconds_bucket{bundle,prompt,le}``,
  ``champion_prompt_tokens_total``, ``champion_completion_tokens_total``;
- pipeline runs (registry/run_metrics.py, a Pushgateway on a cluster or a textfile locally):
  ``champion_gate_passed{model}``, ``champion_gate_last_run_timestamp_seconds{model}``,
  ``champion_gate_difference{model,metric}`` with ``champion_gate_ci_low``/``_high``,
  ``champion_scheduled_evaluation_healthy{model}`` and ``champion_scheduled_evaluation_score{model,metric}``.

Every alert rule has a promtool unit test in tests/ that fires it and one that does not.
"""

from __future__ import annotations

from dataclasses import dataclass

from champion.errors import ConfigError
from serving.manifests import check_namespace

ERROR_RATE = (
    'sum by (bundle) (rate(champion_requests_total{code="5xx"}[5m]))'
    " / sum by (bundle) (rate(champion_requests_total[5m]))"
)
P95_LATENCY = "histogram_quantile(0.95, sum by (le, bundle) (rate(champion_request_latency_seconds_bucket[5m])))"


@dataclass(frozen=True)
class AlertThresholds:
    error_rate: float = 0.05  # share of requests answered 5xx over 5 minutes
    p95_latency_s: float = 10.0
    gate_stale_days: float = 7.0  # no promotion run for this long

    def __post_init__(self) -> None:

        if not 0 < self.error_rate < 1 or self.p95_latency_s <= 0 or self.gate_stale_days <= 0:
            raise ConfigError(
                f"alert thresholds out of range: {self}.",
                "error_rate in (0, 1), p95_latency_s > 0, gate_stale_days > 0.",
            )


def alert_rules(thresholds: AlertThresholds = AlertThresholds()) -> list[dict]:
    """The rule groups (Prometheus' rule-file format; what a PrometheusRule's spec.groups holds)."""
    return [
        {
            "name": "champion-serving",
            "rules": [
                {
                    "alert": "ChampionHighErrorRate",
                    "expr": f"({ERROR_RATE}) > {thresholds.error_rate}",
                    "for": "5m",
                    "labels": {"severity": "critical"},
                    "annotations": {
                        "summary": "bundle {{ $labels.bundle }} answers {{ $value | humanizePercentage }} of requests with 5xx",
                        "description": "More than "
                        f"{thresholds.error_rate:.0%} of the requests to bundle {{{{ $labels.bundle }}}} failed over 5 minutes. "
                        "If it is a canary, the rollout rolls it back on its smoke test; otherwise check the predictor.",
                    },
                },
                {
                    "alert": "ChampionHighLatencyP95",
                    "expr": f"({P95_LATENCY}) > {thresholds.p95_latency_s}",
                    "for": "10m",
                    "labels": {"severity": "warning"},
                    "annotations": {
                        "summary": "bundle {{ $labels.bundle }} p95 latency is {{ $value | humanizeDuration }}",
                        "description": f"The 95th percentile of request latency stayed above {thresholds.p95_latency_s:g} s "
                        "for 10 minutes: scale out (min_replicas/max_replicas) or look at the predictor's GPU.",
                    },
                },
            ],
        },
        {
            "name": "champion-evaluation",
            "rules": [
                {
                    "alert": "ChampionScheduledEvaluationRegressed",
                    "expr": "champion_scheduled_evaluation_healthy == 0",
                    "labels": {"severity": "critical"},
                    "annotations": {
                        "summary": "the live champion of {{ $labels.model }} failed its scheduled evaluation",
                        "description": "The scheduled evaluation found a regression (see the monitor report and "
                        "the MLflow experiment champion-monitoring). Nothing was promoted or rolled back.",
                    },
                },
                {
                    "alert": "ChampionGateStale",
                    "expr": f"time() - champion_gate_last_run_timestamp_seconds > {int(thresholds.gate_stale_days * 86400)}",
                    "labels": {"severity": "warning"},
                    "annotations": {
                        "summary": "no promotion gate has run for {{ $labels.model }} in "
                        f"{thresholds.gate_stale_days:g} days",
                        "description": "The CI check or the scheduled promotion may be broken: the last gate "
                        "decision is older than the threshold.",
                    },
                },
            ],
        },
    ]


def render_prometheus_rule(namespace: str, thresholds: AlertThresholds = AlertThresholds()) -> dict:
    """The rules as a prometheus-operator ``PrometheusRule`` (what kube-prometheus-stack picks up)."""

    check_namespace(namespace)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "champion",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "champion", "release": "kube-prometheus-stack"},
        },
        "spec": {"groups": alert_rules(thresholds)},
    }


def _panel(panel_id: int, title: str, exprs: list[tuple[str, str]], x: int, y: int, unit: str = "short") -> dict:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend} for i, (expr, legend) in enumerate(exprs)
        ],
    }


def _live_panels() -> list[dict]:
    """The live champion per bundle: traffic, errors, latency p50/p95, tokens."""
    return [
        _panel(
            1,
            "Traffic (requests/s) by bundle",
            [("sum by (bundle) (rate(champion_requests_total[5m]))", "{{bundle}}")],
            0,
            0,
            "reqps",
        ),
        _panel(2, "Error rate (5xx share) by bundle", [(ERROR_RATE, "{{bundle}}")], 12, 0, "percentunit"),
        _panel(
            3,
            "Latency p50 / p95 by bundle",
            [
                (
                    "histogram_quantile(0.5, sum by (le, bundle) (rate(champion_request_latency_seconds_bucket[5m])))",
                    "p50 {{bundle}}",
                ),
                (P95_LATENCY, "p95 {{bundle}}"),
            ],
            0,
            8,
            "s",
        ),
        _panel(
            4,
            "Tokens/s by bundle",
            [
                ("sum by (bundle) (rate(champion_prompt_tokens_total[5m]))", "prompt {{bundle}}"),
                ("sum by (bundle) (rate(champion_completion_tokens_total[5m]))", "completion {{bundle}}"),
            ],
            12,
            8,
        ),
    ]


def _release_panels() -> list[dict]:
    """Releases: canary against stable, gate history, scheduled-evaluation scores and health."""
    return [
        _panel(
            5,
            "Canary against stable: share of traffic per bundle",
            [
                (
                    "sum by (bundle) (rate(champion_requests_total[5m])) / ignoring(bundle) group_left sum(rate(champion_requests_total[5m]))",
                    "{{bundle}}",
                )
            ],
            0,
            16,
            "percentunit",
        ),
        _panel(
            6,
            "Gate history: decision (1 passed) and difference against the champion",
            [
                ("champion_gate_passed", "passed {{model}}"),
                ("champion_gate_difference", "{{metric}}"),
                ("champion_gate_ci_low", "{{metric}} lower bound"),
            ],
            12,
            16,
        ),
        _panel(
            7,
            "Scheduled evaluation: scores and health",
            [
                ("champion_scheduled_evaluation_score", "{{metric}}"),
                ("champion_scheduled_evaluation_healthy", "healthy {{model}}"),
            ],
            0,
            24,
        ),
    ]


def render_grafana_dashboard() -> dict:
    """Live champion (traffic, errors, latency p50/p95, tokens), canary against stable (per bundle), gate history
    and scheduled-evaluation scores."""
    panels = [*_live_panels(), *_release_panels()]
    return {
        "title": "champion",
        "uid": "champion-overview",
        "tags": ["champion", "llm"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]
        },
        "annotations": {"list": []},
        "panels": panels,
    }
