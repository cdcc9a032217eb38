"""Shadow first: request logs with the bundle's identity, and the local shadow loop end to end.

Two bundles are served by the real prompt transformer (serving/transformer.py, as on a cluster and in
`champion serve`) in front of scripted predictors on 127.0.0.1. The live one logs real requests (content
capture on); `champion replay` sends them to a candidate, the scripted judge (an OpenAI-compatible server)
compares each pair without references, and the gate's engine decides: a degraded candidate is gated out,
an equivalent one passes, and with an unreliable judge nothing passes.
"""

import json
import os
import subprocess
import sys

import pytest
import requests
import yaml

from champion.jsonl import read_jsonl
from champion.request_records import read_request_log, replayable
from prompts import load_prompt
from serving.request_log import RequestLog
from serving.shadow import pair_logs
from tests.answer_server import AnswerServer
from tests.conftest import champion_cli, free_port
from tests.judge_server import JudgeServer
from tests.test_deploy import make_bundle
from tests.test_serving import stop, transformer_env, wait_until_ready

PROMPT = load_prompt("qa-concise")
LIVE, CANDIDATE = make_bundle("a" * 64), make_bundle("b" * 64)
# Questions the scripted judge can answer without a reference (it knows the labelled set's facts).
FACTS = [(r["question"], r["reference"]) for r in read_jsonl("evaluators/labels/demo.jsonl")]
FACTS += [(r["question"], r["reference"]) for r in read_jsonl("evaluators/probes/v1/reference_free.jsonl")]


def answers(right: bool, knows: frozenset[str] = frozenset()) -> dict[str, str]:
    """What a scripted predictor answers, keyed by the user message the transformer renders: right, or only on
    the questions it ``knows``."""
    return {
        PROMPT.render(question=q)[-1]["content"]: (f"{ref}." if right or q in knows else "I am not sure.")
        for q, ref in FACTS
    }


def live_record(log: RequestLog, question: str = "What is the capital of France?", **overrides):
    """One record of the live bundle written through ``log`` (what the transformer hands it per request)."""
    fields = dict(
        answer="Paris.",
        request_id="r1",
        bundle_id=LIVE.id,
        prompt="qa-concise@1",
        prompt_digest=PROMPT.digest,
        model_digest=LIVE.model_digest,
        decoding=PROMPT.decoding.model_dump(mode="json"),
        status=200,
        latency_s=0.1,
    )
    return log.record(question=question, **(fields | overrides))


class Served:
    """The real prompt transformer for ``bundle`` in a child process, in front of a scripted predictor."""

    def __init__(
        self, bundle, right: bool, tmp_path, model_name: str = "qa", knows: frozenset[str] = frozenset(), **log_env
    ) -> None:
        self.predictor = AnswerServer(answers(right, knows))
        self.port = free_port()
        env = transformer_env(PROMPT, bundle.id) | {"CHAMPION_MODEL_DIGEST": bundle.model_digest, **log_env}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving.transformer",
                f"--model_name={model_name}",
                f"--predictor_host={self.predictor.url.removeprefix('http://')}",
                f"--http_port={self.port}",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_until_ready(f"http://127.0.0.1:{self.port}/v1/models/{model_name}", self.process, timeout_s=60)
        self.url = f"http://127.0.0.1:{self.port}"
        self.model_name = model_name

    def ask(self, question: str, **headers) -> requests.Response:
        return requests.post(
            f"{self.url}/openai/v1/chat/completions",
            json={"model": self.model_name, "messages": [{"role": "user", "content": question}]},
            headers=headers,
            timeout=60,
        )

    def close(self) -> None:
        stop(self.process)
        self.predictor.close()


@pytest.fixture
def live_log(tmp_path):
    """Production traffic on the live bundle, logged with content; one request carries a secret."""
    log = tmp_path / "requests.jsonl"
    live = Served(LIVE, True, tmp_path, CHAMPION_REQUEST_LOG=str(log), CHAMPION_LOG_CONTENT="true")
    try:
        for question, _ in FACTS:
            assert live.ask(question).status_code == 200
        assert live.ask("What is the capital of France?", **{"x-request-id": "req-42"}).status_code == 200
        assert live.ask("My token is ghp_1234567890abcdefghijklmnopqrstuvwxyzAB, what is it for?").status_code == 200
    finally:
        live.close()
    return log


def test_every_request_is_logged_with_the_bundles_identity_and_no_secret(live_log):
    records = read_request_log(live_log)
    assert len(records) == len(FACTS) + 2
    first = records[0]
    assert first.bundle_id == LIVE.id and first.model_digest == LIVE.model_digest
    assert first.prompt == "qa-concise@1" and first.prompt_digest == PROMPT.digest
    assert first.decoding == PROMPT.decoding.model_dump(mode="json") and first.status == 200
    assert first.latency_s > 0 and first.completion_tokens == 3 and first.answer == f"{FACTS[0][1]}."
    assert any(r.request_id == "req-42" for r in records)  # a caller's (or a mirror's) request id is kept
    assert "ghp_" not in live_log.read_text() and "[REDACTED]" in live_log.read_text()
    assert "authorization" not in live_log.read_text().lower()
    assert len(replayable(records)) == len(records)
    assert len(replayable(records + records)) == len(records)  # one per distinct question


def test_content_is_recorded_only_when_asked(tmp_path):
    log = RequestLog(tmp_path / "log.jsonl")
    record = live_record(log)
    assert record.question is None and record.answer is None
    assert json.loads((tmp_path / "log.jsonl").read_text())["question"] is None


def test_mirrored_logs_pair_on_the_request_id(live_log):
    live = read_request_log(live_log)
    mirrored = [r.model_copy(update={"bundle_id": CANDIDATE.id, "answer": "Other."}) for r in live[:5]]
    pairs = pair_logs(live, mirrored)
    assert [p.request_id for p in pairs] == [r.request_id for r in live[:5]]
    assert all(p.candidate_answer == "Other." for p in pairs)


def judge_config(tmp_path, server) -> str:
    path = tmp_path / "judge.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "shadow-judge",
                "version": 1,
                "metrics": ["token_f1"],
                "judge": {"model": "scripted", "backend": "openai", "base_url": server.base_url},
            }
        )
    )
    return str(path)


def run_replay(log, candidate, config, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "replay",
            str(log),
            "--bundle",
            CANDIDATE.id[:16],
            "--url",
            candidate.url,
            "--evaluator-config",
            config,
            "--workspace",
            str(tmp_path / "ws"),
            "--output",
            str(tmp_path / "shadow.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.mark.parametrize("right, bias, passed", [(False, None, False), (True, None, True), (True, "tone", False)])
def test_replay_gates_on_mirrored_traffic(live_log, tmp_path, right, bias, passed):
    candidate = Served(CANDIDATE, right, tmp_path)
    try:
        with JudgeServer(bias=bias) as judge:
            result = run_replay(live_log, candidate, judge_config(tmp_path, judge), tmp_path)
    finally:
        candidate.close()
    assert result.returncode == (0 if passed else 1), result.stdout + result.stderr
    decision = json.loads((tmp_path / "shadow.json").read_text())
    assert decision["n"] == len(FACTS) + 2
    assert decision["passed"] is passed
    if not right:  # the candidate does not know: the live answers win and the interval says worse
        assert decision["live_wins"] >= len(FACTS) and decision["gate"] == "failed"
        assert any("judge_shadow_preference" in reason for reason in decision["reasons"])
    elif bias is None:  # the same answers: ties, an interval at 0, well inside the margin
        assert decision["ties"] == decision["n"] and decision["judge"]["reliable"]
    else:  # an unreliable judge cannot vote, and nothing else can: not promoted, never "unknown means pass"
        assert not decision["judge"]["reliable"] and "requires this metric's vote" in " ".join(decision["reasons"])
    assert "shadow gate" in result.stdout


def test_replay_refuses_a_server_that_is_not_the_candidate(live_log, tmp_path):
    other = Served(LIVE, True, tmp_path)  # the live bundle answers where the candidate should
    try:
        with JudgeServer() as judge:
            result = run_replay(live_log, other, judge_config(tmp_path, judge), tmp_path)
    finally:
        other.close()
    assert result.returncode == 2 and "not the candidate" in result.stderr


def test_replay_of_a_log_without_content_says_how_to_capture_it(tmp_path):
    log = RequestLog(tmp_path / "requests.jsonl")  # content capture off: nothing to replay
    live_record(log)
    result = champion_cli("replay", str(tmp_path / "requests.jsonl"), "--bundle", CANDIDATE.id)
    assert result.returncode == 2 and "--log-content" in result.stderr


@pytest.mark.parametrize(
    "arguments, named",
    [
        (["missing.jsonl"], "does not exist"),
        (["requests.jsonl", "--limit", "-3"], "--limit"),
        (["requests.jsonl", "--margin", "5"], "--margin"),
        (["requests.jsonl", "--margin", "-0.5"], "--margin"),
        (["requests.jsonl", "--min-examples", "0"], "--min-examples"),
    ],
)
def test_replay_refuses_bad_arguments_up_front_without_a_traceback(arguments, named, tmp_path):
    (tmp_path / "requests.jsonl").write_text("")
    result = champion_cli("replay", *arguments, "--bundle", CANDIDATE.id, cwd=tmp_path)
    assert result.returncode == 2 and named in result.stderr and "Traceback" not in result.stderr


def test_records_sent_as_cloudevents_land_in_the_same_jsonl_format(tmp_path):
    """A cluster's transformers post to CHAMPION_REQUEST_LOG_URL; the sink writes what champion serve writes."""
    from serving.log_sink import RequestLogSink

    output = tmp_path / "cluster-requests.jsonl"
    with RequestLogSink(output) as sink:
        log = RequestLog(url=sink.url, capture_content=True)
        sent = live_record(log, "What is the capital of France? My key is AKIAIOSFODNN7EXAMPLE", request_id="req-1")
        refused = requests.post(
            sink.url, data=b'{"not": "a record"}', headers={"ce-type": "other", "ce-specversion": "1.0"}
        )
        wrong_body = requests.post(
            sink.url,
            data=b'{"not": "a record"}',
            headers={"ce-type": "io.champion.request.v1", "ce-specversion": "1.0"},
        )
    assert log.dropped == 0 and sink.received == 1 and sink.refused == 2
    assert refused.status_code == 400 and wrong_body.status_code == 400
    (stored,) = read_request_log(output)
    assert stored == sent and "AKIA" not in output.read_text() and stored.request_id == "req-1"


def test_an_unreachable_sink_drops_the_record_but_never_the_answer(tmp_path):
    log = RequestLog(url="http://127.0.0.1:9/", capture_content=False)
    record = live_record(log, request_id="r")
    assert log.dropped == 1 and record.request_id == "r"
