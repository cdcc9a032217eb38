"""Serving, locally and for real: KServe model servers on 127.0.0.1, real HTTP, the real SmolLM2.

`champion serve` runs the prompt transformer in front of the CPU predictor, as a cluster runs the
InferenceService's transformer in front of its vLLM predictor (which cannot run here).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from champion.bundle import Bundle
from champion.errors import PromptError, ServingError
from pipelines.serve import wait_until_ready
from prompts import PromptTemplate, load_prompt
from registry.register import register_bundle
from registry.registry import promote_version
from serving.smoke import smoke_test
from serving.transformer import BUNDLE_ENV, PROMPT_DIGEST_ENV, PROMPT_ENV, prompt_from_env, prompt_values
from tests.answer_server import AnswerServer
from tests.conftest import free_port

PROMPT = load_prompt("qa-concise")
QUESTIONS = ["What is the capital of France?", "What is the capital of Japan?", "How many legs does a spider have?"]


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def chat(port: int, content: str, **extra) -> requests.Response:
    return requests.post(
        f"http://127.0.0.1:{port}/openai/v1/chat/completions",
        json={"model": "champion-qa", "messages": [{"role": "user", "content": content}], **extra},
        timeout=120,
    )


def transformer_env(prompt: PromptTemplate, bundle_id: str = "bundle-xyz") -> dict:
    return {**os.environ, PROMPT_ENV: prompt.model_dump_json(), PROMPT_DIGEST_ENV: prompt.digest, BUNDLE_ENV: bundle_id}


# -- the transformer on its own, in front of a scripted predictor -------------------------------


@pytest.fixture
def transformer():
    predictor = AnswerServer({})
    port = free_port()
    host = predictor.url.removeprefix("http://")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving.transformer",
            "--model_name",
            "champion-qa",
            "--predictor_host",
            host,
            "--http_port",
            str(port),
            "--predictor_protocol",
            "v1",
        ],
        env=transformer_env(PROMPT),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/v1/models/champion-qa", process, timeout_s=60)
        yield port, predictor
    finally:
        stop(process)
        predictor.close()


def test_the_transformer_applies_the_bundles_prompt_and_decoding(transformer):
    port, predictor = transformer
    response = chat(port, "What is the capital of France?", temperature=1.7, max_tokens=3, seed=99)
    assert response.status_code == 200, response.text
    forwarded = predictor.requests[-1]
    assert forwarded["path"] == "/openai/v1/chat/completions"
    assert forwarded["body"]["messages"] == PROMPT.render(question="What is the capital of France?")
    # The client's sampling fields are replaced by the ones the gate evaluated.
    assert {k: forwarded["body"][k] for k in ("temperature", "top_p", "max_tokens", "seed")} == {
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": 32,
        "seed": 0,
    }
    assert (
        response.headers["x-champion-bundle"] == "bundle-xyz"
        and response.headers["x-champion-prompt"] == "qa-concise@1"
    )
    assert response.json()["choices"][0]["message"]["content"] == "I do not know."


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"model": "champion-qa", "messages": [{"role": "system", "content": "hi"}]}, 400, "no user message"),
        ({"model": "champion-qa", "messages": []}, 400, "messages"),
        (
            {"model": "champion-qa", "messages": [{"role": "user", "content": "x"}], "stream": True},
            400,
            "streaming is not supported",
        ),
        ({"model": "other", "messages": [{"role": "user", "content": "x"}]}, 404, "not served here"),
        (
            {"model": "champion-qa", "messages": [{"role": "user", "content": "x"}], "temperature": 9},
            400,
            "temperature",
        ),
    ],
)
def test_bad_requests_get_openai_style_errors(transformer, body, status, message):
    port, predictor = transformer
    response = requests.post(f"http://127.0.0.1:{port}/openai/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == status and message in response.json()["error"]["message"]
    assert not predictor.requests


def test_openai_text_content_parts_are_served_and_other_parts_refused(transformer):
    port, predictor = transformer
    url = f"http://127.0.0.1:{port}/openai/v1/chat/completions"
    parts = [{"type": "text", "text": "What is the capital"}, {"type": "text", "text": "of France?"}]
    response = requests.post(
        url, json={"model": "champion-qa", "messages": [{"role": "user", "content": parts}]}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert predictor.requests[-1]["body"]["messages"] == PROMPT.render(question="What is the capital\nof France?")
    image = [{"type": "image_url", "image_url": {"url": "http://example/cat.png"}}]
    refused = requests.post(
        url, json={"model": "champion-qa", "messages": [{"role": "user", "content": image}]}, timeout=30
    )
    assert refused.status_code == 400 and "only text content parts" in refused.text


def test_an_unreachable_predictor_is_a_503(transformer):
    port, predictor = transformer
    predictor.close()
    response = chat(port, "What is the capital of France?")
    assert response.status_code == 503 and "unreachable" in response.json()["error"]["message"]


def test_the_transformer_refuses_a_prompt_that_is_not_the_bundles():
    environ = {PROMPT_ENV: load_prompt("qa-oneline").model_dump_json(), PROMPT_DIGEST_ENV: PROMPT.digest}
    with pytest.raises(PromptError, match="digest"):
        prompt_from_env(environ)
    with pytest.raises(PromptError, match="not set"):
        prompt_from_env({})


def test_multi_variable_prompts_take_a_json_object():
    prompt = PromptTemplate(
        name="qa-context",
        version=1,
        variables=("question", "context"),
        messages=[{"role": "user", "content": "{{ context }}\n{{ question }}"}],
    )
    assert prompt_values(prompt, json.dumps({"question": "q", "context": "c"})) == {"question": "q", "context": "c"}
    with pytest.raises(ServingError, match="JSON object"):
        prompt_values(prompt, "just text")


# -- champion serve: the promoted bundle, end to end ---------------------------------------------


@pytest.fixture(scope="module")
def served(smollm2, weights_cache, tmp_path_factory):
    """A workspace whose MLflow has the SmolLM2 + qa-concise bundle promoted, served by `champion serve`."""
    workspace = tmp_path_factory.mktemp("serve-workspace")
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    bundle = Bundle(
        model_digest=smollm2.digest,
        prompt=PROMPT.ref,
        decoding=PROMPT.decoding.model_dump(mode="json"),
        dataset_digest="d" * 64,
        evaluator_digest="e" * 64,
    )
    registration = register_bundle(
        tracking_uri=uri,
        registered_model_name="champion-qa",
        bundle=bundle,
        prompt=PROMPT,
        decision={"passed": True, "reasons": [], "checks": []},
        files={},
        weights_source="smollm2",
    )
    promote_version(
        uri,
        "champion-qa",
        registration.model_version,
        expected=None,
        prompt_name=PROMPT.name,
        prompt_version=registration.prompt_version,
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "serve", "--workspace", str(workspace), "--port", str(port)],
        env={**os.environ, "CHAMPION_WEIGHTS_CACHE": str(weights_cache)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/v1/models/champion-qa", process, timeout_s=240)
        yield {"port": port, "bundle": bundle, "process": process, "workspace": workspace}
    finally:
        stop(process)


def test_served_answers_are_the_promoted_bundles_answers(served, smollm2):
    from generation.transformers_backend import TransformersGenerator

    offline = TransformersGenerator(str(smollm2.path), batch_size=4).generate(
        [PROMPT.render(question=q) for q in QUESTIONS], PROMPT.decoding
    )
    for question, expected in zip(QUESTIONS, offline):
        response = chat(served["port"], question, temperature=1.2)
        assert response.status_code == 200, response.text
        assert response.headers["x-champion-bundle"] == served["bundle"].id
        # Greedy decoding: the promoted weights given the promoted prompt give exactly the evaluated text,
        # and the model saw exactly as many prompt tokens as the rendered template has.
        body = response.json()
        assert body["choices"][0]["message"]["content"] == expected.text
        assert body["usage"]["prompt_tokens"] == expected.prompt_tokens
    bare = TransformersGenerator(str(smollm2.path), batch_size=1).generate(
        [[{"role": "user", "content": QUESTIONS[0]}]], PROMPT.decoding
    )[0]
    assert bare.prompt_tokens < offline[0].prompt_tokens  # without the template the model would see less


def test_smoke_test_against_the_real_server(served):
    examples = [{"question": q, "reference": r} for q, r in zip(QUESTIONS, ["Paris", "Tokyo", "eight"])]
    result = smoke_test(
        f"http://127.0.0.1:{served['port']}", "champion-qa", examples, floor=0.1, bundle_id=served["bundle"].id
    )
    assert result.passed, result.reason
    assert not smoke_test(
        f"http://127.0.0.1:{served['port']}", "champion-qa", examples, floor=0.1, bundle_id="another-bundle"
    ).passed


def test_serve_listens_on_loopback_only(served):
    import psutil

    ports = {c.laddr.port: c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN"}
    assert ports[served["port"]] == "127.0.0.1" and ports[served["port"] + 1] == "127.0.0.1"


def test_serve_without_a_promoted_bundle_says_what_to_do(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "serve", "--workspace", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "champion run" in result.stderr


def test_serve_an_unknown_bundle_id(served):
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "serve", "--workspace", str(served["workspace"]), "--bundle", "ffff"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "0 versions of champion-qa match bundle id 'ffff'" in result.stderr


# -- Hostile requests and a dying predictor (run last: they restart the module's server's predictor) ---------


def test_requests_longer_than_the_context_are_refused_and_serving_goes_on(served):
    huge = chat(served["port"], "x " * 5_000_000)  # ~10 MB: used to grow the predictor to 23 GB
    assert huge.status_code == 400, huge.text
    long = chat(served["port"], "What is this? " + "word " * 30_000)  # 150 KB: used to hold a core for minutes
    assert long.status_code == 400 and "context" in long.text, long.text
    assert chat(served["port"], QUESTIONS[0]).status_code == 200


def test_a_killed_predictor_is_restarted_and_serving_resumes(served):
    import psutil

    def predictors():
        return [
            child
            for child in psutil.Process(served["process"].pid).children(recursive=True)
            if "serving.predictor" in " ".join(child.cmdline())
        ]

    [first] = predictors()
    first.kill()  # what the kernel's OOM killer does
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        response = chat(served["port"], QUESTIONS[0])
        if response.status_code == 200:
            break
        time.sleep(1)
    assert response.status_code == 200, response.text
    [second] = predictors()
    assert second.pid != first.pid and served["process"].poll() is None


def test_stopping_serve_says_the_server_stopped_not_that_a_run_was_cancelled(served):
    """Runs last: it stops the module's server."""
    process = served["process"]
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "the server and its predictor were stopped" in output
    assert "recorded as cancelled" not in output and "reused from the cache" not in output
