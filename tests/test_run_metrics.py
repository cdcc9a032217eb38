"""A run's outcome as Prometheus series: pushed to a real Pushgateway (Debian's package), scraped by a real
Prometheus that evaluates champion's alert rules, and written as a textfile locally. Nothing leaves the
process when nothing is configured."""

from __future__ import annotations

import random

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from evaluators.gate import decide
from evaluators.policy import load_policy
from registry.run_metrics import ExportError, export, gate_metrics, monitor_metrics
from serving.observability import alert_rules
from tests.prometheus.server import Prometheus, Pushgateway


def a_real_decision(shift: float) -> dict:
    """The gate engine's decision on two score tables, the challenger shifted by ``shift``."""
    rng = random.Random(0)
    base = [rng.uniform(0.3, 0.9) for _ in range(40)]
    challenger = [{"id": str(i), "token_f1": v + shift, "semantic_similarity": v + shift} for i, v in enumerate(base)]
    champion = [{"id": str(i), "token_f1": v, "semantic_similarity": v} for i, v in enumerate(base)]
    policy = load_policy("default")
    policy = policy.model_copy(
        update={"metrics": {k: v for k, v in policy.metrics.items() if k in ("token_f1", "semantic_similarity")}}
    )
    return decide(challenger, policy, champion_table=champion).model_dump(mode="json")


def test_a_pushed_run_shows_up_in_prometheus_and_a_regression_fires_its_alert(prometheus_binaries, tmp_path):
    decision = a_real_decision(-0.2)
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": alert_rules()}))
    with Pushgateway() as gateway:
        export(
            gate_metrics("champion-qa", decision, at=1_700_000_000),
            model="champion-qa",
            kind="promotion",
            pushgateway_url=gateway.url,
        )
        export(
            monitor_metrics("champion-qa", healthy=False, checks=[{"passed": False}], scores={"token_f1": 0.21}),
            model="champion-qa",
            kind="scheduled-evaluation",
            pushgateway_url=gateway.url,
        )
        with Prometheus([gateway.url.removeprefix("http://")], rule_files=[rules], honor_labels=True) as prometheus:
            passed = prometheus.wait_for('champion_gate_passed{model="champion-qa"}', lambda r: len(r) == 1)
            differences = prometheus.query('champion_gate_difference{model="champion-qa",slice="all"}')
            last_run = prometheus.query("champion_gate_last_run_timestamp_seconds")
            score = prometheus.query('champion_scheduled_evaluation_score{metric="token_f1"}')
            firing = prometheus.wait_for(
                'ALERTS{alertname=~"ChampionScheduledEvaluationRegressed|ChampionGateStale",alertstate="firing"}',
                lambda r: len(r) == 2,
            )
    assert float(passed[0]["value"][1]) == 0.0 and decision["gate"] == "failed"
    expected = {c["metric"]: c["difference"] for c in decision["checks"] if c["test"] == "non-inferiority"}
    assert {d["metric"]["metric"]: float(d["value"][1]) for d in differences} == pytest.approx(expected)
    assert float(last_run[0]["value"][1]) == 1_700_000_000 and float(score[0]["value"][1]) == 0.21
    # The regression alerts, and so does a gate that last ran in 2023.
    assert {a["metric"]["alertname"] for a in firing} == {"ChampionScheduledEvaluationRegressed", "ChampionGateStale"}


def test_locally_the_outcome_is_a_textfile_and_nothing_is_sent_without_a_url(tmp_path):
    decision = a_real_decision(0.0)
    path = tmp_path / "metrics" / "promotion.prom"
    assert export(gate_metrics("champion-qa", decision), model="champion-qa", kind="promotion", textfile=path) == [
        str(path)
    ]
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert families["champion_gate_passed"].samples[0].value == 1.0
    assert {s.labels["metric"] for s in families["champion_gate_difference"].samples} == {
        "token_f1",
        "semantic_similarity",
    }
    assert export(gate_metrics("champion-qa", decision), model="champion-qa", kind="promotion") == []


def test_an_unreachable_pushgateway_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="did not take the run's metrics") as info:
        export(
            gate_metrics("m", a_real_decision(0.0)), model="m", kind="promotion", pushgateway_url="http://127.0.0.1:9"
        )
    assert "pushgateway_url" in info.value.fix


def test_a_local_runs_textfile_is_what_prometheus_scrapes(prometheus_binaries, tmp_path):
    """The textfile a local run writes, served as node_exporter's textfile collector would expose it."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from registry.run_metrics import step_metrics

    registry = gate_metrics("champion-qa", a_real_decision(0.0))
    step_metrics(
        "champion-qa",
        {"gate-op": {"state": "succeeded", "seconds": 1.5}, "evaluate-op[0]": {"state": "cached"}},
        registry,
    )
    export(registry, model="champion-qa", kind="promotion", textfile=tmp_path / "promotion.prom")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        target = f"127.0.0.1:{server.server_address[1]}"
        with Prometheus([target], metrics_path="/promotion.prom") as prometheus:
            passed = prometheus.wait_for('champion_gate_passed{model="champion-qa"}', lambda r: len(r) == 1)
            cached = prometheus.query("champion_step_cached == 1")
            seconds = prometheus.query('champion_step_seconds{step="gate-op"}')
    finally:
        server.shutdown()
    assert float(passed[0]["value"][1]) == 1.0
    assert [c["metric"]["step"] for c in cached] == ["evaluate-op[0]"] and float(seconds[0]["value"][1]) == 1.5
