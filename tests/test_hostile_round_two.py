"""Hostile newcomer, round two: the small cases that misbehaved (issue 30). Each failed before its fix."""

from __future__ import annotations

import json

import pytest

from champion.errors import ConfigError
from champion.parameters import PromotionParameters, default
from evaluators.policy import load_policy
from pipelines.cli.options import pipeline_parameters
from tests.conftest import champion_cli


@pytest.mark.parametrize(
    "rule", ["{direction: higher, margin: true}", "{direction: higher, margin: 0.05, floor: false}"]
)
def test_a_boolean_is_not_a_policy_number(rule, tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(f"name: p\nversion: 1\nmin_examples: 20\nmetrics:\n  token_f1: {rule}\n")
    with pytest.raises(ConfigError, match="token_f1"):
        load_policy(str(path))


def test_a_param_for_an_option_left_at_its_default_is_taken():
    defaults = {"batch_size": default(PromotionParameters, "batch_size"), "limit": 0}
    assert pipeline_parameters(PromotionParameters, defaults, ["batch_size=4"]).batch_size == 4
    with pytest.raises(ConfigError, match="given both"):
        pipeline_parameters(PromotionParameters, {**defaults, "batch_size": 8}, ["batch_size=4"])


def test_run_json_prints_one_json_document_even_when_the_run_fails(tmp_path):
    done = champion_cli("run", "--json", "--prompt", "nosuch", "--workspace", str(tmp_path))
    assert done.returncode == 2
    document = json.loads(done.stdout)
    assert document["decision"] is None and "nosuch" in document["error"]["problem"] and document["error"]["fix"]


@pytest.mark.parametrize("cron", ["every day", "0 6 * * *", "* * * * * * *"])
def test_schedule_refuses_an_invalid_cron_before_contacting_any_cluster(cron):
    done = champion_cli("schedule", "--cron", cron, "--host", "http://127.0.0.1:9")
    assert done.returncode == 2 and ("6-field cron" in done.stderr or "wants 6 (seconds first)" in done.stderr)
    assert "unreachable" not in done.stderr and "Traceback" not in done.stderr


def test_labels_export_says_when_a_file_is_not_a_gate_report(tmp_path):
    page = tmp_path / "index.html"
    page.write_text("<html><body>hello</body></html>")
    done = champion_cli("labels", "export", str(page), "--output", str(tmp_path / "x.jsonl"))
    assert done.returncode == 2 and "is not a champion gate report" in done.stderr
    assert "first run" not in done.stderr


def test_rouge_scoring_does_not_flood_the_step_log(caplog):
    import logging

    from evaluators.ragas_metrics import RagasMetric

    records = [{"reference": "Paris", "output": f"It is Paris {i}"} for i in range(20)]
    with caplog.at_level(logging.INFO):
        scores = RagasMetric("ragas_rouge_l").score(records)
    assert len(scores) == 20 and all(0.0 < s <= 1.0 for s in scores)
    assert "Using default tokenizer" not in caplog.text


@pytest.mark.parametrize("rule, named", [("margin: 0.6", "30% of the metric's range"), ("margin: 0.99", "50%")])
def test_policy_check_warns_when_a_margin_hardly_tests_anything(rule, named, tmp_path):
    path = tmp_path / "wide.yaml"
    path.write_text(
        "name: wide\nversion: 1\nmin_examples: 20\nmetrics:\n"
        f"  semantic_similarity: {{direction: higher, {rule}}}\n  token_f1: {{direction: higher, floor: 0.1, margin: 0.05}}\n"
    )
    done = champion_cli("policy", "check", str(path))
    assert done.returncode == 0 and "warning: metrics.semantic_similarity" in done.stderr and named in done.stderr
    assert "token_f1" not in done.stderr


def _two_free_ports() -> int:
    import socket

    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two adjacent free ports")


def test_a_port_left_in_time_wait_by_a_stopped_server_is_free_and_a_taken_one_is_named():
    import socket

    from champion.errors import ServingError
    from pipelines.serve import ensure_ports_free

    port = _two_free_ports()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server closes first: its side of the connection stays in TIME_WAIT
    server.close()
    client.close()
    ensure_ports_free("127.0.0.1", port)  # a restart within a minute is allowed, as uvicorn allows it
    with socket.socket() as predictor:
        predictor.bind(("127.0.0.1", port + 1))
        predictor.listen()
        with pytest.raises(ServingError, match=rf"port {port + 1} on 127.0.0.1, its predictor's"):
            ensure_ports_free("127.0.0.1", port)
