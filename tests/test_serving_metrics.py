"""The served bundle's metrics, scraped by a real Prometheus (Debian's package) from the real prompt
transformer, and queried with PromQL: request counts by bundle and status class, the latency histogram's
p95, tokens; a canary's two bundles told apart; no request content in any label."""

from __future__ import annotations

import time

import requests

from tests.prometheus.server import Prometheus
from tests.test_shadow import CANDIDATE, FACTS, LIVE, Served


def by_labels(result: list[dict], *names: str) -> dict[tuple, float]:
    return {tuple(item["metric"].get(n, "") for n in names): float(item["value"][1]) for item in result}


def test_a_served_bundle_shows_up_in_a_real_prometheus_with_its_labels(prometheus_binaries, tmp_path):
    live, candidate = Served(LIVE, True, tmp_path), Served(CANDIDATE, True, tmp_path)  # a canary's two revisions
    try:
        targets = [url.removeprefix("http://") for url in (live.url, candidate.url)]
        with Prometheus(targets) as prometheus:
            prometheus.wait_for("up", lambda r: len(r) == 2 and all(x["value"][1] == "1" for x in r))  # scraping
            for round_ in range(3):  # across several scrapes, so rate() has increases to see
                for question, _ in FACTS[2 * round_ : 2 * round_ + 2]:
                    assert live.ask(question).status_code == 200
                assert candidate.ask(FACTS[round_][0]).status_code == 200
                time.sleep(1.5)
            refused = requests.post(
                f"{candidate.url}/openai/v1/chat/completions",
                json={"model": "qa", "messages": [{"role": "system", "content": "no user turn"}]},
                timeout=30,
            )
            candidate.predictor.close()  # the candidate's model goes away: the next request is a 503
            assert refused.status_code == 400 and candidate.ask(FACTS[0][0]).status_code == 503
            exposed = requests.get(f"{live.url}/metrics", timeout=10).text
            counts = by_labels(
                prometheus.wait_for(
                    "sum by (bundle, code) (champion_requests_total)",
                    lambda result: len(result) == 4 and sum(float(r["value"][1]) for r in result) == 11,
                ),
                "bundle",
                "code",
            )
            p95 = by_labels(
                prometheus.wait_for(
                    "histogram_quantile(0.95, sum by (le, bundle) (rate(champion_request_latency_seconds_bucket[5m])))",
                    lambda result: len(result) == 2 and all(r["value"][1] not in ("NaN", "+Inf") for r in result),
                ),
                "bundle",
            )
            tokens = by_labels(prometheus.query("sum by (bundle) (champion_completion_tokens_total)"), "bundle")
            series = prometheus.query('{__name__=~"champion_.*"}')
            label_names = {key for item in series for key in item["metric"]} - {"__name__", "job", "instance"}
            every_label = {
                value for item in series for key, value in item["metric"].items() if key in ("bundle", "prompt", "code")
            }
    finally:
        live.close()
        candidate.close()
    live_id, candidate_id = LIVE.short_id, CANDIDATE.short_id
    assert counts == {
        (live_id, "2xx"): 6.0,
        (candidate_id, "2xx"): 3.0,
        (candidate_id, "4xx"): 1.0,
        (candidate_id, "5xx"): 1.0,
    }
    assert set(p95) == {(live_id,), (candidate_id,)} and all(0 < v < 300 for v in p95.values()), p95
    assert tokens[(live_id,)] == 6 * 3  # the scripted model reports 3 completion tokens per answer
    # Bounded labels only: bundle ids, the prompt's name@version, status classes (and histogram buckets).
    assert label_names == {"bundle", "prompt", "code", "le"}
    assert every_label == {live_id, candidate_id, "qa-concise@1", "2xx", "4xx", "5xx"}
    assert "request_predict_seconds" in exposed  # KServe's own metrics, on the same endpoint


def test_requests_refused_before_the_model_are_counted_and_logged(tmp_path):
    """Not JSON, not a chat request, streaming: each is a 4xx in /metrics and a line in the request log."""
    import json
    import re

    log = tmp_path / "requests.jsonl"
    served = Served(LIVE, True, tmp_path, CHAMPION_REQUEST_LOG=str(log))
    url = f"{served.url}/openai/v1/chat/completions"
    try:
        bad = [
            requests.post(url, data="not json", timeout=30),
            requests.post(url, json={"model": "qa", "messages": []}, timeout=30),
            requests.post(
                url, json={"model": "qa", "messages": [{"role": "user", "content": "x"}], "stream": True}, timeout=30
            ),
            requests.post(
                url, json={"model": "qa", "messages": [{"role": "user", "content": "x"}], "temperature": 9}, timeout=30
            ),
        ]
        assert [r.status_code for r in bad] == [400, 400, 400, 400]
        exposed = requests.get(f"{served.url}/metrics", timeout=10).text
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 4):
            time.sleep(0.2)
    finally:
        served.close()
    [count] = re.findall(r'champion_requests_total\{[^}]*code="4xx"[^}]*\} (\S+)', exposed)
    assert float(count) == 4.0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["status"] for r in records] == [400, 400, 400, 400]
