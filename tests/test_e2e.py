"""The real promotion pipeline through kfp.local on a small slice: real model, real MLflow, real manifest.

Not proven here: the cluster side (images, GPU scheduling, KServe applying the manifest); those are
checked in the compiled IR (test_compile.py) and against the CRD schema (test_manifests.py).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from html import escape as html_escape

import pytest
import yaml

from champion.parameters import PromotionParameters, ScheduledEvalParameters
from champion.provenance import code_digest
from pipelines.local import LocalSettings, PipelineFailed, run_promotion
from serving.manifests import validate_strict
from tests.conftest import REPO, publish_version_two
from tests.otlp import OTLPReceiver

pytestmark = pytest.mark.e2e

LENIENT = "name: lenient\nversion: 1\nmin_examples: 3\nmetrics:\n  semantic_similarity: {direction: higher, floor: 0.3, margin: 0.5}\n"
LEAN = str(REPO / "tests" / "configs" / "lean-evaluators.yaml")  # no judge: these runs test the pipeline, not the judge
# Looks at a third, two thirds and all of the set, with the floor a clearly evasive prompt falls far below.
SEQUENTIAL = (
    "name: sequential-test\nversion: 1\nmin_examples: 10\nsequential: true\nlooks: [0.333, 0.667, 1.0]\n"
    "metrics:\n  semantic_similarity: {direction: higher, floor: 0.45, margin: 0.05}\n"
)
IMPOSSIBLE = "name: impossible\nversion: 1\nmin_examples: 3\nmetrics:\n  semantic_similarity: {direction: higher, floor: 0.99, margin: 0.05}\n"


@pytest.fixture
def workspace(tmp_path):
    """Every test has its own workspace (MLflow, audit log, runs); the caches are shared and keyed by content."""
    return tmp_path / "workspace"


@pytest.fixture
def settings(workspace, weights_cache, shared_cache):
    return LocalSettings(workspace=workspace, weights_cache=weights_cache, cache_dir=shared_cache)


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("policies")
    (folder / "lenient.yaml").write_text(LENIENT)
    (folder / "impossible.yaml").write_text(IMPOSSIBLE)
    (folder / "sequential.yaml").write_text(SEQUENTIAL)
    return folder


def mlflow_client(workspace):
    from mlflow import MlflowClient

    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion_version(workspace):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    try:
        return str(
            MlflowClient(tracking_uri=uri, registry_uri=uri)
            .get_model_version_by_alias("champion-qa", "champion")
            .version
        )
    except MlflowException:
        return None


def lenient(policies, **overrides) -> PromotionParameters:
    return PromotionParameters(
        **{
            "limit": 4,
            "gate_config": str(policies / "lenient.yaml"),
            "evaluator_config": LEAN,
            "batch_size": 4,
            **overrides,
        }
    )


@pytest.fixture(scope="module")
def traces():
    """Where the promoted run's trace goes (champion.tracing): a real OTLP/HTTP receiver."""
    receiver = OTLPReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory, weights_cache, shared_cache, policies, traces):
    """One workspace whose champion is the demo bundle (qa-concise), promoted by the bootstrap rule, shared by
    the tests that start from a champion (a promotion costs half a minute). They only add runs to it: each reads
    the alias it starts from instead of assuming one."""
    from champion import tracing

    settings = LocalSettings(
        workspace=tmp_path_factory.mktemp("live") / "workspace", weights_cache=weights_cache, cache_dir=shared_cache
    )
    # The run's trace goes to a real OTLP receiver: the runner's spans and each step process's own.
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = traces.url
    tracing.configure()
    try:
        return run_promotion(lenient(policies), settings), settings
    finally:
        tracing.shutdown()
        del os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]
        tracing.configure()


@pytest.fixture
def promoted(live):
    return live[0]


@pytest.fixture
def live_settings(live):
    return live[1]


def test_passing_bundle_is_registered_aliased_and_gets_a_valid_manifest(promoted, live_settings, traces):
    workspace = live_settings.workspace
    assert promoted["decision"] == "promoted" and promoted["mode"] == "bootstrap"
    assert promoted["reasons"][0].startswith("every check passed (no champion yet")
    assert set(promoted["metrics"]) >= {"semantic_similarity", "exact_match", "token_f1"}
    assert promoted["metrics"]["semantic_similarity"] > 0.3
    assert mlflow_client(workspace).get_model_version("champion-qa", promoted["model_version"]).aliases == ["champion"]
    run = mlflow_client(workspace).get_run(
        mlflow_client(workspace).get_model_version("champion-qa", promoted["model_version"]).run_id
    )
    assert {"semantic_similarity", "ragas_chrf", "token_f1"} <= set(run.data.metrics)
    # The run's outcome for Prometheus' textfile collector: the decision and every step's seconds.
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(open(promoted["metrics_file"]).read())}
    assert families["champion_gate_passed"].samples[0].labels == {"model": "champion-qa"}
    assert families["champion_gate_passed"].samples[0].value == 1.0
    assert {s.labels["step"] for s in families["champion_step_seconds"].samples} >= {"gate-op", "register-op"}
    # The run as one trace: the runner's root span with the bundle and the decision; below it one span per
    # task, recorded by the step's own process (or by the runner, for a step the step cache answered).
    spans = traces.spans
    (root,) = [span for span in spans if not span.parent_span_id]
    assert root.trace_id.hex() == promoted["trace_id"] and all(span.trace_id == root.trace_id for span in spans)
    assert OTLPReceiver.attributes(root)["champion.bundle_id"] == promoted["bundle_id"]
    assert OTLPReceiver.attributes(root)["champion.decision"] == "promoted"
    children = [span for span in spans if span.parent_span_id]
    assert all(span.parent_span_id == root.span_id for span in children)
    tasks = Counter(task.split("[")[0] for task in promoted["steps"])  # batch-generate-op[0] -> batch-generate-op
    assert Counter(span.name for span in children) == tasks
    cached = Counter(task.split("[")[0] for task, step in promoted["steps"].items() if step["state"] == "cached")
    assert Counter(s.name for s in children if OTLPReceiver.attributes(s).get("champion.step_state")) == cached
    (gate_span,) = [span for span in children if span.name == "gate-op"]
    if "champion.step_state" not in OTLPReceiver.attributes(gate_span):  # the gate's process ran: it names its bundles
        assert OTLPReceiver.attributes(gate_span)["champion.bundle_ids"] == [promoted["bundle_id"]]
    (register_span,) = [span for span in children if span.name == "register-op"]  # never cached
    assert OTLPReceiver.attributes(register_span)["champion.bundle_id"] == promoted["bundle_id"]
    manifest = yaml.safe_load(open(promoted["reports"]["manifest"]))
    validate_strict(manifest)
    annotations = manifest["metadata"]["annotations"]
    assert promoted["promoted"] is True and promoted["deployment"] == "rendered" and promoted["gate"] == "passed"
    assert annotations["champion.io/bundle-id"] == promoted["bundle_id"]
    transformer_env = {e["name"]: e["value"] for e in manifest["spec"]["transformer"]["containers"][0]["env"]}
    assert json.loads(transformer_env["CHAMPION_PROMPT"])["name"] == "qa-concise"
    assert annotations["champion.io/mlflow-model"] == f"champion-qa/{promoted['model_version']}"
    decision = json.load(open(promoted["reports"]["decision"]))
    assert decision["gate"] == "passed" and decision["n_examples"] == 4
    scores = [json.loads(line) for line in open(promoted["reports"]["scores"])]
    assert len(scores) == 4 and all("semantic_similarity" in row for row in scores)
    # The gate's reports are written before the deployment: they say "approved"; the run's decision says "promoted".
    assert (
        "APPROVED" in open(promoted["reports"]["gate_report"]).read()
        and "gate **PASSED**: approved" in open(promoted["reports"]["gate_summary"]).read()
    )


def test_rejected_bundle_leaves_the_alias_where_it_was(promoted, live_settings, policies, weights_cache, shared_cache):
    workspace = live_settings.workspace
    before = champion_version(workspace)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "run",
            "--limit",
            "4",
            "--gate-config",
            str(policies / "impossible.yaml"),
            "--evaluator-config",
            LEAN,
            "--prompt",
            "qa-oneline",
            "--workspace",
            str(workspace),
            "--weights-cache",
            str(weights_cache),
            "--json",
            "--fail-on-reject",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "CHAMPION_CACHE_DIR": str(shared_cache)},
    )
    assert result.returncode == 1, result.stderr[-2000:]
    summary = json.loads(result.stdout)  # stdout is exactly one JSON object: progress went to stderr
    assert summary["decision"] == "rejected" and summary["mode"] == "paired"
    assert summary["champion"]["version"] == before
    assert (
        any("semantic_similarity" in reason and "floor 0.990" in reason for reason in summary["reasons"])
        and summary["gate"] == "failed"
    )
    assert (
        summary["deployment"] == "skipped" and summary["reports"]["manifest"] is None and summary["promoted"] is False
    )
    assert summary["model_version"] != before
    assert champion_version(workspace) == before
    assert {"bundle_id", "decision", "reasons", "metrics", "reports"} <= set(summary)


def test_bad_data_fails_with_the_row_named_and_promotes_nothing(promoted, live_settings, policies, tmp_path):
    workspace, settings = live_settings.workspace, live_settings
    before = champion_version(workspace)
    data = tmp_path / "bad.jsonl"
    data.write_text(
        '{"question": "What is 2+2?", "reference": "4"}\n{"question": "Legs on a spider?", "reference": 8}\n'
    )
    with pytest.raises(PipelineFailed, match=r"row 2, column 'reference': expected text") as info:
        run_promotion(lenient(policies, data_source=str(data), limit=2), settings)
    assert "full log" in info.value.fix
    # Why it failed comes from the step's own error record, typed, not from its log.
    assert (
        info.value.step == "preprocess-data-op"
        and info.value.error.type == "DataError"
        and "row 2" in info.value.error.problem
    )
    assert champion_version(workspace) == before


def test_cli_reports_bad_input_before_running(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "run",
            "--data",
            str(tmp_path / "missing.jsonl"),
            "--workspace",
            str(tmp_path / "ws"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "fix:" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--prompt", "qa-concize", "--workspace", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2 and "qa-concise" in result.stderr


E2E_POLICY = """
name: e2e
version: 1
min_examples: 20
primary: semantic_similarity
metrics:
  semantic_similarity: {direction: higher, floor: 0.45, margin: 0.10}
  token_f1: {direction: higher, floor: 0.15, margin: 0.10}
  judge_correctness: {direction: higher, floor: 0.5, margin: 0.05}
"""


@pytest.fixture(scope="module")
def sequence(tmp_path_factory, weights_cache):
    """The same workspace through three bundles: baseline, a degraded prompt, a good alternative."""
    workspace = tmp_path_factory.mktemp("sequence")
    policy = workspace / "policy.yaml"
    policy.write_text(E2E_POLICY)
    runs = {}
    for prompt in ("qa-concise", "qa-evasive", "qa-oneline"):
        runs[prompt] = run_promotion(
            PromotionParameters(prompt=prompt, limit=24, gate_config=str(policy)),
            LocalSettings(workspace=workspace, weights_cache=weights_cache),
        )
        runs[prompt]["alias_after"] = champion_version(workspace)
    return workspace, runs


def test_first_bundle_is_promoted_by_the_bootstrap_rule(sequence):
    _, runs = sequence
    baseline = runs["qa-concise"]
    assert baseline["decision"] == "promoted" and baseline["mode"] == "bootstrap" and baseline["champion"] is None
    # The embedded judge was checked (its battery) and graded 24 answers, and is excluded with its reasons.
    assert baseline["judge"]["spent_this_run"]["calls"] >= 150 + 24 and not baseline["judge"]["voted"]
    assert "self_preference" in baseline["judge"]["failing_families"]
    assert baseline["alias_after"] == baseline["model_version"]


def test_degraded_prompt_is_rejected_against_the_champion_and_the_alias_stays(sequence):
    _, runs = sequence
    degraded, baseline = runs["qa-evasive"], runs["qa-concise"]
    assert degraded["decision"] == "rejected" and degraded["mode"] == "paired"
    assert degraded["champion"]["version"] == baseline["model_version"]
    assert (
        degraded["champion"]["bundle_id"] == baseline["bundle_id"]
    )  # the champion was re-generated and re-scored: same bundle
    interval = degraded["intervals"]["semantic_similarity"]
    assert interval["ci_high"] < -0.10 and not interval["passed"]
    assert degraded["alias_after"] == baseline["model_version"]
    assert degraded["deployment"] == "skipped"
    # Only the prompt changed: the champion (bundle [1]) was scored as the baseline's challenger (bundle [0]),
    # and KFP's step cache gives those steps back; only the new challenger is generated and scored.
    assert baseline["cache"]["examples"]["generation"]["hits"] == 0
    assert {
        "batch-generate-op[1]",
        "evaluate-op[1]",
        "fetch-weights-op[0]",
        "fetch-weights-op[1]",
        "preprocess-data-op",
        "check-judge-op",
    } <= set(degraded["cache"]["steps"])
    assert "batch-generate-op[0]" not in degraded["cache"]["steps"] and degraded["cache"]["examples"]["generation"] == {
        "hits": 0,
        "misses": 24,
        "corrupt": 0,
    }
    assert degraded["metrics"]["semantic_similarity"] < baseline["metrics"]["semantic_similarity"]
    # The judge check and the champion's grades were reused: only the new challenger's 24 answers cost a call.
    assert degraded["judge"]["spent_this_run"]["calls"] == 24


def test_good_prompt_is_promoted_and_the_alias_moves(sequence):
    _, runs = sequence
    good, baseline = runs["qa-oneline"], runs["qa-concise"]
    assert good["decision"] == "promoted" and good["mode"] == "paired", good["reasons"]
    interval = good["intervals"]["semantic_similarity"]
    assert interval["ci_low"] > -0.10 and interval["champion"] == pytest.approx(
        baseline["metrics"]["semantic_similarity"]
    )
    assert good["alias_after"] == good["model_version"] != baseline["model_version"]
    assert good["deployment"] == "rendered" and good["promoted"] is True


def test_audit_log_records_every_decision_and_alias_move(sequence):
    workspace, runs = sequence
    events = [json.loads(line) for line in open(workspace / "audit.jsonl")]
    assert [(e["event"], e.get("decision")) for e in events] == [
        ("gate_decision", "approved"),
        ("alias_moved", None),  # the alias moves in the deploy step, after the gate
        ("gate_decision", "rejected"),
        ("gate_decision", "approved"),
        ("alias_moved", None),
    ]
    assert events[-1]["from_version"] == runs["qa-concise"]["model_version"]
    assert all(e["pipeline_run"].startswith("champion-promotion-") for e in events)  # the kfp run that decided
    assert len({e["pipeline_run"] for e in events}) == 3


def test_gate_report_shows_champion_and_challenger_side_by_side_worst_first(sequence):
    _, runs = sequence
    html = open(runs["qa-evasive"]["reports"]["gate_report"], encoding="utf-8").read()
    assert "champion answer" in html and "challenger answer" in html and "worst regressions first" in html
    challenger_answers = [
        json.loads(line)["output"] for line in open(runs["qa-evasive"]["reports"]["scores"], encoding="utf-8")
    ]
    assert any(
        html_escape(answer) in html for answer in challenger_answers if answer.strip()
    )  # the answers are shown, escaped
    decision = json.load(open(runs["qa-evasive"]["reports"]["decision"]))
    assert decision["champion"]["version"] == runs["qa-concise"]["model_version"]
    first_delta = html.index('class="worse"')
    assert first_delta < html.index("</table>", html.index('id="examples"'))


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Debian's chromium is not installed (.ci/run installs it; locally: apt-get install chromium)",
)
def test_gate_report_renders_in_headless_chromium(sequence, tmp_path):
    _, runs = sequence
    page = runs["qa-evasive"]["reports"]["gate_report"]
    assert page.endswith(".html")
    dom = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path}",
            "--dump-dom",
            f"file://{page}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert re.search(r'<h1 class="rejected" id="decision">\s*REJECTED\s*</h1>', dom)
    assert re.search(r"<td>semantic_similarity</td>\s*<td>all</td>\s*<td>non-inferiority</td>", dom)
    assert "<svg" in dom and 'id="forest"' in dom  # the intervals against their margins, drawn inline


class WebhookReceiver:
    """A real HTTP endpoint on 127.0.0.1 that records what an alert posts."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.posts: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                receiver.posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_scheduled_evaluation_is_healthy_then_alerts_on_a_regression_and_never_promotes(
    promoted, live_settings, policies, tmp_path
):
    from pipelines.local import run_scheduled_eval

    workspace, settings = live_settings.workspace, live_settings
    before = champion_version(workspace)
    audited = len(open(workspace / "audit.jsonl").readlines())
    options = dict(limit=4, gate_config=str(policies / "lenient.yaml"), evaluator_config=LEAN, batch_size=4)
    healthy = run_scheduled_eval(ScheduledEvalParameters(**options), settings)
    assert healthy["status"] == "healthy" and healthy["champion_version"] == before and healthy["error"] is None
    assert 'champion_scheduled_evaluation_healthy{model="champion-qa"} 1.0' in open(healthy["metrics_file"]).read()
    hook = WebhookReceiver()
    again = run_scheduled_eval(ScheduledEvalParameters(**options, webhook_url=hook.url), settings)
    assert again["status"] == "healthy" and again["compared_with"] == healthy["mlflow_run"] and not hook.posts
    # The latest data: the same questions, but the world changed (references the champion does not know).
    shifted = tmp_path / "latest.jsonl"
    rows = [json.loads(line) for line in open(REPO / "pipelines/data/demo_eval.jsonl")][:4]
    shifted.write_text(
        "".join(json.dumps({**row, "reference": "a completely different answer"}) + "\n" for row in rows)
    )
    alert = run_scheduled_eval(
        ScheduledEvalParameters(data_source=str(shifted), **options, webhook_url=hook.url), settings
    )
    assert alert["status"] == "alert" and "ChampionRegressed" in alert["error"]
    assert 'champion_scheduled_evaluation_healthy{model="champion-qa"} 0.0' in open(alert["metrics_file"]).read()
    assert any("< floor 0.300" in reason for reason in alert["failed_checks"]) and alert["mode"] == "paired"
    assert any(
        c["test"] == "non-inferiority" for c in alert["checks"]
    )  # compared with the previous evaluation by the gate engine
    assert (
        len(hook.posts) == 1
        and hook.posts[0]["version"] == before
        and "failed its scheduled evaluation" in hook.posts[0]["text"]
    )
    assert champion_version(workspace) == before
    events = [json.loads(line)["event"] for line in open(workspace / "audit.jsonl")][audited:]  # this test's
    assert events.count("scheduled_evaluation") == 3 and "alias_moved" not in events


def test_trigger_local_runs_a_gate_only_promotion_for_a_changed_prompt(
    promoted, live_settings, policies, weights_cache, shared_cache, tmp_path
):
    workspace = live_settings.workspace
    root = tmp_path / "repo"
    shutil.copytree(REPO / "prompts", root / "prompts", ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    git = lambda *args: subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)  # noqa: E731
    git("init", "-q", "-b", "main")
    git("-c", "user.email=ci@example.com", "-c", "user.name=CI", "commit", "-qm", "base", "--allow-empty")
    git("add", ".")
    git("-c", "user.email=ci@example.com", "-c", "user.name=CI", "commit", "-qm", "prompts")
    git("checkout", "-qb", "change")
    # v2 of the champion's own prompt: same messages and decoding, so the paired gate sees no difference.
    publish_version_two(root / "prompts", "qa-concise")
    git("add", ".")
    git("-c", "user.email=ci@example.com", "-c", "user.name=CI", "commit", "-qm", "qa-concise v2")
    before = champion_version(workspace)
    policy = tmp_path / "paired.yaml"
    policy.write_text(LENIENT.replace("margin: 0.5}", "margin: 0.05}"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "trigger",
            "--changed-since",
            "main",
            "--repo",
            str(root),
            "--local",
            "--workspace",
            str(workspace),
            "--limit",
            "4",
            "--gate-config",
            str(policy),
            "--summary",
            str(tmp_path / "summary.md"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "CHAMPION_WEIGHTS_CACHE": str(weights_cache), "CHAMPION_CACHE_DIR": str(shared_cache)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| `qa-concise@2` | `smollm2` | ✅ passed |" in (tmp_path / "summary.md").read_text()
    assert champion_version(workspace) == before  # a PR check gates; it does not promote


def test_fine_tuning_in_the_pipeline_changes_the_model_digest_and_the_champion_refetches_it(
    workspace, policies, settings, weights_cache
):
    """Its own workspace: the tuned bundle may become the champion, which the shared one must not see."""
    from champion.weights import fetch_weights

    tuned = run_promotion(lenient(policies, fine_tune_steps=3, eval_fraction=0.5), settings)
    base_digest = fetch_weights("smollm2", workspace / "base", cache_dir=weights_cache).digest
    assert tuned["bundle"]["model_digest"] != base_digest  # the tuned weights are what the bundle names
    version = mlflow_client(workspace).get_model_version("champion-qa", tuned["model_version"])
    source = version.tags["champion.weights_source"]
    assert source != "smollm2" and (source.startswith("/") or "://" in source)  # the fine-tuned artifact, not the base
    refetched = fetch_weights(source, workspace / "refetch", cache_dir=weights_cache)
    assert refetched.digest == tuned["bundle"]["model_digest"]  # what the next run re-evaluates as the champion


def test_editing_one_row_reruns_exactly_the_steps_that_read_the_data(tmp_path, policies, weights_cache):
    """KFP's step cache on pinned inputs: an unchanged re-run reuses every pure step; after one row of the
    evaluation set is edited, the steps downstream of the data run again and the rest (the weights, the
    judge check) are reused. Own workspace and caches: the counts are this test's alone."""
    settings = LocalSettings(workspace=tmp_path / "ws", weights_cache=weights_cache)
    rows = [json.loads(line) for line in open(REPO / "pipelines/data/demo_eval.jsonl", encoding="utf-8")][:3]
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    params = lenient(policies, data_source=str(data), promote=False)
    first = run_promotion(params, settings)
    assert first["cache"]["steps"] == []
    pure = {
        "plan-bundles-op",
        "preprocess-data-op",
        "fetch-weights-op[0]",
        "fine-tune-op[0]",
        "batch-generate-op[0]",
        "evaluate-op[0]",
        "check-judge-op",
        "drift-op",
        "gate-op",
    }
    again = run_promotion(params, settings)
    assert set(again["cache"]["steps"]) == pure and again["bundle_id"] == first["bundle_id"]
    # The step cache is kept per version of the code the steps run, as a cluster's is per image.
    assert [p.name for p in (tmp_path / "ws" / "cache" / "steps").iterdir()] == [code_digest()[:16]]
    assert {s for s, e in again["steps"].items() if e["state"] == "succeeded"} == {
        "pin-inputs-op",
        "resolve-champion-op",
        "register-op",
        "skip-deploy-op",
    }
    rows[1]["question"] = rows[1]["question"].rstrip("?") + " (edited)?"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    edited = run_promotion(params, settings)
    assert set(edited["cache"]["steps"]) == {"fetch-weights-op[0]", "check-judge-op"}
    assert edited["bundle_id"] != first["bundle_id"]  # the dataset digest is part of the bundle record
    # Within the steps that ran, the per-example cache generated only the edited row.
    assert edited["cache"]["examples"]["generation"] == {"hits": 2, "misses": 1, "corrupt": 0}


def test_scheduled_evaluation_on_logged_traffic_watches_what_users_were_served(promoted, live_settings, tmp_path):
    """The request log as the data: the champion answers the logged questions, the judge compares each served
    answer with it (reference-free), drift looks at its answers to real prompts, the monitor decides paired."""
    from pipelines.local import run_scheduled_eval
    from tests.judge_server import JudgeServer
    from tests.test_traffic_eval import RIGHT, WRONG, write_log

    workspace, settings = live_settings.workspace, live_settings
    config = yaml.safe_load(open(REPO / "evaluators/configs/traffic.yaml"))
    before = champion_version(workspace)
    with JudgeServer() as judge:
        config["judge"] |= {"model": "scripted", "backend": "openai", "base_url": judge.base_url}
        (tmp_path / "traffic.yaml").write_text(yaml.safe_dump(config))
        options = dict(limit=20, evaluator_config=str(tmp_path / "traffic.yaml"), gate_config="traffic", batch_size=10)
        served_well = run_scheduled_eval(
            ScheduledEvalParameters(data_source=write_log(tmp_path / "good.jsonl", RIGHT, repeat=2), **options),
            settings,
        )
        served_badly = run_scheduled_eval(
            ScheduledEvalParameters(data_source=write_log(tmp_path / "bad.jsonl", WRONG), **options), settings
        )
    assert served_well["status"] == "healthy", served_well["failed_checks"]
    assert "evaluated bundle's own answers" in served_well["baseline"]
    check = next(c for c in served_well["checks"] if c["metric"] == "judge_served_preference")
    assert check["test"] == "non-inferiority" and check["status"] == "pass"
    assert served_badly["status"] == "alert" and "ChampionRegressed" in served_badly["error"]
    assert any("judge_served_preference" in reason for reason in served_badly["failed_checks"])
    assert champion_version(workspace) == before


def test_a_sharded_run_gives_the_same_scores_and_decision_as_an_unsharded_one(tmp_path, policies, weights_cache):
    """shards=3: three generate and three evaluate tasks per bundle (one loop over bundle x shard through
    kfp.local), merged before the gate; each run with its own empty caches, so both really generate."""
    results = {}
    for shards in (1, 3):
        settings = LocalSettings(
            workspace=tmp_path / f"ws{shards}", weights_cache=weights_cache, cache_dir=tmp_path / f"cache{shards}"
        )
        results[shards] = run_promotion(lenient(policies, limit=3, shards=shards), settings)
    one, three = results[1], results[3]
    generated = sorted(t for t in three["steps"] if t.startswith("batch-generate-op"))  # parallel: any order
    assert generated == [f"batch-generate-op[{i}]" for i in range(3)]
    assert three["decision"] == one["decision"] and three["gate"] == one["gate"]
    assert three["bundle_id"] == one["bundle_id"]  # the same bundle: same weights, prompt, data
    rows = {k: [json.loads(line) for line in open(r["reports"]["scores"])] for k, r in results.items()}
    assert [(r["id"], r["output"]) for r in rows[3]] == [(r["id"], r["output"]) for r in rows[1]]  # same answers
    for sharded, whole in zip(rows[3], rows[1]):
        # Scores equal; embeddings are float32 and batched per shard, so cosines may differ in the 7th digit.
        for key, value in whole.items():
            if key != "latency_s" and isinstance(value, float):
                assert sharded[key] == pytest.approx(value, abs=1e-6), (whole["id"], key)
    timing = {"latency_s"}  # wall time, not a score
    assert {k: v for k, v in three["metrics"].items() if k not in timing} == pytest.approx(
        {k: v for k, v in one["metrics"].items() if k not in timing}, abs=1e-6
    )


def test_a_sequential_gate_rejects_an_evasive_prompt_before_it_is_scored_on_the_whole_set(
    promoted, policies, live_settings
):
    """Each look is one run: the challenger is scored on the look's first examples, the champion once on the
    whole set; a look that does not decide registers nothing and moves nothing, and the run stops at the look
    where the gate rejects, with where it stopped in the summary, the Markdown and the HTML report."""
    workspace = live_settings.workspace
    before = champion_version(workspace)
    versions = len(mlflow_client(workspace).search_model_versions("name='champion-qa'"))
    audited = len(open(workspace / "audit.jsonl").readlines())
    params = lenient(policies, limit=36, prompt="qa-evasive", gate_config=str(policies / "sequential.yaml"))
    summary = run_promotion(params, live_settings)
    assert summary["decision"] == "rejected" and summary["gate"] == "failed", summary["reasons"]
    looks = summary["looks"]
    assert [look["look"] for look in looks] == list(range(1, len(looks) + 1)) and len(looks) < 3
    assert [look["gate"] for look in looks] == ["continue"] * (len(looks) - 1) + ["failed"]
    used = looks[-1]["examples"]
    assert used == {1: 12, 2: 25}[len(looks)]  # the looks' first examples of 36, never the whole set
    assert summary["look"] == {"index": len(looks), "of": 3, "examples": used, "total": 36}
    assert summary["decided_at"] == f"decided at look {len(looks)} of 3, {used} of 36 examples"
    assert len(open(summary["reports"]["scores"]).readlines()) == used  # only the look's examples were scored
    assert summary["decided_at"] in open(summary["reports"]["gate_summary"]).read()
    assert summary["decided_at"] in open(summary["reports"]["gate_report"]).read()
    # The champion was paired on the challenger's examples; it was scored on the whole set once.
    assert summary["mode"] == "paired" and summary["champion"]["version"] == before
    # Nothing registered for a look that continued: one new version, the rejection; the alias did not move.
    assert len(mlflow_client(workspace).search_model_versions("name='champion-qa'")) == versions + 1
    assert champion_version(workspace) == before
    events = [json.loads(line) for line in open(workspace / "audit.jsonl")][audited:]
    assert [e["event"] for e in events if e["event"] in ("gate_look", "gate_decision")] == ["gate_look"] * (
        len(looks) - 1
    ) + ["gate_decision"]
    assert all(e["at"].startswith("look ") for e in events if e["event"] == "gate_look")


def test_the_live_bundle_against_itself_looks_at_every_look_and_says_what_would_settle_it(
    promoted, policies, live_settings
):
    """Identical answers cannot clear a 0.05 margin on 36 examples at any valid level: every look but the last
    ends in the look_again step (the run's own branch is what makes champion run look again), and the last is
    inconclusive with the count that would settle it. Nothing is registered for the looks that continued."""
    workspace = live_settings.workspace
    before = champion_version(workspace)
    audited = len(open(workspace / "audit.jsonl").readlines())
    params = lenient(policies, limit=36, promote=False, gate_config=str(policies / "sequential.yaml"))
    summary = run_promotion(params, live_settings)
    assert [(look["look"], look["gate"], look["examples"]) for look in summary["looks"]] == [
        (1, "continue", 12),
        (2, "continue", 25),
        (3, "failed", 36),
    ]
    assert summary["decided_at"] == "decided at look 3 of 3, 36 of 36 examples"
    comparison = next(r for r in summary["reasons"] if r.startswith("semantic_similarity: challenger"))
    assert "difference +0.000" in comparison and "inconclusive" in comparison, comparison
    assert "examples in all would show it non-inferior if the differences kept coming as they did" in comparison
    events = [json.loads(line) for line in open(workspace / "audit.jsonl")][audited:]
    assert [e["event"] for e in events if e["event"] in ("gate_look", "gate_decision")] == ["gate_look"] * 2 + [
        "gate_decision"
    ]
    assert champion_version(workspace) == before


def test_re_running_the_live_bundle_compares_it_with_itself(promoted, policies, live_settings):
    """The challenger identical to the champion (the same bundle, run again): two bundles in the gate, paired,
    passed; never one merged table with every id twice."""
    again = run_promotion(lenient(policies), live_settings)
    assert again["bundle_id"] == promoted["bundle_id"] and again["champion"]["bundle_id"] == promoted["bundle_id"]
    assert again["mode"] == "paired" and again["gate"] == "passed", again["reasons"]
