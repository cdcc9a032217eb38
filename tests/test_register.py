"""register + promote against a real MLflow (sqlite file): versions, aliases, prompt registry, failure modes.

The pipeline registers every bundle (register step) and moves the alias only after the deploy step
served it; ``register`` below does both, as a passing run does.
"""

from types import SimpleNamespace

import pytest

from champion.bundle import Bundle
from champion.errors import RegistryError
from prompts import load_prompt
from registry.register import register_bundle
from registry.registry import CHAMPION_ALIAS, ChampionMoved, current_champion, promote_version


def make_bundle(prompt, model_digest="m" * 64):
    return Bundle(
        model_digest=model_digest,
        prompt=prompt.ref,
        decoding=prompt.decoding.model_dump(mode="json"),
        dataset_digest="d" * 64,
        evaluator_digest="e" * 64,
    )


@pytest.fixture
def registry(tmp_path):
    report = tmp_path / "report"
    report.write_text("# report\n")
    return {
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "registered_model_name": "qa",
        "files": {"gate_report.md": str(report)},
        "weights_source": "smollm2",
    }


def register(registry, bundle, prompt, passed, expected=None):
    decision = {
        "gate": "passed" if passed else "failed",
        "reasons": ["test"],
        "checks": [{"metric": "sim", "test": "floor", "value": 0.7}],
    }
    registration = register_bundle(
        bundle=bundle, prompt=prompt, decision=decision, expected_champion=expected, **registry
    )
    previous = None
    if registration.approved:
        previous = promote_version(
            registry["tracking_uri"],
            registry["registered_model_name"],
            registration.model_version,
            expected=expected,
            prompt_name=prompt.name,
            prompt_version=registration.prompt_version,
            audit_log=registry.get("audit_log", ""),
            audit={"bundle_id": bundle.id},
        )
    return SimpleNamespace(**vars(registration), promoted=registration.approved, previous_champion=previous)


def client_for(registry):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=registry["tracking_uri"], registry_uri=registry["tracking_uri"])


def test_alias_moves_only_on_a_passing_gate(registry):
    prompt = load_prompt("qa-concise")
    first = register(registry, make_bundle(prompt, "a" * 64), prompt, passed=True)
    assert first.promoted and first.previous_champion is None
    rejected = register(registry, make_bundle(prompt, "b" * 64), prompt, passed=False)
    assert not rejected.promoted and rejected.model_version != first.model_version
    client = client_for(registry)
    assert current_champion(client, "qa") == first.model_version
    assert client.get_model_version("qa", rejected.model_version).tags["champion.decision"] == "rejected"
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "gate")}
    assert artifacts == {"gate/decision.json"}
    second = register(registry, make_bundle(prompt, "c" * 64), prompt, passed=True, expected=first.model_version)
    assert second.previous_champion == first.model_version
    assert current_champion(client, "qa") == second.model_version


def test_same_bundle_reuses_its_version_and_prompt_version(registry):
    prompt = load_prompt("qa-concise")
    bundle = make_bundle(prompt)
    a = register(registry, bundle, prompt, passed=False)
    b = register(registry, bundle, prompt, passed=True)  # nothing promoted yet, so None is still the champion
    assert a.model_version == b.model_version and a.prompt_version == b.prompt_version
    tags = client_for(registry).get_model_version("qa", b.model_version).tags
    assert tags["champion.bundle_id"] == bundle.id and tags["champion.decision"] == "promoted"


def test_prompt_registry_holds_the_template_and_alias(registry):
    import mlflow

    prompt = load_prompt("qa-oneline")
    register(registry, make_bundle(prompt), prompt, passed=True)
    mlflow.set_registry_uri(registry["tracking_uri"])
    loaded = mlflow.genai.load_prompt(f"prompts:/qa-oneline@{CHAMPION_ALIAS}")
    assert loaded.tags["champion.digest"] == prompt.digest


def test_the_prompt_alias_follows_the_live_bundle(registry):
    """Every prompt ever promoted used to keep the alias `champion`; only the live bundle's prompt has it."""
    from mlflow.exceptions import MlflowException

    first, second = load_prompt("qa-concise"), load_prompt("qa-oneline")
    register(registry, make_bundle(first), first, passed=True)
    live = register(
        registry, make_bundle(second), second, passed=True, expected=current_champion(client_for(registry), "qa")
    )
    client = client_for(registry)
    assert int(client.get_prompt_version_by_alias("qa-oneline", CHAMPION_ALIAS).version) == live.prompt_version
    with pytest.raises(MlflowException):
        client.get_prompt_version_by_alias("qa-concise", CHAMPION_ALIAS)


def test_anything_but_an_explicit_pass_is_a_rejection(registry):
    prompt = load_prompt("qa-concise")
    result = register_bundle(
        bundle=make_bundle(prompt), prompt=prompt, decision={"gate": "yes"}, expected_champion=None, **registry
    )
    assert not result.approved


def test_registering_alone_never_moves_the_alias(registry):
    prompt = load_prompt("qa-concise")
    result = register_bundle(
        bundle=make_bundle(prompt), prompt=prompt, decision={"gate": "passed"}, expected_champion=None, **registry
    )
    client = client_for(registry)
    assert result.approved and current_champion(client, "qa") is None
    assert client.get_model_version("qa", result.model_version).tags["champion.decision"] == "approved"


def test_unreachable_mlflow_is_a_clear_error_and_promotes_nothing(registry, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    prompt = load_prompt("qa-concise")
    registry["tracking_uri"] = "http://127.0.0.1:9"
    with pytest.raises(RegistryError, match="unreachable") as info:
        register(registry, make_bundle(prompt), prompt, passed=True)
    assert "nothing was promoted" in info.value.fix


def test_empty_tracking_uri_and_mismatched_prompt(registry):
    prompt = load_prompt("qa-concise")
    with pytest.raises(RegistryError, match="no MLflow tracking URI"):
        register({**registry, "tracking_uri": ""}, make_bundle(prompt), prompt, passed=True)
    with pytest.raises(RegistryError, match="does not match"):
        register(registry, make_bundle(prompt), load_prompt("qa-oneline"), passed=True)


def test_promotion_against_a_stale_champion_is_refused_and_audited(registry, tmp_path):
    registry["audit_log"] = str(tmp_path / "audit.jsonl")
    prompt = load_prompt("qa-concise")
    first = register(registry, make_bundle(prompt, "a" * 64), prompt, passed=True)
    second = register(registry, make_bundle(prompt, "b" * 64), prompt, passed=True, expected=first.model_version)
    with pytest.raises(ChampionMoved, match="champion changed while this run was evaluating") as info:
        register(
            registry, make_bundle(prompt, "c" * 64), prompt, passed=True, expected=first.model_version
        )  # evaluated against v1, but v2 is live now
    assert "re-run" in info.value.fix
    assert current_champion(client_for(registry), "qa") == second.model_version
    import json

    events = [json.loads(line) for line in open(registry["audit_log"])]
    assert [e["event"] for e in events] == [
        "gate_decision",
        "alias_moved",
        "gate_decision",
        "alias_moved",
        "gate_decision",
        "alias_refused",
    ]
    assert events[3]["from_version"] == first.model_version and events[3]["to_version"] == second.model_version
    assert all(e["git_commit"] and e["time"] for e in events)


def _promote_in_a_process(args):
    registry, model_digest, expected = args
    prompt = load_prompt("qa-concise")
    try:
        register(registry, make_bundle(prompt, model_digest), prompt, passed=True, expected=expected)
        return "won"
    except ChampionMoved:
        return "refused"


def test_two_concurrent_promotions_from_the_same_champion_exactly_one_wins(registry, tmp_path):
    import multiprocessing

    registry["audit_log"] = str(tmp_path / "audit.jsonl")
    prompt = load_prompt("qa-concise")
    first = register(registry, make_bundle(prompt, "a" * 64), prompt, passed=True)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        outcomes = pool.map(
            _promote_in_a_process,
            [(registry, "b" * 64, first.model_version), (registry, "c" * 64, first.model_version)],
        )
    assert sorted(outcomes) == ["refused", "won"]
    live = current_champion(client_for(registry), "qa")
    assert live != first.model_version
